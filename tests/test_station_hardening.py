"""Station-side hardening (issue 21): catalogue import refuses what it must not copy, private file modes, PINs."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import zlib
import struct

import cv2
import numpy as np
import pytest

from station.users import AccountLocked, AuthError, Role, User, UserStore
from vision.catalogue import CatalogueError, image_header_size, stage_import

HEADER = "sku,category,brand,image,lab_l,lab_a,lab_b,width_mm,height_mm,depth_mm\n"


def _catalogue(src, rows: str, image="img/a.png"):
    (src / "img").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(src / "img" / "a.png"), np.full((40, 50, 3), 90, np.uint8))
    (src / "catalogue.csv").write_text(HEADER + rows)
    return src


def _good_row(image="img/a.png", lab="50,1,2", dims="10,20,"):
    return f"S-1,household,acme,{image},{lab},{dims}\n"


def test_a_good_catalogue_stages_only_what_it_names(tmp_path):
    src = _catalogue(tmp_path / "src", _good_row())
    (src / "notes.txt").write_text("not copied")
    os.mkfifo(src / "pipe")  # a fifo the CSV does not name is not even opened
    cat = stage_import(src, tmp_path / "staging")
    assert sorted(p.relative_to(tmp_path / "staging").as_posix() for p in (tmp_path / "staging").rglob("*")
                  if p.is_file()) == ["catalogue.csv", "img/a.png"]
    assert cat.items["S-1"].reference_lab is not None


@pytest.mark.parametrize("make, needle", [
    (lambda src: os.symlink("/etc/passwd", src / "img" / "x.png"), "symbolic link"),
    (lambda src: os.symlink("/dev/zero", src / "img" / "x.png"), "symbolic link"),
    (lambda src: os.symlink(src / "img" / "nowhere.png", src / "img" / "x.png"), "symbolic link"),  # dangling
    (lambda src: os.symlink(src / "img" / "x.png", src / "img" / "x.png"), "symbolic link"),  # a loop
    (lambda src: os.mkfifo(src / "img" / "x.png"), "fifo"),
    (lambda src: (src / "img" / "x.png").write_text("just text, not an image"), "not a PNG, JPEG"),
    (lambda src: (src / "img" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not a PNG, JPEG"),
])
def test_links_special_files_and_non_images_are_refused(tmp_path, make, needle):
    src = _catalogue(tmp_path / "src", _good_row() + "S-2,household,acme,img/x.png,,,,,,\n")
    make(src)
    with pytest.raises(CatalogueError, match=needle) as err:
        stage_import(src, tmp_path / "staging")
    assert "catalogue.csv:3" in str(err.value) and "img/x.png" in str(err.value)
    assert not (tmp_path / "staging").exists()


def test_a_linked_folder_and_a_device_are_refused(tmp_path):
    src = _catalogue(tmp_path / "src", _good_row("lnk/a.png"))
    os.symlink(src / "img", src / "lnk")
    with pytest.raises(CatalogueError, match="symbolic link"):
        stage_import(src, tmp_path / "staging")
    src2 = tmp_path / "src2"
    src2.mkdir()
    os.symlink("/dev/zero", src2 / "catalogue.csv")
    with pytest.raises(CatalogueError, match="symbolic link"):
        stage_import(src2, tmp_path / "staging")
    (src2 / "catalogue.csv").unlink()
    os.mkfifo(src2 / "catalogue.csv")
    with pytest.raises(CatalogueError, match="fifo"):
        stage_import(src2, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


@pytest.mark.parametrize("image", ["../outside.png", "img/../../outside.png", "/etc/passwd", "/tmp/x.png"])
def test_image_paths_are_confined_to_the_folder(tmp_path, image):
    cv2.imwrite(str(tmp_path / "outside.png"), np.zeros((10, 10, 3), np.uint8))
    src = _catalogue(tmp_path / "src", _good_row(image))
    with pytest.raises(CatalogueError, match="absolute path|leaves the catalogue folder") as err:
        stage_import(src, tmp_path / "staging")
    assert "catalogue.csv:2" in str(err.value)


@pytest.mark.parametrize("lab, dims, column", [
    ("nan,1,2", "10,20,", "lab_l"), ("50,inf,2", "10,20,", "lab_a"), ("50,1,-inf", "10,20,", "lab_b"),
    ("50,1,2", "NaN,20,", "width_mm"), ("50,1,2", "10,Infinity,", "height_mm"), ("50,1,2", "10,20,nan", "depth_mm"),
])
def test_non_finite_numbers_are_refused(tmp_path, lab, dims, column):
    src = _catalogue(tmp_path / "src", _good_row(lab=lab, dims=dims))
    with pytest.raises(CatalogueError, match=f"{column}.*finite number"):
        stage_import(src, tmp_path / "staging")


@pytest.mark.parametrize("size", [5000, 128 * 1024, 200 * 1024])
def test_an_over_long_field_is_a_clear_error(tmp_path, size):
    src = _catalogue(tmp_path / "src", f"S-1,household,{'x' * size},img/a.png,,,,,,\n")
    with pytest.raises(CatalogueError, match="catalogue.csv:2.*4096") as err:
        stage_import(src, tmp_path / "staging")
    assert len(str(err.value)) < 400


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (its pixel data is not there: decoding it would be the attack)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_pixel_bound_is_checked_from_the_header(tmp_path):
    assert image_header_size(_png_header_only(20000, 20000)) == (20000, 20000)
    ok, jpg = cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8))
    assert image_header_size(jpg.tobytes()) == (70, 30)
    ok, bmp = cv2.imencode(".bmp", np.zeros((30, 70, 3), np.uint8))
    assert image_header_size(bmp.tobytes()) == (70, 30)
    src = _catalogue(tmp_path / "src", _good_row() + "S-2,household,acme,img/big.png,,,,,,\n")
    (src / "img" / "big.png").write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(CatalogueError, match="20000x20000.*megapixels.*scale it down"):
        stage_import(src, tmp_path / "staging")
    # A real image over a (lowered) bound is refused the same way.
    with pytest.raises(CatalogueError, match="50x40"):
        stage_import(_catalogue(tmp_path / "src2", _good_row()), tmp_path / "staging", max_pixels=1000)


def _station(*args, data_dir):
    return subprocess.run([sys.executable, "-m", "station.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=300)


def test_import_refusal_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    (data / "catalogue.importing").mkdir(parents=True)  # left by an import that was killed
    src = _catalogue(tmp_path / "src", _good_row() + "S-2,household,acme,img/x.png,,,,,,\n")
    os.symlink("/etc/passwd", src / "img" / "x.png")
    proc = _station("catalogue", "import", str(src), data_dir=data)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "catalogue.csv:3" in proc.stderr and "symbolic link" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (data / "catalogue.importing").exists() and not (data / "catalogue").exists()


# ------------------------------------------------------------------------------------------- file modes


@pytest.fixture()
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_is_0700_and_databases_and_images_0600(tmp_path, loose_umask):
    from station.records import StationStore

    data = tmp_path / "data"
    with StationStore(data / "station.db") as store:
        stored = store.put_image(np.full((8, 8, 3), 7, np.uint8))
        store.set_state({"k": "v"})
        assert _mode(data) == 0o700
        assert _mode(data / "images") == 0o700
        assert _mode(stored.path) == 0o600
        for f in ("station.db", "station.db-wal", "station.db-shm"):
            if (data / f).exists():
                assert _mode(data / f) == 0o600, f
    with UserStore(data / "users.db") as users:
        users.add("root", Role.ADMIN, "9876")
        for f in ("users.db", "users.db-wal", "users.db-shm"):
            if (data / f).exists():
                assert _mode(data / f) == 0o600, f
    fresh = tmp_path / "u" / "v"
    UserStore(fresh / "users.db").open().close()
    assert _mode(tmp_path / "u") == 0o700 and _mode(fresh) == 0o700


def test_existing_loose_files_are_tightened_when_opened(tmp_path, loose_umask):
    from station.records import StationStore

    data = tmp_path / "data"
    with StationStore(data / "station.db") as store:
        stored = store.put_image(np.full((8, 8, 3), 9, np.uint8))
    UserStore(data / "users.db").open().close()
    for f in ("station.db", "users.db"):
        os.chmod(data / f, 0o644)
    os.chmod(data / "images", 0o755)
    os.chmod(stored.path, 0o644)
    with StationStore(data / "station.db") as store:
        store.put_image(np.full((8, 8, 3), 9, np.uint8))  # the same image again
    UserStore(data / "users.db").open().close()
    assert _mode(data / "station.db") == 0o600 and _mode(data / "users.db") == 0o600
    assert _mode(data / "images") == 0o700 and _mode(stored.path) == 0o600


# ------------------------------------------------------------------------------------------- PINs


def test_pins_of_4_to_12_digits(tmp_path):
    with UserStore(tmp_path / "users.db") as store:
        admin = store.add("root", Role.ADMIN, "123456789012")
        assert store.authenticate("root", "123456789012") == admin
        store.add("ina", Role.INSPECTOR, "1234", by=admin)
        for bad in ("123", "1234567890123", "12ab"):
            with pytest.raises(ValueError, match="4 to 12 digits"):
                store.add("x", Role.INSPECTOR, bad, by=admin)


def test_lockout_lasts_minutes_survives_a_restart_says_until_when_and_an_admin_unlocks(tmp_path):
    t0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with UserStore(tmp_path / "users.db") as store:
        admin = store.add("root", Role.ADMIN, "9876")
        store.add("ina", Role.INSPECTOR, "1234", by=admin)
        for i in range(5):
            with pytest.raises(AuthError, match="wrong PIN"):
                store.authenticate("ina", "0000", now=t0 + dt.timedelta(seconds=i))
    with UserStore(tmp_path / "users.db") as store:  # a restart does not reset it
        later = t0 + dt.timedelta(minutes=2)
        with pytest.raises(AccountLocked, match=r"locked .* until 2030-01-02 03:09:09 UTC") as err:
            store.authenticate("ina", "1234", now=later)
        assert err.value.until == t0 + dt.timedelta(seconds=4 + 300)
        assert store.locked_until("ina", now=later) == err.value.until
        with pytest.raises(PermissionError):
            store.unlock("ina", by=User("sam", Role.SUPERVISOR))
        store.unlock("ina", by=admin)
        assert store.authenticate("ina", "1234", now=later).username == "ina"
        # ... or it expires by itself
        for i in range(5):
            with pytest.raises(AuthError):
                store.authenticate("ina", "0000", now=later)
        with pytest.raises(AccountLocked):
            store.authenticate("ina", "1234", now=later + dt.timedelta(minutes=4))
        assert store.authenticate("ina", "1234", now=later + dt.timedelta(minutes=6)).username == "ina"


def test_users_unlock_command(tmp_path):
    data = tmp_path / "data"
    with UserStore(data / "users.db") as store:
        admin = store.add("root", Role.ADMIN, "9876")
        store.add("ina", Role.INSPECTOR, "1234", by=admin)
        for _ in range(5):
            with pytest.raises(AuthError):
                store.authenticate("ina", "0000")
    env = {**os.environ, "STATION_ADMIN_PIN": "9876"}
    proc = subprocess.run([sys.executable, "-m", "station.cli", "users", "unlock", "ina", "--admin", "root",
                           "--data-dir", str(data)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    with UserStore(data / "users.db") as store:
        assert store.authenticate("ina", "1234").username == "ina"
