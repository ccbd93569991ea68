"""`station gui`, `station bench ui` and `station users ...`: the desktop app's commands.

station/ must not import ui/ (dependencies point ui -> station; tests/test_imports.py checks import
statements), and only ui/ may import PyQt6. So the commands load the UI with ``importlib.import_module``
at call time: a dynamic import that keeps `station` usable (and importable) without a display or PyQt6.
No `from __future__ import annotations` here: typer must see the option types of the nested commands.
"""

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli.common import ConfigOpt, DataDirOpt, fail, station_config


def _ui(module: str):
    return importlib.import_module(f"ui.{module}")  # dynamic on purpose: see the module docstring


def _no_display_message() -> Optional[str]:
    """Why a real window cannot open, or None.

    Qt's xcb plugin, finding no X server, aborts the process with "could not load the Qt platform plugin
    xcb ... reinstalling may fix this", which sends people to reinstall PyQt6; the real cause is no display.
    Only xcb (set explicitly, or Qt's default on Linux when QT_QPA_PLATFORM is unset) needs one: offscreen,
    wayland with WAYLAND_DISPLAY, and non-Linux platforms are left to Qt.
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux"):
        return None
    if platform not in ("", "xcb") and not platform.startswith("xcb:"):
        return None
    if os.environ.get("DISPLAY") or (platform == "" and os.environ.get("WAYLAND_DISPLAY")):
        return None
    return ("no display: DISPLAY is not set (nor WAYLAND_DISPLAY), so the xcb window cannot open. "
            "Run from a desktop session, under xvfb-run, or with QT_QPA_PLATFORM=offscreen "
            "(e.g. with --screenshots).")


app = typer.Typer()
bench_app = typer.Typer()


users_app = typer.Typer(no_args_is_help=True, help="Station users (PIN login) and roles.")
app.add_typer(users_app, name="users")

@app.command()
def gui(
    language: Annotated[Optional[str], typer.Option(
        "--language", "-l", help="en or zh_CN (default: the one chosen in settings, else en)")] = None,
    screenshots: Annotated[Optional[Path], typer.Option(
        help="write bench/queue/dashboard screenshots in both languages into this folder and exit "
             "(uses a fresh temporary data dir with simulated returns)")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The desktop app: inspector bench, review queue, dashboard (built-in defaults: simulated camera)."""
    if language is not None and language not in ("en", "zh_CN"):
        fail(f"unknown language {language!r}: use en or zh_CN")
    problem = _no_display_message()
    if problem is not None:
        typer.echo(problem, err=True)
        raise typer.Exit(2)
    cfg = station_config(config, data_dir)
    raise typer.Exit(_ui("app").run_gui(cfg, language, screenshots, config_path=config))

@bench_app.command("ui")
def bench_ui(
    items: Annotated[int, typer.Option(min=1, help="items driven through the bench at full speed")] = 12,
    threshold_ms: Annotated[float, typer.Option(help="fail (exit 1) if the event loop blocks longer")] = 100.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """UI responsiveness: longest event-loop block while the bench inspects items back to back."""
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = station_config(None, data_dir or Path(tmp))
        report = _ui("uibench").run(cfg, items)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        typer.echo(f"{report['items']} items in {report['seconds']:.1f} s; event loop: max block "
                   f"{report['max_block_ms']:.1f} ms, p99 {report['p99_block_ms']:.1f} ms "
                   f"(threshold {threshold_ms:.0f} ms)")
    if report["max_block_ms"] > threshold_ms:
        raise typer.Exit(1)

@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="inspector, supervisor or admin")],
    pin: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                     help="4-12 digits (prompted when left out)")],
    admin: Annotated[Optional[str], typer.Option(help="admin user who authorises (not for the first user)")] = None,
    admin_pin: Annotated[Optional[str], typer.Option(envvar="STATION_ADMIN_PIN", help="that admin's PIN")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a user. The first user of a station needs no admin; later ones do."""
    from station.records import StoreError
    from station.users import AuthError, PermissionDenied, UserStore

    cfg = station_config(config, data_dir)
    try:
        with UserStore(cfg.station.data_dir / "users.db") as store:
            by = store.authenticate(admin, admin_pin or "") if admin else None
            user = store.add(username, role, pin, by=by)
    except (AuthError, PermissionDenied, ValueError, StoreError) as exc:
        fail(str(exc))
    typer.echo(f"added {user.username} ({user.role.value})")

@users_app.command("unlock")
def users_unlock(
    username: Annotated[str, typer.Argument(help="user locked out after wrong PINs")],
    admin: Annotated[str, typer.Option(help="admin user who authorises")],
    admin_pin: Annotated[Optional[str], typer.Option(envvar="STATION_ADMIN_PIN", help="that admin's PIN")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Lift a lockout after too many wrong PINs (it also ends by itself after a few minutes)."""
    from station.records import StoreError
    from station.users import AuthError, PermissionDenied, UserStore

    cfg = station_config(config, data_dir)
    try:
        with UserStore(cfg.station.data_dir / "users.db") as store:
            store.unlock(username, by=store.authenticate(admin, admin_pin or ""))
    except (AuthError, PermissionDenied, ValueError, StoreError) as exc:
        fail(str(exc))
    typer.echo(f"unlocked {username}")

@users_app.command("list")
def users_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List active users and their roles (never PINs)."""
    from station.users import UserStore

    from station.records import StoreError

    cfg = station_config(config, data_dir)
    try:
        with UserStore(cfg.station.data_dir / "users.db") as store:
            users = store.users()
    except StoreError as exc:
        fail(str(exc))
    if not users:
        typer.echo(f"no users yet in {cfg.station.data_dir / 'users.db'}: add the first (an admin) with "
                   f"`station users add NAME --role admin`", err=True)
        return
    for u in users:
        typer.echo(f"{u.username}\t{u.role.value}")
