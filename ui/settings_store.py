"""The settings screen's data side (no Qt; runs on the worker thread): read the station's TOML file, merge the
edited fields into it, validate the result with the station's own pydantic models, and write it atomically.

Who may do this is decided by station.users (``Permission.EDIT_SETTINGS``, admins only): both
:func:`read_settings` and :func:`save_settings` call ``require`` first, so a page reached by any other way
still cannot read or change the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from station.config import ConfigError, StationConfig, load_config, validation_problems
from station.users import Permission, User, require

# The fields the screen edits: (key, TOML path). Camera and conveyor fields depend on the backend type.
FIELDS: tuple[tuple[str, str], ...] = (
    ("camera.type", "camera.type"),
    ("camera.source", "camera.source"),  # opencv: device index / URL; folder: its path
    ("camera.width", "camera.width"),
    ("camera.height", "camera.height"),
    ("conveyor.type", "conveyor.type"),
    ("conveyor.url", "conveyor.url"),
    ("quality.min_sharpness", "quality.min_sharpness"),
    ("quality.min_mean", "quality.min_mean"),
    ("quality.max_mean", "quality.max_mean"),
    ("quality.max_clipped_share", "quality.max_clipped_share"),
    ("comparer.identity_threshold", "comparer.identity_threshold"),
    ("detector.model", "detector.model"),
)
CAMERA_TYPES = ("synthetic", "folder", "opencv")
CONVEYOR_TYPES = ("simulated", "bench", "serial", "modbus")
_INT_FIELDS = {"camera.width", "camera.height"}
_TEXT_FIELDS = {"camera.type", "conveyor.type", "conveyor.url", "detector.model"}


def settings_path(cfg: StationConfig, config_path: Path | None) -> Path:
    """The file the station was started with, else ``<data_dir>/station.toml``."""
    return Path(config_path) if config_path is not None else cfg.station.data_dir / "station.toml"


@dataclass(frozen=True, slots=True)
class Problem:
    path: str  # dotted path in the file, as validation_problems gives it
    kind: str  # pydantic's error type
    message: str  # pydantic's (English) message
    ctx: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SettingsResult:
    path: Path
    values: dict[str, str]  # field key -> text shown in the form
    saved: bool = False
    problems: tuple[Problem, ...] = ()


# ------------------------------------------------------------------------------------------- read


def _read_raw(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return f"{v:.1f}"
    return str(v)


def form_values(cfg: StationConfig) -> dict[str, str]:
    """The form's text for each field, from a validated config (so defaults show too)."""
    cam, conv = cfg.camera, cfg.conveyor
    source = getattr(cam, "source", None) if cam.type == "opencv" else getattr(cam, "path", None)
    return {
        "camera.type": cam.type,
        "camera.source": _text(source),
        "camera.width": _text(getattr(cam, "width", None)),
        "camera.height": _text(getattr(cam, "height", None)),
        "conveyor.type": conv.type,
        "conveyor.url": _text(getattr(conv, "url", None)),
        "quality.min_sharpness": _text(cfg.quality.min_sharpness),
        "quality.min_mean": _text(cfg.quality.min_mean),
        "quality.max_mean": _text(cfg.quality.max_mean),
        "quality.max_clipped_share": _text(cfg.quality.max_clipped_share),
        "comparer.identity_threshold": _text(cfg.comparer.identity_threshold),
        "detector.model": _text(getattr(cfg.detector, "model", "")),
    }


def read_settings(user: User | None, cfg: StationConfig, config_path: Path | None) -> SettingsResult:
    """What the form shows: the file's values (validated), or the running config when there is no file."""
    require(user, Permission.EDIT_SETTINGS, "open the station settings")
    path = settings_path(cfg, config_path)
    if not path.is_file():
        return SettingsResult(path, form_values(cfg))
    try:
        return SettingsResult(path, form_values(load_config(path)))
    except ConfigError as exc:  # the file no longer loads: show why, with the running values to start from
        return SettingsResult(path, form_values(cfg), False, tuple(
            Problem(*(text.split(": ", 1) if ": " in text else ("(file)", text))[:1], "config_error",
                    text.split(": ", 1)[-1]) for text in exc.problems))


# ------------------------------------------------------------------------------------------- merge


def _number(text: str, integer: bool) -> Any:
    """A number when the text is one; otherwise the text itself, so pydantic reports it at its path."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text


def _in_file(raw: dict, key: str) -> bool:
    section, name = key.split(".")
    names = ("source", "path") if key == "camera.source" else (name,)
    return isinstance(raw.get(section), dict) and any(n in raw[section] for n in names)


def merge(raw: dict, values: Mapping[str, str]) -> dict:
    """The file's data with the edited fields put in. Other sections and keys are kept as they are; a
    camera or conveyor section whose type changes starts afresh (its old keys may not exist for the new one).
    A field left at the built-in default that the file did not set stays out of the file (so the bundled
    model's path, for one, is not pinned)."""
    data = json.loads(json.dumps(raw, default=str))  # a deep copy (dates become strings; none are expected)
    defaults = form_values(StationConfig())
    v = {k: (values.get(k) or "").strip() for k, _ in FIELDS}
    for key in v:
        if key not in ("camera.type", "conveyor.type") and v[key] == defaults[key] and not _in_file(raw, key):
            v[key] = ""

    cam_type = v["camera.type"] or "synthetic"
    cam = dict(data.get("camera", {})) if data.get("camera", {}).get("type", "synthetic") == cam_type else {}
    cam["type"] = cam_type
    for key in ("source", "path", "width", "height"):
        cam.pop(key, None)
    if cam_type == "folder":
        if v["camera.source"]:
            cam["path"] = v["camera.source"]
    else:
        if cam_type == "opencv" and v["camera.source"]:
            cam["source"] = int(v["camera.source"]) if v["camera.source"].isdigit() else v["camera.source"]
        for key in ("width", "height"):
            if v[f"camera.{key}"]:
                cam[key] = _number(v[f"camera.{key}"], True)
    data["camera"] = cam

    conv_type = v["conveyor.type"] or "simulated"
    conv = dict(data.get("conveyor", {})) if data.get("conveyor", {}).get("type", "simulated") == conv_type else {}
    conv["type"] = conv_type
    conv.pop("url", None)
    if conv_type in ("serial", "modbus"):
        conv["url"] = v["conveyor.url"]  # required there: an empty one is reported at conveyor.url
    data["conveyor"] = conv

    for key in ("quality.min_sharpness", "quality.min_mean", "quality.max_mean", "quality.max_clipped_share",
                "comparer.identity_threshold"):
        section, name = key.split(".")
        sec = dict(data.get(section, {}))
        if v[key]:
            sec[name] = _number(v[key], key in _INT_FIELDS)
        else:
            sec.pop(name, None)
        data[section] = sec

    det = dict(data.get("detector", {}))
    if v["detector.model"]:
        det["model"] = v["detector.model"]
    else:
        det.pop("model", None)
    data["detector"] = det
    for section, default in (("camera", "synthetic"), ("conveyor", "simulated")):
        if data[section] == {"type": default} and section not in raw:
            del data[section]
    return {k: s for k, s in data.items() if s != {} or k in raw}


def problems_of(data: dict, base: Path) -> list[Problem]:
    """Every problem, each with its path: the station's pydantic models, then a model file that is not there."""
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        return [Problem(text.split(": ", 1)[0], err["type"], text.split(": ", 1)[1] if ": " in text else text,
                        dict(err.get("ctx") or {}))
                for err, text in zip(exc.errors(), validation_problems(exc))]
    model = data.get("detector", {}).get("model")
    if model:
        p = Path(model)
        if not (p if p.is_absolute() else base / p).is_file():
            return [Problem("detector.model", "file_not_found", "file not found", {"path": str(p)})]
    del cfg
    return []


# ------------------------------------------------------------------------------------------- write

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: Any) -> str:
    k = str(getattr(k, "value", k))
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(getattr(v, "value", v)), ensure_ascii=False)  # JSON escapes are valid TOML escapes


def to_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for config data: scalars, arrays, inline tables in arrays, nested tables."""
    lines: list[str] = []

    def table(prefix: str, d: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if prefix and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append(f"[{prefix}]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables:
            table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    table("", data)
    return "\n".join(lines) + "\n"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_settings(user: User | None, cfg: StationConfig, config_path: Path | None,
                  values: Mapping[str, str]) -> SettingsResult:
    """Validate the edited file as the station will load it; write it only when there is no problem."""
    require(user, Permission.EDIT_SETTINGS, "change the station settings")
    path = settings_path(cfg, config_path)
    raw = _read_raw(path)
    if not raw and not path.is_file():
        # A new file: pin the data dir the station runs on, so the saved file opens the same records.
        raw = {"station": {"id": cfg.station.id, "data_dir": str(cfg.station.data_dir)}}
    data = merge(raw, values)
    problems = problems_of(data, path.resolve().parent)
    if problems:
        return SettingsResult(path, dict(values), False, tuple(problems))
    text = to_toml(data)
    if tomllib.loads(text) != json.loads(json.dumps(data, default=str)):
        raise ValueError("internal error: the TOML written does not read back as the settings")
    write_atomically(path, text)
    load_config(path)  # what the station will do at the next start; raises ConfigError if it would fail
    return SettingsResult(path, form_values(load_config(path)), True)


def read_ui_language(data_dir: Path) -> str | None:
    """The UI language chosen in settings (``<data_dir>/ui.toml``), if any."""
    path = Path(data_dir) / "ui.toml"
    try:
        lang = tomllib.loads(path.read_text(encoding="utf-8")).get("language")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return lang if isinstance(lang, str) else None


def save_ui_language(data_dir: Path, language: str) -> Path:
    path = Path(data_dir) / "ui.toml"
    write_atomically(path, to_toml({"language": language}))
    return path
