"""Colour maths: sRGB to CIELAB (D50, Bradford-adapted, as catalogues publish) and CIEDE2000."""

from __future__ import annotations

import numpy as np

# sRGB (D65) -> XYZ, then Bradford D65 -> D50 (matrices from IEC 61966-2-1 and Lindbloom).
_SRGB_TO_XYZ_D65 = np.array([[0.4124564, 0.3575761, 0.1804375],
                             [0.2126729, 0.7151522, 0.0721750],
                             [0.0193339, 0.1191920, 0.9503041]])
_BRADFORD_D65_TO_D50 = np.array([[1.0478112, 0.0228866, -0.0501270],
                                 [0.0295424, 0.9904844, -0.0170491],
                                 [-0.0092345, 0.0150436, 0.7521316]])
_WHITE_D50 = np.array([0.96422, 1.0, 0.82521])


def srgb_to_linear(rgb01: np.ndarray) -> np.ndarray:
    return np.where(rgb01 <= 0.04045, rgb01 / 12.92, ((rgb01 + 0.055) / 1.055) ** 2.4)


_EPS, _KAPPA = 216 / 24389, 24389 / 27  # CIE's exact constants for the linear part of L*


def xyz_to_lab_d50(xyz: np.ndarray) -> np.ndarray:
    """XYZ (..., 3) relative to the D50 white (Y of white = 1) -> CIELAB D50 (..., 3) float64."""
    t = np.asarray(xyz, np.float64) / _WHITE_D50
    f = np.where(t > _EPS, np.cbrt(t), (_KAPPA * t + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_xyz_d50(lab: np.ndarray) -> np.ndarray:
    """CIELAB D50 (..., 3) -> XYZ (..., 3) relative to the D50 white."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    return np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE_D50


def bgr_to_lab_d50(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR pixels (..., 3) -> CIELAB D50 (..., 3) float64."""
    rgb = np.asarray(bgr, np.float64)[..., ::-1] / 255.0
    return xyz_to_lab_d50(srgb_to_linear(rgb) @ (_BRADFORD_D65_TO_D50 @ _SRGB_TO_XYZ_D65).T)


def delta_e_ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu, Dalal 2005), kL = kC = kH = 1, vectorised."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    cbar7 = ((c1 + c2) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(cbar7 / (cbar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dlp = l2 - l1
    dcp = c2p - c1p
    dhp = h2p - h1p
    dhp = np.where(dhp > 180, dhp - 360, dhp)
    dhp = np.where(dhp < -180, dhp + 360, dhp)
    dhp = np.where(c1p * c2p == 0, 0.0, dhp)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dhp) / 2)
    lbp = (l1 + l2) / 2
    cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2)
    hbp = np.where(c1p * c2p == 0, hsum, hbp)
    t = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    dtheta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    cbp7 = cbp**7
    rc = 2 * np.sqrt(cbp7 / (cbp7 + 25.0**7))
    sl = 1 + 0.015 * (lbp - 50) ** 2 / np.sqrt(20 + (lbp - 50) ** 2)
    sc = 1 + 0.045 * cbp
    sh = 1 + 0.015 * cbp * t
    rt = -np.sin(np.radians(2 * dtheta)) * rc
    return np.sqrt((dlp / sl) ** 2 + (dcp / sc) ** 2 + (dHp / sh) ** 2 + rt * (dcp / sc) * (dHp / sh))
