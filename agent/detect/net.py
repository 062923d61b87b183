"""The learned detector's network (training only: needs torch) and its ONNX export.

A small U-Net: a stride-2 convolution, four max-pooling levels (8, 16, 32, 48, 64
channels), and a decoder of nearest-neighbour upsampling, concatenation and 3x3
convolutions back to half the input's resolution. Two output channels (logits): the
insect mask and each insect's centre (its normalised distance to its outline). Trained
with BatchNorm after each convolution (``norm=True``), folded into the convolutions on
export, so the file holds only Conv, Relu, MaxPool, Resize (nearest) and Concat, and
OpenCV 4.6's DNN module (Debian Bookworm's python3-opencv) loads it as well as
onnxruntime does. About 2.8 G multiply-adds on a 1296 x 972 picture.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

WIDTHS = (8, 16, 32, 48, 64)
#: The input's sides must be multiples of this (one stride-2 convolution and four poolings).
MULTIPLE = 32
#: Output pixels per input pixel along each axis.
OUTPUT_STRIDE = 2
OPSET = 11


def _conv(cin: int, cout: int, stride: int = 1, norm: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    if norm:
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def fused(net: nn.Module) -> nn.Module:
    """Given a network in eval mode, return a copy with each BatchNorm folded into its convolution."""
    import copy

    out = copy.deepcopy(net).eval()
    for module in out.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                assert bn.running_var is not None and bn.running_mean is not None
                k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                with torch.no_grad():
                    conv.weight.mul_(k[:, None, None, None])
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(k)
                    conv.bias = nn.Parameter((bias - bn.running_mean) * k + bn.bias)
                module[i + 1] = nn.Identity()
    return out


class InsectNet(nn.Module):
    """Given a (N, C, H, W) batch of input features (agent.detect.learned.input_blob), return
    (N, 2, H/s, W/s) logits, s the ``stride`` (2, or 1 with a last full-resolution layer)."""

    def __init__(
        self, widths: tuple[int, ...] = WIDTHS, norm: bool = False, channels: int = 3, stride: int = 2
    ) -> None:
        super().__init__()
        w, n = widths, norm
        #: stride 1: one more upsampling, its features joined with the input's, at full resolution
        self.fine = _conv(w[0] + channels, w[0], 1, n) if stride == 1 else None
        self.enc = nn.ModuleList(
            [nn.Sequential(_conv(channels, w[0], 2, n), _conv(w[0], w[0], 1, n))]
            + [nn.Sequential(_conv(w[i - 1], w[i], 1, n), _conv(w[i], w[i], 1, n)) for i in range(1, len(w))]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.ModuleList([_conv(w[i + 1] + w[i], w[i], 1, n) for i in range(len(w) - 1)])
        self.head = nn.Conv2d(w[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips[-1]
        for i in range(len(self.dec) - 1, -1, -1):
            x = self.dec[i](torch.cat([self.up(x), skips[i]], dim=1))
        if self.fine is not None:
            x = self.fine(torch.cat([self.up(x), image], dim=1))
        out: torch.Tensor = self.head(x)
        return out


def export_onnx(net: nn.Module, path: Path, channels: int = 3) -> None:
    """Write ``net`` (``channels`` inputs) as ONNX (opset 11, any input size) to ``path``, with no
    training-only parts."""
    net.eval()
    net = fused(net)
    dummy = torch.zeros(1, channels, 320, 320)
    with (
        warnings.catch_warnings()
    ):  # the TorchScript exporter is deprecated; its opset 11 is what OpenCV 4.6 reads
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(net, dummy, path)


def _export(net: nn.Module, dummy: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        net,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        opset_version=OPSET,
        dynamic_axes={"image": {2: "height", 3: "width"}, "logits": {2: "h2", 3: "w2"}},
        dynamo=False,
    )
