"""What every page shares: the config, the worker, the booted station (owned by the worker thread), the
user store and the logged-in user. Station objects are only touched inside ``jobs.submit`` functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject, pyqtSignal

from station.config import StationConfig
from station.users import User, UserStore
from ui.jobs import Jobs

if TYPE_CHECKING:
    from station.app import Station
    from station.demo import SimulatedReturn


@dataclass(frozen=True, slots=True)
class SimQueue:
    """Simulated returns relabelled with this session's ids, so a second session never reuses unit codes."""

    items: tuple["SimulatedReturn", ...]

    @classmethod
    def build(cls, n: int = 240, seed: int | None = None) -> "SimQueue":
        from station.demo import simulated_returns

        session = format(int(time.time() * 1000) % 36**6, "x") if seed is None else f"s{seed}"
        out = []
        for i, sim in enumerate(simulated_returns(n, seed or 0)):
            r = sim.request
            unit = f"U{session}-{r.unit_code}" if r.unit_code else None
            out.append(replace(sim, request=replace(r, order_id=f"ORD-{session}-{i:05d}", unit_code=unit)))
        return cls(tuple(out))


class StationContext(QObject):
    station_ready = pyqtSignal()
    boot_failed = pyqtSignal(str)
    user_changed = pyqtSignal(object)
    records_changed = pyqtSignal()  # an inspection or override was written

    def __init__(self, config: StationConfig, parent: QObject | None = None, config_path: Path | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.config_path = config_path  # the TOML the station was started with (settings save there)
        self.jobs = Jobs(self)
        self.station: "Station | None" = None
        self.users: UserStore | None = None
        self.user: User | None = None
        self.demo_users: list = []
        self.sims: SimQueue | None = None
        self._next_sim = 0

    @property
    def simulated(self) -> bool:
        from station.config import SyntheticCameraConfig

        return isinstance(self.config.camera, SyntheticCameraConfig)

    def boot(self, on_done=None) -> None:
        """Load catalogue, model and stores on the worker (long work: the window stays live)."""
        from station.app import boot

        cfg = self.config
        self.jobs.start()

        def work():
            station = boot(cfg)
            users = UserStore(cfg.station.data_dir / "users.db").open()
            seeded = users.seed_demo_users()
            return station, users, seeded

        def done(result):
            self.station, self.users, self.demo_users = result
            if self.simulated and self.sims is None:
                self.sims = SimQueue.build()
            self.station_ready.emit()
            if on_done:
                on_done()

        self.jobs.submit(work, done, lambda exc: self.boot_failed.emit(str(exc)))

    def next_simulated(self) -> "SimulatedReturn | None":
        if self.sims is None:
            return None
        sim = self.sims.items[self._next_sim % len(self.sims.items)]
        self._next_sim += 1
        return sim

    def find_simulated(self, order_id: str) -> "SimulatedReturn | None":
        if self.sims is None:
            return None
        return next((s for s in self.sims.items if s.request.order_id == order_id), None)

    def set_user(self, user: User | None) -> None:
        self.user = user
        self.user_changed.emit(user)

    def shutdown(self) -> None:
        station, users = self.station, self.users
        if self.jobs._thread is not None:
            def close():
                if station is not None:
                    station.close()
                if users is not None:
                    users.close()
            self.jobs.submit(close)
            self.jobs.stop()
        self.station = None
        self.users = None
