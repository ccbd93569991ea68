"""Boot: turn a StationConfig into a running station. Short on purpose; each backend lives in its package."""

from __future__ import annotations

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
from station.pipeline import InspectionPipeline, LaneRouter
from station.records import StationStore
from station.rules import RuleSet, RulesEngine
from vision.camera import FolderCamera, OpenCVCamera, SyntheticCamera
from vision.catalogue import Catalogue, build_sample_catalogue
from vision.compare import BasicComparer, CatalogueComparer
from vision.quality import QualityGate


def load_catalogue(cfg: StationConfig) -> Catalogue:
    if cfg.catalogue.path is not None:
        return Catalogue.load(cfg.catalogue.path)
    return build_sample_catalogue(cfg.station.data_dir / "sample_catalogue")


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
        return OnnxYoloDetector(det.model, det.confidence, det.iou, det.threads).load()
    raise AssertionError(f"unhandled detector type {det!r}")


def make_comparer(cfg: StationConfig, catalogue: Catalogue):
    c = cfg.comparer
    if c.type == "basic":
        return BasicComparer(catalogue, c.identity_threshold, c.bench_grey)
    return CatalogueComparer(catalogue, c.identity_threshold, c.bench_grey, difference=c.reference_difference)


@dataclass(slots=True)
class Station:
    config: StationConfig
    catalogue: Catalogue
    store: StationStore
    pipeline: InspectionPipeline
    camera: object
    conveyor: object

    def close(self) -> None:
        self.camera.close()
        self.conveyor.close()
        self.store.close()


def boot(cfg: StationConfig, store_path: Path | None = None) -> Station:
    """Load catalogue, rules and model (each failing with a clear error), open the store, wire the pipeline."""
    catalogue = load_catalogue(cfg)
    rules = RulesEngine(RuleSet.load(cfg.rules.file))
    detector = make_detector(cfg)
    store = StationStore(store_path or cfg.database_path()).open()
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
    )
    return Station(cfg, catalogue, store, pipeline, make_camera(cfg), conveyor)
