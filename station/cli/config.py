"""`station config check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from station.cli.common import err, out
from station.config import ConfigError, load_config

config_app = typer.Typer(no_args_is_help=True, help="Configuration checks.")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="station TOML file")]) -> None:
    """Validate a config file and every file it points to; print each problem with its path."""
    from rich.markup import escape

    from models.onnx_yolo import ModelError, OnnxYoloDetector
    from station.config import configured_paths, data_dir_problem
    from station.rules import RuleSet, RulesError
    from station.sync import FACE_BLUR_UNAVAILABLE, face_blur_available
    from vision.catalogue import Catalogue, CatalogueError

    try:
        cfg = load_config(file)
        problems: list[str] = []
    except ConfigError as exc:
        cfg, problems = None, list(exc.problems)
    # The files it points to are checked even when the schema has errors: a missing model or rules file is
    # one more thing to fix, not something to find after fixing the rest.
    if cfg is not None:
        paths = {"rules.file": cfg.rules.file, "catalogue.path": cfg.catalogue.path,
                 "station.data_dir": cfg.station.data_dir}
        from station.config import OnnxDetectorConfig

        if isinstance(cfg.detector, OnnxDetectorConfig):
            paths["detector.model"] = cfg.detector.model
    else:
        paths = configured_paths(file)
    if paths.get("rules.file") is not None:
        try:
            RuleSet.load(paths["rules.file"])
        except RulesError as exc:
            problems += [f"rules.file: {line}" for line in str(exc).splitlines()]
    if paths.get("catalogue.path") is not None:
        try:
            Catalogue.load(paths["catalogue.path"])
        except CatalogueError as exc:
            problems.append(f"catalogue.path: {exc}")
    if paths.get("detector.model") is not None:
        try:
            OnnxYoloDetector(paths["detector.model"]).load()
        except ModelError as exc:
            problems.append(f"detector.model: {exc}")
    if paths.get("station.data_dir") is not None:
        why = data_dir_problem(paths["station.data_dir"])
        if why:
            problems.append(f"station.data_dir: {why}: the station keeps its database and images there; "
                            f"point it at a writable folder")
    if cfg is not None and cfg.sync.blur_faces and not face_blur_available():
        problems.append(f"sync.blur_faces: {FACE_BLUR_UNAVAILABLE}")  # the station refuses to sync so
    for p in problems:
        err.print(f"{escape(str(file))}: {escape(p)}", highlight=False, soft_wrap=True)
    if problems:
        err.print(f"[bold red]{len(problems)} problem(s)[/]")
        raise typer.Exit(2)
    out.print(f"{file}: ok")


