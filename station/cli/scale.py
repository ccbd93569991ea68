"""Bench scale commands: `station sim-scale` (an MT-SICS scale on a pty) and `station scale read|tare|zero|reset`."""

import math
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli.common import ConfigOpt, err, fail, out, print_json, station_config


app = typer.Typer()


scale_app = typer.Typer(no_args_is_help=True, help="The bench scale (MT-SICS over serial): read, tare, zero.")
app.add_typer(scale_app, name="scale")

UrlOpt = Annotated[Optional[str], typer.Option("--url", help="the scale's port (default: [scale] url of "
                                                             "--config)")]

def _scale(url: str | None, config: Path | None, baudrate: int | None):
    from hardware.scale import MtSicsScale

    if url is None:
        cfg = station_config(config, None)
        if cfg.scale is None:
            fail("no scale: pass --url PORT, or a --config with a [scale] section "
                 "(type = \"mtsics\", url = \"/dev/ttyUSB0\")")
        s = cfg.scale
        return MtSicsScale(s.url, baudrate=baudrate or s.baudrate, command_timeout_s=s.command_timeout_s,
                           stable_timeout_s=s.stable_timeout_s, min_load_g=s.min_load_g)
    if not url.strip():
        fail("--url is empty: give the scale's port, e.g. /dev/ttyUSB0 or the path `station sim-scale` made")
    return MtSicsScale(url, baudrate=baudrate or 9600)

def _run(url, config, baudrate, action):
    from hardware.scale import ScaleError, ScaleProtocolError

    scale = _scale(url, config, baudrate)
    try:
        return action(scale)
    except (ScaleError, ScaleProtocolError) as exc:
        fail(str(exc))
    finally:
        scale.close()

@scale_app.command("read")
def scale_read(
    url: UrlOpt = None,
    baudrate: Annotated[Optional[int], typer.Option(min=300, max=4_000_000)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """One stable weight, as an inspection takes it (state, grams); exit 2 when the scale gives none."""
    m = _run(url, config, baudrate, lambda s: s.measure())
    if json_out:
        print_json(m.to_json())
    elif m.available:
        out.print(f"{m.grams:.2f} g (stable)")
    if not m.available:
        fail(f"no weight: {m.state.value}: {m.detail}")

@scale_app.command("tare")
def scale_tare(url: UrlOpt = None, baudrate: Annotated[Optional[int], typer.Option(min=300)] = None,
               config: ConfigOpt = None) -> None:
    """Tare with what lies on the pan now (a tray, an empty box): later weights are net of it."""
    grams = _run(url, config, baudrate, lambda s: s.tare())
    out.print(f"tare {grams:.2f} g")

@scale_app.command("zero")
def scale_zero(url: UrlOpt = None, baudrate: Annotated[Optional[int], typer.Option(min=300)] = None,
               config: ConfigOpt = None) -> None:
    """Zero the empty pan."""
    _run(url, config, baudrate, lambda s: s.zero())
    out.print("zeroed")

@scale_app.command("reset")
def scale_reset(url: UrlOpt = None, baudrate: Annotated[Optional[int], typer.Option(min=300)] = None,
                config: ConfigOpt = None) -> None:
    """Reset the scale (@: tare cleared, no zeroing) and print its serial number."""
    serial_number = _run(url, config, baudrate, lambda s: s.reset())
    out.print(f"reset; serial number {serial_number}")

@app.command("sim-scale")
def sim_scale(
    port: Annotated[Path, typer.Option(help="symlink to create for the simulator's pty (the station's url)")],
    weight_g: Annotated[float, typer.Option("--weight-g", help="gross load on the pan, grams")] = 0.0,
    capacity_g: Annotated[float, typer.Option("--capacity-g", help="above this the scale answers overload")] = 6200.0,
    unstable: Annotated[bool, typer.Option("--unstable", help="the load never settles (S answers S I)")] = False,
) -> None:
    """Run an MT-SICS bench scale on a pty until Ctrl-C. The load is changed over the wire with the
    simulator's own commands `XW <grams>` and `XU 0|1` (unstable), which no real scale knows."""
    from hardware.scale_sim import ScaleSimulator

    if not (math.isfinite(weight_g) and math.isfinite(capacity_g)) or capacity_g <= 0:
        fail("--weight-g and --capacity-g must be finite numbers, the capacity above 0")
    if port.exists() and not port.is_symlink():
        fail(f"{port} exists and is not a symlink: pick another --port path")
    if not port.parent.is_dir():
        fail(f"folder {port.parent} does not exist")
    sim = ScaleSimulator(port, weight_g=weight_g, capacity_g=capacity_g)
    sim.set_unstable(unstable)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sim.start()
    err.print(f"MT-SICS scale simulator on {port} -> {port.resolve()} ({weight_g:g} g on the pan"
              f"{', unstable' if unstable else ''}); Ctrl-C to stop", highlight=False, soft_wrap=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
    print_json({"commands": len(sim.commands), "weight_g": sim.gross_g})
