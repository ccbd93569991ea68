"""Model card bookkeeping that `station train` and `station eval --record` share: a fine-tuned model's card
carries the lineage of every stage before it, and held-out evaluations are written into the card of the
model they measured, so the shipped card comes out of `make train` rather than being composed by hand.

Pure functions on the card's dict, plus one read-modify-write helper for the YAML file.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Callable, Sequence

import yaml


class CardError(ValueError):
    """A model card is missing or unreadable where one is needed."""


def read_card(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"model card {path} not found: it is written beside the ONNX file by station train") from None
    except yaml.YAMLError as exc:
        raise CardError(f"model card {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CardError(f"model card {path} does not hold a mapping")
    return data


def write_card(path: Path, card: dict) -> None:
    # Written beside and renamed over, so a full disk or a crash never leaves half a card next to the model.
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(card, sort_keys=False, width=100, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)


def update_card(path: Path, change: Callable[[dict], dict]) -> dict:
    card = change(read_card(path))
    write_card(path, card)
    return card


def parent_card_path(model: str) -> Path | None:
    """The card of the checkpoint a training run starts from, when it is one of ours (a .pt with a card
    beside it); None for a model YAML (training from scratch) or a foreign checkpoint."""
    path = Path(model)
    card = path.with_suffix(".yaml")
    if path.suffix != ".pt" or not card.is_file():
        return None
    return card


def stage_summary(card: dict) -> dict:
    """What a later stage keeps of this one: how it was made and what it scored on its own validation set."""
    training = card.get("training", {}) or {}
    config = training.get("config", {}) or {}
    train = config.get("train", {}) or {}
    spec = (card.get("dataset", {}) or {}).get("spec", {}) or {}
    tests = {name: {"mAP50": m.get("mAP50"), "mAP50_95": m.get("mAP50_95")}
             for name, m in (card.get("metrics_test") or {}).items() if isinstance(m, dict) and "mAP50" in m}
    summary = {
        "command": training.get("command"),
        "start": train.get("model"),
        "imgsz": train.get("imgsz"),
        "epochs": train.get("epochs"),
        "train_images": spec.get("train"),
        "dataset_sha256": (card.get("dataset", {}) or {}).get("sha256"),
        "metrics_val": card.get("metrics_val"),
        "date": training.get("date"),
    }
    if tests:
        summary["metrics_test"] = tests
    return summary


def _earlier_stages(card: dict) -> list[dict]:
    return list((card.get("training", {}) or {}).get("stages", []) or [])


def with_lineage(card: dict, parent: dict | None) -> dict:
    """``card`` with ``training.stages`` listing every earlier stage (oldest first) and the architecture of
    the first one; unchanged when the run did not start from one of our checkpoints."""
    if parent is None:
        return card
    earlier = _earlier_stages(parent)
    out = dict(card)
    out["architecture"] = parent.get("architecture", card.get("architecture"))
    out["training"] = {**card.get("training", {}), "stages": [*earlier, stage_summary(parent)]}
    return out


def averaged_card(cards: Sequence[dict], sources: Sequence[str], out_name: str, command: str,
                  today: dt.date | None = None) -> dict:
    """The card of a uniform weight average of checkpoints fine-tuned along one lineage (a "model soup"): the
    last source's classes, input size and thresholds; ``training.stages`` lists every stage of every source once,
    oldest first. The sources' own measurements are dropped: the average earns its own (station eval --record).
    Raises CardError when the sources do not detect the same classes at the same input size."""
    if len(cards) < 2:
        raise CardError("averaging needs at least two models")
    first = cards[0]
    for src, card in zip(sources[1:], cards[1:]):
        for key in ("classes", "input_size"):
            if card.get(key) != first.get(key):
                raise CardError(f"{src} has {key} {card.get(key)} but {sources[0]} has {first.get(key)}: only "
                                "models fine-tuned from one another can be averaged")
    stages: list[dict] = []
    seen: set[tuple] = set()
    for card in cards:
        for stage in [*_earlier_stages(card), stage_summary(card)]:
            key = (stage.get("command"), stage.get("dataset_sha256"))
            if key not in seen:
                seen.add(key)
                stages.append(stage)
    last = cards[-1]
    out = {k: v for k, v in last.items() if k not in ("metrics_val", "metrics_test", "dataset", "training")}
    out.update({"name": Path(out_name).stem, "file": Path(out_name).name,
                "architecture": first.get("architecture", last.get("architecture"))})
    out["training"] = {"command": command, "method": "uniform average of the sources' weights",
                       "sources": list(sources), "date": (today or dt.date.today()).isoformat(), "stages": stages}
    return out


def check_record_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", name or "") is None:
        raise CardError(f"record name {name!r}: use letters, digits, '_' or '-' (e.g. heldout, shifted)")
    return name


def with_test_metrics(card: dict, name: str, report: dict, command: str, today: dt.date | None = None) -> dict:
    """``card`` with ``metrics_test[name]`` set from an evaluation report (``EvalReport.to_json()``)."""
    check_record_name(name)
    entry = {
        "images": report["images"],
        "mAP50": report["mAP50"],
        "mAP50_95": report["mAP50_95"],
        "per_class_AP50": {row["class"]: row["AP50"] for row in report["per_class"]},
        "command": command,
        "date": (today or dt.date.today()).isoformat(),
    }
    out = dict(card)
    out["metrics_test"] = {**(card.get("metrics_test") or {}), name: entry}
    return out
