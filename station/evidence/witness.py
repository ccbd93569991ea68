"""Witness heads: signed heads held outside the station's database, which the log must extend."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from station.evidence.merkle import EvidenceError, load_json
from station.evidence.signing import SignedTreeHead, StationKey


# ------------------------------------------------------------------------------------------- witness heads
#
# A witness is a signed head that someone other than the station's database holds: the last head the platform
# acknowledged (kept by the platform, GET /api/v1/stations/ID/heads, and by the station next to its key, written
# by the sync client after each acknowledged batch), or a head.json out of an evidence bundle. The log must
# extend every witness: fewer leaves than a witness means records were removed (a rollback, or the database
# replaced), a different prefix root means the log was rewritten.

WITNESS_FILE = "platform_head.json"
WITNESS_FORMAT = "inspection-station witness head/1"


@dataclass(frozen=True, slots=True)
class Witness:
    head: SignedTreeHead
    source: str


def witness_path(key_path: Path) -> Path:
    """Where the station keeps the last head the platform acknowledged: next to its key, outside the database."""
    return Path(key_path).parent / WITNESS_FILE


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_witnesses(data: bytes, source: str) -> list[Witness]:
    """Heads out of a witness file: one signed head (a bundle's head.json), the station's witness file
    (``{"head": {...}}``), the platform's ``GET /stations/ID/heads`` answer (``{"heads": [...]}``) or a list."""
    obj = load_json(data, source, (dict, list))
    if isinstance(obj, dict) and "heads" in obj:
        items = obj["heads"]
    elif isinstance(obj, dict) and "head" in obj:
        items = [obj["head"]]
    elif isinstance(obj, list):
        items = obj
    else:
        items = [obj]
    if not isinstance(items, list) or not items:
        raise EvidenceError(f"{source} holds no signed head")
    if len(items) > 1_000_000:
        raise EvidenceError(f"{source} holds too many heads ({len(items)})")
    return [Witness(SignedTreeHead.from_json(h), source) for h in items]


def load_witness_file(path: Path) -> list[Witness]:
    try:
        size = path.stat().st_size
        if size > 256 * 1024 * 1024:
            raise EvidenceError(f"witness file {path} is too large ({size} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read witness head {path}: {exc.strerror or exc}") from None
    return parse_witnesses(data, str(path))


def save_witness(path: Path, head: SignedTreeHead, acknowledged_by: str = "") -> bool:
    """Keep ``head`` as the station's witness (atomically), unless the file already holds a larger head.
    Best effort: returns False when nothing was written (the platform keeps its own copy)."""
    path = Path(path)
    try:
        if path.exists():
            old = parse_witnesses(path.read_bytes(), str(path))
            if max(w.head.tree_size for w in old) > head.tree_size:
                return False
    except (OSError, EvidenceError):
        pass  # unreadable: replaced by the new head
    body = json.dumps({"format": WITNESS_FORMAT, "acknowledged_at": utc_now(), "acknowledged_by": acknowledged_by,
                       "head": head.to_json()}, indent=2).encode()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


def keep_acknowledged_head(key: StationKey, head, acknowledged_by: str = "") -> bool:
    """The sync client's hook: keep a head the platform acknowledged as the station's witness file (outside the
    database, next to the key), when it is this station's own (its signature checks). Best effort, never raises:
    the platform keeps its copy too."""
    try:
        if not isinstance(head, SignedTreeHead):
            head = SignedTreeHead.from_json(head)
        if not head.verify(key.public):
            return False
    except EvidenceError:
        return False
    return save_witness(witness_path(key.path), head, acknowledged_by)
