"""Uniform weight averaging of checkpoints fine-tuned from one another (a "model soup", Wortsman et al. 2022).

Consecutive fine-tuning stages sit in one basin of the loss: their average keeps most of the later stage's
gain on data like its training set while losing less on data unlike it than the later stage alone (measured on
the shipped detector: README, "The detector model"). Imports torch/ultralytics only when called (the [train]
extra).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from models.card import CardError, averaged_card, read_card, write_card


class AverageError(ValueError):
    """The checkpoints cannot be averaged (missing, or different architectures)."""


def average_weights(sources: Sequence[Path], out: Path, command: str, opset: int = 18, simplify: bool = True,
                    workdir: Path | None = None) -> Path:
    """Write ``out`` (ONNX, with ``out``.pt and a model card ``out``.yaml beside it): the element-wise mean of
    the floating-point weights and batch-norm statistics of ``sources`` (ultralytics .pt files, each with our
    model card beside it). Each source's per-epoch ``results.csv`` is copied beside ``out`` as
    ``<out stem>.source<N>.results.csv``; an older ``<out stem>.results.csv`` there described another model
    and is removed. ``workdir`` holds ultralytics' offline settings (default ``out``'s folder/.yolo).
    Returns ``out``."""
    sources = [Path(p) for p in sources]
    if len(sources) < 2:
        raise AverageError("averaging needs at least two checkpoints")
    for path in sources:
        if path.suffix != ".pt":
            raise AverageError(f"{path} is not a .pt checkpoint: pass the .pt beside each stage's ONNX file")
        if not path.is_file():
            raise AverageError(f"{path} not found: station train writes it beside the stage's ONNX file")
    try:
        cards = [read_card(p.with_suffix(".yaml")) for p in sources]
        card = averaged_card(cards, [str(p) for p in sources], Path(out).name, command)
    except CardError as exc:
        raise AverageError(str(exc)) from None

    import torch
    from ultralytics import YOLO  # heavy and optional: imported only here

    from models.training.run import export_onnx, prepare_offline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepare_offline(Path(workdir) if workdir is not None else out.parent / ".yolo")
    models = [YOLO(str(p)) for p in sources]
    states = [m.model.state_dict() for m in models]
    target = states[0]  # live references: writing them changes models[0]
    for path, state in zip(sources[1:], states[1:]):
        mismatch = next((k for k in target if k not in state or state[k].shape != target[k].shape), None)
        if mismatch is not None or len(state) != len(target):
            raise AverageError(f"{path} and {sources[0]} differ in {mismatch or 'their layers'}: only checkpoints "
                               "of one architecture can be averaged")
    with torch.no_grad():
        for key, tensor in target.items():
            if tensor.is_floating_point():  # integer buffers (BN's num_batches_tracked) stay the first's
                mean = torch.stack([s[key].float() for s in states]).mean(dim=0)
                tensor.copy_(mean.to(tensor.dtype))
    avg_pt = out.with_suffix(".pt")
    models[0].save(str(avg_pt))
    export_onnx(avg_pt, out, int(card["input_size"][0]), opset, simplify)
    stale = out.with_name(out.stem + ".results.csv")
    stale.unlink(missing_ok=True)
    copied = []
    for i, path in enumerate(sources, 1):
        results = path.with_name(path.stem + ".results.csv")
        if results.is_file():
            dst = out.with_name(f"{out.stem}.source{i}.results.csv")
            shutil.copy(results, dst)
            copied.append(dst.name)
    if copied:
        card["training"]["results_csv"] = copied
    write_card(out.with_suffix(".yaml"), card)
    return out
