"""Link layer of the station protocol: stop-and-wait ACK/NAK, retransmission with timeout, duplicate
suppression, reconnect after unplug. Framing lives in hardware.protocol; bytes move through a Transport.

Both ends use this: the station over a serial port opened by URL (``serial_for_url``: ``loop://``, a pty
path, ``/dev/ttyUSB0``, ``socket://host:port`` are one code path), the simulator over its pty master.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from hardware.protocol import (
    Ack,
    AckStatus,
    DecodeErrorKind,
    Message,
    Nak,
    NakReason,
    ProtocolError,
    StreamDecoder,
    encode_frame,
    encode_message,
    parse_message,
)

log = logging.getLogger(__name__)


class LinkError(RuntimeError):
    """The port could not be opened, or went away (unplugged); the message names the port."""


class LinkDown(LinkError):
    """A message could not be delivered: no ACK after every retry, or the port is not connected."""


class Transport(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    """A pyserial port opened by URL; nothing is opened before ``open()``. ``device`` names what is on the
    other end in error messages (the conveyor, the scale)."""

    def __init__(self, url: str, baudrate: int = 115200, device: str = "conveyor") -> None:
        self.name = url
        self.url = url
        self.baudrate = baudrate
        self.device = device
        self._port = None

    def open(self) -> None:
        import serial

        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.02, write_timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._port = None
            raise LinkError(f"cannot open {self.device} port {self.url!r}: {exc}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        port = self._port
        if port is None:
            raise LinkError(f"port {self.url} is closed")
        try:
            waiting = port.in_waiting
            return port.read(max(1, min(max_bytes, waiting)))
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise LinkError(f"port {self.url} went away: {exc}") from None

    def write(self, data: bytes) -> None:
        import serial

        port = self._port
        if port is None:
            raise LinkError(f"port {self.url} is closed")
        try:
            port.write(data)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise LinkError(f"port {self.url} went away: {exc}") from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - closing a port that is already gone
                pass


class FdTransport:
    """A raw file descriptor (the simulator's pty master). Owns the fd once opened: ``close()`` closes it."""

    def __init__(self, fd: int, name: str = "fd") -> None:
        self.name = name
        self.fd: int | None = fd

    def open(self) -> None:
        if self.fd is None:
            raise LinkError(f"{self.name} is closed")
        os.set_blocking(self.fd, False)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        fd = self.fd
        if fd is None:
            raise LinkError(f"{self.name} is closed")
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b""
            return os.read(fd, max_bytes)
        except BlockingIOError:
            return b""
        except (OSError, ValueError) as exc:
            raise LinkError(f"{self.name} went away: {exc}") from None

    def write(self, data: bytes) -> None:
        fd = self.fd
        if fd is None:
            raise LinkError(f"{self.name} is closed")
        try:
            os.write(fd, data)
        except BlockingIOError:
            pass  # the peer is not draining: the bytes are lost, as on a real wire; ACK timeouts recover
        except OSError as exc:
            if exc.errno == errno.EIO:
                return  # no one on the other end yet
            raise LinkError(f"{self.name} went away: {exc}") from None

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    received: int = 0
    retransmits: int = 0
    duplicates: int = 0
    naks_sent: int = 0
    naks_received: int = 0
    decode_errors: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in DecodeErrorKind})
    reconnects: int = 0
    send_failures: int = 0


Handler = Callable[[Message], AckStatus]


class SerialLink:
    """One end of a link. ``handler`` runs on the reader thread for each new message and returns the ACK
    status: it must be quick and must not call ``send`` (queue the work instead).

    ``start()`` spawns the reader thread, which (re)opens the transport whenever it is down.
    """

    def __init__(self, transport_factory: Callable[[], Transport], handler: Handler, name: str = "link",
                 ack_timeout: float = 0.05, retries: int = 8, reconnect_interval: float = 0.1,
                 on_state: Callable[[bool], None] | None = None,
                 outgoing_filter: Callable[[bytes], bytes] | None = None) -> None:
        self.name = name
        self._factory = transport_factory
        self._handler = handler
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.reconnect_interval = reconnect_interval
        self._on_state = on_state
        self.outgoing_filter = outgoing_filter
        self.stats = LinkStats()
        self.last_rx = 0.0
        self.last_error = ""
        self._transport: Transport | None = None
        self._decoder = StreamDecoder()
        self._write_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._seq = 0
        self._outstanding: int | None = None
        self._reply: AckStatus | None = None
        self._nak = False
        self._last_rx_seq: int | None = None
        self._last_rx_status = AckStatus.OK
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> "SerialLink":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
            self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._drop("closed")

    def disconnect(self, why: str = "disconnected") -> None:
        """Drop the transport now (the reader thread reopens it): used when the port is known to be gone."""
        self._drop(why)

    def _drop(self, why: str) -> None:
        t, self._transport = self._transport, None
        if t is not None:
            t.close()
        if self._connected.is_set():
            self._connected.clear()
            self.last_error = why
            log.info("%s: link down (%s)", self.name, why)
            with self._cond:
                self._cond.notify_all()
            if self._on_state:
                self._on_state(False)

    def _open(self) -> bool:
        try:
            t = self._factory()
            t.open()
        except LinkError as exc:
            self.last_error = str(exc)
            return False
        self._decoder.reset()
        self._last_rx_seq = None  # the peer may have restarted: its sequence numbers begin again
        self._transport = t
        self.stats.reconnects += 1
        self.last_rx = time.monotonic()
        self._connected.set()
        if self._on_state:
            self._on_state(True)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._transport is None:
                if not self._open():
                    self._stop.wait(self.reconnect_interval)
                continue
            try:
                data = self._transport.read(4096, 0.02)
            except LinkError as exc:
                self._drop(str(exc))
                continue
            if data:
                self._receive(data)

    # ---------------------------------------------------------------------------------------- receive

    def _write(self, data: bytes) -> None:
        if self.outgoing_filter is not None:
            data = self.outgoing_filter(data)
        with self._write_lock:
            t = self._transport
            if t is None:
                raise LinkError(f"{self.name}: not connected")
            t.write(data)

    def _reply_frame(self, data: bytes) -> None:
        try:
            self._write(data)
        except LinkError as exc:
            self._drop(str(exc))

    def _receive(self, data: bytes) -> None:
        frames, errors = self._decoder.feed(data)
        for e in errors:
            self.stats.decode_errors[e.kind.value] += 1
        if any(e.kind is DecodeErrorKind.BAD_CRC for e in errors):
            # Whose frame it was is unknown: a NAK makes the peer resend what it has outstanding at once.
            self.stats.naks_sent += 1
            self._reply_frame(encode_message(0, Nak(0xFF, NakReason.BAD_CRC)))
        for frame in frames:
            self.last_rx = time.monotonic()
            try:
                msg = parse_message(frame)
            except ProtocolError as exc:
                log.warning("%s: bad frame seq %d type 0x%02x: %s", self.name, frame.seq, frame.type, exc)
                reason = NakReason.UNKNOWN_TYPE if "unknown message type" in str(exc) else NakReason.BAD_PAYLOAD
                self.stats.naks_sent += 1
                self._reply_frame(encode_message(frame.seq, Nak(frame.seq, reason)))
                continue
            if isinstance(msg, Ack):
                with self._cond:
                    if self._outstanding == msg.acked_seq:
                        self._reply = msg.status
                        self._cond.notify_all()
                continue
            if isinstance(msg, Nak):
                self.stats.naks_received += 1
                if msg.reason == NakReason.UNKNOWN_TYPE and self._outstanding == msg.nacked_seq:
                    with self._cond:
                        self._reply = AckStatus.UNSUPPORTED
                        self._cond.notify_all()
                    continue
                with self._cond:
                    self._nak = True
                    self._cond.notify_all()
                continue
            if frame.seq == self._last_rx_seq:
                self.stats.duplicates += 1  # our ACK was lost: acknowledge again, do not act twice
                self._reply_frame(encode_message(frame.seq, Ack(frame.seq, self._last_rx_status)))
                continue
            self.stats.received += 1
            try:
                status = self._handler(msg)
            except Exception:  # noqa: BLE001 - a handler bug must not kill the link
                log.exception("%s: handler failed on %r", self.name, msg)
                status = AckStatus.REFUSED
            self._last_rx_seq, self._last_rx_status = frame.seq, status
            self._reply_frame(encode_message(frame.seq, Ack(frame.seq, status)))

    # ---------------------------------------------------------------------------------------- send

    def send(self, msg: Message) -> AckStatus:
        """Deliver ``msg`` and return the peer's ACK status; LinkDown when it cannot be delivered."""
        with self._send_lock:
            self._seq = (self._seq + 1) & 0xFF
            seq = self._seq
            data = encode_frame(seq, msg.TYPE, msg.payload())
            with self._cond:
                self._outstanding, self._reply, self._nak = seq, None, False
            try:
                for attempt in range(self.retries + 1):
                    if not self.connected:
                        raise LinkDown(f"{self.name}: not connected ({self.last_error or 'port not open'})")
                    if attempt:
                        self.stats.retransmits += 1
                    try:
                        self._write(data)
                    except LinkError as exc:
                        self._drop(str(exc))
                        raise LinkDown(f"{self.name}: {exc}") from None
                    deadline = time.monotonic() + self.ack_timeout
                    with self._cond:
                        while self._reply is None and not self._nak and self.connected:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._cond.wait(left)
                        if self._reply is not None:
                            self.stats.sent += 1
                            return self._reply
                        self._nak = False
                self.stats.send_failures += 1
                raise LinkDown(f"{self.name}: no ACK for {type(msg).__name__} after {self.retries + 1} tries")
            finally:
                with self._cond:
                    self._outstanding = None
