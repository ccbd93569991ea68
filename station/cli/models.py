"""Model lifecycle commands (docs/model-lifecycle.md): `station model list|register|activate|rollback|evaluate|
promote|drift|shadow|finetune|thresholds` and `station dataset export|correct`.

Exit codes: 0 done (the gate passed); 1 the promotion gate refused the candidate (reasons printed), or
`model drift --strict` found drift; 2 bad input (clear message, no traceback).
"""


import json
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli import common as cli
from station.cli.common import ConfigOpt, DataDirOpt


def _registry(cfg):
    from models.registry import ModelRegistry, RegistryError

    try:
        return ModelRegistry(cfg.station.data_dir).open()
    except RegistryError as exc:
        cli.fail(str(exc))


def _open_store(cfg, must_exist: bool = True):
    from station.records import StationStore, StoreError

    db = cfg.database_path()
    if not db.exists():
        if must_exist:
            cli.fail(f"no station database at {db}: run inspections first or pass --data-dir")
        return None
    try:
        return StationStore(db, min_free_bytes=0).open()
    except StoreError as exc:
        cli.fail(str(exc))


def _load(path: Path, version: str, cfg):
    from models.onnx_yolo import ModelError, OnnxYoloDetector

    try:
        det = OnnxYoloDetector(path, threads=getattr(cfg.detector, "threads", 2)).load()
    except ModelError as exc:
        cli.fail(str(exc))
    det.version = version
    return det


def run_gate(cfg, new_ref: str, against: str | None, golden: Path | None, overrides: bool, since: str | None,
             recall_tolerance: float | None, max_latency_ratio: float | None, min_instances: int | None,
             out_dir: Path | None):
    """Evaluate NEW against ACTIVE; returns (GateResult as JSON dict, new model path, new version label)."""
    from models.evaluate import DatasetError
    from models.gate import GatePolicy, compare_models, merge_datasets
    from models.registry import RegistryError, resolve_model
    from station.learning import ExportError, ExportSpec, export_dataset

    m = cfg.models
    policy = GatePolicy(recall_tolerance if recall_tolerance is not None else m.recall_tolerance,
                        max_latency_ratio if max_latency_ratio is not None else m.max_latency_ratio,
                        min_instances if min_instances is not None else m.min_instances)
    golden = golden or m.golden
    if golden is None:
        cli.fail("no golden set: pass --golden DIR or set models.golden in the config (make one, frozen, with "
                 "`station dataset generate DIR --train 0 --val 0 --test 200 --seed 99`)")
    with _registry(cfg) as registry:
        try:
            new_path, new_version = resolve_model(registry, new_ref)
            if against is None:
                entry = registry.active(cfg.station.id)
                act_path, act_version = ((entry.path, entry.version) if entry is not None
                                         else (Path(cfg.detector.model), "configured:" + Path(cfg.detector.model).stem))
            else:
                act_path, act_version = resolve_model(registry, against)
        except RegistryError as exc:
            cli.fail(str(exc))
    active_det, new_det = _load(act_path, act_version, cfg), _load(new_path, new_version, cfg)
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        parts = [(Path(golden), "test")]
        override_images = 0
        if overrides:
            store = _open_store(cfg, must_exist=False)
            if store is not None:
                with store:
                    try:
                        man = export_dataset(store, Path(tmp) / "overrides",
                                             ExportSpec(val_share=0, test_share=0, since=since, corrected_only=True,
                                                        blur_faces=False, blur_labels=False))  # stays here
                        override_images = man["splits"]["train"]["images"]
                        parts.append((Path(tmp) / "overrides", "train"))
                    except ExportError:
                        pass  # no corrections (since): the golden set alone
        try:
            sources = merge_datasets(parts, Path(tmp) / "eval")
            result, _, _ = compare_models(active_det, new_det, Path(tmp) / "eval", policy, out_dir)
        except DatasetError as exc:
            cli.fail(f"golden set: {exc}")
    report = {"new": {"model": str(new_path), "version": new_version},
              "active": {"model": str(act_path), "version": act_version},
              "golden": str(golden), "golden_images": sources.get(f"{golden}:test", 0),
              "override_images": override_images, **result.to_json()}
    return report, new_path, new_version


def _print_gate(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{report['new']['version']} vs {report['active']['version']}: {report['golden_images']} golden "
                    f"+ {report['override_images']} corrected images")
    for col in ("class", "labels", "active R", "new R", "delta", "gate"):
        t.add_column(col, justify="right")
    for c in report["per_class"]:
        t.add_row(c["class"], str(c["instances"]), f"{c['active_recall']:.3f}", f"{c['new_recall']:.3f}",
                  f"{c['delta']:+.3f}", ("ok" if c["ok"] else "DROP") if c["gated"] else "-")
    lat = report["latency_ms"]
    t.add_row("latency ms", "", f"{lat['active']:.1f}", f"{lat['new']:.1f}", f"x{lat['ratio']:.2f}", "")
    t.add_row("mAP50", "", f"{report['mAP50']['active']:.3f}", f"{report['mAP50']['new']:.3f}", "", "")
    cli.out.print(t)
    if report["passed"]:
        cli.out.print("gate: [bold green]PROMOTE[/]")
    else:
        cli.out.print("gate: [bold red]REFUSE[/]")
        for r in report["reasons"]:
            cli.out.print(f"  - {r}", highlight=False)
    if "files" in report:
        cli.out.print("plots: " + ", ".join(v for side in report["files"].values() for v in side.values()))


app = typer.Typer()
dataset_app = typer.Typer()

model_app = typer.Typer(no_args_is_help=True, help="Model registry, promotion gate, shadow mode and drift.")
app.add_typer(model_app, name="model")

GoldenOpt = Annotated[Optional[Path], typer.Option(help="frozen golden YOLO dataset (its images/test); "
                                                        "default: config models.golden")]
AgainstOpt = Annotated[Optional[str], typer.Option(help="version or ONNX file to compare with; default: the "
                                                        "active version (else detector.model)")]
OverridesOpt = Annotated[bool, typer.Option("--overrides/--no-overrides",
                                            help="add items a supervisor corrected to the evaluation set")]
SinceOpt = Annotated[Optional[str], typer.Option(help="only corrections of items inspected since (ISO time)")]
TolOpt = Annotated[Optional[float], typer.Option(min=0, max=1, help="largest allowed recall drop of a class")]
RatioOpt = Annotated[Optional[float], typer.Option(min=0.01, help="largest allowed latency ratio new/active")]
MinInstOpt = Annotated[Optional[int], typer.Option(min=1, help="classes with fewer labels are not gated")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="folder for eval.json and plots of both models")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]

# ------------------------------------------------------------------------------------ registry
@model_app.command("list")
def model_list(json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Registered versions, newest last; the active one marked."""
    cfg = cli.station_config(config, data_dir)
    with _registry(cfg) as registry:
        active = registry.active(cfg.station.id)
        rows = [e.to_json(active is not None and e.version == active.version) for e in registry.list()]
        history = registry.history(cfg.station.id)
    if json_out:
        cli.print_json({"station_id": cfg.station.id, "active": active.version if active else None,
                         "configured_model": str(cfg.detector.model), "models": rows, "history": history})
        return
    from rich.table import Table

    t = Table(title=f"models on {cfg.station.id} (none active: {cfg.detector.model})" if active is None
              else f"models on {cfg.station.id}")
    for col in ("", "version", "registered", "sha256", "val mAP50", "held-out mAP50"):
        t.add_column(col)
    for r in rows:
        # An averaged model has no validation score of its own; its card's held-out score is the one to read.
        t.add_row("*" if r["active"] else "", r["version"], r["registered_at"], r["sha256"][:12],
                  str(r["metrics_val"].get("mAP50", "")),
                  str((r["metrics_test"].get("heldout") or {}).get("mAP50", "")))
    cli.out.print(t)

@model_app.command("register")
def model_register(
    file: Annotated[Path, typer.Argument(help="exported ONNX model; its model card (.yaml) beside it")],
    version: Annotated[Optional[str], typer.Option(help="version string (default: <card name>-<hash>)")] = None,
    json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Copy a model and its card into the registry (does not activate it)."""
    from models.registry import RegistryError

    cfg = cli.station_config(config, data_dir)
    with _registry(cfg) as registry:
        try:
            entry = registry.register(file, version)
        except RegistryError as exc:
            cli.fail(str(exc))
    if json_out:
        cli.print_json(entry.to_json())
    else:
        cli.out.print(f"registered {entry.version} ({entry.path})")

@model_app.command("activate")
def model_activate(
    version: Annotated[str, typer.Argument(help="a registered version")],
    reason: Annotated[str, typer.Option(help="why (kept in the activation history)")] = "",
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Make VERSION the station's model from its next boot."""
    from models.registry import RegistryError

    cfg = cli.station_config(config, data_dir)
    with _registry(cfg) as registry:
        try:
            registry.activate(version, cfg.station.id, reason)
        except RegistryError as exc:
            cli.fail(str(exc))
    cli.out.print(f"{cfg.station.id}: active model {version}")

@model_app.command("rollback")
def model_rollback(
    reason: Annotated[str, typer.Option(help="why (kept in the activation history)")] = "",
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Go back to the model that was active before the current one (or to detector.model)."""
    from models.registry import RegistryError

    cfg = cli.station_config(config, data_dir)
    with _registry(cfg) as registry:
        try:
            entry = registry.rollback(cfg.station.id, reason)
        except RegistryError as exc:
            cli.fail(str(exc))
    cli.out.print(f"{cfg.station.id}: active model "
                  f"{entry.version if entry else f'(configured) {cfg.detector.model}'}")

# ------------------------------------------------------------------------------------ gate
@model_app.command("evaluate")
def model_evaluate(
    new: Annotated[str, typer.Argument(help="candidate: a registered version or an ONNX file")],
    against: AgainstOpt = None, golden: GoldenOpt = None, overrides: OverridesOpt = True,
    since: SinceOpt = None, recall_tolerance: TolOpt = None, max_latency_ratio: RatioOpt = None,
    min_instances: MinInstOpt = None, out_dir: OutOpt = None, json_out: JsonOpt = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """The promotion gate: per-class recall and latency of NEW vs ACTIVE. Exit 1 when it would refuse."""
    cfg = cli.station_config(config, data_dir)
    report, _, _ = run_gate(cfg, new, against, golden, overrides, since, recall_tolerance, max_latency_ratio,
                            min_instances, out_dir)
    cli.print_json(report) if json_out else _print_gate(report)
    if not report["passed"]:
        raise typer.Exit(1)

@model_app.command("promote")
def model_promote(
    new: Annotated[str, typer.Argument(help="candidate: a registered version or an ONNX file")],
    version: Annotated[Optional[str], typer.Option(help="version to register an ONNX file under")] = None,
    golden: GoldenOpt = None, overrides: OverridesOpt = True, since: SinceOpt = None,
    recall_tolerance: TolOpt = None, max_latency_ratio: RatioOpt = None, min_instances: MinInstOpt = None,
    out_dir: OutOpt = None, json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Gate NEW against the active model; if it passes, register and activate it. Exit 1 when refused."""
    from models.registry import RegistryError

    cfg = cli.station_config(config, data_dir)
    with _registry(cfg) as registry:
        current = registry.active(cfg.station.id)
    if current is not None and new == current.version:
        cli.fail(f"{new} is already the active model on {cfg.station.id}")
    report, new_path, _ = run_gate(cfg, new, None, golden, overrides, since, recall_tolerance,
                                   max_latency_ratio, min_instances, out_dir)
    if report["passed"]:
        with _registry(cfg) as registry:
            try:
                entry = registry.get(new) or registry.register(new_path, version)
                registry.activate(entry.version, cfg.station.id,
                                  f"promoted over {report['active']['version']} by the gate")
            except RegistryError as exc:
                cli.fail(str(exc))
        report["promoted"] = entry.version
    else:
        report["promoted"] = None
    if json_out:
        cli.print_json(report)
    else:
        _print_gate(report)
        if report["promoted"]:
            cli.out.print(f"{cfg.station.id}: active model {report['promoted']}")
    if not report["passed"]:
        raise typer.Exit(1)

# ------------------------------------------------------------------------------------ watch
@model_app.command("drift")
def model_drift(
    window: Annotated[Optional[int], typer.Option(min=1, help="recent items")] = None,
    baseline: Annotated[Optional[int], typer.Option(min=1, help="items before them")] = None,
    rate_threshold: Annotated[Optional[float], typer.Option(min=0, max=1)] = None,
    confidence_threshold: Annotated[Optional[float], typer.Option(min=0, max=1)] = None,
    strict: Annotated[bool, typer.Option(help="exit 1 when any class drifts")] = False,
    json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Per-class detection rate and confidence: recent items vs the baseline before them."""
    from models.drift import DriftPolicy, drift_report

    cfg = cli.station_config(config, data_dir)
    m = cfg.models
    policy = DriftPolicy(window or m.drift_window, baseline or m.drift_baseline,
                         m.drift_rate_threshold if rate_threshold is None else rate_threshold,
                         m.drift_confidence_threshold if confidence_threshold is None else confidence_threshold)
    with _open_store(cfg) as store:
        report = drift_report(store.rows(), policy)
    if json_out:
        cli.print_json(report)
    else:
        from rich.table import Table

        t = Table(title=f"drift: {report['recent']['items']} recent vs {report['baseline']['items']} baseline items")
        for col in ("class", "base rate", "recent rate", "base conf", "recent conf", ""):
            t.add_column(col, justify="right")
        for c in report["per_class"]:
            t.add_row(c["class"], f"{c['baseline_rate']:.1%}", f"{c['recent_rate']:.1%}",
                      "" if c["baseline_mean_confidence"] is None else f"{c['baseline_mean_confidence']:.2f}",
                      "" if c["recent_mean_confidence"] is None else f"{c['recent_mean_confidence']:.2f}",
                      "DRIFT" if c["warn"] else "")
        cli.out.print(t)
        if not report["enough_data"]:
            cli.out.print(f"not enough items to judge (need {policy.min_items} in each window)")
        for w in report["warnings"]:
            cli.out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if strict and report["warnings"]:
        raise typer.Exit(1)

@model_app.command("shadow")
def model_shadow(
    limit: Annotated[int, typer.Option(min=1)] = 50,
    candidate: Annotated[Optional[str], typer.Option(help="only this candidate version")] = None,
    record: Annotated[Optional[str], typer.Option(help="only the disagreements on this inspection record")] = None,
    json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Disagreements a shadow candidate (config models.shadow = VERSION) had with the active model, newest first."""
    from models.shadow import ShadowLog

    cfg = cli.station_config(config, data_dir)
    log = ShadowLog(cfg.station.data_dir / "models" / "shadow.db")
    try:
        rows = log.rows(limit, candidate, record)
    finally:
        log.close()
    if json_out:
        cli.print_json({"disagreements": rows})
        return
    for r in rows:
        miss = ", ".join(b["class"] for b in r["only_active"]) or "-"
        extra = ", ".join(b["class"] for b in r["only_candidate"]) or "-"
        cli.out.print(f"{r['at']} record {r['record_id'] or '(none)'} view {r['view_index']}: "
                      f"{r['candidate_version']} missed [{miss}], "
                      f"added [{extra}] vs {r['active_version']}", highlight=False, markup=False)
    if not rows:
        cli.out.print("no disagreements stored")

@model_app.command("finetune")
def model_finetune(
    config_file: Annotated[Path, typer.Argument(help="training TOML; [train] model = the .pt to start from")],
    dataset: Annotated[Path, typer.Option(help="YOLO dataset (`station dataset export`); [data] is ignored")],
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write (model card beside it)")],
    workdir: Annotated[Path, typer.Option(help="run folder")] = Path("build/finetune"),
) -> None:
    """Fine-tune on an exported dataset, export ONNX + model card (needs the training extra)."""
    import importlib.util
    import sys

    from pydantic import ValidationError

    from station.config import validation_problems

    if not (dataset / "data.yaml").exists() or not (dataset / "manifest.json").exists():
        cli.fail(f"{dataset} is not an exported dataset (data.yaml and manifest.json): `station dataset export`")
    if not any((dataset / "images" / "val").glob("*")):
        cli.fail(f"{dataset} has no validation images: export more items or a larger --val-share")
    try:
        from models.training.config import TrainingConfig

        tcfg = TrainingConfig.load(config_file)
    except FileNotFoundError:
        cli.fail(f"training config {config_file} not found")
    except ValidationError as exc:
        cli.fail("invalid training config:\n" + "\n".join(f"  {p}" for p in validation_problems(exc)))
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None:
        cli.fail("training needs the [train] extra: make train-deps (or pip install -e '.[train]')")
    from models.training.run import train as run_training

    command = " ".join(["station", "model", "finetune", *sys.argv[3:]])
    path = run_training(tcfg, workdir, out_path, command, dataset_dir=dataset.resolve(),
                        progress=lambda msg: cli.err.print(msg))
    cli.out.print(f"wrote {path} and {path.with_suffix('.yaml')}")

# ------------------------------------------------------------------------------------ thresholds
@model_app.command("thresholds")
def model_thresholds(
    model: Annotated[Path, typer.Option(help="ONNX model; its card (.yaml) beside it")],
    negatives: Annotated[list[Path], typer.Option(
        metavar="DIR", help="folder of real photos of undamaged products (jpg/jpeg/png, not its subfolders); repeatable")],
    validation: Annotated[Path, typer.Option(
        metavar="YOLO_DIR", help="labelled YOLO dataset of another style than training")],
    split: Annotated[str, typer.Option(help="the validation dataset's split")] = "test",
    target: Annotated[float, typer.Option(
        min=0, max=1, help="largest share of negative images with any detection")] = 0.08,
    write: Annotated[bool, typer.Option("--write", help="store the thresholds in the model's card")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Per-class thresholds calibrated on real negatives and a validation set (models/thresholds.py)."""
    from models.card import CardError, read_card, update_card
    from models.evaluate import DatasetError
    from models.onnx_yolo import ModelError, OnnxYoloDetector
    from models.thresholds import (CalibrationError, calibrate, collect_negatives, collect_validation,
                                   negative_files, with_calibration)

    card_path = model.with_suffix(".yaml")
    try:
        for folder in negatives:
            negative_files(folder)  # a missing folder fails before the model is even opened
        if not validation.is_dir():
            raise CalibrationError(f"validation folder {validation} not found")
        if not model.is_file():
            raise CalibrationError(f"model file {model} not found")
        if write:
            read_card(card_path)  # --write needs a card to write into: say so before the work
        detector = OnnxYoloDetector(model, threads=2).load()
        floor = detector.confidence
        neg, counts = collect_negatives(detector, negatives)
        val = collect_validation(detector, validation, split)
        cal = calibrate(val, neg, floor, target)
    except (CalibrationError, DatasetError, ModelError, CardError) as exc:
        cli.fail(str(exc))
    report = {"model": str(model), "negatives": [{"folder": str(f), "images": n} for f, n in zip(negatives, counts)],
              "validation": {"folder": str(validation), "split": split, "images": val.images},
              "thresholds": cal.thresholds, **cal.to_json()}
    if write:
        command = cli.invoked_command("model")
        try:
            update_card(card_path, lambda card: with_calibration(
                card, cal, list(zip(map(str, negatives), counts)), str(validation), split, val.images, command))
        except (CardError, OSError) as exc:
            cli.fail(f"could not store the thresholds in the model card: {exc}")
        report["written"] = str(card_path)
    if json_out:
        cli.print_json(report)
        return
    from rich.table import Table

    t = Table(title=f"{model.name}: per-class thresholds ({neg.images} negative images, {val.images} "
                    f"validation images, target {target:.0%})")
    for col in ("class", "threshold", "F1 start", "val labels", "val P", "val R", "negatives firing"):
        t.add_column(col, justify="right")
    for c in cal.per_class:
        t.add_row(c.name, f"{c.threshold:.4f}", f"{c.start:.4f}", str(c.val_labels), f"{c.val_precision:.3f}",
                  f"{c.val_recall:.3f}", f"{c.negative_share:.1%}")
    cli.out.print(t)
    n = cal.negative_images
    cli.out.print(f"negative images with any detection: {cal.negatives_at_floor}/{n} "
                  f"({cal.share(cal.negatives_at_floor):.1%}) at the floor {floor:g}, "
                  f"{cal.negatives_at_start}/{n} ({cal.share(cal.negatives_at_start):.1%}) at the F1 start, "
                  f"{cal.negatives_after}/{n} ({cal.share(cal.negatives_after):.1%}) calibrated", highlight=False)
    if not cal.reached:
        cli.out.print(f"[yellow]warning:[/] target {target:.0%} not reached: negatives score above "
                      f"{0.95} in some class", highlight=False)
    if write:
        cli.out.print(f"wrote thresholds.per_class into {card_path}", highlight=False)

# ------------------------------------------------------------------------------------ datasets
@dataset_app.command("export")
def dataset_export(
    out_dir: Annotated[Path, typer.Argument(help="folder to write (YOLO format + manifest.json)")],
    min_confidence: Annotated[Optional[float], typer.Option(
        min=0, max=1, help="unreviewed detector boxes below this leave their view out")] = None,
    val_share: Annotated[float, typer.Option(min=0, max=0.9)] = 0.2,
    test_share: Annotated[float, typer.Option(min=0, max=0.9)] = 0.0,
    since: SinceOpt = None,
    corrected_only: Annotated[bool, typer.Option(help="only items with a box correction")] = False,
    negatives: Annotated[bool, typer.Option(help="keep views a supervisor left without boxes (hard negatives)")] = True,
    unreviewed_negatives: Annotated[bool, typer.Option(
        help="also keep unchecked views the detector found nothing on")] = False,
    blur_faces: Annotated[Optional[bool], typer.Option(
        "--blur-faces/--no-blur-faces", help="blur faces (station.sync.redact); default: sync.blur_faces")] = None,
    blur_labels: Annotated[bool, typer.Option(help="blur address-label text blocks")] = True,
    json_out: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """A YOLO dataset from stored inspections: corrected boxes, confirmed detections, hard negatives."""
    from station.learning import ExportError, ExportSpec, export_dataset

    cfg = cli.station_config(config, data_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        cli.fail(f"{out_dir} is not empty: export into a new folder")
    spec = ExportSpec(cfg.models.export_min_confidence if min_confidence is None else min_confidence,
                      val_share, test_share, since, corrected_only, negatives, unreviewed_negatives,
                      cfg.sync.blur_faces if blur_faces is None else blur_faces, blur_labels)
    with _open_store(cfg) as store:
        try:
            manifest = export_dataset(store, out_dir, spec)
        except ExportError as exc:
            cli.fail(str(exc))
    summary = {k: v for k, v in manifest.items() if k != "files"}
    if json_out:
        cli.print_json({**summary, "out": str(out_dir), "images": len(manifest["files"])})
    else:
        counts = ", ".join(f"{s} {c['images']} ({c['negatives']} negatives)" for s, c in manifest["splits"].items())
        cli.out.print(f"wrote {out_dir}: {len(manifest['files'])} images from {manifest['items']} items: {counts}; "
                      f"sha256 {manifest['sha256'][:16]}...")

@dataset_app.command("correct")
def dataset_correct(
    record_id: Annotated[str, typer.Argument(help="the inspection record to correct")],
    boxes: Annotated[str, typer.Option(help='JSON list (or @file): [{"view": "front", "class": "dent", '
                                             '"box_xyxy": [x1, y1, x2, y2]}, ...]; [] = clean')],
    operator: Annotated[str, typer.Option(help="who corrects")],
    reason: Annotated[str, typer.Option(help="why")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Store a box correction as an override record (the original stays as it was)."""
    from station.records import StoreError

    cfg = cli.station_config(config, data_dir)
    try:
        text = Path(boxes[1:]).read_text() if boxes.startswith("@") else boxes
        parsed = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        cli.fail(f"--boxes is not readable JSON: {exc}")
    if not isinstance(parsed, list):
        cli.fail("--boxes must be a JSON list of boxes")
    with _open_store(cfg) as store:
        try:
            new_id = store.override_boxes(record_id, operator, reason, parsed)
        except StoreError as exc:
            cli.fail(str(exc))
    cli.out.print(f"recorded box correction {new_id} of {record_id}")
