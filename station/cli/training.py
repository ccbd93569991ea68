"""`station train`, `average`, `dataset generate`, `eval` and `station bench detector`: the defect detector's
data, training and measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from station.cli.common import ConfigOpt, err, fail, invoked_command, out, print_json, station_config
from station.config import validation_problems

app = typer.Typer()
dataset_app = typer.Typer()
bench_app = typer.Typer()


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
    command = invoked_command("train")
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
        path = average_weights(sources, out_path, invoked_command("average"), workdir=workdir)
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

    cfg = station_config(config, None)
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

        command = invoked_command("eval")
        try:
            update_card(Path(model_path).with_suffix(".yaml"),
                        lambda card: with_test_metrics(card, record, report.to_json(), command))
        except (CardError, OSError) as exc:
            fail(f"could not record the result in the model card: {exc}")
        err.print(f"recorded as metrics_test.{record} in {Path(model_path).with_suffix('.yaml')}")
    if json_out:
        print_json({**report.to_json(), "model": str(model_path), "dataset": str(dataset), "split": split,
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
        print_json(report)
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


