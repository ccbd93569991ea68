"""Simulated returns for the demo and the benchmark: RMAs plus what is really in the parcel.

Each story says what was done to the item and what the station should therefore decide (``Expect``): the demo
table shows, per return, whether the outcome is what the story says, and tests/test_demo.py holds the default
demo to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from hardware.scale import ScaleState, WeightMeasurement
from station.domain import Decision, Disposition, Frame, Grade, Party, ReturnReason, ReturnRequest
from vision.camera import StagedItem
from vision.catalogue import SAMPLE_SKUS, sample_sku

CARRIERS = ("sf-express", "yto", "zto", "jd-logistics")
STREAMERS = ("live-lily", "host-wang", "studio-nine", None)

R = ReturnReason
G = Grade
D = Disposition
P = Party


@dataclass(frozen=True, slots=True)
class Expect:
    """What a story's title means for the decision: its grade, its disposition (``manual_review`` where a
    supervisor must look, ``proposed`` then being what the station proposes), the rule ids that must fire and
    the party that pays the most."""

    grade: Grade
    disposition: Disposition
    rules: tuple[str, ...] = ()
    liable: Party | None = None
    proposed: Disposition | None = None

    def mismatch(self, decision: Decision) -> str | None:
        """None when ``decision`` is what the story says; else what differs, for a reader."""
        wrong = []
        if decision.grade != self.grade:
            wrong.append(f"grade {self.grade.value}")
        if decision.disposition != self.disposition:
            wrong.append(self.disposition.value)
        if self.proposed is not None and decision.proposed_disposition not in (self.proposed, None):
            wrong.append(f"proposed {self.proposed.value}")
        missing = [r for r in self.rules if r not in decision.rules_fired]
        if missing:
            wrong.append(" ".join(missing))
        if self.liable is not None:
            top = max(decision.liability, key=lambda s: s.share, default=None)
            if top is None or top.party != self.liable:
                wrong.append(f"{self.liable.value} liable")
        return ("expected " + ", ".join(wrong)) if wrong else None

    def describe(self) -> str:
        disp = self.disposition.value + (f" ({self.proposed.value})" if self.proposed else "")
        return f"{self.grade.value} {disp}" + (f", {self.liable.value} pays" if self.liable else "")


@dataclass(frozen=True, slots=True)
class Story:
    title: str  # what was really done to the item, for the demo table
    sku: str
    reason: ReturnReason
    defects: dict[str, tuple[str, ...]]
    expect: Expect
    # The rendering the default demo (seed 0) stages: one whose camera shots show what the title says (a
    # clean item rendered clean, crumbs seen as crumbs). Other seeds render afresh, detector misses included.
    render_seed: int
    staged_sku: str | None = None  # what is really in the parcel, when it is not the SKU on the RMA
    reuse_unit: bool = False  # the unit code of the previous return of this SKU
    # What the parcel weighs against the catalogue weight of what is in it (a part taken out: negative).
    weight_offset_g: float = 0.0
    # Text printed on the item per view (a serial sticker, a date stamp), and the serial the order shipped.
    printed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class SimulatedReturn:
    request: ReturnRequest
    staged: StagedItem
    story: str  # the story's title
    expect: Expect | None = field(default=None, compare=False)
    weight_g: float | None = None  # what a bench scale reads for this parcel (None: the SKU has no weight_g)
    printed: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def mismatch(self, decision: Decision) -> str | None:
        return None if self.expect is None else self.expect.mismatch(decision)

    def printed_on(self, frames: list[Frame]) -> list[Frame]:
        """The camera's frames with this parcel's printed text on the item (the synthetic camera renders shapes
        and print, not words): a label sticker at the centre of the product in each view that has text."""
        return [dataclasses.replace(f, image=print_label(f.image, self.printed[f.view])) if f.view in self.printed
                else f for f in frames]


def print_label(image: np.ndarray, lines: tuple[str, ...], bench_grey: int = 200) -> np.ndarray:
    """A white sticker with ``lines`` printed in black, centred on the product (what differs from the bench)."""
    out = image.copy()
    product = (np.abs(image.astype(np.int16) - bench_grey).max(axis=2) > 30).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(product) if product.any() else (0, 0, image.shape[1], image.shape[0])
    face, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2
    sizes = [cv2.getTextSize(ln, face, scale, thick)[0] for ln in lines]
    line_h = max(s[1] for s in sizes) + 12
    sw, sh = max(s[0] for s in sizes) + 20, line_h * len(lines) + 10
    x0, y0 = x + (w - sw) // 2, y + (h - sh) // 2
    cv2.rectangle(out, (x0, y0), (x0 + sw, y0 + sh), (246, 246, 244), -1)
    for i, ln in enumerate(lines):
        cv2.putText(out, ln, (x0 + 10, y0 + 5 + line_h * (i + 1) - 6), face, scale, (20, 20, 20), thick, cv2.LINE_AA)
    return out


STORIES: tuple[Story, ...] = (
    Story("unopened bottle, changed mind", "BTL-FEED-240", R.NO_REASON_7DAY, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-NO-FAULT-RETURN"), P.CONSUMER), 1),
    Story("bottle opened and used", "BTL-FEED-240", R.QUALITY_ISSUE, {"front": ("seal_broken",)},
          Expect(G.D, D.SCRAP, ("CAT-INFANT-HYGIENE-OPENED",), P.CONSUMER), 547800578),
    Story("car seat shell cracked", "SEAT-CAR-G1", R.QUALITY_ISSUE, {"front": ("crack",)},
          Expect(G.D, D.SCRAP, ("CAT-SAFETY-CRACK-DENT",)), 1),
    Story("car seat dented in transit", "SEAT-CAR-G1", R.DAMAGED_IN_TRANSIT, {"side": ("dent",)},
          Expect(G.D, D.SCRAP, ("CAT-SAFETY-CRACK-DENT",)), 1465339467),
    Story("earbuds box crushed in transit", "GAD-EARBUD-X2", R.DAMAGED_IN_TRANSIT, {"front": ("package_damage",)},
          Expect(G.B, D.OPEN_BOX, ("L-TRANSIT-PACKAGE-ONLY",), P.CARRIER), 2084654370),
    Story("earbuds returned as new", "GAD-EARBUD-X2", R.NO_REASON_7DAY, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-NO-FAULT-RETURN"), P.CONSUMER), 1167425779),
    Story("T-shirt worn and stained", "APP-TEE-M", R.NOT_AS_DESCRIBED, {"front": ("stain",)},
          Expect(G.C, D.REFURBISH, ("L-USE",), P.CONSUMER), 595598246),
    Story("T-shirt torn", "APP-TEE-M", R.QUALITY_ISSUE, {"front": ("tear",)},
          Expect(G.C, D.REFURBISH, ("G-REPAIR",)), 5880884),
    Story("lotion leaking, seal intact", "COS-LOTION-200", R.QUALITY_ISSUE, {"front": ("leak",)},
          Expect(G.D, D.SCRAP, ("CAT-LIQUID-LEAK", "L-MFG-SEALED"), P.BRAND), 1952249162),
    Story("lotion returned unopened", "COS-LOTION-200", R.NO_REASON_7DAY, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-NO-FAULT-RETURN"), P.CONSUMER), 1566923139),
    Story("bear scuffed", "TOY-BEAR-S", R.NO_REASON_7DAY, {"front": ("scratch",)},
          Expect(G.B, D.OPEN_BOX, ("G-COSMETIC",)), 191741831),
    Story("bear with crumbs", "TOY-BEAR-S", R.QUALITY_ISSUE, {"front": ("foreign_object",)},
          Expect(G.B, D.OPEN_BOX, ("G-COSMETIC", "L-USE"), P.CONSUMER), 8),
    Story("bib worn", "CARE-BIB-01", R.WRONG_SIZE, {"front": ("wear",)},
          Expect(G.D, D.SCRAP, ("CAT-INFANT-HYGIENE-USED", "L-USE"), P.CONSUMER), 1033071480),
    Story("kettle box seal cut", "HH-KETTLE-1L", R.NO_REASON_7DAY, {"front": ("seal_broken",)},
          Expect(G.B, D.OPEN_BOX, ("G-OPENED",)), 60816030),
    Story("kettle swapped for a cheaper box", "HH-KETTLE-1L", R.QUALITY_ISSUE, {},
          Expect(G.D, D.MANUAL_REVIEW, ("G-WRONG-ITEM", "L-SWAP"), P.CONSUMER), 17790420, staged_sku="GAD-EARBUD-X2"),
    Story("speaker scratched", "GAD-SPEAKER-M", R.QUALITY_ISSUE, {"front": ("scratch",)},
          Expect(G.B, D.OPEN_BOX, ("G-COSMETIC",)), 1389828893),
    Story("speaker screen cracked", "GAD-SPEAKER-M", R.QUALITY_ISSUE, {"front": ("crack",)},
          Expect(G.D, D.RETURN_TO_VENDOR, ("G-BROKEN", "L-MFG-SEALED"), P.BRAND), 1640795442),
    Story("same earbuds unit back again", "GAD-EARBUD-X2", R.NO_REASON_7DAY, {},
          Expect(G.B, D.OPEN_BOX, ("CAT-UNIT-SEEN-BEFORE",)), 2141492030, reuse_unit=True),
    Story("car seat swapped for a T-shirt", "SEAT-CAR-G1", R.WRONG_ITEM, {},
          Expect(G.D, D.MANUAL_REVIEW, ("G-WRONG-ITEM", "L-SWAP"), P.CONSUMER), 815020182, staged_sku="APP-TEE-M"),
    Story("bottle unopened, wrong colour claim", "BTL-FEED-240", R.COLOUR_DIFFERENCE, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-COLOUR-AS-CATALOGUE"), P.CONSUMER), 1),
    Story("T-shirt fine, colour complaint", "APP-TEE-M", R.COLOUR_DIFFERENCE, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-COLOUR-AS-CATALOGUE"), P.CONSUMER), 1511830743),
    Story("kettle box crushed, kettle dented", "HH-KETTLE-1L", R.DAMAGED_IN_TRANSIT, {"front": ("package_damage", "dent")},
          Expect(G.C, D.REFURBISH, ("G-REPAIR", "L-TRANSIT-ALIGNED"), P.CARRIER), 16),
    Story("speaker returned unused", "GAD-SPEAKER-M", R.NO_REASON_7DAY, {},
          Expect(G.A, D.RESTOCK, ("G-CLEAN", "L-NO-FAULT-RETURN"), P.CONSUMER), 1815655709),
    Story("lotion cap seal broken", "COS-LOTION-200", R.NOT_AS_DESCRIBED, {"front": ("seal_broken",)},
          Expect(G.C, D.REFURBISH, ("CAT-COSMETICS-OPENED",)), 1),
    # Only the scale can tell this one: the box looks as new, 30 g of it (the charging case) is not there. After
    # the first 24 so the default demo (24 items) stays as it is; it is told with --items 25 or more, and is
    # decided as told only when the demo weighs its parcels (DemoScale).
    Story("light earbuds box, a 30 g part missing", "GAD-EARBUD-X2", R.MISSING_PARTS, {},
          Expect(G.C, D.RETURN_TO_VENDOR, ("G-MISSING-PART", "L-MFG-MISSING-SEALED"), P.BRAND), 1167425779,
          weight_offset_g=-30.0),
    # Text on the item (vision/ocr.py). Told with --items 27 or more, and decided as told where the demo prints
    # each parcel's text on its frames (SimulatedReturn.printed_on).
    Story("earbuds back with another unit's serial", "GAD-EARBUD-X2", R.NO_REASON_7DAY, {},
          Expect(G.D, D.MANUAL_REVIEW, ("G-SERIAL-MISMATCH", "L-SERIAL-SWAP"), P.CONSUMER), 1167425779,
          printed={"front": ("S/N: SB9T3R6W2H",)}, serial="SB4K7M2P9X"),
    Story("formula tin past its date", "FORM-TIN-800", R.QUALITY_ISSUE, {},
          Expect(G.D, D.SCRAP, ("CAT-EXPIRED", "L-EXPIRED-SHIPPED"), P.BRAND), 1,
          printed={"front": ("LOT 6021B", "EXP 14/02/2026")}),
)


class DemoScale:
    """The demo's bench scale: reads what the staged parcel weighs (``put``), as the synthetic camera shows
    what it looks like. A parcel without a weight reads as a scale that answered nothing."""

    def __init__(self) -> None:
        self._grams: float | None = None

    def put(self, grams: float | None) -> None:
        self._grams = grams

    def measure(self) -> WeightMeasurement:
        if self._grams is None:
            return WeightMeasurement(ScaleState.ABSENT, None, "demo scale: nothing staged on it")
        return WeightMeasurement(ScaleState.STABLE, self._grams, f"stable {self._grams:.2f} g (demo scale)")

    def close(self) -> None:
        pass


def simulated_returns(n: int, seed: int = 0, run: str = "") -> list[SimulatedReturn]:
    """``n`` returns cycling through the stories; unit codes are unique unless a story reuses one.

    Seed 0 (the default demo) stages the first pass through the stories on their ``render_seed``; any other
    seed, and later passes, render each parcel afresh from the seed. ``run`` tags order ids and unit codes, so
    a second demo run in the same database is not a second return of the same units (which the station would
    rightly never grade A)."""
    tag = f"{run}-" if run else ""
    rng = np.random.default_rng(seed)
    brands = {s.sku: s.brand for s in SAMPLE_SKUS}
    out: list[SimulatedReturn] = []
    last_unit: dict[str, str] = {}
    for i in range(n):
        story = STORIES[i % len(STORIES)]
        sku = story.sku
        unit = last_unit.get(sku) if story.reuse_unit and sku in last_unit else f"U{tag}{seed:02d}{i:05d}"
        last_unit[sku] = unit
        streamer = STREAMERS[int(rng.integers(0, len(STREAMERS)))]
        request = ReturnRequest(
            order_id=f"ORD-{tag}{seed:02d}-{i:05d}", sku=sku, reason=story.reason, unit_code=unit,
            channel="live" if streamer else "shop", streamer=streamer, brand=brands[sku],
            carrier=CARRIERS[int(rng.integers(0, len(CARRIERS)))], serial=story.serial,
        )
        render = int(rng.integers(0, 2**31))
        pinned = seed == 0 and i < len(STORIES)
        staged = StagedItem(story.staged_sku or sku, story.defects, seed=story.render_seed if pinned else render)
        unit_weight = sample_sku(staged.looks_like_sku).weight_g
        weight = None if unit_weight is None else unit_weight + story.weight_offset_g
        out.append(SimulatedReturn(request, staged, story.title, story.expect, weight, story.printed))
    return out
