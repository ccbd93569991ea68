"""Class vocabulary and label convention of the independent generator (``models.independent_render``)."""

from __future__ import annotations

CLASSES = ("scratch", "dent", "crack", "tear", "stain", "leak", "wear", "seal_broken", "package_damage",
           "foreign_object")
CLS = {name: i for i, name in enumerate(CLASSES)}
MIN_PIXELS = 6
DIFF_THRESHOLD = 0.045  # a pixel counts as changed when a channel moved by more than this (0..1 scale)

# Which defects make physical sense on which product kind.
KIND_CLASSES: dict[str, frozenset[str]] = {
    "carton": frozenset({"scratch", "tear", "stain", "wear", "seal_broken", "package_damage", "foreign_object"}),
    "bottle": frozenset({"scratch", "dent", "crack", "stain", "leak", "wear", "seal_broken", "foreign_object"}),
    "jar": frozenset({"scratch", "crack", "stain", "leak", "wear", "seal_broken", "foreign_object"}),
    "can": frozenset({"scratch", "dent", "stain", "leak", "wear", "foreign_object"}),
    "pouch": frozenset({"scratch", "tear", "stain", "leak", "wear", "seal_broken", "package_damage",
                        "foreign_object"}),
    "garment": frozenset({"tear", "stain", "wear", "foreign_object"}),
    "electronics": frozenset({"scratch", "dent", "crack", "stain", "wear", "seal_broken", "foreign_object"}),
    "toy": frozenset({"scratch", "dent", "crack", "stain", "wear", "foreign_object"}),
}
KINDS = tuple(KIND_CLASSES)
# Painting order on one product (a puncture before the stain that runs over it, foreign objects last).
APPLY_ORDER = ("package_damage", "dent", "crack", "tear", "seal_broken", "wear", "scratch", "stain", "leak",
               "foreign_object")
