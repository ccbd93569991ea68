"""Simulated returns for the demo and the benchmark: RMAs plus what is really in the parcel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.domain import ReturnReason, ReturnRequest
from vision.camera import StagedItem
from vision.catalogue import SAMPLE_SKUS

CARRIERS = ("sf-express", "yto", "zto", "jd-logistics")
STREAMERS = ("live-lily", "host-wang", "studio-nine", None)


@dataclass(frozen=True, slots=True)
class SimulatedReturn:
    request: ReturnRequest
    staged: StagedItem
    story: str  # what was really done to the item, for the demo table


# (story, sku, reason, defects by view, staged sku override, reuse unit code)
_STORIES: tuple[tuple[str, str, ReturnReason, dict[str, tuple[str, ...]], str | None, bool], ...] = (
    ("unopened bottle, changed mind", "BTL-FEED-240", ReturnReason.NO_REASON_7DAY, {}, None, False),
    ("bottle opened and used", "BTL-FEED-240", ReturnReason.QUALITY_ISSUE, {"front": ("seal_broken",)}, None, False),
    ("car seat shell cracked", "SEAT-CAR-G1", ReturnReason.QUALITY_ISSUE, {"front": ("crack",)}, None, False),
    ("car seat dented in transit", "SEAT-CAR-G1", ReturnReason.DAMAGED_IN_TRANSIT, {"side": ("dent",)}, None, False),
    ("earbuds box crushed in transit", "GAD-EARBUD-X2", ReturnReason.DAMAGED_IN_TRANSIT,
     {"front": ("package_damage",)}, None, False),
    ("earbuds returned as new", "GAD-EARBUD-X2", ReturnReason.NO_REASON_7DAY, {}, None, False),
    ("T-shirt worn and stained", "APP-TEE-M", ReturnReason.NOT_AS_DESCRIBED, {"front": ("stain",)}, None, False),
    ("T-shirt torn", "APP-TEE-M", ReturnReason.QUALITY_ISSUE, {"front": ("tear",)}, None, False),
    ("lotion leaking, seal intact", "COS-LOTION-200", ReturnReason.QUALITY_ISSUE, {"front": ("leak",)}, None, False),
    ("lotion returned unopened", "COS-LOTION-200", ReturnReason.NO_REASON_7DAY, {}, None, False),
    ("bear scuffed", "TOY-BEAR-S", ReturnReason.NO_REASON_7DAY, {"front": ("scratch",)}, None, False),
    ("bear with crumbs", "TOY-BEAR-S", ReturnReason.QUALITY_ISSUE, {"front": ("foreign_object",)}, None, False),
    ("bib worn", "CARE-BIB-01", ReturnReason.WRONG_SIZE, {"front": ("wear",)}, None, False),
    ("kettle box seal cut", "HH-KETTLE-1L", ReturnReason.NO_REASON_7DAY, {"front": ("seal_broken",)}, None, False),
    ("kettle swapped for a cheaper box", "HH-KETTLE-1L", ReturnReason.QUALITY_ISSUE, {}, "GAD-EARBUD-X2", False),
    ("speaker scratched", "GAD-SPEAKER-M", ReturnReason.QUALITY_ISSUE, {"front": ("scratch",)}, None, False),
    ("speaker screen cracked", "GAD-SPEAKER-M", ReturnReason.QUALITY_ISSUE, {"front": ("crack",)}, None, False),
    ("same earbuds unit back again", "GAD-EARBUD-X2", ReturnReason.NO_REASON_7DAY, {}, None, True),
    ("car seat swapped for a T-shirt", "SEAT-CAR-G1", ReturnReason.WRONG_ITEM, {}, "APP-TEE-M", False),
    ("bottle unopened, wrong colour claim", "BTL-FEED-240", ReturnReason.COLOUR_DIFFERENCE, {}, None, False),
    ("T-shirt fine, colour complaint", "APP-TEE-M", ReturnReason.COLOUR_DIFFERENCE, {}, None, False),
    ("kettle box crushed, kettle dented", "HH-KETTLE-1L", ReturnReason.DAMAGED_IN_TRANSIT,
     {"front": ("package_damage", "dent")}, None, False),
    ("speaker returned unused", "GAD-SPEAKER-M", ReturnReason.NO_REASON_7DAY, {}, None, False),
    ("lotion cap seal broken", "COS-LOTION-200", ReturnReason.NOT_AS_DESCRIBED, {"front": ("seal_broken",)}, None, False),
)


def simulated_returns(n: int, seed: int = 0, run: str = "") -> list[SimulatedReturn]:
    """``n`` returns cycling through the stories; unit codes are unique unless a story reuses one.

    ``run`` tags order ids and unit codes, so a second demo run in the same database is not a second
    return of the same units (which the station would rightly never grade A)."""
    tag = f"{run}-" if run else ""
    rng = np.random.default_rng(seed)
    brands = {s.sku: s.brand for s in SAMPLE_SKUS}
    out: list[SimulatedReturn] = []
    last_unit: dict[str, str] = {}
    for i in range(n):
        story, sku, reason, defects, staged_sku, reuse = _STORIES[i % len(_STORIES)]
        unit = last_unit.get(sku) if reuse and sku in last_unit else f"U{tag}{seed:02d}{i:05d}"
        last_unit[sku] = unit
        streamer = STREAMERS[int(rng.integers(0, len(STREAMERS)))]
        request = ReturnRequest(
            order_id=f"ORD-{tag}{seed:02d}-{i:05d}", sku=sku, reason=reason, unit_code=unit,
            channel="live" if streamer else "shop", streamer=streamer, brand=brands[sku],
            carrier=CARRIERS[int(rng.integers(0, len(CARRIERS)))],
        )
        staged = StagedItem(staged_sku or sku, defects, seed=int(rng.integers(0, 2**31)))
        out.append(SimulatedReturn(request, staged, story))
    return out
