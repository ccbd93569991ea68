"""Training configuration: every hyperparameter and seed pinned in one TOML file."""

from __future__ import annotations

import tomllib
from typing import Literal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: int = Field(800, ge=1)
    val: int = Field(150, ge=1)
    test: int = Field(200, ge=1)
    seed: int = 0
    size: int = Field(416, ge=64)
    clean_share: float = Field(0.12, ge=0, le=1)
    # Class -> how many slots it leads in the primary-class cycle (default 1 each): more of the hard classes.
    primary_repeats: dict[str, int] = Field(default_factory=dict)
    # Real photos (models.composite, models.real_photos): a folder of base photos whose licence allows
    # training, and the shares of samples that are real undamaged negatives / real photos with defects on.
    real_photos: str | None = None
    negative_share: float = Field(0.0, ge=0, le=1)
    composite_share: float = Field(0.0, ge=0, le=1)
    # The share of samples from the third generator (models.photo_defects) on the same real photos.
    photo_share: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _shares(self) -> "DataSection":
        if self.negative_share + self.composite_share + self.photo_share > 1:
            raise ValueError("negative_share + composite_share + photo_share must not exceed 1")
        if (self.negative_share or self.composite_share or self.photo_share) and not self.real_photos:
            raise ValueError("negative_share, composite_share and photo_share need real_photos "
                             "(a folder of base photos)")
        return self

    @field_validator("primary_repeats")
    @classmethod
    def _known_classes(cls, value: dict[str, int]) -> dict[str, int]:
        from models.dataset import DatasetSpec

        DatasetSpec(primary_repeats=tuple(value.items())).primary_cycle()  # the dataset writer's own check
        return value


class TrainSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "yolov8n.yaml"
    imgsz: int = Field(320, ge=32)
    epochs: int = Field(30, ge=1)
    batch: int = Field(16, ge=1)
    seed: int = 0
    optimizer: str = "SGD"  # pinned: ultralytics "auto" picks AdamW with its own tiny lr for short runs, ignoring lr0
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    warmup_bias_lr: float = 0.1  # biases start at this lr and fall to lr0 over the warmup (ultralytics' rule)
    # Kept fixed: the first N layers, or these layer indices / module names ("22.cv2"); None trains everything.
    # A short fine-tune on a few corrected items trains little more than the classification outputs.
    freeze: int | list[int | str] | None = None
    mosaic: float = 1.0
    close_mosaic: int = 5
    fliplr: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.5
    hsv_v: float = 0.4
    degrees: float = 0.0
    scale: float = 0.3
    translate: float = 0.1
    patience: int = 100
    # Which weights become the ONNX: "best" (ultralytics' best epoch by validation mAP50-95) or "last". A line
    # fine-tune validates on a handful of corrected views, where "best" is noise: its first epoch, before the
    # re-learned classes came back, can score highest.
    checkpoint: Literal["best", "last"] = "best"
    workers: int = 2
    cache: str | bool = "ram"
    device: str = "cpu"


class ExportSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opset: int = 18
    simplify: bool = True
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "defects"
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    export: ExportSection = ExportSection()

    @classmethod
    def load(cls, path: Path) -> "TrainingConfig":
        return cls.model_validate(tomllib.loads(Path(path).read_text()))
