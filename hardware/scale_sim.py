"""An MT-SICS bench scale simulated on a pty: the bytes a Mettler Toledo balance sends, answered line by line.

``port_path`` is a stable symlink to the current pty slave (like a udev /dev/serial/by-id link): the station
opens it by URL as it would a real scale. What is on the pan, whether it is settling, and faults are set from
the test or the CLI (``set_weight``, ``set_unstable``, ``unplug``/``replug``, ``set_silent``), or over the wire
with the simulator's own commands, which no real scale knows (prefix X):

    XW <grams>   -> XW A     put this gross load on the pan
    XU 0|1       -> XU A     the load keeps moving (S answers S I after the stability wait; SI answers S D)
"""

from __future__ import annotations

import logging
import os
import random
import select
import threading
import time
import tty
from pathlib import Path

from hardware.scale import CRLF, LineDecoder, ReplyStatus, format_weight_reply

log = logging.getLogger(__name__)


class ScaleSimulator:
    def __init__(self, port_path: Path, weight_g: float = 0.0, capacity_g: float = 6200.0,
                 readability_g: float = 0.01, stable_wait_s: float = 0.2, serial_number: str = "SIM0424001",
                 seed: int = 0) -> None:
        self.port_path = Path(port_path)
        self.capacity_g = capacity_g
        self.readability_g = readability_g
        self.stable_wait_s = stable_wait_s  # how long S waits for stability before answering S I
        self.serial_number = serial_number
        self.rng = random.Random(seed)
        self.gross_g = weight_g  # what lies on the pan
        self.zero_offset_g = 0.0
        self.tare_g = 0.0
        self.unstable = False
        self.silent = False  # port there, scale not answering (switched off behind a USB adapter)
        self.commands: list[str] = []  # every command line received, for tests
        self._lock = threading.RLock()
        self._pty: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decoder = LineDecoder()

    # ---------------------------------------------------------------------------------------- pty

    def _new_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes are bytes
        os.set_blocking(master, False)
        tmp = self.port_path.with_name(self.port_path.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.port_path)
        self._pty = (master, slave)
        self._decoder.reset()

    def _close_pty(self) -> None:
        pty, self._pty = self._pty, None
        if pty is not None:
            for fd in pty:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def start(self) -> "ScaleSimulator":
        self.port_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._new_pty()
        self._thread = threading.Thread(target=self._run, name="scale-sim", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        with self._lock:
            self._close_pty()
        self.port_path.unlink(missing_ok=True)

    def unplug(self) -> None:
        """The cable is pulled: the pty and its symlink go away until ``replug``."""
        with self._lock:
            self._close_pty()
            self.port_path.unlink(missing_ok=True)

    def replug(self) -> None:
        with self._lock:
            if self._pty is None:
                self._new_pty()

    # ---------------------------------------------------------------------------------------- state

    def set_weight(self, grams: float) -> None:
        with self._lock:
            self.gross_g = float(grams)

    def set_unstable(self, unstable: bool) -> None:
        with self._lock:
            self.unstable = bool(unstable)

    def set_silent(self, silent: bool) -> None:
        with self._lock:
            self.silent = bool(silent)

    def net_g(self) -> float:
        with self._lock:
            return self.gross_g - self.zero_offset_g - self.tare_g

    def _rounded(self, grams: float) -> float:
        step = self.readability_g
        return round(round(grams / step) * step, 6)

    # ---------------------------------------------------------------------------------------- wire

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                master = self._pty[0] if self._pty is not None else None
            if master is None:
                self._stop.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.02)
                data = os.read(master, 1024) if ready else b""
            except (OSError, ValueError):  # unplugged under us: the next turn sees no pty
                continue
            for line in self._decoder.feed(data):
                reply = self.answer(line)
                if reply:
                    self._send(reply)

    def _send(self, data: bytes) -> None:
        with self._lock:
            if self._pty is None:
                return
            try:
                os.write(self._pty[0], data)
            except (BlockingIOError, OSError):
                pass  # the peer is not reading: the reply is lost, as on a real wire

    def answer(self, line: bytes) -> bytes:
        """The reply to one command line (empty when the scale stays silent)."""
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            return b"ET" + CRLF  # a garbled byte: what a balance answers to a parity or framing error
        self.commands.append(text)
        with self._lock:
            if self.silent:
                return b""
            parts = text.split()
            if not parts:
                return b"ES" + CRLF
            cmd, args = parts[0], parts[1:]
            if cmd == "S" and not args:
                if self.unstable:
                    wait = self.stable_wait_s
                else:
                    return self._weight("S", ReplyStatus.STABLE)
            elif cmd == "SI" and not args:
                return self._weight("S", ReplyStatus.DYNAMIC if self.unstable else ReplyStatus.STABLE)
            elif cmd == "Z" and not args:
                if self.unstable:
                    wait = self.stable_wait_s
                elif abs(self.gross_g) > 0.02 * self.capacity_g:  # zeroing range: 2 % of capacity
                    return (b"Z +" if self.gross_g > 0 else b"Z -") + CRLF
                else:
                    self.zero_offset_g, self.tare_g = self.gross_g, 0.0
                    return b"Z A" + CRLF
            elif cmd == "T" and not args:
                if self.unstable:
                    wait = self.stable_wait_s
                else:
                    tare = self.gross_g - self.zero_offset_g
                    if tare <= 0:
                        return b"T -" + CRLF
                    if tare > self.capacity_g:
                        return b"T +" + CRLF
                    self.tare_g = tare
                    return format_weight_reply("T", ReplyStatus.STABLE, self._rounded(tare))
            elif cmd == "TA" and not args:
                return format_weight_reply("TA", ReplyStatus.ACK, self._rounded(self.tare_g))
            elif cmd == "TAC" and not args:
                self.tare_g = 0.0
                return b"TAC A" + CRLF
            elif cmd == "@" and not args:
                self.tare_g = 0.0  # as after switching on: tare cleared, no zeroing
                return f'I4 A "{self.serial_number}"'.encode("ascii") + CRLF
            elif cmd == "I4" and not args:
                return f'I4 A "{self.serial_number}"'.encode("ascii") + CRLF
            elif cmd == "XW" and len(args) == 1:
                try:
                    self.gross_g = float(args[0])
                except ValueError:
                    return b"EL" + CRLF
                return b"XW A" + CRLF
            elif cmd == "XU" and len(args) == 1 and args[0] in ("0", "1"):
                self.unstable = args[0] == "1"
                return b"XU A" + CRLF
            else:
                return b"ES" + CRLF
        # S, Z or T on a moving load: a balance waits for stability, then gives up with "<cmd> I"
        time.sleep(wait)
        return f"{cmd} I".encode("ascii") + CRLF

    def _weight(self, cmd: str, status: ReplyStatus) -> bytes:
        net = self.gross_g - self.zero_offset_g - self.tare_g
        if self.gross_g - self.zero_offset_g > self.capacity_g:
            return f"{cmd} +".encode("ascii") + CRLF
        if self.gross_g - self.zero_offset_g < -0.02 * self.capacity_g:
            return f"{cmd} -".encode("ascii") + CRLF
        if status is ReplyStatus.DYNAMIC:
            net += self.rng.uniform(-0.05, 0.05) * max(abs(net), 10.0)
        return format_weight_reply(cmd, status, self._rounded(net))
