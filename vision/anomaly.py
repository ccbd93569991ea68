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


def grid_boxes(h: int, w: int, side: int) -> list[list[tuple[int, int, int, int]]]:
    """Rows of tiles (y0, y1, x0, x1) no larger than ``side`` px each way, evenly split: detail finer than the
    backbone's 224 px input of a whole frame (a hairline crack on a 1,250 px part) keeps its pixels."""
    ys = np.linspace(0, h, max(1, -(-h // side)) + 1).round().astype(int)
    xs = np.linspace(0, w, max(1, -(-w // side)) + 1).round().astype(int)
    return [[(int(a), int(b), int(c), int(d)) for c, d in zip(xs[:-1], xs[1:])] for a, b in zip(ys[:-1], ys[1:])]


def _unpadded(g: np.ndarray, th: int, tw: int) -> np.ndarray:
    """A tile's patch grid without the grey padding ``to_input`` added to make it square."""
    side, n = max(th, tw), g.shape[0]
    r0, c0 = int(round((side - th) / 2 / side * n)), int(round((side - tw) / 2 / side * n))
    r1, c1 = max(r0 + 1, int(round((side + th) / 2 / side * n))), max(c0 + 1, int(round((side + tw) / 2 / side * n)))
    return g[r0:r1, c0:c1]


def patch_grid(backbone, bgr: np.ndarray, tile_side: int | None = None) -> np.ndarray:
    """Backbone patch features over the whole image, the grey padding of each tile cut away, so the grid keeps
    the image's aspect: (gh, gw, C). Tiles along the long side (``tile_boxes``), or, with ``tile_side``, a
    grid of tiles of at most that many source pixels (``grid_boxes``: finer detail, more backbone runs)."""
    from vision.embedding import to_input

    h, w = bgr.shape[:2]
    rows = grid_boxes(h, w, tile_side) if tile_side else (
        [[b] for b in tile_boxes(h, w)] if h >= w else [tile_boxes(h, w)])
    flat = [b for row in rows for b in row]
    grids = iter(backbone.patch_features_many([to_input(bgr[y0:y1, x0:x1]) for y0, y1, x0, x1 in flat]))
    strips = []
    for row in rows:
        parts = [_unpadded(next(grids), y1 - y0, x1 - x0) for y0, y1, x0, x1 in row]
        gh = min(p.shape[0] for p in parts)
        strips.append(np.concatenate([p[:gh] for p in parts], axis=1))
    gw = min(s.shape[1] for s in strips)
    return np.concatenate([s[:, :gw] for s in strips], axis=0)
