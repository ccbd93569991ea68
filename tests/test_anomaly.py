import numpy as np

from vision.anomaly import patch_grid, tile_boxes


def test_tiles_follow_the_long_side_and_never_shrink_below_the_backbone_input():
    assert tile_boxes(300, 300) == [(0, 300, 0, 300)]
    assert tile_boxes(200, 600) == [(0, 200, 0, 300), (0, 200, 300, 600)]  # 3:1, but 3 tiles would upsample
    assert tile_boxes(150, 400) == [(0, 150, 0, 400)]
    tall = tile_boxes(1240, 500)
    assert len(tall) == 2 and tall[0][0] == 0 and tall[-1][1] == 1240 and all(b[2:] == (0, 500) for b in tall)
    assert len(tile_boxes(500, 4000)) == 4  # capped


class _FakeBackbone:
    """Records what it was given; returns a (28, 28, 2) grid whose first channel is the input's mean."""

    def __init__(self):
        self.calls = []

    def patch_features_many(self, inputs):
        self.calls.append(len(inputs))
        return [np.dstack([np.full((28, 28), float(x.mean())), np.zeros((28, 28))]) for x in inputs]


def test_patch_grid_keeps_the_aspect_and_cuts_the_padding():
    bb = _FakeBackbone()
    grid = patch_grid(bb, np.full((1240, 500, 3), 90, np.uint8))
    assert bb.calls == [2]  # both tiles in one backbone run
    assert grid.shape[1] in (22, 23) and abs(grid.shape[0] / grid.shape[1] - 1240 / 500) < 0.15
    wide = patch_grid(_FakeBackbone(), np.full((100, 220, 3), 90, np.uint8))
    assert wide.shape[1] == 28 and wide.shape[0] in (12, 13)


def test_a_grid_of_source_sized_tiles_keeps_position_and_aspect():
    from vision.anomaly import grid_boxes

    rows = grid_boxes(1240, 500, 448)
    assert [len(r) for r in rows] == [2, 2, 2] and rows[-1][-1][1::2] == (1240, 500)
    assert all(y1 - y0 <= 448 and x1 - x0 <= 448 for r in rows for y0, y1, x0, x1 in r)
    bb = _FakeBackbone()
    img = np.zeros((1240, 500, 3), np.uint8)
    img[620:] = 200  # the lower half bright: its patches must land in the lower half of the grid
    grid = patch_grid(bb, img, tile_side=448)
    assert bb.calls == [6]
    assert abs(grid.shape[0] / grid.shape[1] - 1240 / 500) < 0.2
    col = grid[:, :, 0].mean(axis=1)
    assert col[: len(col) // 3].max() + 0.5 < col[-len(col) // 3:].min()  # dark rows above, bright below
