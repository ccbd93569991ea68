"""Model registry: versioned ONNX files with their model cards, and the active version per station.

Layout under the station data dir::

    <data_dir>/models/<version>/model.onnx   the exported detector
    <data_dir>/models/<version>/model.yaml   its model card (copied as registered)
    <data_dir>/models/registry.db            SQLite: registered versions and the activation history

The activation history is append-only. ``activate`` pushes a version, ``rollback`` pops the current one, so
the active version is the top of the stack replayed from the history; an empty stack means "no registry
model": the station uses its configured ``detector.model``. The registry version string is what the station
stores on every record it decides (``model_version``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from models.onnx_yolo import ModelCard, ModelError, OnnxYoloDetector

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    version TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    source TEXT NOT NULL,
    card_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('activate', 'rollback')),
    version TEXT,
    at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER IF NOT EXISTS activations_no_update BEFORE UPDATE ON activations
    BEGIN SELECT RAISE(ABORT, 'the activation history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS activations_no_delete BEFORE DELETE ON activations
    BEGIN SELECT RAISE(ABORT, 'the activation history is append-only'); END;
"""


class RegistryError(ValueError):
    """A registry operation the user asked for cannot be done; the message says why and what to do."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class ModelEntry:
    version: str
    sha256: str
    registered_at: str
    source: str
    card: dict
    path: Path  # the registry's copy of the ONNX file

    def to_json(self, active: bool = False) -> dict:
        return {"version": self.version, "sha256": self.sha256, "registered_at": self.registered_at,
                "source": self.source, "path": str(self.path), "name": self.card.get("name"),
                "architecture": self.card.get("architecture"), "input_size": self.card.get("input_size"),
                "metrics_val": self.card.get("metrics_val", {}), "metrics_test": self.card.get("metrics_test", {}),
                "active": active}


class ModelRegistry:
    """Opened explicitly (``open()``, or as a context manager); no I/O in the constructor."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "models"
        self.db_path = self.root / "registry.db"
        self._db: sqlite3.Connection | None = None

    def open(self) -> "ModelRegistry":
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(self.db_path, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            for f in (self.db_path, self.db_path.with_name(self.db_path.name + "-wal"),
                      self.db_path.with_name(self.db_path.name + "-shm")):
                if f.exists():  # owner-only, as the station's own databases (which activations it ran is its record)
                    f.chmod(0o600)
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open the model registry {self.db_path}: {exc}") from None
        self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "ModelRegistry":
        return self.open() if self._db is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RegistryError("model registry is not open")
        return self._db

    # ------------------------------------------------------------------------------------ versions
    def _entry(self, row) -> ModelEntry:
        version, sha, at, source, card = row
        return ModelEntry(version, sha, at, source, json.loads(card), self.root / version / "model.onnx")

    def get(self, version: str) -> ModelEntry | None:
        row = self.db.execute("SELECT version, sha256, registered_at, source, card_json FROM models "
                              "WHERE version = ?", (version,)).fetchone()
        return self._entry(row) if row else None

    def require(self, version: str) -> ModelEntry:
        entry = self.get(version)
        if entry is None:
            known = ", ".join(e.version for e in self.list()) or "none registered"
            raise RegistryError(f"model version {version!r} is not in the registry ({known}): "
                                f"`station model register FILE` first")
        return entry

    def list(self) -> list[ModelEntry]:
        rows = self.db.execute("SELECT version, sha256, registered_at, source, card_json FROM models "
                               "ORDER BY registered_at, rowid").fetchall()
        return [self._entry(r) for r in rows]

    def register(self, onnx: Path, version: str | None = None) -> ModelEntry:
        """Copy an ONNX file and its model card into the registry. The model must load in the station's engine.

        Without ``version`` it is ``<card name>-<first 10 hex of the file's sha256>``. Registering the same file
        again under the same version returns the existing entry; a version is never reused for other bytes.
        """
        onnx = Path(onnx)
        if not onnx.is_file():
            raise RegistryError(f"{onnx} is not a file: pass an exported ONNX model (its .yaml card beside it)")
        card_path = onnx.with_suffix(".yaml")
        try:
            card = ModelCard.load(card_path)
            OnnxYoloDetector(onnx, threads=1).load()  # refuse what the station could not run
        except ModelError as exc:
            raise RegistryError(str(exc)) from None
        if card is None:
            raise RegistryError(f"{onnx} has no model card {card_path.name} beside it: every model ships with one")
        sha = file_sha256(onnx)
        if version is None:  # weights and card together: the same weights with other thresholds are another model
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", str(card.raw.get("name") or onnx.stem))[:40]
            both = hashlib.sha256(sha.encode() + card_path.read_bytes()).hexdigest()
            version = f"{name}-{both[:10]}"
        if not VERSION_RE.match(version):
            raise RegistryError(f"version {version!r} must be 1-64 letters, digits, '.', '_' or '-'")
        existing = self.get(version)
        if existing is not None:
            if existing.sha256 == sha and existing.card == json.loads(json.dumps(card.raw, default=str)):
                return existing
            raise RegistryError(f"version {version!r} is already registered for another file "
                                f"(sha256 {existing.sha256[:12]}...): choose another --version")
        dest = self.root / version
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(onnx, tmp / "model.onnx")
        shutil.copyfile(card_path, tmp / "model.yaml")
        if file_sha256(tmp / "model.onnx") != sha:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RegistryError(f"{onnx} changed while it was copied: register it again")
        shutil.rmtree(dest, ignore_errors=True)  # a folder left by an earlier, unrecorded attempt
        tmp.rename(dest)
        self.db.execute("INSERT INTO models(version, sha256, registered_at, source, card_json) VALUES (?,?,?,?,?)",
                        (version, sha, _now(), str(onnx.resolve()), json.dumps(card.raw, default=str)))
        return self.require(version)

    # ------------------------------------------------------------------------------------ activation
    def _stack(self, station_id: str) -> list[str]:
        stack: list[str] = []
        for kind, version in self.db.execute("SELECT kind, version FROM activations WHERE station_id = ? "
                                             "ORDER BY seq", (station_id,)):
            if kind == "activate":
                stack.append(version)
            elif stack:
                stack.pop()
        return stack

    def active(self, station_id: str) -> ModelEntry | None:
        stack = self._stack(station_id)
        return self.require(stack[-1]) if stack else None

    def activate(self, version: str, station_id: str, reason: str = "") -> ModelEntry:
        entry = self.require(version)
        if not entry.path.exists():
            raise RegistryError(f"{entry.path} is missing: the registry folder was changed by hand; register "
                                f"the model again under a new version")
        self.db.execute("INSERT INTO activations(station_id, kind, version, at, reason) VALUES (?,?,?,?,?)",
                        (station_id, "activate", version, _now(), reason))
        return entry

    def rollback(self, station_id: str, reason: str = "") -> ModelEntry | None:
        """Return to the version active before the current one (None: back to the configured model)."""
        stack = self._stack(station_id)
        if not stack:
            raise RegistryError(f"nothing to roll back on station {station_id}: no registry model is active "
                                f"(it runs the configured detector.model)")
        self.db.execute("INSERT INTO activations(station_id, kind, version, at, reason) VALUES (?,?,?,?,?)",
                        (station_id, "rollback", stack[-1], _now(), reason))
        return self.require(stack[-2]) if len(stack) > 1 else None

    def history(self, station_id: str) -> list[dict]:
        return [{"seq": s, "kind": k, "version": v, "at": a, "reason": r} for s, k, v, a, r in self.db.execute(
            "SELECT seq, kind, version, at, reason FROM activations WHERE station_id = ? ORDER BY seq",
            (station_id,))]


def load_registered(entry: ModelEntry, confidence: float | None = None, iou: float | None = None,
                    threads: int = 2, input_size: int | None = None) -> OnnxYoloDetector:
    """Load a registry model; its ``version`` (stored on every record it decides) is the registry version.
    ``input_size``: the station's ``detector.input_size`` (None: the model card's)."""
    detector = OnnxYoloDetector(entry.path, confidence, iou, threads, input_size).load()
    detector.version = entry.version
    return detector


def resolve_model(registry: ModelRegistry, ref: str) -> tuple[Path, str]:
    """A registry version or a path to an ONNX file -> (path, version string)."""
    entry = registry.get(ref)
    if entry is not None:
        return entry.path, entry.version
    path = Path(ref)
    if path.suffix == ".onnx" and path.is_file():
        return path, path.stem
    known = ", ".join(e.version for e in registry.list()) or "none registered"
    raise RegistryError(f"{ref!r} is neither a registered version ({known}) nor an ONNX file")
