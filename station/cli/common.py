"""Shared pieces of the `station` command line: the consoles, the common options, and the helpers every
command module uses (config loading, boot, failure messages, JSON output). No commands here.

Exit codes: 0 done / decided, 1 internal failure, 2 bad input (the message says what and what to do).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console

from station.config import ConfigError, StationConfig, load_config
from station.domain import Finding, Frame, ReturnReason


def hide_flag_types() -> None:
    """Flags take no value: typer (0.2x on click 8.2+) would show ``<bool>`` beside every one of them in --help."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - other typer versions
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


hide_flag_types()


class StationGroup(TyperGroup):
    """The top-level command group: a calibration profile asked for under a camera id that is a path
    (``--camera-id bench/../../x``, refused by calibration.profiles before anything is written) is bad input
    on every command that takes a camera id: one line and exit 2, not a traceback."""

    def invoke(self, ctx):
        from calibration.profiles import ProfileError

        try:
            return super().invoke(ctx)
        except ProfileError as exc:
            fail(str(exc))


# Wide tables when piped (CI logs, files): rich would otherwise wrap at 80 columns.
# piped output is 200 wide unless COLUMNS says otherwise (rich reads COLUMNS itself when width is None)
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", envvar="STATION_CONFIG",
                                                   help="station TOML; built-in defaults without it")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", envvar="STATION_DATA_DIR",
                                                    help="where the database, images and sample catalogue live")]


class BadInput(Exception):
    """Input the user can fix: reported as one clear message and exit code 2."""


def read_image(path: Path, what: str = "image"):
    """A colour image file as BGR, or BadInput saying what is wrong with it (every command that reads images)."""
    import cv2

    if path.is_dir():
        raise BadInput(f"{what} {path} is a directory: pass an image file (PNG or JPEG)")
    if not path.is_file():
        raise BadInput(f"{what} {path} not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise BadInput(f"{what} {path} is not a readable image (corrupt, or not a JPEG or PNG)")
    return image


def invoked_command(name: str) -> str:
    """The command line as typed (``station NAME ...``), for the records a command writes into a model card."""
    return " ".join(["station", name, *sys.argv[2:]])


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # escaped: a message naming a TOML section ("set [sync] url") is text, not rich markup to swallow
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def station_config(config: Path | None, data_dir: Path | None) -> StationConfig:
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(f"invalid config:\n{exc}\nrun `station config check {config}` for the full list")
    if data_dir is not None:
        cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"data_dir": data_dir})})
    return cfg


def boot(cfg: StationConfig):
    from models.onnx_yolo import ModelError
    from station.app import boot
    from station.records import StoreError
    from station.rules import RulesError
    from station.config import data_dir_problem
    from vision.catalogue import CatalogueError

    why = data_dir_problem(cfg.station.data_dir)
    if why:
        fail(f"data dir {cfg.station.data_dir}: {why}: pass --data-dir with a writable folder "
             f"(or set station.data_dir)")
    try:
        return boot(cfg)
    except (ModelError, RulesError, CatalogueError, StoreError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. the sample catalogue or the image folder cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot write{where}: {exc.strerror or exc}: check that the data dir {cfg.station.data_dir} "
             f"is a writable folder (--data-dir or station.data_dir)")


def return_reason(value: str) -> ReturnReason:
    try:
        return ReturnReason(value)
    except ValueError:
        raise BadInput(f"unknown reason {value!r}: use one of {', '.join(r.value for r in ReturnReason)}") from None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def capture_views(station, views: list[str], retakes: int = 2) -> list[Frame]:
    """Capture each view; a frame the quality gate rejects is retaken (as the bench UI prompts)."""
    frames = []
    gate = station.pipeline.quality_gate
    for view in views:
        frame = station.camera.capture(view)
        for _ in range(retakes):
            if gate.check(frame.image).ok:
                break
            frame = station.camera.capture(view)
        frames.append(frame)
    return frames



def finding_label(f: Finding) -> str:
    """A finding for a reader: measurements show their value (identity, ΔE00), not the detector score."""
    if f.value is not None and f.kind == "wrong_item":
        return f"wrong_item (identity {f.value:.2f})"
    if f.value is not None and f.kind in ("colour_mismatch", "presentation_mismatch"):
        return f"{f.kind} (ΔE00 {f.value:.1f})"
    return f"{f.kind} {f.score:.2f}"



def include(into: typer.Typer, source: typer.Typer) -> None:
    """Add a command module's commands and command groups to ``into``, in the order the module defined them
    (the order --help lists them in)."""
    into.registered_commands.extend(source.registered_commands)
    into.registered_groups.extend(source.registered_groups)
