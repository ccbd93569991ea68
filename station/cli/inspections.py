"""`station demo`, `inspect`, `decide`, `history`, `export` and `station bench pipeline`: returns through the
pipeline and the records they leave.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table

from station.cli.common import (BadInput, ConfigOpt, DataDirOpt, boot, capture_views, err, fail, finding_label,
                                out, print_json, read_image, return_reason, station_config)
from station.config import validation_problems
from station.domain import FINDING_KINDS, Finding, FindingSource, Frame, ReturnRequest

app = typer.Typer()
bench_app = typer.Typer()


_DEMO_TABLE_WIDTH = 160  # narrower terminals get one block per return (the table would cut words)


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

    cfg = station_config(config, data_dir)
    # Only a --data-dir typed on this command line is a deliberate choice; STATION_DATA_DIR and the default
    # are the station's real data folder.
    chosen = getattr(ctx.get_parameter_source("data_dir"), "name", None) == "COMMANDLINE"
    if not chosen:
        # Demo records are not returns: they go to a data dir of their own (<data_dir>/demo, its own
        # database), never into the station's records, so `station sync` cannot send them as real.
        demo_dir = cfg.station.data_dir / "demo"
        cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"data_dir": demo_dir}),
                                     "records": cfg.records.model_copy(update={"database": None})})
    station = boot(cfg)
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
                frames = sim.printed_on(capture_views(station, cfg.station.views))
                res = station.pipeline.inspect(sim.request, frames, operator="demo", item_seq=i + 1)
                results.append((sim, res))
                progress.advance(task)
                if json_out:
                    miss = sim.mismatch(res.record.decision)
                    print_json({"story": sim.story, "as_story_says": miss is None,
                                 "story_expects": sim.expect.describe() if sim.expect else None, **res.to_json()})
    finally:
        station.close()
    if json_out:
        return
    rows = []
    for sim, res in results:
        d = res.record.decision
        findings = ", ".join(finding_label(f) for f in res.findings) or "-"
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
        why = return_reason(reason)
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
    cfg = station_config(config, data_dir)
    from station.records import StoreError
    from vision.catalogue import UnknownSkuError

    station = boot(cfg)
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
        print_json(result.to_json())
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
    cfg = station_config(config, data_dir)
    try:
        why = return_reason(data.request.reason)
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
        print_json(result)
        return
    out.print(f"grade [bold]{decision.grade.value}[/], {decision.disposition.value}")
    for line in decision.reasons:
        out.print(f"  {line}")


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
    cfg = station_config(config, data_dir)
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
        print_json([{k: v for k, v in r.items() if not k.endswith("_json")} | {
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
    cfg = station_config(config, data_dir)
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


# ------------------------------------------------------------------------------------------- bench


@bench_app.command("pipeline")
def bench_pipeline(
    items: Annotated[int, typer.Option(min=1)] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Per-stage p50/p95 over simulated items on built-in defaults, and the share of time in each stage."""
    from station.bench.pipeline import run_pipeline_bench

    report = run_pipeline_bench(items, data_dir, lambda d: station_config(None, d), boot)
    if json_out:
        print_json(report)
        return
    table = Table(title=f"pipeline, {items} items x {report['views_per_item']} views (capture excluded)")
    for col in ("stage", "p50 ms", "p95 ms", "share"):
        table.add_column(col, justify="right")
    for s, v in report["stages"].items():
        table.add_row(s, f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}", f"{v['share']:.1%}")
    table.add_row("decision", f"{report['decision_ms']['p50']:.1f}", f"{report['decision_ms']['p95']:.1f}", "100%")
    if "without_unseen_damage_ms" in report:
        b = report["without_unseen_damage_ms"]
        table.add_row("decision, unseen damage off", f"{b['p50']:.1f}", f"{b['p95']:.1f}", "")
    out.print(table)
