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
