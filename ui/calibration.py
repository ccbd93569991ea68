"""Calibration wizard (supervisors and admins): 1. colour chart, 2. quality check, 3. geometry.

1. Colour chart: a frame from the station's camera (the simulated camera cannot put a real chart on its bench,
   so it renders one under a shifted illuminant with calibration/chart.py) or an image file; the chart is
   detected and a correction fitted (calibration/chart.py); every patch's ΔE00 before and after is listed;
   the profile is saved with calibration/profiles.py (date and camera id).
2. Quality check: a frame through the quality gate the pipeline uses, the bench's grey level, and
   calibration/startup.py's check on it: every stored profile's age, and lighting drift (grey level and white
   balance) against the bench stored with the colour profile.

3. Geometry, from image files: lens intrinsics from several checkerboard views (calibration/intrinsics.py)
   and bench scale in mm per pixel from ArUco markers (calibration/scale.py, undistorted with the stored
   intrinsics profile when there is one); each saved as a profile, as `station calibrate intrinsics|scale`.

All work runs on the worker; saving calls station.users.require(CALIBRATE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView,
                             QLabel, QLineEdit, QPushButton, QScrollArea, QTableWidget, QTableWidgetItem,
                             QVBoxLayout, QWidget)

from station.users import Permission, require
from ui.context import StationContext
from ui.i18n import tr
from ui.images import thumbnail, to_qimage
from ui.widgets import ImageTile



@dataclass(frozen=True, slots=True)
class ColourResult:
    source: str  # camera | simulated | file
    preview: object  # QImage
    before: tuple[float, ...]  # ΔE00 per patch, 1..24
    after: tuple[float, ...]
    warnings: tuple[str, ...]
    profile: dict  # what is saved (calibrate_from_image(...).to_json() plus per-patch ΔE before)


@dataclass(frozen=True, slots=True)
class QualityResult:
    preview: object
    ok: bool
    sharpness: float
    mean: float
    clipped_share: float
    problems: tuple[str, ...]
    bench_grey: float
    profiles: dict  # kind -> {"present", "created_at", "age_days", "stale"} (calibration.startup)
    lighting: dict | None  # bench against the colour profile's, when the profile stores one
    level_drift: bool
    balance_drift: bool


def _frame_for_chart(station, rng_seed: int | None = None) -> tuple[np.ndarray, str]:
    """Worker thread: a frame that shows the chart. The simulated camera renders one (it has no real bench)."""
    if type(station.camera).__name__ == "SyntheticCamera":
        from calibration.chart import render_chart_scene

        rng = np.random.default_rng(rng_seed)
        w, h = station.camera.size
        img = render_chart_scene(rng, illuminant_gain_rgb=(1.12, 1.0, 0.82), exposure=0.9,
                                 size=(max(w, 640), max(h, 480)))
        return img, "simulated"
    return station.camera.capture("calibration").image, "camera"


def colour_step(image: np.ndarray, source: str, encoding: str, model: str) -> ColourResult:
    """Worker thread: detect the chart, fit the correction, ΔE00 of every patch before and after. A frame of
    the real bench (camera or file) also stores the bench around the chart, as `station calibrate colour
    --save` does: the lighting check compares later frames with it. A rendered chart has no real bench."""
    from calibration.chart import REFERENCE_LAB_D50, calibrate_from_image
    from calibration.colour import delta_e_ciede2000
    from calibration.startup import bench_reading

    result = calibrate_from_image(image, encoding, model)
    before = delta_e_ciede2000(result.measured_lab, REFERENCE_LAB_D50)
    after = delta_e_ciede2000(result.corrected_lab, REFERENCE_LAB_D50)
    profile = result.to_json()
    for patch, b in zip(profile["patches"], before):
        patch["delta_e00_before"] = round(float(b), 3)
    profile["source"] = source
    if source != "simulated":
        profile["bench_bgr"] = [round(float(v), 2) for v in bench_reading(image)]
    return ColourResult(source, to_qimage(thumbnail(image, 480)), tuple(map(float, before)),
                        tuple(map(float, after)), tuple(result.warnings), profile)


def quality_step(station, data_dir: Path, camera_id: str) -> QualityResult:
    """Worker thread: capture a frame (staging a catalogue item on the simulated bench), run the quality gate
    and the start-up calibration check (profile ages, lighting drift) on it."""
    from calibration.startup import bench_reading, startup_check
    from vision.camera import StagedItem

    cam = station.camera
    if hasattr(cam, "stage"):
        sku = sorted(station.catalogue.items)[0]
        cam.stage(StagedItem(sku, {}, 1))
    image = cam.capture("calibration").image
    verdict = station.pipeline.quality_gate.check(image)
    c = station.config.calibration
    check = startup_check(data_dir, camera_id, c.max_profile_age_days, image,
                          level_tolerance=c.lighting_level_tolerance, balance_tolerance=c.white_balance_tolerance)
    return QualityResult(to_qimage(thumbnail(image, 480)), verdict.ok, verdict.sharpness, verdict.mean,
                         verdict.clipped_share, verdict.problems, float(np.mean(bench_reading(image))),
                         check.profiles, check.lighting,
                         any("lighting drifted" in w for w in check.warnings),
                         any("white balance drifted" in w for w in check.warnings))


@dataclass(frozen=True, slots=True)
class GeometryResult:
    kind: str  # intrinsics | scale
    profile: dict  # what is saved (the calibration result's to_json(), as the CLI saves it)


def _read_images(paths: list[Path]) -> list[tuple[str, np.ndarray]]:
    import cv2

    out = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(tr("Cannot read the image {path}", path=str(path)))
        out.append((Path(path).name, img))
    return out


def intrinsics_step(paths: list[Path], board: str, square_mm: str) -> GeometryResult:
    """Worker thread: camera matrix and distortion from checkerboard views."""
    from calibration.intrinsics import calibrate_intrinsics, parse_board

    size, square = parse_board(board), float(square_mm)
    if square <= 0:
        raise ValueError(tr("The square side must be more than 0 mm"))
    return GeometryResult("intrinsics", calibrate_intrinsics(_read_images(paths), size, square).to_json())


def scale_step(path: Path, marker_mm: str, data_dir: Path, camera_id: str) -> GeometryResult:
    """Worker thread: mm per pixel on the bench from ArUco markers, undistorted with the stored intrinsics."""
    from calibration.intrinsics import Intrinsics
    from calibration.profiles import load_profile
    from calibration.scale import scale_from_aruco

    marker = float(marker_mm)
    prof = load_profile(data_dir, "intrinsics", camera_id)
    intrinsics = Intrinsics.from_json(prof["data"]) if prof is not None else None
    (_, img), = _read_images([path])
    return GeometryResult("scale", scale_from_aruco(img, marker, "4X4_50", intrinsics).to_json())


class CalibrationPage(QWidget):
    message = pyqtSignal(str)

    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("calibration")
        self.colour: ColourResult | None = None
        self.quality: QualityResult | None = None
        self.geometry: dict[str, GeometryResult] = {}
        self.geometry_saved: dict[str, Path] = {}
        self.saved_path: Path | None = None
        self.error_fn = None
        self._build()
        self.retranslate()

    def _build(self) -> None:
        self.title = QLabel()
        self.title.setObjectName("sectionTitle")
        # step 1
        self.colour_box = QGroupBox()
        self.capture_chart_button = QPushButton()
        self.capture_chart_button.clicked.connect(self.capture_chart)
        self.open_button = QPushButton()
        self.open_button.clicked.connect(self.open_chart_file)
        self.encoding_label, self.model_label, self.camera_label = QLabel(), QLabel(), QLabel()
        self.encoding = QComboBox()
        for code in ("srgb", "linear"):
            self.encoding.addItem("", code)
        self.model = QComboBox()
        for code in ("matrix", "rootpoly", "tone"):
            self.model.addItem("", code)
        self.camera_id = QLineEdit(self.ctx.config.calibration.camera_id)
        self.camera_id.setProperty("i18n_data", True)
        self.chart_tile = ImageTile(400, 300)
        self.colour_summary = QLabel()
        self.colour_summary.setWordWrap(True)
        self.patches = QTableWidget(0, 3)
        self.patches.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.patches.verticalHeader().setVisible(False)
        self.patches.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.patches.setMinimumHeight(260)
        self.save_button = QPushButton()
        self.save_button.clicked.connect(self.save_profile)
        self.saved_label = QLabel()
        self.saved_label.setWordWrap(True)
        self.saved_label.setProperty("i18n_data", True)  # a file path
        self.saved_title = QLabel()

        opts = QHBoxLayout()
        for label, w in ((self.encoding_label, self.encoding), (self.model_label, self.model),
                         (self.camera_label, self.camera_id)):
            opts.addWidget(label)
            opts.addWidget(w)
        opts.addStretch(1)
        srcs = QHBoxLayout()
        srcs.addWidget(self.capture_chart_button)
        srcs.addWidget(self.open_button)
        srcs.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.colour_summary)
        right.addWidget(self.patches, 1)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_button)
        save_row.addWidget(self.saved_title)
        save_row.addWidget(self.saved_label, 1)
        right.addLayout(save_row)
        body = QHBoxLayout()
        body.addWidget(self.chart_tile)
        body.addLayout(right, 1)
        c = QVBoxLayout(self.colour_box)
        c.addLayout(opts)
        c.addLayout(srcs)
        c.addLayout(body)

        # step 2
        self.quality_box = QGroupBox()
        self.capture_quality_button = QPushButton()
        self.capture_quality_button.clicked.connect(self.check_quality)
        self.quality_tile = ImageTile(400, 300)
        self.verdict = QLabel()
        self.verdict.setObjectName("prompt")
        self.quality_details = QLabel()
        self.quality_details.setWordWrap(True)
        qr = QVBoxLayout()
        qr.addWidget(self.capture_quality_button)
        qr.addWidget(self.verdict)
        qr.addWidget(self.quality_details, 1)
        q = QHBoxLayout(self.quality_box)
        q.addWidget(self.quality_tile)
        q.addLayout(qr, 1)

        # step 3
        self.geometry_box = QGroupBox()
        self.board_label, self.square_label, self.marker_label = QLabel(), QLabel(), QLabel()
        self.board = QLineEdit("9x6")
        self.square_mm = QLineEdit("25")
        self.marker_mm = QLineEdit("40")
        for w in (self.board, self.square_mm, self.marker_mm):
            w.setProperty("i18n_data", True)
            w.setMaximumWidth(120)
        self.intrinsics_button = QPushButton()
        self.intrinsics_button.clicked.connect(self.open_intrinsics_files)
        self.scale_button = QPushButton()
        self.scale_button.clicked.connect(self.open_scale_file)
        self.intrinsics_result, self.scale_result = QLabel(), QLabel()
        self.save_intrinsics_button, self.save_scale_button = QPushButton(), QPushButton()
        self.save_intrinsics_button.clicked.connect(lambda: self.save_geometry("intrinsics"))
        self.save_scale_button.clicked.connect(lambda: self.save_geometry("scale"))
        g = QVBoxLayout(self.geometry_box)
        for widgets in ((self.board_label, self.board, self.square_label, self.square_mm, self.intrinsics_button),
                        (self.intrinsics_result, self.save_intrinsics_button),
                        (self.marker_label, self.marker_mm, self.scale_button),
                        (self.scale_result, self.save_scale_button)):
            row = QHBoxLayout()
            for w in widgets:
                row.addWidget(w)
            row.addStretch(1)
            g.addLayout(row)

        self.error = QLabel()
        self.error.setProperty("state", "bad")
        self.error.setWordWrap(True)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.addWidget(self.title)
        lay.addWidget(self.error)
        lay.addWidget(self.colour_box)
        lay.addWidget(self.quality_box)
        lay.addWidget(self.geometry_box)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.addWidget(scroll)

    # ----------------------------------------------------------------------------------------- view
    def retranslate(self) -> None:
        self.title.setText(tr("Calibration"))
        self.colour_box.setTitle(tr("Step 1: colour chart (ColorChecker Classic, 24 patches)"))
        simulated = self.ctx.simulated
        self.capture_chart_button.setText(tr("Render a chart (simulated camera)") if simulated
                                          else tr("Capture the chart from the camera"))
        self.open_button.setText(tr("Open an image file..."))
        self.encoding_label.setText(tr("Camera delivers"))
        self.encoding.setItemText(0, tr("sRGB frames"))
        self.encoding.setItemText(1, tr("Linear frames"))
        self.model_label.setText(tr("Correction"))
        self.model.setItemText(0, tr("3x3 matrix"))
        self.model.setItemText(1, tr("Root-polynomial"))
        self.model.setItemText(2, tr("Tone curve + 3x3 matrix"))
        self.camera_label.setText(tr("Camera id"))
        self.chart_tile.title.setText(tr("Chart frame"))
        self.patches.setHorizontalHeaderLabels([tr("Patch"), tr("ΔE00 before"), tr("ΔE00 after")])
        self.save_button.setText(tr("Save the profile"))
        self.saved_title.setText(tr("Saved to:") if self.saved_path else "")
        self.quality_box.setTitle(tr("Step 2: quality check (lighting, focus, bench grey)"))
        self.capture_quality_button.setText(tr("Capture a frame and check it"))
        self.quality_tile.title.setText(tr("Bench frame"))
        self.geometry_box.setTitle(tr("Step 3: geometry from image files (lens intrinsics, bench scale)"))
        self.board_label.setText(tr("Checkerboard inner corners"))
        self.square_label.setText(tr("Square side (mm)"))
        self.intrinsics_button.setText(tr("Intrinsics: open checkerboard views..."))
        self.marker_label.setText(tr("ArUco marker side (mm)"))
        self.scale_button.setText(tr("Scale: open a bench image with ArUco markers..."))
        self.save_intrinsics_button.setText(tr("Save the intrinsics profile"))
        self.save_scale_button.setText(tr("Save the scale profile"))
        self.error.setText(self.error_fn() if self.error_fn else "")
        self.error.setVisible(self.error_fn is not None)
        self._render_colour()
        self._render_quality()
        self._render_geometry()

    def _render_geometry(self) -> None:
        intr, scale = self.geometry.get("intrinsics"), self.geometry.get("scale")
        saved = {k: " · " + tr("saved") for k in self.geometry_saved}
        self.intrinsics_result.setText(
            tr("Intrinsics: RMS reprojection {rms:.3f} px from {n} of {m} views; fx={fx:.1f}, fy={fy:.1f}",
               rms=intr.profile["rms_reprojection_px"], n=intr.profile["views_used"],
               m=len(intr.profile["per_image"]), fx=intr.profile["fx"], fy=intr.profile["fy"])
            + saved.get("intrinsics", "") if intr else tr("Intrinsics: not measured"))
        if intr and intr.profile.get("warnings"):
            self.intrinsics_result.setText(self.intrinsics_result.text() + "\n" + tr(
                "Warning: the board stayed near the image centre ({coverage:.0%} of the way to the corners), so "
                "distortion near the edges is extrapolated. Add views with the board near each image corner.",
                coverage=intr.profile["coverage"]))
        self.scale_result.setText(
            tr("Scale: {mm:.4f} mm per pixel from {n} marker(s)", mm=scale.profile["mm_per_px"],
               n=len(scale.profile["references"]))
            + (" · " + tr("undistorted with the intrinsics profile") if scale.profile["undistorted"] else "")
            + saved.get("scale", "") if scale else tr("Scale: not measured"))
        self.save_intrinsics_button.setEnabled(intr is not None)
        self.save_scale_button.setEnabled(scale is not None)

    def _render_colour(self) -> None:
        r = self.colour
        self.save_button.setEnabled(r is not None)
        self.saved_label.setText(str(self.saved_path) if self.saved_path else "")
        if r is None:
            self.colour_summary.setText(tr("Capture or open a frame that shows the whole chart."))
            self.patches.setRowCount(0)
            self.chart_tile.set_caption("")
            return
        self.chart_tile.set_image(r.preview)
        self.chart_tile.set_caption({"simulated": tr("Rendered chart (simulated camera)"),
                                     "camera": tr("From the station's camera"), "file": tr("From a file")}[r.source])
        lines = [tr("Mean ΔE00 {before:.2f} before, {after:.2f} after correction; worst patch after {worst:.2f}",
                    before=float(np.mean(r.before)), after=float(np.mean(r.after)), worst=max(r.after))]
        for w in r.warnings:
            lines.append(tr("Warning: the neutral row does not fit the chosen frame encoding; check "
                            "\"Camera delivers\"") if "neutral row" in w else w)
        self.colour_summary.setText("\n".join(lines))
        self.patches.setRowCount(24)
        for i in range(24):
            for col, text in enumerate((str(i + 1), f"{r.before[i]:.2f}", f"{r.after[i]:.2f}")):
                self.patches.setItem(i, col, QTableWidgetItem(text))

    def _render_quality(self) -> None:
        r = self.quality
        if r is None:
            self.verdict.setText(tr("No frame checked yet"))
            self.verdict.setProperty("state", "")
            self.quality_details.setText("")
        else:
            self.quality_tile.set_image(r.preview)
            self.verdict.setText(tr("Quality gate: OK") if r.ok else tr("Quality gate: retake"))
            self.verdict.setProperty("state", "ok" if r.ok else "bad")
            lines = [tr("Sharpness {s:.0f} · brightness {m:.0f} · glare {g:.1%}", s=r.sharpness, m=r.mean,
                        g=r.clipped_share)]
            lines += [tr("Problem: {p}", p=_problem(p)) for p in r.problems]
            lines.append(tr("Bench grey {grey:.0f}", grey=r.bench_grey))
            light = r.lighting
            if light is None:
                lines.append(tr("No lighting reference: save a colour profile from a frame of this bench"))
            else:
                ref = float(np.mean(light["reference_bgr"]))
                lines.append(tr("At colour calibration: bench grey {ref:.0f} (now {change:+.0%})", ref=ref,
                                change=light["level_change"]))
                if r.level_drift:
                    lines.append(tr("Lighting drift: the bench is {change:+.0%} brighter or darker than at colour "
                                    "calibration; check the lights or recalibrate colour",
                                    change=light["level_change"]))
                if r.balance_drift:
                    wb = light["white_balance_change"]
                    lines.append(tr("White balance drift: blue/green {b:+.0%}, red/green {r:+.0%}; a lamp changed "
                                    "or daylight reaches the bench: recalibrate colour", b=wb["b_over_g"],
                                    r=wb["r_over_g"]))
            for kind, label in (("colour", "Colour profile"), ("intrinsics", "Intrinsics profile"),
                                ("scale", "Scale profile")):
                prof = r.profiles.get(kind) or {}
                if not prof.get("present"):
                    lines.append(tr("{profile}: none stored", profile=tr(label)))
                elif prof.get("created_at") is None:
                    lines.append(tr("{profile}: no valid date, recalibrate", profile=tr(label)))
                else:
                    lines.append(tr("{profile}: {date}, {days:.0f} days old", profile=tr(label),
                                    date=prof["created_at"][:10], days=prof["age_days"]) +
                                 (" · " + tr("stale: recalibrate") if prof.get("stale") else ""))
            self.quality_details.setText("\n".join(lines))
        self.verdict.style().unpolish(self.verdict)
        self.verdict.style().polish(self.verdict)

    def _failed(self, exc: Exception) -> None:
        from calibration.chart import ChartError

        if isinstance(exc, ChartError):
            self.error_fn = lambda: tr("No colour chart found: the whole chart must be flat in the frame and fill "
                                       "at least 2 % of it, on a lighter background")
        else:
            self.error_fn = lambda e=str(exc): e
        self.retranslate()
        self.message.emit(str(exc))

    # ----------------------------------------------------------------------------------------- work
    def _run_colour(self, get_image) -> None:
        if self.ctx.station is None:
            return
        encoding, model = self.encoding.currentData(), self.model.currentData()

        def work():
            image, source = get_image()
            return colour_step(image, source, encoding, model)

        def done(result):
            self.colour, self.saved_path, self.error_fn = result, None, None
            self.retranslate()

        self.ctx.jobs.submit(work, done, self._failed)

    def capture_chart(self) -> None:
        ctx = self.ctx
        self._run_colour(lambda: _frame_for_chart(ctx.station))

    def open_chart_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Open a frame that shows the colour chart"), "",
                                              tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"))
        if path:
            self.load_chart_file(Path(path))

    def load_chart_file(self, path: Path) -> None:
        def read():
            import cv2

            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(tr("Cannot read the image {path}", path=str(path)))
            return img, "file"

        self._run_colour(read)

    def save_profile(self) -> None:
        r, ctx, user = self.colour, self.ctx, self.ctx.user
        camera_id = self.camera_id.text().strip() or "cam0"
        if r is None:
            return

        def work():
            from calibration.profiles import save_profile

            require(user, Permission.CALIBRATE, "save a calibration profile")
            return save_profile(ctx.config.station.data_dir, "colour", camera_id, r.profile)

        def done(path):
            self.saved_path = path
            self.retranslate()
            self.message.emit(tr("Colour profile saved to {path}", path=str(path)))

        self.ctx.jobs.submit(work, done, self._failed)

    def open_intrinsics_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, tr("Open checkerboard views (several poses)"), "",
                                                tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"))
        if paths:
            self.load_intrinsics_files([Path(p) for p in paths])

    def load_intrinsics_files(self, paths: list[Path]) -> None:
        board, square = self.board.text().strip(), self.square_mm.text().strip()
        self._run_geometry(lambda: intrinsics_step(paths, board, square))

    def open_scale_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Open a bench image with ArUco markers"), "",
                                              tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"))
        if path:
            self.load_scale_file(Path(path))

    def load_scale_file(self, path: Path) -> None:
        marker, ctx = self.marker_mm.text().strip(), self.ctx
        camera_id = self.camera_id.text().strip() or ctx.config.calibration.camera_id
        self._run_geometry(lambda: scale_step(path, marker, ctx.config.station.data_dir, camera_id))

    def _run_geometry(self, work) -> None:
        def done(result: GeometryResult):
            self.geometry[result.kind] = result
            self.geometry_saved.pop(result.kind, None)
            self.error_fn = None
            self.retranslate()

        self.ctx.jobs.submit(work, done, self._failed)

    def save_geometry(self, kind: str) -> None:
        r, ctx, user = self.geometry.get(kind), self.ctx, self.ctx.user
        camera_id = self.camera_id.text().strip() or ctx.config.calibration.camera_id
        if r is None:
            return

        def work():
            from calibration.profiles import save_profile

            require(user, Permission.CALIBRATE, f"save a calibration profile ({kind})")
            return save_profile(ctx.config.station.data_dir, kind, camera_id, dict(r.profile, camera_id=camera_id))

        def done(path):
            self.geometry_saved[kind] = path
            self.retranslate()
            self.message.emit(tr("Profile saved to {path}", path=str(path)))

        self.ctx.jobs.submit(work, done, self._failed)

    def check_quality(self) -> None:
        if self.ctx.station is None:
            return
        ctx, user = self.ctx, self.ctx.user
        camera_id = self.camera_id.text().strip() or "cam0"

        def work():
            require(user, Permission.CALIBRATE, "run the calibration quality check")
            return quality_step(ctx.station, ctx.config.station.data_dir, camera_id)

        def done(result):
            self.quality, self.error_fn = result, None
            self.retranslate()

        self.ctx.jobs.submit(work, done, self._failed)


def _problem(problem: str) -> str:
    """The quality gate's problem in the current language (its first word names it)."""
    for key, text in (("blurred", "blurred: hold still, refocus"), ("under-exposed", "under-exposed: add light"),
                      ("over-exposed", "over-exposed: reduce exposure"), ("glare", "glare: tilt the item or the light")):
        if problem.startswith(key):
            return tr(text)
    return problem
