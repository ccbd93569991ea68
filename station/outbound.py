"""What leaves the station once a decision is durable: its licence-plate label and its disposition webhook.

Both are queued in their own SQLite files (``labels.db``, ``webhooks.db``) on the inspection path, which never
waits on a printer or a receiver, and sent by one background thread. Nothing here can change or block a
decision: a queueing failure is logged and the record stands (``station label RECORD_ID`` reprints any label).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from station.domain import InspectionRecord
from station.licence_plate import LabelError, LabelSpool, Printer, printer_for_config, retry_unprinted, zpl_for
from station.marketplace import MarketplaceConfig, codes_for
from station.webhooks import (EventType, WebhookError, WebhookOutbox, WebhooksConfig, WebhookSender,
                              disposition_payload)

log = logging.getLogger(__name__)


class Outbound:
    """Label spool + webhook outbox for one station, with the thread that drains them."""

    def __init__(self, data_dir: Path, printer: Printer | None, sender: WebhookSender | None,
                 marketplace: MarketplaceConfig, idle_s: float = 2.0) -> None:
        self.data_dir = Path(data_dir)
        self.printer = printer
        self.sender = sender
        self.marketplace = marketplace
        self.idle_s = idle_s
        # The inspection path and the sending thread each have their own connection to each file (WAL): a printer
        # that takes its timeout to refuse holds up only the thread, never the next item's queueing.
        self._labels: LabelSpool | None = None
        self._webhooks: WebhookOutbox | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Outbound":
        if self.printer is not None:
            try:
                self._labels = LabelSpool(self.data_dir / "labels.db").open()
            except LabelError as exc:
                log.warning("labels are off: %s", exc)
        if self.sender is not None:
            try:
                self._webhooks = WebhookOutbox(self.data_dir / "webhooks.db").open()
            except (WebhookError, sqlite3.Error, OSError) as exc:
                log.warning("webhooks are off: %s", exc)
        if self._labels is not None or self._webhooks is not None:
            self._thread = threading.Thread(target=self._run, name="outbound", daemon=True)
            self._thread.start()
        return self

    def marketplace_codes(self, grade, disposition, category: str) -> dict:
        return codes_for(grade, disposition, category, config=self.marketplace).to_json()

    def after_decision(self, record: InspectionRecord, category: str, marketplace: dict | None) -> None:
        """Queue the record's label and webhook event. Never raises: the decision is already durable."""
        try:
            if self._labels is not None:
                self._labels.add(record.record_id, zpl_for(record))
            if self._webhooks is not None:
                self._webhooks.enqueue(disposition_payload(record, EventType.DISPOSITION_DECIDED,
                                                           marketplace=marketplace, category=category))
        except (LabelError, WebhookError, sqlite3.Error, OSError) as exc:
            log.warning("label/webhook for %s not queued (reprint with `station label`): %s", record.record_id, exc)
            return
        self._wake.set()

    def drain(self) -> None:
        """One round on the thread's own connections: print what is unprinted, deliver what is due. Failures
        stay queued for the next round."""
        try:
            if self._labels is not None and self.printer is not None:
                with LabelSpool(self.data_dir / "labels.db").open() as spool:
                    retry_unprinted(spool, self.printer)
            if self._webhooks is not None and self.sender is not None:
                with WebhookOutbox(self.data_dir / "webhooks.db").open() as outbox:
                    self.sender.deliver_pending(outbox)
        except (LabelError, WebhookError, sqlite3.Error, OSError) as exc:
            log.warning("outbound round failed, retried later: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_s)
            self._wake.clear()
            self.drain()

    def close(self) -> None:
        """Stop the thread after a last round (so a one-shot `station inspect` prints its label)."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
            self.drain()
        for handle in (self._labels, self._webhooks):
            if handle is not None:
                handle.close()
        self._labels = self._webhooks = None
        if self.sender is not None:
            self.sender.close()


def make_outbound(cfg, data_dir: Path) -> Outbound:
    """From ``[labels]``, ``[webhooks]`` and ``[marketplace]``. A printer or receiver that cannot be set up is
    logged and left out: the station inspects without it."""
    printer = None
    try:
        printer = printer_for_config(cfg.labels, data_dir)
    except LabelError as exc:
        log.warning("labels are off: %s", exc)
    sender = None
    if cfg.webhooks.url:
        try:
            sender = WebhookSender.from_config(cfg.webhooks)
        except WebhookError as exc:
            log.warning("webhooks are off: %s", exc)
    return Outbound(data_dir, printer, sender, cfg.marketplace)


__all__ = ["Outbound", "WebhooksConfig", "make_outbound"]
