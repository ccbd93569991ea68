"""Boot: turn a StationConfig into a running station. Short on purpose; each backend lives in its package."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hardware.conveyor import BenchTotes, SimulatedConveyor
from models.onnx_yolo import OnnxYoloDetector
from station.config import (
    BenchConveyorConfig,
    FolderCameraConfig,
    ModbusConveyorConfig,
    OnnxDetectorConfig,
    OpenCVCameraConfig,
    SerialConveyorConfig,
    StationConfig,
    SyntheticCameraConfig,
)
from station.outbound import make_outbound
from station.pipeline import InspectionPipeline, LaneRouter
from station.records import StationStore, StoreError
from station.rules import RuleSet, RulesEngine
from station.sync import BackgroundSync, SyncError, settings_from_config
from vision.camera import FolderCamera, OpenCVCamera, SyntheticCamera
from vision.catalogue import Catalogue, build_sample_catalogue
from vision.compare import BasicComparer, CatalogueComparer
from vision.ocr import TextReader
from vision.quality import QualityGate


def load_catalogue(cfg: StationConfig) -> Catalogue:
    if cfg.catalogue.path is not None:
        return Catalogue.load(cfg.catalogue.path)
    imported = imported_catalogue_dir(cfg)
    if (imported / "catalogue.csv").is_file():
        return Catalogue.load(imported)  # `station catalogue import` put it there
    return build_sample_catalogue(cfg.station.data_dir / "sample_catalogue")


def imported_catalogue_dir(cfg: StationConfig) -> Path:
    """Where `station catalogue import` keeps the active catalogue (used when catalogue.path is not set)."""
    return cfg.station.data_dir / "catalogue"


def make_camera(cfg: StationConfig):
    cam = cfg.camera
    if isinstance(cam, SyntheticCameraConfig):
        return SyntheticCamera(cam.width, cam.height, cam.seed)
    if isinstance(cam, FolderCameraConfig):
        return FolderCamera(cam.path, cam.pattern, cam.loop)
    if isinstance(cam, OpenCVCameraConfig):
        return OpenCVCamera(cam.source, cam.width, cam.height, cam.exposure, cam.warmup_frames)
    raise AssertionError(f"unhandled camera type {cam!r}")


def make_conveyor(cfg: StationConfig):
    if isinstance(cfg.conveyor, BenchConveyorConfig):
        return BenchTotes()
    if isinstance(cfg.conveyor, SerialConveyorConfig):
        from hardware.serial_conveyor import SerialConveyor

        return SerialConveyor(cfg.conveyor.url, lanes=max(cfg.lanes.values()) + 1, baudrate=cfg.conveyor.baudrate,
                              heartbeat_s=cfg.conveyor.heartbeat_s)
    if isinstance(cfg.conveyor, ModbusConveyorConfig):
        from hardware.modbus_conveyor import ModbusConveyor

        c = cfg.conveyor
        return ModbusConveyor(c.url, lanes=max(cfg.lanes.values()) + 1, baudrate=c.baudrate, slave=c.slave,
                              poll_s=c.poll_s, timeout_s=c.timeout_s)
    return SimulatedConveyor(lanes=max(cfg.lanes.values()) + 1)


def make_detector(cfg: StationConfig) -> OnnxYoloDetector:
    det = cfg.detector
    if isinstance(det, OnnxDetectorConfig):
        if cfg.models.registry or cfg.models.shadow:
            from station.learning import registry_detector

            registered = registry_detector(cfg)  # the registry's active version (and shadow), if any
            if registered is not None:
                return registered
        from models.openvino_yolo import make_engine_detector
        from vision.embedding import use_backbone_engine

        # type "onnx" | "openvino" | "auto" (OpenVINO where installed): one log line says which runs. The
        # backbone (identity, unseen damage) follows the detector's runtime; compiled blobs live in the data dir.
        precision = getattr(det, "precision", "f32")
        cache = cfg.station.data_dir / "cache" / "openvino"
        int8 = getattr(det, "int8", False)
        detector = make_engine_detector(det.type, det.model, det.confidence, det.iou, det.threads, det.input_size,
                                        precision=precision, cache_dir=cache, int8=int8)
        use_backbone_engine(detector.engine, precision, cache, threads=det.threads, int8=int8)
        return detector
    raise AssertionError(f"unhandled detector type {det!r}")


def make_comparer(cfg: StationConfig, catalogue: Catalogue):
    c = cfg.comparer
    if c.type == "basic":
        return BasicComparer(catalogue, c.identity_threshold, c.bench_grey)
    mm_per_px, intrinsics = calibrated_scale(cfg)
    from calibration.background import load_background

    background, why = load_background(cfg.station.data_dir, cfg.calibration.camera_id)
    if why:
        logging.getLogger(__name__).warning("background plate unusable, border segmentation: %s", why)
    return CatalogueComparer(catalogue, c.identity_threshold, c.bench_grey, difference=c.reference_difference,
                             mm_per_px=mm_per_px, intrinsics=intrinsics, retrieval=c.identity_retrieval,
                             unseen=make_unseen_damage(cfg, catalogue), background=background)


def make_scale(cfg: StationConfig):
    """The bench scale of ``[scale]``, or None (items are not weighed). Opens nothing: the port is opened on the
    first weighing, so a scale that is off at boot only makes the first items "scale unavailable"."""
    if cfg.scale is None:
        return None
    from hardware.scale import MtSicsScale

    s = cfg.scale
    return MtSicsScale(s.url, baudrate=s.baudrate, command_timeout_s=s.command_timeout_s,
                       stable_timeout_s=s.stable_timeout_s, min_load_g=s.min_load_g)


def make_unseen_damage(cfg: StationConfig, catalogue: Catalogue):
    """The per-SKU memory of good appearance (vision.unseen), or None when `comparer.unseen_damage` is off."""
    if not cfg.comparer.unseen_damage:
        return None
    from vision.unseen import UnseenDamage

    # Accepted-good returns are the station's own data: kept with its records, not in the catalogue.
    return UnseenDamage(catalogue, goods_dir=cfg.station.data_dir / "good_appearance")


def calibrated_scale(cfg: StationConfig):
    """(mm per pixel, intrinsics) from the stored scale and intrinsics profiles of ``calibration.camera_id``;
    (None, None) when there is no scale profile (no size check). A broken profile is logged, never fatal."""
    from calibration.intrinsics import Intrinsics
    from calibration.profiles import load_profile

    data_dir, cam = cfg.station.data_dir, cfg.calibration.camera_id
    try:
        scale = load_profile(data_dir, "scale", cam)
        if scale is None:
            return None, None
        intr = load_profile(data_dir, "intrinsics", cam)
        intrinsics = Intrinsics.from_json(intr["data"]) if intr is not None and scale["data"].get("undistorted") else None
        return float(scale["data"]["mm_per_px"]), intrinsics
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger(__name__).warning("scale profile for camera %s unusable, no size check: %s", cam, exc)
        return None, None


def calibration_warnings(cfg: StationConfig, camera=None) -> tuple[str, ...]:
    """The start-up check (calibration/startup.py): stale profiles, and bench lighting drift from one check
    frame when the camera is a live OpenCV one (a replay or synthetic camera is never consumed). Never raises."""
    from calibration.startup import startup_check

    c = cfg.calibration
    frame = None
    live = isinstance(camera, OpenCVCamera) and camera.live_source  # a video file would lose its first frame
    if c.check_frame_at_boot and live:
        try:
            frame = camera.capture("calibration_check").image
        except Exception as exc:  # noqa: BLE001 - a camera problem here must not stop the boot
            logging.getLogger(__name__).warning("no start-up check frame: %s", exc)
    try:
        check = startup_check(cfg.station.data_dir, c.camera_id, c.max_profile_age_days, frame,
                              level_tolerance=c.lighting_level_tolerance, balance_tolerance=c.white_balance_tolerance)
    except Exception as exc:  # noqa: BLE001 - the check is advice; boot goes on
        return (f"calibration check failed: {exc}",)
    for w in check.warnings:
        logging.getLogger(__name__).warning("calibration: %s", w)
    return check.warnings


@dataclass(slots=True)
class Station:
    config: StationConfig
    catalogue: Catalogue
    store: StationStore
    pipeline: InspectionPipeline
    camera: object
    conveyor: object
    sync: BackgroundSync | None = None  # running when [sync] url is set
    calibration_warnings: tuple[str, ...] = ()  # the start-up calibration check (stale profile, lighting drift)

    def close(self) -> None:
        if self.sync is not None:
            self.sync.stop()  # before the store closes; the outbox keeps whatever was not acknowledged
            self.sync = None
        getattr(self.pipeline.detector, "close", lambda: None)()  # a shadow model's worker (models/shadow.py)
        self.camera.close()
        self.conveyor.close()
        if self.pipeline.scale is not None:
            self.pipeline.scale.close()
        if self.pipeline.outbound is not None:
            self.pipeline.outbound.close()  # after a last round: a one-shot inspect prints its label
        self.store.close()


def boot(cfg: StationConfig, store_path: Path | None = None) -> Station:
    """Load catalogue, rules and model (each failing with a clear error), open the store, wire the pipeline."""
    catalogue = load_catalogue(cfg)
    rules = RulesEngine(RuleSet.load(cfg.rules.file))
    detector = make_detector(cfg)
    store = StationStore(store_path or cfg.database_path(),
                         min_free_bytes=int(cfg.records.min_free_mb * 1024 * 1024)).open()
    conveyor = make_conveyor(cfg)
    q = cfg.quality
    pipeline = InspectionPipeline(
        catalogue=catalogue,
        quality_gate=QualityGate(q.min_sharpness, q.min_mean, q.max_mean, q.max_clipped_share),
        detector=detector,
        comparer=make_comparer(cfg, catalogue),
        rules=rules,
        store=store,
        router=LaneRouter(dict(cfg.lanes), conveyor),
        station_id=cfg.station.id,
        scale=make_scale(cfg),
        review_when_unweighed=cfg.scale is not None and cfg.scale.review_when_unavailable,
        outbound=make_outbound(cfg, cfg.station.data_dir).start(),
        text_reader=TextReader(min_score=cfg.ocr.min_score, threads=cfg.ocr.threads), read_text=cfg.ocr.enabled,
    )
    station = Station(cfg, catalogue, store, pipeline, make_camera(cfg), conveyor)
    station.calibration_warnings = calibration_warnings(cfg, station.camera)
    station.sync = start_sync(cfg, store)  # last: nothing after it can fail and leave the thread running
    return station


def start_sync(cfg: StationConfig, store: StationStore) -> BackgroundSync | None:
    """Sync (and image retention by ``records.image_budget_mb``) on its own thread when ``sync.url`` is set;
    nothing otherwise. A missing token does not stop the station (it keeps inspecting offline): the problem is
    logged and kept as the sync state's last error, which `station sync status` and the dashboard show."""
    if not cfg.sync.url:
        return None
    try:
        settings = settings_from_config(cfg.sync)
    except SyncError as exc:
        logging.getLogger(__name__).warning("sync is off: %s", exc)
        try:
            store.set_state({"last_error": f"sync is off: {exc}"})
        except StoreError:
            pass
        return None
    budget = cfg.records.image_budget_mb
    return BackgroundSync(store.db_path, settings, image_dir=store.image_dir, key_path=store.key_path,
                          image_budget_bytes=None if budget is None else int(budget * 1024 * 1024),
                          min_free_bytes=store.min_free_bytes).start()
