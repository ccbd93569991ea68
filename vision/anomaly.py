"""Patch features of a whole image for anomaly scoring: the backbone's fixed 224 px input tiled along the
image's long side, so a tall or wide product keeps its detail. The memory of good appearance and the scoring
against it are in vision.unseen.
"""

from __future__ import annotations

import numpy as np

MAX_TILES = 4


def tile_boxes(h: int, w: int, max_tiles: int = MAX_TILES) -> list[tuple[int, int, int, int]]:
    """Near-square tiles (y0, y1, x0, x1) along the long side: a tall product keeps its detail at the
    backbone's fixed input instead of shrinking into a strip of a padded square."""
    # As many tiles as the aspect asks for, but no more than the long side fills at the backbone's 224 px
    # (smaller tiles would only be upsampled).
    n = int(np.clip(min(round(max(h, w) / max(1, min(h, w))), max(h, w) // 224), 1, max_tiles))
    edges = np.linspace(0, max(h, w), n + 1).round().astype(int)
    if h >= w:
        return [(int(a), int(b), 0, w) for a, b in zip(edges[:-1], edges[1:])]
    return [(0, h, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def patch_grid(backbone, bgr: np.ndarray) -> np.ndarray:
    """Backbone patch features over the whole image, tiled (see ``tile_boxes``), the grey padding of each
    tile cut away, so the grid keeps the image's aspect: (gh, gw, C)."""
    from vision.embedding import to_input

    boxes = tile_boxes(*bgr.shape[:2])
    grids = backbone.patch_features_many([to_input(bgr[y0:y1, x0:x1]) for y0, y1, x0, x1 in boxes])
    parts = []
    for (y0, y1, x0, x1), g in zip(boxes, grids):
        th, tw, side, n = y1 - y0, x1 - x0, max(y1 - y0, x1 - x0), g.shape[0]
        r0, c0 = int(round((side - th) / 2 / side * n)), int(round((side - tw) / 2 / side * n))
        r1, c1 = max(r0 + 1, int(round((side + th) / 2 / side * n))), max(c0 + 1, int(round((side + tw) / 2 / side * n)))
        parts.append(g[r0:r1, c0:c1])
    if len(parts) == 1:
        return parts[0]
    axis = 0 if bgr.shape[0] >= bgr.shape[1] else 1
    other = min(p.shape[1 - axis] for p in parts)
    return np.concatenate([p[:, :other] if axis == 0 else p[:other] for p in parts], axis=axis)
