"""`station compare`, `station calibrate colour|intrinsics|scale|background|check` and `station bench vision`.

Contracts (issue 5): JSON on stdout; exit 0 when it compared / calibrated, 2 with one clear message on
bad input (missing or unreadable image, unknown SKU, no chart found).
No `from __future__ import annotations` here: typer must see the option types of the nested commands.
"""

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli.common import BadInput, ConfigOpt, DataDirOpt, fail, read_image, station_config


def _read_image(path: Path, fail, what: str = "image"):
    try:
        return read_image(path, what)
    except BadInput as exc:
        fail(str(exc))


def _report(out: dict, json_out: bool, lines: list[str]) -> None:
    """A calibration result: the JSON object, or the summary lines followed by its warnings."""
    if json_out:
        typer.echo(json.dumps(out))
        return
    for line in lines:
        typer.echo(line)
    if out.get("saved_to"):
        typer.echo(f"saved to {out['saved_to']}")
    for warning in out["warnings"]:
        typer.echo(f"warning: {warning}")


app = typer.Typer()
bench_app = typer.Typer()


calibrate_app = typer.Typer(no_args_is_help=True, help="Camera calibrations: colour, intrinsics, scale.")
app.add_typer(calibrate_app, name="calibrate")

@app.command()
def compare(
    image: Annotated[Path, typer.Argument(help="returned item's view (PNG/JPEG)")],
    sku: Annotated[str, typer.Option("--sku", help="the SKU the return claims to be")],
    heatmap: Annotated[Optional[Path], typer.Option("--heatmap", help="write the difference map here "
                                                                       "(8-bit grey PNG, the image's size)")] = None,
    mm_per_px: Annotated[Optional[float], typer.Option("--mm-per-px", min=0.0,
                                                       help="scale for size_mm (default: none, size_mm null)")] = None,
    presentation: Annotated[Optional[Path], typer.Option("--presentation", help="the streamer's presentation "
                                                         "image of the item (PNG/JPEG): its colour vs the "
                                                         "catalogue")] = None,
    view: Annotated[Optional[str], typer.Option("--view", help="which view this is: picks its empty-bench "
                                                "plate (default: the plate whose edge matches best)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Compare one view with the catalogue: identity, differences, colour, size; with --presentation also
    the stream's presentation colour (ΔE00 vs the catalogue, against the category's colour tolerance)."""
    import cv2
    import numpy as np

    from station.app import load_catalogue
    from vision.catalogue import CatalogueError, UnknownSkuError
    from vision.compare import CatalogueComparer, outline_size_mm, size_error
    from vision.difference import heatmap_u8

    t0 = time.perf_counter()
    # A scale so large that sizes overflow to Infinity (1e308) is a typo, not a bench: refuse it.
    if mm_per_px is not None and not (0 < mm_per_px <= 1000):
        fail(f"--mm-per-px {mm_per_px:g} is not a bench scale: pass a positive number up to 1000 mm/px "
             "(`station calibrate scale` measures it)")
    img = _read_image(image, fail)
    pres_img = _read_image(presentation, fail, "presentation image") if presentation is not None else None
    cfg = station_config(config, data_dir)
    try:
        cat = load_catalogue(cfg)
        item = cat.get(sku)
    except (CatalogueError, UnknownSkuError) as exc:
        fail(str(exc))
    from station.app import make_unseen_damage

    unseen = make_unseen_damage(cfg, cat)  # the station's memory, accepted returns included (never grown here)
    from calibration.background import load_background

    # The camera's empty-bench plates (`station calibrate background`): segmentation against them, else
    # by the image border; a stored profile that cannot be used is said in "segmentation".
    background, background_error = load_background(cfg.station.data_dir, cfg.calibration.camera_id)
    cmp = CatalogueComparer(cat, cfg.comparer.identity_threshold, cfg.comparer.bench_grey, mm_per_px=mm_per_px,
                            retrieval=cfg.comparer.identity_retrieval, unseen=unseen, background=background)
    timings = {"load": (time.perf_counter() - t0) * 1000}
    t = time.perf_counter()
    q = cmp.prepare(img, view or "cli")
    timings["prepare"] = (time.perf_counter() - t) * 1000
    seg_info = {"method": q.segmentation_method if q is not None else
                ("plate" if background is not None else "border")}
    unused = background_error or (q.plate_unused if q is not None else None)
    if unused:
        seg_info["plate_unused"] = unused
    heat = np.zeros(img.shape[:2], np.float32)
    result = {"identity": {"score": 0.0, "match": False}, "differences": [],
              "colour": {"delta_e00": None, "lab": None, "reference_lab": None}, "size_mm": None,
              "presentation": None, "segmentation": seg_info, "registration": None}
    if pres_img is not None:
        from station.rules import RuleSet, RulesEngine, RulesError

        try:
            tolerance = RulesEngine(RuleSet.load(cfg.rules.file)).colour_tolerance(item.category)
        except RulesError as exc:
            fail(str(exc))
        t = time.perf_counter()
        check = cmp.presentation(pres_img, sku, tolerance)
        # {"delta_e00", "mismatch", "delta_e00_raw", "lab", "reference_lab", "tolerance", "located"}
        result["presentation"] = None if check is None else check.to_json()
        timings["presentation"] = (time.perf_counter() - t) * 1000
    if q is not None:
        t = time.perf_counter()
        score, ev = cmp.identity([q], sku)
        # No outline (a failed segmentation): no per-SKU evidence, identity rests on retrieval alone.
        best = max(ev, key=lambda s: ev[s].similarity()) if ev else None
        result["identity"] = {"score": round(score, 4), "match": score >= cmp.identity_threshold,
                              "best_match_sku": best, "threshold": cmp.identity_threshold}
        timings["identity"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        reg, diff = cmp.registered_difference(q, sku)
        result["registration"] = None if reg is None else {"view": q.view, **reg.to_json()}
        if diff is not None:
            heat = diff.heatmap
            result["differences"] = [r.to_json() for r in diff.regions]
        timings["difference"] = (time.perf_counter() - t) * 1000
        if getattr(cmp, "unseen", None) is not None:
            t = time.perf_counter()
            va = cmp.unseen.score_view(sku, q.image, q.mask, q.view)
            if va is not None:
                # {"view", "peak", "calibration": {threshold, source, images, detail}, "regions": [...]}
                result["anomaly"] = va.to_json()
                if va.calibration.threshold is not None:  # else the reference difference's map stays
                    heat = va.heatmap  # what differs from the SKU's good appearance (0.5 = threshold)
            timings["anomaly"] = (time.perf_counter() - t) * 1000
        lab = q.features.lab
        result["colour"]["lab"] = [round(float(v), 2) for v in lab]
        if item.reference_lab is not None:
            from calibration.colour import delta_e_ciede2000

            ref = np.array(item.reference_lab.as_tuple())
            result["colour"]["delta_e00"] = round(float(delta_e_ciede2000(lab, ref)), 3)
            result["colour"]["reference_lab"] = [round(float(v), 2) for v in ref]
        if mm_per_px:
            size = outline_size_mm(q.mask, mm_per_px)
            if item.dimensions_mm is not None:
                size["relative_error"] = round(size_error(size, item.dimensions_mm.width,
                                                          item.dimensions_mm.height), 4)
            result["size_mm"] = size
    if heatmap is not None:
        # No folders made up from a typo (/nonexistent/h.png): the folder must exist, and the file must be
        # there afterwards (cv2.imwrite can return True without writing, or raise on an unknown extension).
        if heatmap.is_dir() or not heatmap.parent.is_dir():
            why = ("it is a folder" if heatmap.is_dir() else f"{heatmap.parent} is a file, not a folder"
                   if heatmap.parent.exists() else f"folder {heatmap.parent} does not exist")
            fail(f"cannot write heat map {heatmap}: {why}: pass a .png path in an existing, writable folder")
        try:
            ok = cv2.imwrite(str(heatmap), heatmap_u8(heat))
        except (OSError, cv2.error):
            ok = False
        if not ok or not heatmap.is_file():
            fail(f"cannot write heat map {heatmap}: pass a .png path in an existing, writable folder")
    timings["total"] = (time.perf_counter() - t0) * 1000
    result["timings_ms"] = {k: round(v, 2) for k, v in timings.items()}
    if json_out:
        typer.echo(json.dumps(result))
    else:
        i = result["identity"]
        typer.echo(f"identity {i['score']:.3f} ({'match' if i['match'] else 'NO MATCH'}); "
                   f"{len(result['differences'])} differences; ΔE00 {result['colour']['delta_e00']}")

@calibrate_app.command("colour")
def calibrate_colour(
    image: Annotated[Path, typer.Argument(help="a frame showing a ColorChecker Classic (24 patches)")],
    profile: Annotated[str, typer.Option(help="what the camera delivers: srgb or linear")] = "srgb",
    model: Annotated[str, typer.Option(help="correction: matrix (3x3), rootpoly (root-polynomial, 2nd degree) "
                                            "or tone (per-channel exponent, then 3x3: phone/DSLR JPEGs)")] = "matrix",
    camera_id: Annotated[str, typer.Option(help="stored with the profile")] = "cam0",
    save: Annotated[bool, typer.Option(help="store the profile under <data_dir>/calibration")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Find the colour chart, fit the correction, report every patch before and after (Lab D50)."""
    from calibration.chart import ChartError, calibrate_from_image

    if profile not in ("srgb", "linear"):
        fail(f"unknown profile {profile!r}: use srgb or linear")
    if model not in ("matrix", "rootpoly", "tone"):
        fail(f"unknown model {model!r}: use matrix, rootpoly or tone")
    img = _read_image(image, fail)
    try:
        result = calibrate_from_image(img, profile, model)
    except ChartError as exc:
        fail(str(exc))
    out = result.to_json()
    if save:
        from calibration.profiles import save_profile
        from calibration.startup import bench_reading

        cfg = station_config(config, data_dir)
        # The bench around the chart: the start-up check compares later frames' bench with it.
        out["bench_bgr"] = [round(float(v), 2) for v in bench_reading(img)]
        out["saved_to"] = str(save_profile(cfg.station.data_dir, "colour", camera_id, out))
    _report(out, json_out, [f"mean ΔE00 {out['mean_delta_e00_before']:.2f} -> {out['mean_delta_e00_after']:.2f} "
                            f"({len(out['patches'])} patches)"])

@calibrate_app.command("intrinsics")
def calibrate_intrinsics(
    images: Annotated[list[Path], typer.Argument(help="views of a checkerboard (several poses, tilted, "
                                                      "covering the frame); PNG/JPEG")],
    board: Annotated[str, typer.Option(help="inner corners COLSxROWS")] = "9x6",
    square_mm: Annotated[float, typer.Option("--square-mm", help="side of one square, mm")] = 25.0,
    camera_id: Annotated[Optional[str], typer.Option(help="stored with the profile (default: "
                                                          "calibration.camera_id)")] = None,
    save: Annotated[bool, typer.Option(help="store the profile under <data_dir>/calibration")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Camera matrix and lens distortion from checkerboard views, with reprojection errors."""
    from calibration.intrinsics import CalibrationError, calibrate_intrinsics as run, parse_board

    try:
        size = parse_board(board)
    except ValueError as exc:
        fail(str(exc))
    if square_mm <= 0:
        fail("--square-mm must be positive")
    imgs = [(str(p), _read_image(p, fail)) for p in images]
    try:
        result = run(imgs, size, square_mm)
    except CalibrationError as exc:
        fail(str(exc))
    out = result.to_json()
    if save:
        from calibration.profiles import save_profile

        cfg = station_config(config, data_dir)
        cam = camera_id or cfg.calibration.camera_id
        out["camera_id"] = cam
        out["saved_to"] = str(save_profile(cfg.station.data_dir, "intrinsics", cam, out))
    _report(out, json_out, [
        f"fx {out['fx']:.2f} fy {out['fy']:.2f} cx {out['cx']:.2f} cy {out['cy']:.2f}; distortion "
        f"{out['dist_coeffs']}; RMS {out['rms_reprojection_px']:.3f} px ({out['views_used']} of {len(images)} views)",
        *(f"  {v['image']}: " + (f"{v['rms_px']:.3f} px" if v["found"] else "board not found")
          for v in out["per_image"])])

@calibrate_app.command("scale")
def calibrate_scale(
    image: Annotated[Path, typer.Argument(help="a frame of the bench with ArUco markers or a checkerboard on it")],
    aruco_dict: Annotated[str, typer.Option("--aruco-dict", help="ArUco dictionary, e.g. 4X4_50")] = "4X4_50",
    marker_mm: Annotated[Optional[float], typer.Option("--marker-mm", help="marker side (black square), mm; "
                                                                         "default 40")] = None,
    board: Annotated[Optional[str], typer.Option(help="use a checkerboard instead: inner corners COLSxROWS")] = None,
    square_mm: Annotated[float, typer.Option("--square-mm", help="checkerboard square side, mm")] = 25.0,
    camera_id: Annotated[Optional[str], typer.Option(help="whose intrinsics undistort, and stored with the "
                                                          "profile (default: calibration.camera_id)")] = None,
    undistort: Annotated[bool, typer.Option(help="use the camera's intrinsics profile when there is one")] = True,
    save: Annotated[bool, typer.Option(help="store the profile under <data_dir>/calibration")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Millimetres per pixel on the bench plane (size checks use it once saved)."""
    from calibration.intrinsics import CalibrationError, Intrinsics, parse_board
    from calibration.profiles import load_profile
    from calibration.scale import scale_from_aruco, scale_from_checkerboard
    from calibration.scenes import aruco_dictionary_id

    if board is not None and marker_mm is not None:
        fail("give either --marker-mm (ArUco markers) or --board (checkerboard), not both")
    try:
        size = parse_board(board) if board is not None else None
        if size is None:
            aruco_dictionary_id(aruco_dict)
    except ValueError as exc:
        fail(str(exc))
    img = _read_image(image, fail)
    cfg = station_config(config, data_dir)
    cam = camera_id or cfg.calibration.camera_id
    intrinsics = None
    if undistort:
        try:
            prof = load_profile(cfg.station.data_dir, "intrinsics", cam)
            intrinsics = Intrinsics.from_json(prof["data"]) if prof is not None else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"intrinsics profile for camera {cam} is unreadable ({exc}): recalibrate or use --no-undistort")
    try:
        if size is not None:
            result = scale_from_checkerboard(img, size, square_mm, intrinsics)
        else:
            result = scale_from_aruco(img, 40.0 if marker_mm is None else marker_mm, aruco_dict, intrinsics)
    except CalibrationError as exc:
        fail(str(exc))
    out = result.to_json()
    out["camera_id"] = cam
    if intrinsics is not None and intrinsics.image_size != tuple(out["image_size"]):
        out["warnings"].append(f"the intrinsics of camera {cam} were calibrated at {intrinsics.image_size[0]}x"
                               f"{intrinsics.image_size[1]}, this frame is {out['image_size'][0]}x"
                               f"{out['image_size'][1]}: the camera matrix was scaled; recalibrate if the "
                               "camera or its resolution changed")
    if save:
        from calibration.profiles import save_profile

        out["saved_to"] = str(save_profile(cfg.station.data_dir, "scale", cam, out))
    _report(out, json_out, [f"{out['mm_per_px']:.5f} mm/px ({out['method']}, {len(out['references'])} "
                            f"reference(s), {'undistorted' if out['undistorted'] else 'no intrinsics'})"])

@calibrate_app.command("background")
def calibrate_background(
    views: Annotated[Optional[list[str]], typer.Option("--view", help="view to capture (repeat; default: "
                                                       "station.views)")] = None,
    frames: Annotated[int, typer.Option(min=3, max=200, help="empty-bench frames per view (median)")] = 9,
    camera_id: Annotated[Optional[str], typer.Option(help="whose profile (default: calibration.camera_id)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Empty-bench background plates: N frames per view from the configured camera, their median and
    per-pixel spread stored in the camera's calibration profile; segmentation then takes what differs
    from the plate as the product (any bench, wood or printed), else the image border as the bench."""
    from calibration.background import PlateError, plate_from_frames, save_plates
    from calibration.profiles import ProfileError, profile_path
    from station.app import make_camera
    from vision.camera import CameraError, SyntheticCamera

    cfg = station_config(config, data_dir)
    cam_id = camera_id or cfg.calibration.camera_id
    try:
        profile_path(cfg.station.data_dir, "background", cam_id)
    except ProfileError as exc:
        fail(str(exc))
    wanted = list(views) if views else list(cfg.station.views)
    if len(set(wanted)) != len(wanted):
        fail(f"--view names a view twice ({', '.join(wanted)}): name each view once")
    camera = make_camera(cfg)
    if isinstance(camera, SyntheticCamera):
        fail("the synthetic camera renders items on a plain bench and has no empty-bench frames: a background "
             "plate is for a real camera (camera.type = \"opencv\" or \"folder\")")
    plates = []
    try:
        for v in wanted:
            shots = [camera.capture(v).image for _ in range(frames)]
            plates.append(plate_from_frames(shots, v))
    except CameraError as exc:
        fail(f"cannot capture the empty bench: {exc}")
    except PlateError as exc:
        fail(str(exc))
    finally:
        camera.close()
    saved = save_plates(cfg.station.data_dir, cam_id, plates)
    out = {"camera_id": cam_id, "views": [p.summary() for p in plates], "saved_to": str(saved), "warnings": []}
    _report(out, json_out, [f"{p['view']}: plate of {p['frames']} frames {p['size'][0]}x{p['size'][1]}, spread "
                            f"median ΔE {p['spread_median_delta_e']:.2f} (p95 {p['spread_p95_delta_e']:.2f})"
                            for p in out["views"]])

@calibrate_app.command("check")
def calibrate_check(
    image: Annotated[Optional[Path], typer.Argument(help="a check frame of the bench (optional): lighting "
                                                         "drift against the colour profile")] = None,
    camera_id: Annotated[Optional[str], typer.Option(help="default: calibration.camera_id")] = None,
    max_age_days: Annotated[Optional[float], typer.Option(min=0.0, help="default: "
                                                          "calibration.max_profile_age_days")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The start-up check: stale calibration profiles and bench lighting drift (warnings; exit 0)."""
    from calibration.startup import startup_check

    frame = _read_image(image, fail) if image is not None else None
    cfg = station_config(config, data_dir)
    c = cfg.calibration
    check = startup_check(cfg.station.data_dir, camera_id or c.camera_id,
                          c.max_profile_age_days if max_age_days is None else max_age_days, frame,
                          level_tolerance=c.lighting_level_tolerance, balance_tolerance=c.white_balance_tolerance)
    out = {"camera_id": camera_id or c.camera_id, **check.to_json()}
    if json_out:
        typer.echo(json.dumps(out))
    else:
        for kind, p in out["profiles"].items():
            state = "missing" if not p["present"] else ("STALE" if p["stale"] else "ok")
            typer.echo(f"{kind}: {state}" + (f" ({p['age_days']:.1f} days)" if p["age_days"] is not None else ""))
        for w in out["warnings"]:
            typer.echo(f"warning: {w}")
        if not out["warnings"]:
            typer.echo("no warnings")

@bench_app.command("catalogue")
def bench_catalogue(
    skus: Annotated[int, typer.Option(min=101, max=1_000_000, help="the large catalogue's SKUs")] = 10_000,
    queries: Annotated[int, typer.Option(min=5, help="returned views timed per size")] = 30,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Identity time per view (retrieval + verification) at 100 SKUs and at --skus, 3 views each."""
    from vision.evaluate import bench_identity_scale

    rows = bench_identity_scale((100, skus), queries=queries)
    ratio = rows[1]["p50_ms"] / max(rows[0]["p50_ms"], 1e-9)
    if json_out:
        typer.echo(json.dumps({"sizes": rows, "p50_ratio": round(ratio, 3)}))
        return
    for r in rows:
        typer.echo(f"{r['skus']:>8} SKUs ({r['views']} views, index {r['index_mb']} MB): identity p50 "
                   f"{r['p50_ms']} ms, p95 {r['p95_ms']} ms per view")
    typer.echo(f"p50 ratio {rows[1]['skus']} / 100 SKUs: {ratio:.2f}x")

@bench_app.command("unseen")
def bench_unseen(
    learn: Annotated[int, typer.Option(min=0, help="accepted genuine items learnt per SKU first")] = 3,
    genuine: Annotated[int, typer.Option(min=1, help="fresh genuine items per SKU")] = 6,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Unseen damage on generated items: false damage on fresh genuine items, painted defects found
    (real-photo figures: `make bench-real`)."""
    import tempfile

    from vision.evaluate import unseen_damage_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        r = unseen_damage_synthetic(Path(tmp), learn, genuine)
    if json_out:
        typer.echo(json.dumps(r))
        return
    typer.echo(f"false damage: {r['false_damage_items']} of {r['genuine_items']} genuine items "
               f"({r['false_damage_rate']:.1%}); defects found: {r['defects_found']} of {r['defect_items']} "
               f"({r['found_rate']:.1%}) {r['found_per_kind']}; compare p50 {r['compare_ms_p50']} ms per item")

@bench_app.command("vision")
def bench_vision(
    items: Annotated[int, typer.Option(min=1, help="generated items per SKU (3 views each)")] = 3,
    out_of_catalogue: Annotated[int, typer.Option(min=0, help="items in no catalogue")] = 12,
    defects: Annotated[int, typer.Option(min=1, help="views with painted missing parts / damage")] = 24,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Identity ROC on generated look-alike SKUs, pixel AUROC of the difference map, timings."""
    import tempfile

    from vision.evaluate import run_benchmark

    with tempfile.TemporaryDirectory() as tmp:
        report = run_benchmark(Path(tmp), items, out_of_catalogue, defects)
    if json_out:
        typer.echo(json.dumps(report))
    else:
        idn, dif = report["identity"], report["difference"]
        typer.echo(f"identity: TPR {idn['tpr_at_fpr_0.02']:.3f} at FPR<=0.02 (AUROC {idn['auroc']:.4f}, "
                   f"{idn['positives']} genuine, {idn['negatives']} swaps); at threshold "
                   f"{idn['threshold']}: TPR {idn['at_threshold']['tpr']:.3f} FPR {idn['at_threshold']['fpr']:.3f}")
        typer.echo(f"difference: pixel AUROC {dif['pixel_auroc']:.4f} (product region "
                   f"{dif['pixel_auroc_product']:.4f}) on {dif['views']} views")
        typer.echo(f"timings ms: {report['timings_ms']}")
