"""`station` command line. Contracts (names, flags, JSON fields, exit codes) are documented in the README.

Exit codes: 0 done / decided, 1 internal failure, 2 bad input (the message says what and what to do).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from rich.table import Table

from station.config import ConfigError, StationConfig, load_config, validation_problems
from station.domain import FINDING_KINDS, Finding, FindingSource, Frame, ReturnReason, ReturnRequest


def _hide_flag_types() -> None:
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


_hide_flag_types()


class _StationGroup(TyperGroup):
    """The top-level command group: a calibration profile asked for under a camera id that is a path
    (``--camera-id bench/../../x``, refused by calibration.profiles before anything is written) is bad input
    on every command that takes a camera id: one line and exit 2, not a traceback."""

    def invoke(self, ctx):
        from calibration.profiles import ProfileError

        try:
            return super().invoke(ctx)
        except ProfileError as exc:
            fail(str(exc))


app = typer.Typer(cls=_StationGroup, add_completion=False, no_args_is_help=True, help="Returns inspection station.")
catalogue_app = typer.Typer(no_args_is_help=True, help="Catalogue: list and import SKUs.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration checks.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks.")
dataset_app = typer.Typer(no_args_is_help=True, help="Datasets for the defect detector.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")

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


def _invoked_command(name: str) -> str:
    """The command line as typed (``station NAME ...``), for the records a command writes into a model card."""
    return " ".join(["station", name, *sys.argv[2:]])


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # escaped: a message naming a TOML section ("set [sync] url") is text, not rich markup to swallow
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _config(config: Path | None, data_dir: Path | None) -> StationConfig:
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(f"invalid config:\n{exc}\nrun `station config check {config}` for the full list")
    if data_dir is not None:
        cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"data_dir": data_dir})})
    return cfg


def _boot(cfg: StationConfig):
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


def _reason(value: str) -> ReturnReason:
    try:
        return ReturnReason(value)
    except ValueError:
        raise BadInput(f"unknown reason {value!r}: use one of {', '.join(r.value for r in ReturnReason)}") from None


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------- demo


def _capture_views(station, views: list[str], retakes: int = 2) -> list[Frame]:
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


_DEMO_TABLE_WIDTH = 160  # narrower terminals get one block per return (the table would cut words)


def _finding_label(f: Finding) -> str:
    """A finding for a reader: measurements show their value (identity, ΔE00), not the detector score."""
    if f.value is not None and f.kind == "wrong_item":
        return f"wrong_item (identity {f.value:.2f})"
    if f.value is not None and f.kind in ("colour_mismatch", "presentation_mismatch"):
        return f"{f.kind} (ΔE00 {f.value:.1f})"
    return f"{f.kind} {f.score:.2f}"


@app.command()
def demo(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(help="number of simulated returns", min=1)] = 27,
    seed: Annotated[int, typer.Option(help="seed for the simulated returns")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object per item instead of a table")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run simulated returns through the whole pipeline (simulated camera and conveyor) and record them."""
    from rich.progress import Progress

    from station.demo import DemoScale, simulated_returns
    from vision.camera import SyntheticCamera

    cfg = _config(config, data_dir)
    # Only a --data-dir typed on this command line is a deliberate choice; STATION_DATA_DIR and the default
    # are the station's real data folder.
    chosen = getattr(ctx.get_parameter_source("data_dir"), "name", None) == "COMMANDLINE"
    if not chosen:
        # Demo records are not returns: they go to a data dir of their own (<data_dir>/demo, its own
        # database), never into the station's records, so `station sync` cannot send them as real.
        demo_dir = cfg.station.data_dir / "demo"
        cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"data_dir": demo_dir}),
                                     "records": cfg.records.model_copy(update={"database": None})})
    station = _boot(cfg)
    if not isinstance(station.camera, SyntheticCamera):
        fail("`station demo` needs camera.type = \"synthetic\" (it stages simulated returns on the bench)")
    demo_scale = None
    if station.pipeline.scale is None:  # the parcels are weighed too: each story's parcel has its weight
        demo_scale = station.pipeline.scale = DemoScale()
    import uuid

    returns = simulated_returns(items, seed, run=uuid.uuid4().hex[:6])
    results = []
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("inspecting", total=len(returns))
            for i, sim in enumerate(returns):
                station.camera.stage(sim.staged)
                if demo_scale is not None:
                    demo_scale.put(sim.weight_g)
                # the synthetic camera draws no print: each story's label (serial, dates) is printed on its frames
                frames = sim.printed_on(_capture_views(station, cfg.station.views))
                res = station.pipeline.inspect(sim.request, frames, operator="demo", item_seq=i + 1)
                results.append((sim, res))
                progress.advance(task)
                if json_out:
                    miss = sim.mismatch(res.record.decision)
                    _print_json({"story": sim.story, "as_story_says": miss is None,
                                 "story_expects": sim.expect.describe() if sim.expect else None, **res.to_json()})
    finally:
        station.close()
    if json_out:
        return
    rows = []
    for sim, res in results:
        d = res.record.decision
        findings = ", ".join(_finding_label(f) for f in res.findings) or "-"
        liability = " ".join(f"{s.party.value} {s.share:.0%}" for s in d.liability)
        disp = d.disposition.value + (f" ({d.proposed_disposition.value})" if d.review else "")
        # Whether the decision is what the story says happened to the item (a detector miss or false alarm
        # shows here, in the open, instead of a table a reader has to check line by line).
        miss = sim.mismatch(d)
        told = "yes" if miss is None else f"[bold red]no[/]: {miss}"
        rows.append((sim.request.order_id, sim.request.sku, sim.story, findings, d.grade.value, disp, liability,
                     str(res.record.lane), " ".join(d.rules_fired), told))
    if out.width >= _DEMO_TABLE_WIDTH:
        table = Table(title=f"{len(results)} simulated returns", show_lines=False)
        for col in ("order", "SKU", "what happened", "findings", "grade", "disposition", "liability", "lane", "rules",
                    "as told"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        # Ten columns do not fit a narrow terminal without cutting rule ids and SKUs mid-word: one block
        # per return instead, wrapped at spaces only.
        out.print(f"[bold]{len(results)} simulated returns[/]")
        for order, sku, story, findings, grade, disp, liability, lane, rules, told in rows:
            out.print(f"\n[bold]{order}[/] {sku}: {story}")
            out.print(f"  findings: {findings}")
            out.print(f"  grade {grade}, {disp}, lane {lane}; liable: {liability}")
            out.print(f"  rules: {rules}")
            out.print(f"  as the story says: {told}")
    grades: dict[str, int] = {}
    for _, res in results:
        grades[res.record.decision.grade.value] = grades.get(res.record.decision.grade.value, 0) + 1
    reviews = sum(r.record.decision.review for _, r in results)
    told = [sim.mismatch(res.record.decision) is None for sim, res in results if sim.expect is not None]
    totals = [r.record.timings_ms for _, r in results]
    per_item = [sum(t.values()) for t in totals]
    out.print(f"grades: {dict(sorted(grades.items()))}  manual review: {reviews}  "
              f"median decision time: {statistics.median(per_item):.0f} ms per item ({len(cfg.station.views)} views)")
    if told:
        out.print(f"decided as the story says: {sum(told)} of {len(told)}" + (
            "" if all(told) else " (the others are marked no, with what the story expected)"))
    out.print(f"database: {cfg.database_path()}" + ("" if chosen else
              " (demo records only: not the station's records, never synced)"))


# ------------------------------------------------------------------------------------------- inspect


@app.command()
def inspect(
    images: Annotated[list[Path], typer.Argument(help="one image per view")],
    sku: Annotated[str, typer.Option(help="catalogue SKU on the RMA")],
    reason: Annotated[str, typer.Option(help="return reason")],
    unit_code: Annotated[Optional[str], typer.Option(help="unit code (one per physical item)")] = None,
    streamer: Annotated[Optional[str], typer.Option(help="streamer id on the order")] = None,
    order_id: Annotated[Optional[str], typer.Option(help="order id (default: generated)")] = None,
    carrier: Annotated[Optional[str], typer.Option()] = None,
    presentation: Annotated[Optional[Path], typer.Option(
        "--presentation", help="the streamer's presentation image of the item: its colour is compared with the "
        "catalogue (a presentation_mismatch finding beyond the category's tolerance)")] = None,
    serial: Annotated[Optional[str], typer.Option(
        help="serial / IMEI of the unit the order shipped: another serial read on the item is a serial_mismatch")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Inspect image files of one returned item and print the decision."""
    try:
        why = _reason(reason)
        from station.limits import option_problem  # the platform's limits: a record it refuses never syncs

        if problem := option_problem({"order_id": order_id, "sku": sku, "unit_code": unit_code,
                                      "streamer": streamer, "carrier": carrier}):
            raise BadInput(problem)
        import re

        if serial is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 \-]{2,63}", serial):
            raise BadInput(f"--serial {serial!r}: give the serial or IMEI as printed (3 to 64 letters, digits, "
                           f"spaces or dashes)")
        # one view per file, named by its stem: the same file (or two files with one stem) twice would
        # silently keep one view
        stems = [p.stem for p in images]
        twice = sorted({st for st in stems if stems.count(st) > 1})
        if twice:
            raise BadInput(f"view(s) {', '.join(twice)} given twice: pass each view's image once")
        frames = [Frame(read_image(path), path.stem, str(path), path.stat().st_mtime) for path in images]
        # ... and one photo under two view names (a link, a copy) would be judged as two views of the item
        seen: dict[bytes, Path] = {}
        for path in images:
            first = seen.setdefault(hashlib.sha256(path.read_bytes()).digest(), path)
            if first is not path:
                raise BadInput(f"{first} and {path} are the same image: pass a photo of each view")
        shown = read_image(presentation, "presentation image") if presentation is not None else None
    except BadInput as exc:
        fail(str(exc))
    cfg = _config(config, data_dir)
    from station.records import StoreError
    from vision.catalogue import UnknownSkuError

    station = _boot(cfg)
    try:
        item = station.catalogue.get(sku)
        request = ReturnRequest(order_id or f"INSPECT-{int(time.time() * 1000)}", sku, why, unit_code,
                                None, streamer, item.brand, carrier, serial=serial)
        result = station.pipeline.inspect(request, frames, operator="cli", presentation=shown)
    except (UnknownSkuError, StoreError) as exc:  # StoreError: disk full, read-only, a refused value
        fail(str(exc))
    finally:
        station.close()
    if json_out:
        _print_json(result.to_json())
        return
    d = result.record.decision
    out.print(f"[bold]{sku}[/]: grade [bold]{d.grade.value}[/], {d.disposition.value}, lane {result.record.lane}")
    for line in d.reasons:
        out.print(f"  {line}")


# ------------------------------------------------------------------------------------------- decide


class _DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    reason: str
    unit_code: str | None = None
    streamer: str | None = None
    brand: str | None = None
    carrier: str | None = None
    order_id: str | None = None
    channel: str | None = None


class _DecideFinding(BaseModel):
    # NaN/Infinity (or 1e400, which parses to inf) are bad input: a NaN ΔE compares false with every
    # tolerance and was sending items to the vendor with the brand liable.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: str
    score: float = Field(ge=0, le=1)
    view: str | None = None
    box_xyxy: list[float] | None = Field(None, min_length=4, max_length=4)
    value: float | None = None


class _DecideInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: _DecideRequest
    findings: list[_DecideFinding] = []
    unit_seen_before: bool = False


@app.command()
def decide(
    file: Annotated[str, typer.Argument(help="JSON input file, or - for stdin")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the rules alone on given findings: audits, what-if analysis, arbitration replays."""
    from station.app import load_catalogue
    from station.rules import RuleSet, RulesEngine, RulesError
    from vision.catalogue import CatalogueError, UnknownSkuError

    try:
        text = sys.stdin.buffer.read().decode("utf-8") if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    except UnicodeDecodeError as exc:
        fail(f"cannot read {file}: not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON")
    try:
        data = _DecideInput.model_validate_json(text)
    except ValidationError as exc:
        fail("invalid decide input:\n" + "\n".join(f"  {p}" for p in validation_problems(exc)))
    cfg = _config(config, data_dir)
    try:
        why = _reason(data.request.reason)
        from station.limits import option_problem  # the same limits as inspect: what-if on a real RMA

        if problem := option_problem(data.request.model_dump(include={"order_id", "sku", "unit_code", "streamer",
                                                                      "brand", "carrier", "channel"}), "request."):
            raise BadInput(problem)
        unknown = [f.kind for f in data.findings if f.kind not in FINDING_KINDS | {"presentation_mismatch"}]
        if unknown:
            raise BadInput(f"unknown finding kind(s) {unknown}: use a detector class or a catalogue finding "
                           f"({', '.join(sorted(FINDING_KINDS))})")
        catalogue = load_catalogue(cfg)
        item = catalogue.get(data.request.sku)
        engine = RulesEngine(RuleSet.load(cfg.rules.file))
    except (BadInput, UnknownSkuError, CatalogueError, RulesError) as exc:
        fail(str(exc))
    r = data.request
    request = ReturnRequest(r.order_id or "decide", r.sku, why, r.unit_code, r.channel, r.streamer,
                            r.brand or item.brand, r.carrier)
    findings = [Finding(f.kind, f.score, FindingSource.MANUAL, f.view,
                        tuple(f.box_xyxy) if f.box_xyxy else None, f.value) for f in data.findings]
    norm = engine.normalise(findings, item)
    decision = engine.decide_normalised(request, item, norm, data.unit_seen_before)
    result = {
        "findings": [f.to_json() for f in norm.kept],
        "dropped_findings": [{**f.to_json(), "why": w} for f, w in norm.dropped],
        **decision.to_json(),
    }
    if json_out:
        _print_json(result)
        return
    out.print(f"grade [bold]{decision.grade.value}[/], {decision.disposition.value}")
    for line in decision.reasons:
        out.print(f"  {line}")


# ------------------------------------------------------------------------------------------- catalogue


@catalogue_app.command("list")
def catalogue_list(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the catalogue's SKUs."""
    from station.app import load_catalogue
    from vision.catalogue import CatalogueError

    cfg = _config(config, data_dir)
    try:
        cat = load_catalogue(cfg)
    except CatalogueError as exc:
        fail(str(exc))
    rows = [{"sku": i.sku, "category": i.category, "brand": i.brand, "name": i.name,
             "reference_images": [str(cat.root / p) for p in i.reference_images],
             "hygiene": i.hygiene, "safety": i.safety, "liquid": i.liquid} for i in cat.items.values()]
    if json_out:
        _print_json(rows)
        return
    table = Table(title=f"catalogue {cat.root}")
    for col in ("sku", "category", "brand", "name", "flags", "images"):
        table.add_column(col)
    for r in rows:
        flags = ",".join(k for k in ("hygiene", "safety", "liquid") if r[k])
        table.add_row(r["sku"], r["category"], r["brand"], r["name"], flags, str(len(r["reference_images"])))
    out.print(table)


def _link_or_copy(src: str, dst: str) -> None:
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@catalogue_app.command("import")
def catalogue_import(
    directory: Annotated[Path, typer.Argument(help="folder with catalogue.csv and its images")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Validate a catalogue folder and copy it into the station's data directory as the active catalogue."""
    import shutil

    from rich.progress import Progress

    from station.app import imported_catalogue_dir
    from vision.catalogue import CatalogueError, stage_import
    from vision.compare import usable_outline, segment_item
    from vision.embedding import BackboneError
    from vision.features import CACHE_DIR
    from vision.identity import INDEX_FILE, LOCAL_DIR, build_catalogue_index

    cfg = _config(config, data_dir)
    dest = imported_catalogue_dir(cfg)
    staging = cfg.station.data_dir / "catalogue.importing"
    replaced = cfg.station.data_dir / "catalogue.replaced"
    for leftover in (staging, replaced):  # from an import that was killed
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink()
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        # Only catalogue.csv and the images it names are copied, each checked (no links, fifos or devices, no
        # path out of the folder, decodable, bounded pixels); on any refusal nothing is left behind.
        staged = stage_import(directory, staging, views=cfg.station.views)
        previous = dest / CACHE_DIR / INDEX_FILE
        if previous.is_file() and not previous.is_symlink():
            # Embeddings are keyed by image hash: views already indexed are not embedded again.
            (staging / CACHE_DIR).mkdir(exist_ok=True)
            shutil.copy2(previous, staging / CACHE_DIR / INDEX_FILE)
            previous_local = dest / CACHE_DIR / LOCAL_DIR
            if previous_local.is_dir() and not previous_local.is_symlink():
                # hard links where the file system allows: 10,000 SKUs' local features are ~1.5 GB
                shutil.copytree(previous_local, staging / CACHE_DIR / LOCAL_DIR, symlinks=False,
                                copy_function=_link_or_copy)
        views = sum(len(i.reference_images) for i in staged.items.values())
        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("indexing catalogue views", total=views)
            _, embedded = build_catalogue_index(staged, segment=lambda img: usable_outline(segment_item(img)[0]),
                                                progress=lambda: bar.advance(task))
        if dest.exists():
            dest.rename(replaced)  # renames, not a copy: the active catalogue is never half-written
        staging.rename(dest)
    except (CatalogueError, BackboneError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if replaced.exists() and not dest.exists():
            replaced.rename(dest)
        fail(str(exc) if not isinstance(exc, OSError) else f"cannot import the catalogue into {dest}: "
             f"{exc.strerror or exc}; the active catalogue is unchanged")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
    cat = staged
    where = ("" if cfg.catalogue.path is None else
             f"; the config's catalogue.path ({cfg.catalogue.path}) still points elsewhere: remove it to use this one")
    out.print(f"imported {len(cat)} SKUs ({views} views, {embedded} newly indexed) into {dest}: the station uses "
              f"it from now on{where}")


# ------------------------------------------------------------------------------------------- records


@app.command()
def history(
    unit_code: Annotated[Optional[str], typer.Option(help="unit code to look up")] = None,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="photo or scan of a licence-plate label (PNG, "
                                                 "JPEG) or its PDF: opens that record's unit")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Every inspection and override of one physical unit, oldest first."""
    from station.records import StationStore, StoreError

    if (unit_code is None) == (scan is None):
        fail("give --unit-code CODE or --scan LABEL_IMAGE")
    cfg = _config(config, data_dir)
    try:
        with StationStore(cfg.database_path()) as store:
            if scan is not None:
                from station.licence_plate import LabelError, history_for_label

                try:
                    record_id, rows = history_for_label(store, scan)
                except LabelError as exc:
                    fail(str(exc))
                unit_code = (rows[0]["unit_code"] if rows else None) or record_id
            else:
                rows = store.history(unit_code)
    except StoreError as exc:
        fail(str(exc))
    if json_out:
        _print_json([{k: v for k, v in r.items() if not k.endswith("_json")} | {
            "decision": json.loads(r["decision_json"])} for r in rows])
        return
    if not rows:
        out.print(f"no inspections of unit {unit_code}")
        return
    table = Table(title=f"unit {unit_code}")
    for col in ("when", "order", "sku", "reason", "grade", "disposition", "operator", "overrides"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["created_at"], r["order_id"], r["sku"], r["reason"], r["grade"], r["disposition"],
                      r["operator"] or "", (r["overrides"] or "")[:8])
    out.print(table)


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "jsonl",
    output: Annotated[Optional[Path], typer.Option("--out", help="file (default: stdout)")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export every record (inspections and overrides)."""
    from station.records import StationStore, StoreError, export_rows, write_export_file

    if fmt not in ("csv", "jsonl"):
        fail(f"unknown format {fmt!r}: use csv or jsonl")
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        why = ("it is a folder" if output.is_dir() else f"{output.parent} is a file, not a folder"
               if output.parent.exists() else f"folder {output.parent} does not exist")
        fail(f"cannot write {output}: {why}: pass --out FILE in an existing folder (e.g. records.{fmt})")
    cfg = _config(config, data_dir)
    try:
        with StationStore(cfg.database_path()) as store:
            if output is None:
                n = export_rows(store.rows(), fmt, sys.stdout)
            else:  # temporary file, fsync, rename: a failed export leaves no half-written copy behind
                n = write_export_file(store.rows(), fmt, output)
    except (StoreError, OSError) as exc:
        if isinstance(exc, StoreError) or output is None:
            fail(str(exc))
        fail(f"cannot write {output}: {exc.strerror or exc}: pass --out FILE in an existing, writable folder")
    err.print(f"exported {n} records")


# ------------------------------------------------------------------------------------------- config


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


# ------------------------------------------------------------------------------------------- training


def _need_training_extra(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None:
        fail(f"{what} needs the [train] extra: make train-deps (or pip install -e '.[train]')")


@app.command()
def train(
    config_file: Annotated[Path, typer.Argument(help="training TOML (models/configs/detector.toml)")],
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write (model card beside it)")],
    workdir: Annotated[Path, typer.Option(help="dataset and run folder")] = Path("build/train"),
) -> None:
    """Generate data, train the detector offline, export ONNX + model card (needs the training extra: make train-deps)."""
    try:
        from models.training.config import TrainingConfig
        from models.training.run import train as run_training

        cfg = TrainingConfig.load(config_file)
    except FileNotFoundError:
        fail(f"training config {config_file} not found")
    except ValidationError as exc:
        fail("invalid training config:\n" + "\n".join(f"  {p}" for p in validation_problems(exc)))
    _need_training_extra("training")
    command = _invoked_command("train")
    path = run_training(cfg, workdir, out_path, command, progress=lambda m: err.print(m))
    out.print(f"wrote {path} and {path.with_suffix('.yaml')}")


@app.command()
def average(
    sources: Annotated[list[Path], typer.Argument(help="two or more .pt checkpoints of one lineage (card beside each)")],
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write (model card beside it)")],
    workdir: Annotated[Path, typer.Option(help="folder for ultralytics' offline settings")] = Path("build/average"),
) -> None:
    """Average the weights of fine-tuning stages into one model (a model soup); exports ONNX + model card
    (needs the training extra: make train-deps)."""
    from models.training.average import AverageError, average_weights

    _need_training_extra("averaging")
    try:
        path = average_weights(sources, out_path, _invoked_command("average"), workdir=workdir)
    except AverageError as exc:
        fail(str(exc))
    out.print(f"wrote {path} and {path.with_suffix('.yaml')}")


@dataset_app.command("generate")
def dataset_generate(
    out_dir: Annotated[Path, typer.Argument(help="folder to write (YOLO format: images/, labels/, data.yaml)")],
    train_n: Annotated[int, typer.Option("--train", min=0)] = 640,
    val_n: Annotated[int, typer.Option("--val", min=0)] = 120,
    test_n: Annotated[int, typer.Option("--test", min=0)] = 200,
    seed: Annotated[int, typer.Option(help="seed; every split uses its own stream of it")] = 0,
    size: Annotated[int, typer.Option(min=64)] = 416,
    shifted: Annotated[bool, typer.Option(help="other backgrounds, lighting, scales: a generalisation test set")] = False,
    real_photos: Annotated[Optional[Path], typer.Option(
        help="folder of real photos (python -m models.real_photos) for real negatives and composited defects")] = None,
    negative_share: Annotated[float, typer.Option(min=0, max=1, help="share of real undamaged photos")] = 0.0,
    composite_share: Annotated[float, typer.Option(min=0, max=1, help="share of real photos with defects painted on")] = 0.0,
    photo_share: Annotated[float, typer.Option(min=0, max=1, help="share from the third generator (models.photo_defects) on the real photos")] = 0.0,
) -> None:
    """Render a defect dataset: the procedural renderer, and with --real-photos real negatives and defects
    composited onto real photos (models.composite)."""
    from rich.progress import Progress

    from models.dataset import DatasetSpec, write_dataset

    if (negative_share or composite_share or photo_share) and real_photos is None:
        fail("--negative-share, --composite-share and --photo-share need --real-photos DIR (python -m models.real_photos)")
    if negative_share + composite_share + photo_share > 1:
        fail("--negative-share plus --composite-share plus --photo-share must not exceed 1")
    if real_photos is not None and not real_photos.is_dir():
        fail(f"--real-photos {real_photos}: no such folder (extract it with python -m models.real_photos)")
    spec = DatasetSpec(train_n, val_n, test_n, seed, size, shifted=shifted,
                       real_photos=str(real_photos) if real_photos else None, negative_share=negative_share,
                       composite_share=composite_share, photo_share=photo_share)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("rendering", total=train_n + val_n + test_n)
        try:
            manifest = write_dataset(out_dir, spec, progress=lambda *_: progress.advance(task))
        except ValueError as exc:  # an unreadable or empty real-photo folder
            fail(str(exc).splitlines()[0])
    out.print(f"wrote {out_dir} (sha256 {manifest['sha256'][:16]}...)")


@app.command("eval")
def eval_cmd(
    dataset: Annotated[Path, typer.Argument(help="YOLO-format dataset folder (images/<split>, labels/<split>)")],
    split: Annotated[str, typer.Option(help="which split to evaluate")] = "test",
    model: Annotated[Optional[Path], typer.Option(help="ONNX model (default: the configured one)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="folder for eval.json and the PNG plots")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    record: Annotated[Optional[str], typer.Option(
        help="also write mAP and per-class AP50 into the model card's metrics_test under this name "
             "(e.g. heldout, shifted)")] = None,
    config: ConfigOpt = None,
) -> None:
    """mAP50, mAP50-95, per-class precision/recall, confusion matrix, worst images; plots as PNG."""
    from rich.progress import Progress

    from models.evaluate import DatasetError, evaluate, write_report
    from models.onnx_yolo import ModelError, OnnxYoloDetector

    cfg = _config(config, None)
    model_path = model or getattr(cfg.detector, "model")
    if record is not None:
        from models.card import CardError, check_record_name

        try:
            check_record_name(record)
        except CardError as exc:
            fail(str(exc))
    try:
        detector = OnnxYoloDetector(model_path, threads=getattr(cfg.detector, "threads", 2)).load()
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task(f"evaluating {split}", total=None)
            report = evaluate(detector, dataset, split,
                              progress=lambda i, n: progress.update(task, completed=i, total=n))
    except (ModelError, DatasetError) as exc:
        fail(str(exc))
    files = write_report(report, out_dir or dataset / f"eval_{split}")
    if record is not None:
        from models.card import update_card, with_test_metrics

        command = _invoked_command("eval")
        try:
            update_card(Path(model_path).with_suffix(".yaml"),
                        lambda card: with_test_metrics(card, record, report.to_json(), command))
        except (CardError, OSError) as exc:
            fail(f"could not record the result in the model card: {exc}")
        err.print(f"recorded as metrics_test.{record} in {Path(model_path).with_suffix('.yaml')}")
    if json_out:
        _print_json({**report.to_json(), "model": str(model_path), "dataset": str(dataset), "split": split,
                     "files": files})
        return
    table = Table(title=f"{model_path.name} on {dataset} [{split}]: {report.images} images")
    for col in ("class", "labels", "AP50", "AP50-95", f"P@{report.operating_confidence:g}",
                f"R@{report.operating_confidence:g}"):
        table.add_column(col, justify="right")
    for row in report.to_json()["per_class"]:
        table.add_row(row["class"], str(row["instances"]), f"{row['AP50']:.3f}", f"{row['AP50_95']:.3f}",
                      f"{row['precision']:.3f}", f"{row['recall']:.3f}")
    table.add_row("all", str(sum(report.instances)), f"{report.map50:.3f}", f"{report.map50_95:.3f}", "", "")
    out.print(table)
    out.print("worst images: " + ", ".join(f"{Path(w['image']).name} ({w['missed']} missed, "
                                           f"{w['false_positives']} false)" for w in report.worst[:5]))
    out.print(f"plots and JSON: {', '.join(files.values())}")


# ------------------------------------------------------------------------------------------- bench


@bench_app.command("pipeline")
def bench_pipeline(
    items: Annotated[int, typer.Option(min=1)] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Per-stage p50/p95 over simulated items on built-in defaults, and the share of time in each stage."""
    import tempfile

    from station.demo import simulated_returns
    from station.pipeline import STAGES

    def measure(cfg) -> dict[str, list[float]]:
        station = _boot(cfg)
        timings: dict[str, list[float]] = {s: [] for s in (*STAGES, "capture")}
        try:
            for i, sim in enumerate(simulated_returns(items, seed=1)):
                station.camera.stage(sim.staged)
                t0 = time.perf_counter()
                frames = [station.camera.capture(v) for v in cfg.station.views]
                timings["capture"].append((time.perf_counter() - t0) * 1000)
                res = station.pipeline.inspect(sim.request, frames, item_seq=i + 1)
                for s in STAGES:
                    timings[s].append(res.record.timings_ms.get(s, 0.0))
        finally:
            station.close()
        return timings

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(None, data_dir or Path(tmp) / "station")
        timings = measure(cfg)
        baseline = None
        if cfg.comparer.unseen_damage:
            # Side by side in one run: the same items with the unseen-damage check off, in a data dir of its own.
            off = cfg.model_copy(update={"comparer": cfg.comparer.model_copy(update={"unseen_damage": False}),
                                         "station": cfg.station.model_copy(update={"data_dir": Path(tmp) / "off"})})
            base = measure(off)
            baseline = [sum(base[s][i] for s in STAGES) for i in range(items)]

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    decide_total = sum(sum(timings[s]) for s in STAGES)
    per_item = [sum(timings[s][i] for s in STAGES) for i in range(items)]
    report = {
        "items": items,
        "views_per_item": len(cfg.station.views),
        "stages": {s: {"p50_ms": round(pct(timings[s], 0.5), 2), "p95_ms": round(pct(timings[s], 0.95), 2),
                       "share": round(sum(timings[s]) / decide_total, 4)} for s in STAGES},
        "decision_ms": {"p50": round(pct(per_item, 0.5), 2), "p95": round(pct(per_item, 0.95), 2)},
        "synthetic_capture_ms": {"p50": round(pct(timings["capture"], 0.5), 2)},
    }
    if baseline is not None:
        report["without_unseen_damage_ms"] = {"p50": round(pct(baseline, 0.5), 2), "p95": round(pct(baseline, 0.95), 2)}
    if json_out:
        _print_json(report)
        return
    table = Table(title=f"pipeline, {items} items x {len(cfg.station.views)} views (capture excluded)")
    for col in ("stage", "p50 ms", "p95 ms", "share"):
        table.add_column(col, justify="right")
    for s, v in report["stages"].items():
        table.add_row(s, f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}", f"{v['share']:.1%}")
    table.add_row("decision", f"{report['decision_ms']['p50']:.1f}", f"{report['decision_ms']['p95']:.1f}", "100%")
    if baseline is not None:
        b = report["without_unseen_damage_ms"]
        table.add_row("decision, unseen damage off", f"{b['p50']:.1f}", f"{b['p95']:.1f}", "")
    out.print(table)


# --- subsystem commands -------------------------------------------------------------------------------
# Each subsystem keeps its commands in its own module and registers them here, one line each.
from station.cli_records import register as _reg_rec; _reg_rec(app, bench_app)  # noqa: E402,E702
from station.cli_ui import register as _register_ui; _register_ui(app, bench_app)  # noqa: E402,E702
from station.cli_hardware import register as _reg_hw; _reg_hw(app, bench_app)  # noqa: E402,E702
from station.cli_vision import register as _reg_vis; _reg_vis(app, bench_app)  # noqa: E402,E702
from station.cli_models import register as _reg_models; _reg_models(app, dataset_app)  # noqa: E402,E702
from station.cli_fleet import register as _reg_fleet; _reg_fleet(app, bench_app)  # noqa: E402,E702
from station.cli_scale import register as _reg_scale; _reg_scale(app, bench_app)  # noqa: E402,E702
from station.cli_labels import register as _reg_labels; _reg_labels(app, bench_app)  # noqa: E402,E702
from station.cli_metrics import register as _reg_metrics; _reg_metrics(app, bench_app)  # noqa: E402,E702
from station.cli_text import register as _reg_text; _reg_text(app, bench_app)  # noqa: E402,E702
# --- end subsystem commands ---------------------------------------------------------------------------


@bench_app.command("detector")
def bench_detector(
    images: Annotated[int, typer.Option(min=6, help="images (half 1920x1080, half 640x480)")] = 200,
    model: Annotated[Path, typer.Option(help="ONNX model (ultralytics columns when its .pt sits beside it and "
                                             "ultralytics is installed)")] = Path("models/weights/defects.onnx"),
    views: Annotated[int, typer.Option(min=1, help="views per item (one batched call)")] = 3,
    rounds: Annotated[int, typer.Option(min=1, max=10, help="pairs of rounds (A B C, C B A)")] = 2,
    int8: Annotated[Path | None, typer.Option(help="an int8 model (python -m models.quantize) to run on "
                                                   "OpenVINO beside the others")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The detector engines side by side: ours on ONNX Runtime (the baseline), on OpenVINO when installed, and
    ultralytics YOLO(pt)/YOLO(onnx).predict when installed; same weights, same images, boxes vs the baseline."""
    if not model.is_file():
        fail(f"model {model} not found: give --model an ONNX file")
    if int8 is not None and not int8.is_file():
        fail(f"int8 model {int8} not found: make one with `python -m models.quantize detector`")
    from models.onnx_yolo import ModelError
    from models.training.bench import run_benchmark

    try:
        report = run_benchmark(model, model.with_suffix(".pt"), images, views, progress=lambda m: err.print(m),
                               round_pairs=rounds, openvino_int8=int8)
    except ModelError as exc:
        fail(str(exc))
    if json_out:
        _print_json(report)
        return
    table = Table(title=f"detector, {report['items']} items x {views} views, {report['imgsz']} px, "
                        f"{report['threads']} threads; ratios: times faster than {report['baseline']}")
    for col in ("engine", "p50 ms/item", "p95 ms/item", "mean", "x p50", "x paired", "boxes agreeing"):
        table.add_column(col, justify="right")
    fast, paired, agree = (report["faster_than_baseline_p50"], report["faster_than_baseline_paired_median"],
                           report["agreement_with_baseline"])
    for name, v in report["latency_ms_per_item"].items():
        a = agree.get(name)
        table.add_row(name, f"{v['p50']:.1f}", f"{v['p95']:.1f}", f"{v['mean']:.1f}",
                      f"{fast[name]:.2f}" if name in fast else "1.00", f"{paired[name]:.2f}" if name in paired else "",
                      f"{a['matched']}/{a['boxes']} ({a['share']:.1%})" if a else "baseline")
    out.print(table)
    out.print(f"boxes agreeing: the baseline's boxes matched by the engine's, same class, IoU >= "
              f"{report['agreement_iou_min']}; engines: {report['engines']}")
    if "agreement_with_ultralytics_onnx" not in report:
        out.print("ultralytics columns left out: install the [train] extra (make train-deps) and put the .pt "
                  "beside the model")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
