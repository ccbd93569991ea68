"""Station configuration: one TOML file, validated by pydantic models (``extra="forbid"``).

Backends are picked by a discriminated ``type`` field (camera, conveyor, detector), Frigate style.
Every field has a default, so a station runs with no file at all.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.domain import Disposition, lane_for
from station.licence_plate import LabelsConfig, PdfLabelsConfig
from station.marketplace import MarketplaceConfig
from station.webhooks import WebhooksConfig

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = PACKAGE_ROOT / "models" / "weights" / "defects.onnx"


def default_data_dir() -> Path:
    env = os.environ.get("STATION_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "inspection-station"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------------------- cameras


class SyntheticCameraConfig(_Model):
    """Renders returned items of the sample catalogue with painted defects (demo, tests)."""

    type: Literal["synthetic"] = "synthetic"
    seed: int = 7
    width: int = Field(640, ge=64, le=4096)
    height: int = Field(480, ge=64, le=4096)


class FolderCameraConfig(_Model):
    """Replays image files from a folder in name order (recorded sessions, offline tests)."""

    type: Literal["folder"]
    path: Path
    pattern: str = "*.jpg"
    loop: bool = True


class OpenCVCameraConfig(_Model):
    """Any source OpenCV's VideoCapture opens: a device index, a file or an RTSP URL."""

    type: Literal["opencv"]
    source: int | str = 0
    width: int | None = None
    height: int | None = None
    exposure: float | None = None
    warmup_frames: int = Field(3, ge=0)


CameraConfig = Annotated[
    Union[SyntheticCameraConfig, FolderCameraConfig, OpenCVCameraConfig], Field(discriminator="type")
]

# ----------------------------------------------------------------------------------------- conveyor


class SimulatedConveyorConfig(_Model):
    """In-process conveyor: records diverts so the demo and tests can check routing."""

    type: Literal["simulated"] = "simulated"


class BenchConveyorConfig(_Model):
    """No conveyor: a QC bench where the inspector is told which tote to use."""

    type: Literal["bench"]


class SerialConveyorConfig(_Model):
    """A line driven with the station protocol (docs/conveyor-protocol.md) over a port opened by URL:
    /dev/ttyUSB0, a pty path, loop://, socket://host:port. The end of the belt must be the manual-review lane."""

    type: Literal["serial"]
    url: str = Field(min_length=1)
    baudrate: int = Field(115200, ge=1200, le=4_000_000)
    decision_budget_ms: float = Field(3400.0, gt=0, description="belt ms from the inspection photo-eye to the nearest gate")
    margin_ms: float = Field(300.0, ge=0, description="divert must reach the line this long before the gate")
    capture_window_ms: float = Field(1500.0, gt=0, description="belt ms the item stays under the camera")
    min_gap_mm: int = Field(150, ge=0, description="items closer than this both go to manual review")
    heartbeat_s: float = Field(0.2, gt=0, le=10)


class ModbusConveyorConfig(_Model):
    """A PLC-driven line over Modbus RTU (register map: docs/conveyor-modbus.md); the station is the master and
    polls. ``url`` is any port ``serial_for_url`` opens (/dev/ttyUSB0 on an RS-485 adapter, a pty path)."""

    type: Literal["modbus"]
    url: str = Field(min_length=1, description="serial port of the RS-485 adapter, e.g. /dev/serial/by-id/...")
    baudrate: int = Field(115200, ge=1200, le=4_000_000)
    slave: int = Field(1, ge=1, le=247, description="the PLC's Modbus slave (unit) id")
    poll_s: float = Field(0.02, gt=0, le=5, description="status/event poll interval")
    timeout_s: float = Field(0.1, gt=0, le=10, description="answer timeout per request (pymodbus retries twice)")
    decision_budget_ms: float = Field(3400.0, gt=0, description="belt ms from the inspection photo-eye to the nearest gate")
    margin_ms: float = Field(300.0, ge=0, description="divert must reach the line this long before the gate")
    capture_window_ms: float = Field(1500.0, gt=0, description="belt ms the item stays under the camera")
    min_gap_mm: int = Field(150, ge=0, description="items closer than this both go to manual review")


ConveyorConfig = Annotated[Union[SimulatedConveyorConfig, BenchConveyorConfig, SerialConveyorConfig,
                                 ModbusConveyorConfig], Field(discriminator="type")]

# ----------------------------------------------------------------------------------------- detector


class OnnxDetectorConfig(_Model):
    type: Literal["onnx"] = "onnx"
    model: Path = BUNDLED_MODEL
    confidence: float | None = Field(None, ge=0, le=1, description="default: the model card's threshold")
    iou: float | None = Field(None, ge=0, le=1)
    threads: int = Field(2, ge=1, le=64)
    input_size: int | None = Field(None, ge=64, le=1920, description="square inference size for dynamic models; "
                                   "default: the model card's. Larger finds small defects on wide frames, slower")


class OpenVinoDetectorConfig(OnnxDetectorConfig):
    """The same model and decode on OpenVINO (optional extra: pip install openvino); boot fails with a clear
    message when it is not installed. Compiled blobs are cached under the data dir."""

    type: Literal["openvino"] = "openvino"  # type: ignore[assignment]
    # f32 by default: boxes and scores as ONNX Runtime's to float rounding. "default" (the CPU's native precision,
    # bf16 with AMX/AVX512-BF16) is about 2-3x faster there but moves scores (one demo item 0.70 -> 0.44).
    precision: Literal["f32", "default", "bf16", "f16"] = Field(
        "f32", description="f32: as ONNX Runtime to float rounding; default: the CPU's native precision "
                           "(bf16 with AMX/AVX512-BF16: faster, scores move by up to ~0.25)")
    int8: bool = Field(False, description="run the int8 variants shipped beside the models (<model>.int8.xml, "
                                          "gated on accuracy: see their cards); float where there is none")


class AutoDetectorConfig(OpenVinoDetectorConfig):
    """OpenVINO where it is installed, ONNX Runtime otherwise; boot logs which one runs."""

    type: Literal["auto"] = "auto"  # type: ignore[assignment]


# The OpenVINO and auto configs subclass the ONNX one: whatever reads detector.model (path resolution,
# `station config check`) treats them alike.
DetectorConfig = Annotated[Union[OnnxDetectorConfig, OpenVinoDetectorConfig, AutoDetectorConfig],
                           Field(discriminator="type")]

# ----------------------------------------------------------------------------------------- the rest


class QualityGateConfig(_Model):
    min_sharpness: float = Field(8.0, ge=0, description="variance of the Laplacian on a 512 px copy")
    min_mean: float = Field(35.0, ge=0, le=255)
    max_mean: float = Field(225.0, ge=0, le=255)
    max_clipped_share: float = Field(0.25, ge=0, le=1, description="share of pixels at 250+ (glare)")

    @model_validator(mode="after")
    def _mean_range(self) -> "QualityGateConfig":
        if self.min_mean >= self.max_mean:  # every frame would be refused as too dark or too bright
            raise ValueError(f"min_mean {self.min_mean:g} is not below max_mean {self.max_mean:g}: every frame would "
                             f"be refused; keep min_mean < max_mean (defaults 35 and 225)")
        return self


class ComparerConfig(_Model):
    type: Literal["basic", "catalogue"] = Field("catalogue", description="basic: global colour cues only; "
                                                "catalogue: verified local features, aligned structure and colour")
    identity_threshold: float = Field(0.9, ge=0, le=1, description="identity below this is a wrong_item finding")
    bench_grey: float = Field(200.0, gt=0, le=255, description="the bench's calibrated neutral grey level")
    # Off by default: it costs about 145 ms per view on 2 cores, and on generated genuine items it still raises a
    # false missing_part on 1 of 72 never-tuned-on items (docs/vision.md). The heat map stays available through
    # `station compare --heatmap` and the review queue, which compute it on demand.
    reference_difference: bool = Field(False, description="turn reference differences into missing_part findings")
    unseen_damage: bool = Field(True, description="damage findings where a view differs from the SKU's good "
                                "appearance (catalogue views and accepted returns; pretrained patch features)")
    identity_retrieval: bool = Field(True, description="identity also from the pretrained backbone's retrieval and "
                                                       "SIFT verification (models/weights/backbone.onnx)")


class MtSicsScaleConfig(_Model):
    """A bench scale speaking MT-SICS (levels 0/1, the common Mettler Toledo command set) over a port opened by
    URL like the conveyor's: /dev/ttyUSB0, a pty path (`station sim-scale`), socket://host:port. Each item is
    weighed once; a scale that is absent or does not settle within ``stable_timeout_s`` leaves the item
    ungraded on weight, never waiting longer. Tolerances per category are in the rules
    (``settings.weight_tolerance``)."""

    type: Literal["mtsics"]
    url: str = Field(min_length=1, description="serial port of the scale, e.g. /dev/serial/by-id/...")
    baudrate: int = Field(9600, ge=300, le=4_000_000, description="the scale's interface setting (8N1)")
    command_timeout_s: float = Field(0.5, gt=0, le=10, description="answer timeout of one command")
    stable_timeout_s: float = Field(1.5, gt=0, le=30, description="longest wait for a stable weight per item")
    min_load_g: float = Field(2.0, ge=0, le=1000, description="below this the pan is taken as empty (not weighed)")
    review_when_unavailable: bool = Field(False, description="send an item to manual review when it could not be "
                                                             "weighed (default: decided without the weight)")


ScaleConfig = Annotated[Union[MtSicsScaleConfig], Field(discriminator="type")]


class OcrConfig(_Model):
    """Text on the item (vision/ocr.py): serials and printed dates, read offline with the models the rapidocr
    wheel ships, and only for SKUs whose catalogue row has serial_pattern or shelf_life_days. Off: such items go
    to manual review (their serial or date is not checked)."""

    type: Literal["rapidocr"] = "rapidocr"
    enabled: bool = True
    min_score: float = Field(0.5, ge=0, le=1, description="lines the recogniser scores below this are dropped")
    threads: int = Field(2, ge=1, le=64, description="ONNX Runtime threads of the OCR engine")


class CalibrationConfig(_Model):
    """Stored calibration profiles (<data_dir>/calibration/<kind>_<camera_id>.json) and the start-up check."""

    camera_id: str = Field("cam0", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                           description="which camera's profiles (intrinsics, scale, colour) the station uses")
    max_profile_age_days: float = Field(30.0, gt=0, description="older profiles are reported stale at start-up")
    lighting_level_tolerance: float = Field(0.10, gt=0, le=1, description="bench grey level change that warns")
    white_balance_tolerance: float = Field(0.05, gt=0, le=1, description="bench B/G or R/G change that warns")
    check_frame_at_boot: bool = Field(True, description="take one frame at start-up for the lighting check "
                                                        "(live OpenCV cameras only; a replay or synthetic one is never consumed)")


class CatalogueConfig(_Model):
    path: Path | None = Field(None, description="catalogue folder; default: the one `station catalogue import` "
                                                "last imported into the data dir, else the generated sample catalogue")


class RulesConfig(_Model):
    file: Path | None = Field(None, description="rules TOML; default: the shipped rules")


class RecordsConfig(_Model):
    database: Path | None = Field(None, description="default: <data_dir>/station.db")
    image_budget_mb: float | None = Field(None, gt=0, description="retention: prune synced images, oldest first, "
                                                                 "above this many MiB (never an unsynced one)")
    min_free_mb: float = Field(32, ge=0, description="refuse to write below this much free disk (clear error)")


class SyncConfig(_Model):
    """Sync to the platform server (station/server). Off until ``url`` is set."""

    url: str | None = Field(None, pattern=r"^https?://", description="platform base URL, e.g. http://platform:8700")
    token: str | None = Field(None, min_length=8, description="this station's token (or env STATION_SYNC_TOKEN)")
    batch_size: int = Field(200, ge=1, le=1000)
    timeout_s: float = Field(15.0, gt=0, le=600)
    upload_images: bool = True
    thumbnail_px: int = Field(160, ge=32, le=1024)
    backoff_base_s: float = Field(1.0, gt=0, le=600)
    backoff_max_s: float = Field(300.0, gt=0, le=86400)
    interval_s: float = Field(5.0, gt=0, le=3600, description="pause between syncs when the outbox is empty")
    pull: bool = True
    blur_faces: bool = Field(False, description="blur faces in what leaves the station (thumbnails only then)")
    blur_labels: bool = Field(False, description="blur text blocks such as address labels before sync")


class ModelsConfig(_Model):
    """Model lifecycle (docs/model-lifecycle.md): registry under <data_dir>/models, promotion gate, shadow, drift."""

    registry: bool = Field(True, description="boot the registry's active version when there is one "
                                             "(else detector.model)")
    shadow: str | None = Field(None, description="registered version to run beside the active one (shadow mode)")
    golden: Path | None = Field(None, description="frozen golden YOLO dataset (images/test) for the promotion gate")
    recall_tolerance: float = Field(0.05, ge=0, le=1, description="largest allowed drop of any class's recall")
    max_latency_ratio: float = Field(1.5, gt=0, description="candidate / active latency above this is refused")
    min_instances: int = Field(3, ge=1, description="classes with fewer golden labels are reported, not gated")
    export_min_confidence: float = Field(0.5, ge=0, le=1, description="unreviewed detector boxes below this "
                                                                      "leave their view out of an export")
    drift_window: int = Field(200, ge=1, description="recent items compared with the baseline before them")
    drift_baseline: int = Field(1000, ge=1)
    drift_rate_threshold: float = Field(0.10, ge=0, le=1)
    drift_confidence_threshold: float = Field(0.10, ge=0, le=1)


def _default_lanes() -> dict[Disposition, int]:
    return {
        Disposition.RESTOCK: 1,
        Disposition.OPEN_BOX: 2,
        Disposition.REFURBISH: 3,
        Disposition.RETURN_TO_VENDOR: 4,
        Disposition.DONATE: 5,
        Disposition.RECYCLE: 5,
        Disposition.SCRAP: 6,
        Disposition.MANUAL_REVIEW: 0,
    }


class StationSection(_Model):
    id: str = Field("station-01", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Field(default_factory=default_data_dir)
    views: list[str] = Field(default_factory=lambda: ["front", "side", "top"], min_length=1)

    @field_validator("views")
    @classmethod
    def _views_once(cls, views: list[str]) -> list[str]:
        blank = [i for i, v in enumerate(views) if not v.strip()]
        if blank:
            raise ValueError(f"view {blank[0]} has no name: name every view (e.g. front, side, top)")
        twice = sorted({v for v in views if views.count(v) > 1})
        if twice:  # a second capture of one view would silently replace the first
            raise ValueError(f"{', '.join(twice)} listed twice: list each view once")
        return views


_DEFAULT_TYPES = {"camera": "synthetic", "conveyor": "simulated", "detector": "onnx", "labels": "pdf"}


class StationConfig(_Model):
    station: StationSection = StationSection()
    camera: CameraConfig = SyntheticCameraConfig()
    conveyor: ConveyorConfig = SimulatedConveyorConfig()
    detector: DetectorConfig = OnnxDetectorConfig()
    quality: QualityGateConfig = QualityGateConfig()
    comparer: ComparerConfig = ComparerConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    catalogue: CatalogueConfig = CatalogueConfig()
    rules: RulesConfig = RulesConfig()
    records: RecordsConfig = RecordsConfig()
    sync: SyncConfig = SyncConfig()
    models: ModelsConfig = ModelsConfig()
    scale: ScaleConfig | None = None  # no [scale] section: items are not weighed
    labels: LabelsConfig = PdfLabelsConfig()  # a licence-plate label per inspected unit (station/licence_plate.py)
    marketplace: MarketplaceConfig = MarketplaceConfig()  # eBay / Amazon / Back Market condition codes
    webhooks: WebhooksConfig = WebhooksConfig()  # disposition events to a receiver, off while url is unset
    ocr: OcrConfig = OcrConfig()  # serials and dates on SKUs that carry them (vision/ocr.py)
    lanes: dict[Disposition, Annotated[int, Field(ge=0, le=63)]] = Field(default_factory=_default_lanes)

    @field_validator("lanes")
    @classmethod
    def _one_disposition_per_lane(cls, lanes: dict[Disposition, int]) -> dict[Disposition, int]:
        # An item diverted to a lane is handled as that lane's disposition: restock and scrap on one lane would
        # restock scrap, anything on the manual-review lane would skip its review. Donate and recycle may share
        # one (the outbound tote, as the defaults have it).
        by_lane: dict[int, list[str]] = {}
        for disposition, lane in lanes.items():
            by_lane.setdefault(lane, []).append(Disposition(disposition).value)
        shared = [(lane, names) for lane, names in sorted(by_lane.items())
                  if len(names) > 1 and not set(names) <= {Disposition.DONATE.value, Disposition.RECYCLE.value}]
        if shared:
            lane, names = shared[0]
            raise ValueError(f"{' and '.join(names)} share lane {lane}: give each disposition its own lane "
                             f"(only donate and recycle may share one)")
        return lanes

    @model_validator(mode="before")
    @classmethod
    def _default_backend_types(cls, data: Any) -> Any:
        # A section without `type` means the default backend, so `[detector] threads = 4` just works.
        if isinstance(data, dict):
            data = dict(data)
            for section, default in _DEFAULT_TYPES.items():
                if isinstance(data.get(section), dict) and "type" not in data[section]:
                    data[section] = {"type": default, **data[section]}
        return data

    def database_path(self) -> Path:
        return self.records.database or self.station.data_dir / "station.db"

    def lane_for(self, disposition: Disposition) -> int:
        return lane_for(self.lanes, disposition)


class ConfigError(ValueError):
    """Config could not be loaded; ``problems`` lists each one with its path in the file."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__("\n".join(f"{origin}: {p}" for p in problems))


def _path_of(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        # Drop pydantic's union tag segment (e.g. "synthetic") so the path is what the user wrote.
        loc = tuple(p for p in err["loc"] if p not in ("synthetic", "folder", "opencv", "simulated", "bench", "serial",
                                                       "modbus", "onnx", "openvino", "auto", "mtsics"))
        msg = err["msg"]
        if err["type"] == "value_error" and err.get("ctx", {}).get("error") is not None:
            msg = str(err["ctx"]["error"])  # our own validators' messages, without pydantic's "Value error, "
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "union_tag_invalid":
            given = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else err.get("input")
            msg = f"unknown type {given!r}; expected one of {err['ctx']['expected_tags']}"
        problems.append(f"{_path_of(loc)}: {msg}")
    return problems


def load_config(path: Path | None) -> StationConfig:
    """Load and validate a station TOML file; None gives the built-in defaults."""
    if path is None:
        return StationConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), validation_problems(exc)) from None
    # Relative paths in the file are relative to the file, not to wherever the station was started.
    base = path.resolve().parent
    return _resolve_paths(cfg, base)


def _resolve_paths(cfg: StationConfig, base: Path) -> StationConfig:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    updates: dict[str, Any] = {
        "station": cfg.station.model_copy(update={"data_dir": fix(cfg.station.data_dir)}),
        "catalogue": cfg.catalogue.model_copy(update={"path": fix(cfg.catalogue.path)}),
        "rules": cfg.rules.model_copy(update={"file": fix(cfg.rules.file)}),
        "records": cfg.records.model_copy(update={"database": fix(cfg.records.database)}),
        "models": cfg.models.model_copy(update={"golden": fix(cfg.models.golden)}),
    }
    if isinstance(cfg.detector, OnnxDetectorConfig):
        updates["detector"] = cfg.detector.model_copy(update={"model": fix(cfg.detector.model)})
    if isinstance(cfg.camera, FolderCameraConfig):
        updates["camera"] = cfg.camera.model_copy(update={"path": fix(cfg.camera.path)})
    if isinstance(cfg.labels, PdfLabelsConfig) and cfg.labels.folder is not None:
        updates["labels"] = cfg.labels.model_copy(update={"folder": fix(cfg.labels.folder)})
    if cfg.webhooks.secret_file is not None:
        updates["webhooks"] = cfg.webhooks.model_copy(update={"secret_file": fix(cfg.webhooks.secret_file)})
    return cfg.model_copy(update=updates)


def data_dir_problem(path: Path) -> str | None:
    """Why the station could not keep its data in ``path`` (a file in the way, no write permission), or None.
    Checks without creating anything."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder" if probe != path else f"{path} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user" + ("" if probe == path else f" (to create {path} in it)")
    return None


def configured_paths(path: Path) -> dict[str, Path]:
    """The files and folders a station TOML points to (dotted key -> path, relative ones resolved against the
    file), read from the raw TOML so they can be checked even when the schema has errors. Keys left out get the
    defaults that the station would use; an unreadable file gives {}."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    base = path.resolve().parent

    def get(section: str, key: str) -> Any:
        part = data.get(section)
        return part.get(key) if isinstance(part, dict) else None

    out: dict[str, Path] = {}
    for section, key in (("rules", "file"), ("catalogue", "path"), ("station", "data_dir")):
        value = get(section, key)
        if isinstance(value, str) and value:
            out[f"{section}.{key}"] = Path(value) if Path(value).is_absolute() else base / value
    detector = data.get("detector")
    if not isinstance(detector, dict) or detector.get("type", "onnx") in ("onnx", "openvino", "auto"):
        value = get("detector", "model")
        if isinstance(value, str) and value:
            out["detector.model"] = Path(value) if Path(value).is_absolute() else base / value
        elif value is None:
            out["detector.model"] = BUNDLED_MODEL
    if "station.data_dir" not in out:
        out["station.data_dir"] = default_data_dir()
    return out
