"""The built-in insect detector: classical segmentation of a sticky card with OpenCV and NumPy.

Steps, on a copy reduced to ``max_side`` pixels (long side; the JPEG is decoded at 1/2,
1/4 or 1/8 scale in the DCT when that still leaves ``max_side``, so a 5 MP or 12 MP image
is never decoded in full):

1. **Card model.** The card's colour at every point is the median of a coarse grid
   (``background_cell`` px cells, ``background_cells`` wide window): it follows uneven
   light, vignetting, glare and fog, but not insects, which are smaller than half the
   window. A second pass leaves out what the first found dark, so a crowded card or the
   trap's dark frame does not darken the model. Differences are taken in CIE Lab.
2. **Contrast.** ``darkness`` (loss of L*) plus ``colour_weight`` x the loss of the
   card's own colour (the a*b* shift against the card's hue: yellow on a yellow card,
   nothing on a white one). Droplets and glare are lighter and keep the card's hue, so
   they score ~0. Smoothed, then divided by the image's noise (robust sigma of L*): the
   thresholds below are in noise units, so a foggy low-contrast card and a crisp one
   share them.
3. **Objects.** Connected regions above ``floor`` (closed by ``close`` px) whose peak
   reaches ``seed``; each is outlined where it exceeds ``outline_frac`` of its own peak,
   so a pale wing next to a black body is kept while a dark insect's halo is not.
   Outlines smaller than ``min_area`` and, with ``drop_border``, outlines touching the
   image edge (partial insects, the trap's frame) are dropped.
4. **Outlines**, scaled to full-resolution pixels and simplified (``approxPolyDP``).

Pixel-sized parameters refer to an image whose long side is ``ref_side``; they scale with
``max_side``. The parameters live in ``params.json`` next to this module (written by
:mod:`agent.detect.tune_builtin`); the version is ``<params "created">-<md5 of the file>``.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from agent.detect import DetectorError, DetectorSettings, Outline, algo_version, check_keys
from agent.lazy import lazy_import, require
from agent.registry import register

if TYPE_CHECKING:
    import cv2
    import numpy as np
    from numpy.typing import NDArray

    FloatImage = NDArray[np.float32]
else:  # extras: imported when a detector is made, not with the config (agent.lazy)
    cv2 = lazy_import("cv2", globals(), "cv2")
    np = lazy_import("numpy", globals(), "np")

ALGO_NAME = "sticky-agent-builtin"
DEFAULT_PARAMS = Path(__file__).with_name("params.json")
DEFAULT_MAX_SIDE = 1296
#: Reduced JPEG decodes: scale -> OpenCV's flag name.
_REDUCED = {
    1: "IMREAD_COLOR",
    2: "IMREAD_REDUCED_COLOR_2",
    4: "IMREAD_REDUCED_COLOR_4",
    8: "IMREAD_REDUCED_COLOR_8",
}

#: The second card model leaves out pixels this many noise sigmas darker than the first,
#: grown by this many pixels (at ``ref_side``). Fixed, so training can reuse prepared images.
CARD_MASK_SIGMAS = 3.0
CARD_MASK_GROW = 7.0
#: The card-colour loss fades out over this much L* above the card (lighter than it).
LIGHTER_CUTOFF = 5.0
#: OpenCV's 8-bit Lab stores L* x 255/100.
L_UNIT = 100 / 255


@dataclass(frozen=True)
class Params:
    """The detector's parameters (see the module docstring); ``created`` is a unix time.

    The defaults are hand-set, untuned values: the starting point of :mod:`agent.detect.tune_builtin`.
    """

    created: int
    ref_side: int = 1296
    background_cell: float = 8.0
    background_cells: int = 21
    colour_weight: float = 0.5
    smooth: float = 2.0
    floor: float = 3.0
    seed: float = 12.0
    outline_frac: float = 0.15
    close: float = 3.0
    min_area: float = 100.0
    drop_border: bool = True
    simplify: float = 0.5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Params:
        """Given the parsed JSON, return Params; ``info`` is ignored. Raise ValueError if invalid."""
        known = check_keys(cls, data, "parameters")
        for f in fields(cls):
            v = data.get(f.name, f.default)
            if isinstance(v, bool) != (f.name == "drop_border") or not isinstance(v, int | float):
                raise ValueError(
                    f"{f.name} must be {'true or false' if f.name == 'drop_border' else 'a number'}"
                )
        p = cls(**{k: v for k, v in data.items() if k in known})
        if p.ref_side < 64 or p.background_cells < 3 or p.background_cell < 1 or p.seed < p.floor:
            raise ValueError("out of range: need ref_side >= 64, background_cells >= 3, seed >= floor")
        return p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_params(path: Path | None = None) -> tuple[Params, str]:
    """Given a parameters file (default: the packaged one), return its Params and algo_version.

    The version is ``<created>-<md5 of the file's bytes>``. Raise DetectorError if the file
    is missing, not JSON, or invalid.
    """
    path = DEFAULT_PARAMS if path is None else path
    try:
        raw = path.read_bytes()
        params = Params.from_dict(json.loads(raw))
    except OSError as e:
        raise DetectorError(f"cannot read detector parameters {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise DetectorError(f"invalid detector parameters in {path}: {e}") from None
    return params, algo_version(params.created, raw, path)


@dataclass(frozen=True)
class Prepared:
    """One image ready for segmentation: its differences from the card model, noise, sizes."""

    d_l: FloatImage  # H x W float32: L*(pixel) - L*(card); insects are negative
    loss: FloatImage  # H x W float32 >= 0: loss of the card's a*b* hue, zero where lighter
    noise: float  # robust sigma of d_l
    full_size: tuple[int, int]  # (width, height) of the original image
    scale: float  # work pixels per ref pixel (work long side / ref_side)


def decode(jpeg: bytes, max_side: int) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """Given JPEG bytes, return a BGR copy whose long side is at most ``max_side``, and the full size.

    Decodes at 1/2, 1/4 or 1/8 scale when that still gives ``max_side``. Raise DetectorError
    if the bytes are not a readable JPEG.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            full = im.size
    except OSError as e:
        raise DetectorError(f"not a readable image: {e}") from None
    factor = max([f for f in _REDUCED if max(full) / f >= max_side] or [1])
    flags = getattr(cv2, _REDUCED[factor]) | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    if bgr is None:
        raise DetectorError("OpenCV could not decode the image")
    h, w = bgr.shape[:2]
    if max(w, h) > max_side:
        k = max_side / max(w, h)
        bgr = cv2.resize(bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    return np.asarray(bgr, dtype=np.uint8), full


def _card_grid(
    lab: NDArray[np.uint8],
    keep: FloatImage | None,
    size: tuple[int, int],
    k: int,
    fallback: FloatImage | None,
) -> FloatImage:
    """Return the card's 8-bit Lab on a grid of ``size``: cell means of ``keep`` pixels, median-filtered."""
    if keep is None or fallback is None:
        grid = np.asarray(cv2.resize(lab, size, interpolation=cv2.INTER_AREA), dtype=np.float64)
    else:
        share = cv2.resize(keep, size, interpolation=cv2.INTER_AREA)[..., None]
        sums = [cv2.resize(lab[..., c] * keep, size, interpolation=cv2.INTER_AREA) for c in range(3)]
        grid = np.dstack(sums) / np.maximum(share, 1e-3)
        grid = np.where(share < 0.1, fallback, grid)  # cells that are all insect: first pass's value
    g8 = np.clip(grid + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.medianBlur(g8, k), dtype=np.float32)


def _minus_card(lab: NDArray[np.uint8], grid: FloatImage, channel: int) -> FloatImage:
    """Return one 8-bit Lab channel minus the card's, the grid interpolated to full size (float32)."""
    h, w = lab.shape[:2]
    card = cv2.resize(np.ascontiguousarray(grid[..., channel]), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.subtract(lab[..., channel], card, dtype=np.float32)


def _noise(d_l: FloatImage) -> float:
    """Return the robust sigma (1.4826 x MAD) of L* differences."""
    v = d_l[::2, ::2]
    return max(1.4826 * float(np.median(np.abs(v - np.median(v)))), 0.05)


def prepare(jpeg: bytes, params: Params, max_side: int = DEFAULT_MAX_SIDE) -> Prepared:
    """Given JPEG bytes, return its differences from its card model. Raise DetectorError if undecodable.

    Two passes: the second card model leaves out what the first finds dark (insects, the
    trap's frame), so a crowded card or a dark edge does not darken it. The noise is taken
    over the whole image: a busy card (droplets, dust, many insects) raises the thresholds.
    Works in 8-bit Lab and single float32 planes to keep memory low (~6 bytes a pixel).
    """
    bgr, full = decode(jpeg, max_side)
    h, w = bgr.shape[:2]
    scale = max(w, h) / params.ref_side
    cell = max(1.0, params.background_cell * scale)
    size = (max(3, round(w / cell)), max(3, round(h / cell)))
    k = min(params.background_cells, max(3, min(size))) | 1
    lab = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB), dtype=np.uint8)  # L*2.55, a+128, b+128
    del bgr
    first = _card_grid(lab, None, size, k, None)
    d_l = _minus_card(lab, first, 0)
    d_l *= L_UNIT
    dark = (d_l < -CARD_MASK_SIGMAS * _noise(d_l)).astype(np.uint8)
    grow = _kernel(CARD_MASK_GROW * scale)
    keep = ((cv2.dilate(dark, grow) if grow is not None else dark) == 0).astype(np.float32)
    del dark
    card = _card_grid(lab, keep, size, k, first)
    del keep
    d_l = _minus_card(lab, card, 0)
    d_l *= L_UNIT
    ab = card[..., 1:].reshape(-1, 2).mean(axis=0) - 128
    ax, ay = ab / max(float(np.hypot(*ab)), 5.0)  # a near-grey (white) card has no hue to lose
    loss = _minus_card(lab, card, 1)
    loss *= -ax
    loss -= ay * _minus_card(lab, card, 2)
    np.maximum(loss, 0, out=loss)
    # Only where not lighter than the card: a droplet's or glare's white is not an insect.
    loss *= np.clip(1 - d_l * (1 / LIGHTER_CUTOFF), 0, 1)
    return Prepared(d_l, loss, _noise(d_l), full, scale)


def contrast(prep: Prepared, params: Params) -> FloatImage:
    """Given a prepared image, return its insect contrast in noise units (darkness + colour loss)."""
    score = np.maximum(-prep.d_l, 0)
    if params.colour_weight:
        score += params.colour_weight * prep.loss
    if params.smooth > 0:
        score = cv2.GaussianBlur(score, (0, 0), params.smooth * prep.scale)
    score *= 1 / prep.noise
    return np.asarray(score, dtype=np.float32)


def _kernel(size: float) -> NDArray[np.uint8] | None:
    """Given a diameter in pixels, return an elliptic structuring element (odd size), None if <= 1."""
    k = round(size) | 1
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)), dtype=np.uint8) if k > 1 else None


def segment(z: FloatImage, params: Params, scale: float) -> list[NDArray[np.int32]]:
    """Given a contrast map (noise units), return the insects' contours in its pixels."""
    kernel = _kernel(params.close * scale)
    pad = 0 if kernel is None else kernel.shape[0]
    low = (z >= params.floor).astype(np.uint8)
    if kernel is not None:
        low = np.asarray(cv2.morphologyEx(low, cv2.MORPH_CLOSE, kernel), dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(low, connectivity=8)
    h, w = low.shape
    min_area = params.min_area * scale * scale
    out: list[NDArray[np.int32]] = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        window = (slice(y0, y + bh + pad), slice(x0, x + bw + pad))
        inside = labels[window] == i
        zz = z[window]
        peak = float(zz[inside].max())
        if peak < params.seed:
            continue
        mask = (inside & (zz >= max(params.floor, params.outline_frac * peak))).astype(np.uint8)
        if kernel is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            c = np.asarray(c, dtype=np.int32) + np.array([x0, y0], dtype=np.int32)
            if cv2.contourArea(c) < min_area:
                continue
            if params.drop_border and _touches_edge(c, w, h):
                continue
            out.append(c)
    return out


def _touches_edge(contour: NDArray[np.int32], w: int, h: int) -> bool:
    x, y, bw, bh = cv2.boundingRect(contour)
    return x <= 0 or y <= 0 or x + bw >= w or y + bh >= h


def to_full(
    contours: list[NDArray[np.int32]], prep: Prepared, work_size: tuple[int, int], params: Params
) -> list[Outline]:
    """Given contours in work pixels, return Outlines in full-resolution pixels, simplified and clipped."""
    fw, fh = prep.full_size
    sx, sy = fw / work_size[0], fh / work_size[1]
    eps = params.simplify * prep.scale * max(sx, sy)
    out: list[Outline] = []
    for c in contours:
        pts = (c.reshape(-1, 2).astype(np.float32) + 0.5) * np.array([sx, sy], dtype=np.float32) - 0.5
        simple = cv2.approxPolyDP(pts.reshape(-1, 1, 2), eps, True) if eps > 0 else pts.reshape(-1, 1, 2)
        if len(simple) < 3:
            simple = pts.reshape(-1, 1, 2)
        if len(simple) < 3:
            continue
        xy = np.rint(simple)
        xy[..., 0] = np.clip(xy[..., 0], 0, fw - 1)
        xy[..., 1] = np.clip(xy[..., 1], 0, fh - 1)
        out.append(Outline(np.ascontiguousarray(xy, dtype=np.int32)))
    return out


def outlines(prep: Prepared, params: Params) -> list[Outline]:
    """Given a prepared image, return its insects' Outlines in full-resolution pixels."""
    z = contrast(prep, params)
    h, w = z.shape
    return to_full(segment(z, params, prep.scale), prep, (w, h), params)


class BuiltinDetectorConfig(DetectorSettings):
    """``[detector] type = "builtin"``: OpenCV segmentation (this module)."""

    type: Literal["builtin"]
    #: A parameters JSON to use instead of the one shipped in the package.
    params: Path | None = None
    #: Long side, in pixels, the image is reduced to before detection (time and memory).
    max_side: int = Field(default=1296, ge=320, le=8192)

    @field_validator("params")
    @classmethod
    def _params(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v


class BuiltinDetector:
    """The built-in detector, with the packaged parameters unless ``params_path`` names others.
    Raise ImportError if OpenCV or NumPy is not installed, DetectorError if the parameters are bad."""

    name = ALGO_NAME

    def __init__(self, params_path: Path | None = None, max_side: int = DEFAULT_MAX_SIDE) -> None:
        require(cv2, np)
        if max_side < 64:
            raise DetectorError(f"max_side must be at least 64 pixels, got {max_side}")
        self.params, self.version = load_params(params_path)
        self.max_side = max_side

    def detect(self, jpeg: bytes) -> list[Outline]:
        """Given a JPEG's bytes, return the insects' Outlines. Raise DetectorError if undecodable."""
        return outlines(prepare(jpeg, self.params, self.max_side), self.params)

    def close(self) -> None:
        """Nothing to release."""


@register("detector", BuiltinDetectorConfig)
def make_builtin_detector(config: BuiltinDetectorConfig) -> BuiltinDetector:
    """Given ``[detector] type = "builtin"``, return the detector. Raise ImportError without
    OpenCV or NumPy, DetectorError if its parameters are bad."""
    return BuiltinDetector(params_path=config.params, max_side=config.max_side)
