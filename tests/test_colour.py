"""Colour maths against published values and against colour-science."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from calibration.colour import bgr_to_lab_d50, delta_e_ciede2000, lab_to_xyz_d50, xyz_to_lab_d50

# Sharma, Wu, Dalal (2005), "The CIEDE2000 color-difference formula": test pairs 1-34 (Lab1, Lab2, ΔE00).
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_sharma_published_values():
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    expected = np.array([p[2] for p in SHARMA])
    np.testing.assert_allclose(delta_e_ciede2000(lab1, lab2), expected, atol=5e-5)


def test_ciede2000_agrees_with_colour_science():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    ours = delta_e_ciede2000(lab1, lab2)
    theirs = colour.delta_E(lab1, lab2, method="CIE 2000")
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_srgb_to_lab_d50_agrees_with_colour_science():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    rgb = bgr[:, ::-1] / 255.0
    d50 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D50"]
    xyz = colour.RGB_to_XYZ(rgb, colour.RGB_COLOURSPACES["sRGB"], illuminant=d50,
                            chromatic_adaptation_transform="Bradford", apply_cctf_decoding=True)
    theirs = colour.XYZ_to_Lab(xyz, d50)
    np.testing.assert_allclose(bgr_to_lab_d50(bgr), theirs, atol=0.05)


@pytest.mark.parametrize("bgr, lab", [((255, 255, 255), (100, 0, 0)), ((0, 0, 0), (0, 0, 0))])
def test_white_and_black(bgr, lab):
    np.testing.assert_allclose(bgr_to_lab_d50(np.array(bgr, np.uint8)), lab, atol=1e-3)


def test_lab_xyz_conversions_agree_with_colour_science_and_round_trip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour
    d50 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D50"]
    rng = np.random.default_rng(1)
    lab = np.column_stack([rng.uniform(0, 100, 200), rng.uniform(-80, 80, 200), rng.uniform(-80, 80, 200)])
    # Our white is the ICC D50 (0.96422, 1, 0.82521); colour-science derives it from xy: 1e-4 apart in Z.
    np.testing.assert_allclose(lab_to_xyz_d50(lab), colour.Lab_to_XYZ(lab, d50), rtol=3e-4, atol=1e-6)
    np.testing.assert_allclose(xyz_to_lab_d50(lab_to_xyz_d50(lab)), lab, atol=1e-9)
