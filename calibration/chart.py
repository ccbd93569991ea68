"""ColorChecker Classic: synthetic rendering, detection in a frame, and a colour correction fitted to it.

Patches are numbered as on the X-Rite chart: 1 = dark skin, row-major, 24 = black. Reference values are
the published CIELAB (D50) of 'ColorChecker24 - After November 2014' (tests check them against
colour-science). The correction maps the camera's linear RGB to the reference linear sRGB (D65
primaries, Bradford-adapted from D50): a 3x3 matrix, a 2nd-degree root-polynomial (exposure-invariant,
Finlayson et al. 2015), or "tone": a per-channel exponent then a 3x3 matrix (a JPEG's tone curve is not
sRGB's). Every model is fitted to the least CIELAB error (linear least squares to start). A camera profile
says whether frames are sRGB-encoded or linear; the neutral row (patches 19-24) exposes an obviously wrong
setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.colour import (_BRADFORD_D65_TO_D50, _SRGB_TO_XYZ_D65, delta_e_ciede2000, lab_to_xyz_d50,
                                srgb_to_linear, xyz_to_lab_d50)

REFERENCE_LAB_D50 = np.array([
    [37.54, 14.37, 14.92], [64.66, 19.27, 17.50], [49.32, -3.82, -22.54], [43.46, -12.74, 22.72],
    [54.94, 9.61, -24.79], [70.48, -32.26, -0.37], [62.73, 35.83, 56.50], [39.43, 10.75, -45.17],
    [50.57, 48.64, 16.67], [30.10, 22.54, -20.87], [71.77, -24.13, 58.19], [71.51, 18.24, 67.37],
    [28.37, 15.42, -49.80], [54.38, -39.72, 32.27], [42.43, 51.05, 28.62], [81.80, 2.67, 80.41],
    [50.63, 51.28, -14.12], [49.57, -29.71, -28.32], [95.19, -1.03, 2.93], [81.29, -0.57, 0.44],
    [66.89, -0.75, -0.06], [50.76, -0.13, 0.14], [35.63, -0.46, -0.48], [20.64, 0.07, -0.46],
])
ROWS, COLS = 4, 6
# Layout of the chart (ColorChecker Classic proportions, in patch units): patch 1, gap 0.2, border 0.4.
PATCH, GAP, BORDER = 60, 12, 24
_RGB_TO_XYZ_D50 = _BRADFORD_D65_TO_D50 @ _SRGB_TO_XYZ_D65


class ChartError(ValueError):
    """No usable chart in the frame; the message says what to fix."""


def linear_rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    return xyz_to_lab_d50(np.maximum(np.asarray(rgb, np.float64) @ _RGB_TO_XYZ_D50.T, 0))


def reference_linear_rgb() -> np.ndarray:
    return lab_to_xyz_d50(REFERENCE_LAB_D50) @ np.linalg.inv(_RGB_TO_XYZ_D50).T


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


# ------------------------------------------------------------------------------------------- render


def render_chart_scene(rng: np.random.Generator, illuminant_gain_rgb=(1.0, 1.0, 1.0), exposure: float = 1.0,
                       crosstalk: float = 0.0, encoding: str = "srgb", size=(800, 600), noise: float = 1.0,
                       perspective: float = 0.04) -> np.ndarray:
    """A chart on a grey bench under a shifted illuminant (per-channel gains in linear light, optional
    channel crosstalk) and exposure, seen with a little perspective; BGR uint8, sRGB-encoded or linear."""
    w, h = size
    patch, gap, border = PATCH, GAP, BORDER
    cw, ch = COLS * patch + (COLS + 1) * gap + 2 * border, ROWS * patch + (ROWS + 1) * gap + 2 * border
    lin = reference_linear_rgb()
    mix = np.eye(3) * (1 - crosstalk) + crosstalk / 3
    cam = np.clip((lin @ mix.T) * np.asarray(illuminant_gain_rgb) * exposure, 0, 1)
    bench = np.clip(np.array([0.3, 0.3, 0.3]) @ mix.T * np.asarray(illuminant_gain_rgb) * exposure, 0, 1)
    frame_lin = np.full((ch, cw, 3), 0.012 * exposure)  # the chart's black surround
    for i in range(24):
        r, c = divmod(i, COLS)
        y0, x0 = border + gap + r * (patch + gap), border + gap + c * (patch + gap)
        frame_lin[y0:y0 + patch, x0:x0 + patch] = cam[i]
    enc = (lambda x: linear_to_srgb(x)) if encoding == "srgb" else (lambda x: np.clip(x, 0, 1))
    chart = (enc(frame_lin)[..., ::-1] * 255).astype(np.float32)
    scene = np.empty((h, w, 3), np.float32)
    scene[:] = enc(bench)[::-1] * 255
    src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
    ox, oy = (w - cw) / 2, (h - ch) / 2
    dst = src + np.float32([ox, oy]) + rng.uniform(-perspective, perspective, (4, 2)).astype(np.float32) * np.float32([cw, ch])
    M = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(chart, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=(-1, -1, -1))
    inside = warped[..., 0] >= 0
    scene[inside] = warped[inside]
    scene += rng.normal(0, noise, scene.shape)
    return np.clip(scene + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- detect


def _order_corners(pts: np.ndarray) -> np.ndarray:
    s, d = pts.sum(1), np.diff(pts, axis=1).ravel()
    return np.float32([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])


MCC_SIDES = (1200, 2000)  # px, long side the photo is scaled to for OpenCV's detector (it misses small charts)


def detect_chart_mcc(image: np.ndarray) -> np.ndarray | None:
    """(24, 3) mean BGR of the patches found by OpenCV contrib's ColorChecker detector (``cv2.mcc``, MCC24),
    in chart order, or None when it finds no chart. It is tried at a few scales: on a large photo a chart that
    fills a small part of the frame is found only when the photo is not shrunk too far."""
    if not hasattr(cv2, "mcc") or image.ndim != 3:
        return None
    h, w = image.shape[:2]
    for side in MCC_SIDES:
        scale = min(1.0, side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        detector = cv2.mcc.CCheckerDetector.create()
        if detector.process(small, 1):
            charts = detector.getBestColorChecker().getChartsRGB()  # rows: patch x (R, G, B); col 1: mean
            rgb = np.asarray(charts, np.float64)[:, 1].reshape(24, 3)
            return rgb[:, ::-1].copy()
        if scale == 1.0:
            break
    return None


def detect_chart(image: np.ndarray) -> np.ndarray:
    """(24, 3) mean BGR of the patches' central areas, numbered 1..24 as on the chart (index 0 = patch 1).

    OpenCV's ColorChecker detector (``cv2.mcc``) first; where it finds nothing, the outline method below.

    The chart is the largest dark quadrilateral; it is rectified to its 6x4 grid, and of the two
    orientations of a landscape chart the one whose bottom row is neutral and gets darker to the right
    is kept (a portrait chart is turned first)."""
    found = detect_chart_mcc(image)
    if found is not None:
        return found
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    _, dark = cv2.threshold(cv2.GaussianBlur(grey, (5, 5), 0), 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    contours, _ = cv2.findContours(dark, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    quads = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:5]:
        if cv2.contourArea(c) < 0.02 * grey.size:
            break
        approx = cv2.approxPolyDP(c, 0.03 * cv2.arcLength(c, True), True)
        if len(approx) == 4:
            quads.append(approx.reshape(4, 2).astype(np.float32))
    if not quads:
        raise ChartError("no colour chart found: the ColorChecker must be whole, flat and fill at least 2 % of "
                         "the frame, on a lighter background")
    tl, tr, br, bl = _order_corners(quads[0])
    if np.linalg.norm(tr - tl) < np.linalg.norm(bl - tl):  # portrait: turn so the long side is horizontal
        tl, tr, br, bl = bl, tl, tr, br
    W = COLS * PATCH + (COLS + 1) * GAP + 2 * BORDER
    H = ROWS * PATCH + (ROWS + 1) * GAP + 2 * BORDER
    M = cv2.getPerspectiveTransform(np.float32([tl, tr, br, bl]), np.float32([[0, 0], [W, 0], [W, H], [0, H]]))
    rect = cv2.warpPerspective(image, M, (W, H)).astype(np.float32)
    cells = np.zeros((ROWS, COLS, 3))
    q = PATCH // 4  # sample the central half of each patch
    for r in range(ROWS):
        for c in range(COLS):
            y0 = BORDER + GAP + r * (PATCH + GAP) + q
            x0 = BORDER + GAP + c * (PATCH + GAP) + q
            cells[r, c] = rect[y0:y0 + 2 * q, x0:x0 + 2 * q].reshape(-1, 3).mean(0)

    def neutral_score(g):
        row = g[-1]
        chroma = np.abs(row - row.mean(1, keepdims=True)).mean()
        return chroma - 0.5 * float(np.all(np.diff(row.mean(1)) < 0))

    flipped = cells[::-1, ::-1]
    cells = cells if neutral_score(cells) <= neutral_score(flipped) else flipped
    return cells.reshape(24, 3)


# ------------------------------------------------------------------------------------------- fit


MODELS = ("matrix", "rootpoly", "tone")  # tone: a per-channel exponent, then a 3x3 matrix


def _terms(rgb: np.ndarray, model: str) -> np.ndarray:
    if model in ("matrix", "tone"):
        return rgb
    r, g, b = np.maximum(rgb, 0).T
    return np.stack([r, g, b, np.sqrt(r * g), np.sqrt(g * b), np.sqrt(r * b)], 1)


@dataclass(frozen=True, slots=True)
class ColourCorrection:
    model: str
    coefficients: np.ndarray  # (terms, 3)
    encoding: str  # how frames are decoded: srgb or linear
    # Per-channel exponents applied to the decoded linear RGB first ("tone" model; 1 otherwise): a phone or
    # DSLR JPEG's tone curve is not the sRGB curve, and a matrix alone cannot bend a tone curve.
    exponents: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def apply_linear(self, rgb_lin: np.ndarray) -> np.ndarray:
        shape = rgb_lin.shape
        flat = rgb_lin.reshape(-1, 3)
        if self.exponents != (1.0, 1.0, 1.0):
            flat = np.maximum(flat, 1e-6) ** np.asarray(self.exponents)
        return (_terms(flat, self.model) @ self.coefficients).reshape(shape)

    def apply_bgr(self, bgr: np.ndarray) -> np.ndarray:
        lin = decode(bgr[..., ::-1].astype(np.float64) / 255.0, self.encoding)
        out = linear_to_srgb(self.apply_linear(lin))
        return np.clip(out[..., ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)

    def to_json(self) -> dict:
        out = {"model": self.model, "encoding": self.encoding, "coefficients": np.round(self.coefficients, 6).tolist()}
        if self.model == "tone":
            out["exponents"] = [round(float(v), 6) for v in self.exponents]
        return out


def decode(rgb01: np.ndarray, encoding: str) -> np.ndarray:
    return srgb_to_linear(rgb01) if encoding == "srgb" else rgb01


def _levenberg_marquardt(residuals, x0: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Minimise |residuals(x)|^2 from x0 (numeric Jacobian; only steps that lower the cost are taken, so the
    result is never worse than x0). Small problems only: a dozen parameters, 72 residuals."""
    x, lam = np.asarray(x0, np.float64).copy(), 1e-3
    r = residuals(x)
    cost = float(r @ r)
    for _ in range(iterations):
        jac = np.empty((r.size, x.size))
        for k in range(x.size):
            dx = np.zeros_like(x)
            dx[k] = 1e-6
            jac[:, k] = (residuals(x + dx) - r) / 1e-6
        a, g = jac.T @ jac, jac.T @ r
        while True:
            try:
                step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-9), -g)
            except np.linalg.LinAlgError:
                return x
            r_new = residuals(x + step)
            c_new = float(r_new @ r_new)
            if np.isfinite(c_new) and c_new < cost:
                improved = cost - c_new
                x, r, cost, lam = x + step, r_new, c_new, lam / 3
                break
            lam *= 5
            if lam > 1e8:
                return x
        if improved < 1e-9 * max(cost, 1e-12):
            break
    return x


def fit_correction(measured_lin: np.ndarray, model: str = "matrix", encoding: str = "srgb",
                   keep: np.ndarray | None = None) -> ColourCorrection:
    """Least squares in linear RGB to start, then refined to the least CIELAB error on the patches in ``keep``
    (default: all 24). Linear-RGB least squares weighs the light patches and lets the dark ones drift by
    several ΔE00; what a correction is judged by is the perceptual error, so that is what it minimises."""
    if model not in MODELS:
        raise ValueError(f"unknown correction model {model!r}: use one of {', '.join(MODELS)}")
    keep = np.ones(len(measured_lin), bool) if keep is None else np.asarray(keep, bool)
    target_lin, target_lab = reference_linear_rgb()[keep], REFERENCE_LAB_D50[keep]
    measured = np.asarray(measured_lin, np.float64)[keep]
    coef, *_ = np.linalg.lstsq(_terms(measured, model), target_lin, rcond=None)
    shape = coef.shape
    if model == "tone":
        def residuals(x):
            corr = ColourCorrection(model, x[3:].reshape(shape), encoding, tuple(np.exp(x[:3])))
            return (linear_rgb_to_lab(corr.apply_linear(measured)) - target_lab).ravel()

        x = _levenberg_marquardt(residuals, np.r_[np.zeros(3), coef.ravel()])
        exps = tuple(float(v) for v in np.exp(x[:3]))
        return ColourCorrection(model, x[3:].reshape(shape), encoding, exps)
    terms = _terms(measured, model)
    x = _levenberg_marquardt(lambda c: (linear_rgb_to_lab(terms @ c.reshape(shape)) - target_lab).ravel(),
                             coef.ravel())
    return ColourCorrection(model, x.reshape(shape), encoding)


def encoding_check(measured_lin_neutral: np.ndarray) -> tuple[float, str | None]:
    """Slope of log(measured Y) against log(reference Y) on the neutral row: about 1 when the profile is
    right, about 0.45 when sRGB frames are treated as linear, about 2.2 the other way round."""
    ref_y = (reference_linear_rgb()[18:24] @ _RGB_TO_XYZ_D50.T)[:, 1]
    y = np.maximum(measured_lin_neutral @ _RGB_TO_XYZ_D50.T, 1e-5)[:, 1]
    slope = float(np.polyfit(np.log(ref_y), np.log(y), 1)[0])
    if slope < 0.7:
        return slope, "the neutral row is far too flat for linear data: the camera delivers sRGB-encoded frames; set the profile to srgb"
    if slope > 1.45:
        return slope, "the neutral row is far too steep for sRGB data: the camera delivers linear frames; set the profile to linear"
    return slope, None


@dataclass(frozen=True, slots=True)
class ChartCalibration:
    measured_lab: np.ndarray
    corrected_lab: np.ndarray
    correction: ColourCorrection
    gamma_slope: float
    warnings: tuple[str, ...]

    def to_json(self) -> dict:
        before = delta_e_ciede2000(self.measured_lab, REFERENCE_LAB_D50)
        after = delta_e_ciede2000(self.corrected_lab, REFERENCE_LAB_D50)
        return {
            "patches": [{"index": i + 1, "lab_measured": [round(float(v), 2) for v in self.measured_lab[i]],
                         "lab_corrected": [round(float(v), 2) for v in self.corrected_lab[i]],
                         "lab_reference": [round(float(v), 2) for v in REFERENCE_LAB_D50[i]],
                         "delta_e00_after": round(float(after[i]), 3)} for i in range(24)],
            "mean_delta_e00_before": round(float(before.mean()), 3),
            "mean_delta_e00_after": round(float(after.mean()), 3),
            "max_delta_e00_after": round(float(after.max()), 3),
            "neutral_row_gamma_slope": round(self.gamma_slope, 3),
            "warnings": list(self.warnings),
            "correction": self.correction.to_json(),
        }


def calibrate_from_image(image: np.ndarray, encoding: str = "srgb", model: str = "matrix") -> ChartCalibration:
    bgr = detect_chart(image)
    lin = decode(bgr[:, ::-1] / 255.0, encoding)
    slope, warning = encoding_check(lin[18:24])
    corr = fit_correction(lin, model, encoding)
    corrected = linear_rgb_to_lab(corr.apply_linear(lin))
    residual = float(delta_e_ciede2000(corrected, REFERENCE_LAB_D50).mean())
    if residual > MAX_FIT_DELTA_E00 and warning is not None:
        # A real chart decoded with the wrong profile fits badly too: it is a chart when the other profile
        # fits it (and the warning says which to set).
        other = "linear" if encoding == "srgb" else "srgb"
        lin_other = decode(bgr[:, ::-1] / 255.0, other)
        fit_other = linear_rgb_to_lab(fit_correction(lin_other, model, other).apply_linear(lin_other))
        residual = min(residual, float(delta_e_ciede2000(fit_other, REFERENCE_LAB_D50).mean()))
    if residual > MAX_FIT_DELTA_E00:
        # Even the best correction cannot map these 24 samples onto the chart: they are not its patches.
        raise ChartError(f"no colour chart found (the best fit leaves mean ΔE00 {residual:.1f}): put the whole "
                         f"ColorChecker Classic in view, frontal and evenly lit, and retake")
    return ChartCalibration(linear_rgb_to_lab(lin), corrected, corr, slope, (warning,) if warning else ())


MAX_FIT_DELTA_E00 = 10.0  # a real chart fits to a few ΔE00; 24 samples of something else stay far off
