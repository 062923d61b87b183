"""Training data for the learned detector: annotated cards at the network's scale, and augmented patches.

Each annotated Sticky Pi SVG (see :mod:`agent.detect.evaluate`) becomes a :class:`Card`:
the picture reduced to the network's working size (long side ``WORK_SIDE``) and two
targets at that size: ``mask`` (1 inside any person's outline) and ``centre`` (each
insect's distance to its own edge divided by its largest, so 1 at its middle and falling
to 0 at its outline; where outlines of touching insects overlap, 0). The detector finds
insects as blobs of ``centre`` and grows them over ``mask`` (:mod:`agent.detect.learned`).

:func:`patch` cuts one augmented training patch: a random rotation, scale and flip,
colour and light changes (gains, gamma, a light gradient, fog, blur, noise), pen strokes
(handwriting on the card), and now and then a blank card, black or white frame with no
insect at all. Training only: needs NumPy and OpenCV, not torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from agent.detect import DetectorError
from agent.detect.builtin import decode
from agent.detect.evaluate import Polygon, read_annotated_svg

#: The network's input long side (a 2592 x 1944 card becomes 1296 x 972).
WORK_SIDE = 1296
#: Share of training patches with insects of other cards pasted on them...
PASTE = 0.5
#: ...and with marker writing (a card's label) on them.
WRITING = 0.25
#: Share of the patches not centred on an insect that are centred on a hard negative (see ``patch``).
HARD = 0.5
#: Share of pasted insects made faint: see-through, towards the card's colour or a light grey.
#: 0.3 measured better leave-one-trap-out on 5 of the 7 traps, worse overall (F1 0.596 and 0.652
#: at IoU 0.5 and 0.33, 2 views, against 0.606 and 0.697): afbd6f68's faint insects were lost.
FAINT = 0.0

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Card:
    """One annotated card at the working size: BGR picture, targets, and people's outlines (full pixels)."""

    name: str
    trap: str
    image: U8
    mask: F32
    centre: F32
    outlines: list[Polygon]
    jpeg: bytes
    full_side: int

    @cached_property
    def middles(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """The (rows, columns) of the pixels near an insect's middle (``centre`` over 0.9), where
        patches around an insect are centred (found once: a whole card's search is slow)."""
        ys, xs = np.nonzero(self.centre > 0.9)
        return ys, xs


def trap_of(path: Path) -> str:
    """Given a Sticky Pi file name ``<device>.<date>_<time>.<ext>``, return the device id."""
    return path.name.split(".", 1)[0]


def targets(outlines: list[Polygon], size: tuple[int, int], scale: float) -> tuple[F32, F32]:
    """Given outlines (full pixels), a (width, height) and the full->work scale, return mask and centre."""
    w, h = size
    mask = np.zeros((h, w), np.float32)
    centre = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.uint8)
    for o in outlines:
        poly = np.round(o * scale).astype(np.int32)
        x0, y0 = np.maximum(poly.min(0) - 2, 0)
        x1, y1 = np.minimum(poly.max(0) + 3, (w, h))
        if x1 <= x0 or y1 <= y0:
            continue
        one = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(one, [poly - (x0, y0)], 1)
        if not one.any():
            continue
        dist = np.asarray(cv2.distanceTransform(np.pad(one, 1), cv2.DIST_L2, 3), np.float32)[1:-1, 1:-1]
        dist /= max(float(dist.max()), 1e-6)
        win = (slice(y0, y1), slice(x0, x1))
        np.maximum(centre[win], dist, out=centre[win])
        count[win] += one
        mask[win] = np.maximum(mask[win], one)
    centre[count > 1] = 0.0  # overlapping outlines: the seam between two insects
    return mask, centre


def load_card(path: Path, full_side: int | None = None) -> Card:
    """Given an annotated SVG, return its Card. Raise ValueError/OSError as read_annotated_svg.

    ``full_side`` is the long side of the whole picture a crop was cut from (default: its own).
    """
    a = read_annotated_svg(path)
    full_side = full_side or max(a.width, a.height)
    scale = WORK_SIDE / full_side
    size = (round(a.width * scale), round(a.height * scale))
    image = None
    if max(a.width, a.height) == full_side:  # a whole picture: reduced as on the trap
        try:
            reduced, _ = decode(a.jpeg, WORK_SIDE)
        except DetectorError:
            reduced = None  # said below
        if reduced is not None and reduced.shape[:2] == (size[1], size[0]):
            image = reduced
    if image is None:  # a crop, or a size the trap's decoding does not give
        bgr = cv2.imdecode(np.frombuffer(a.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: the embedded image cannot be decoded")
        image = np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), np.uint8)
    mask, centre = targets(a.outlines, size, scale)
    return Card(path.name, trap_of(path), image, mask, centre, a.outlines, a.jpeg, full_side)


@dataclass(frozen=True)
class Crop:
    """One person-outlined insect cut from a card at the working size: its pixels, its outline
    filled (``alpha``), its centre target, and the card's colour around it (the median)."""

    image: U8
    alpha: F32
    centre: F32
    card: F32


def insect_bank(cards: list[Card]) -> list[Crop]:
    """Given cards, return every outlined insect of theirs as a Crop (for pasting onto others)."""
    out = []
    for card in cards:
        h, w = card.mask.shape
        scale = w / card.full_side if w >= h else h / card.full_side
        colour = np.median(card.image[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)
        for o in card.outlines:
            poly = np.round(o * scale).astype(np.int32)
            x0, y0 = np.maximum(poly.min(0) - 1, 0)
            x1, y1 = np.minimum(poly.max(0) + 2, (w, h))
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue
            alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(alpha, [poly - (x0, y0)], 1)
            dist = np.asarray(cv2.distanceTransform(np.pad(alpha, 1), cv2.DIST_L2, 3), np.float32)[1:-1, 1:-1]
            dist /= max(float(dist.max()), 1e-6)
            pix = card.image[y0:y1, x0:x1].copy()
            around = pix[alpha == 0]  # the card around the insect, in its bounding box
            local = np.median(around, axis=0).astype(np.float32) if len(around) >= 8 else colour
            out.append(Crop(pix, alpha.astype(np.float32), dist, local))
    return out


def _turned(a: np.ndarray[Any, Any], quarter_turns: int, flip: bool, size: tuple[int, int]) -> Any:
    """Return ``a`` turned, flipped left-right if ``flip``, and resized to ``size`` (w, h)."""
    a = np.rot90(a, quarter_turns)
    a = np.ascontiguousarray(a[:, ::-1] if flip else a)
    return np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_LINEAR))


def _paste(img: U8, mask: F32, centre: F32, bank: list[Crop], rng: np.random.Generator) -> None:
    """Paste a few insects of ``bank`` onto the patch ``img`` (and its targets) in place, where
    there is no insect yet: turned, flipped, rescaled, their colours carried over from their
    card's to this patch's."""
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 7))):
        crop = bank[int(rng.integers(len(bank)))]
        k = int(rng.integers(4))
        flip = rng.random() < 0.5
        scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        h0, w0 = crop.alpha.shape if k % 2 == 0 else crop.alpha.shape[::-1]
        ch, cw = max(3, round(h0 * scale)), max(3, round(w0 * scale))
        if ch >= size or cw >= size:
            continue
        pix, alpha, cen = (_turned(a, k, flip, (cw, ch)) for a in (crop.image, crop.alpha, crop.centre))
        for _try in range(4):
            y, x = int(rng.integers(size - ch + 1)), int(rng.integers(size - cw + 1))
            win = (slice(y, y + ch), slice(x, x + cw))
            if not (mask[win] > 0.5).any():
                break
        else:
            continue
        soft = cv2.GaussianBlur(alpha, (0, 0), 0.7)[..., None]
        here = np.median(img[win].reshape(-1, 3), axis=0).astype(np.float32)
        # half the card's colour change carries to the insect (wings show the card; bodies do not)
        ratio = np.sqrt(here / np.maximum(crop.card, 1.0) * here.mean() / max(float(crop.card.mean()), 1.0))
        new = np.clip(pix.astype(np.float32) * ratio, 0, 255)
        if FAINT and rng.random() < FAINT:  # faint or pale insects: see-through, towards the card or a grey
            tint = here if rng.random() < 0.5 else np.full(3, rng.uniform(150, 230), np.float32)
            seen = rng.uniform(0.35, 0.8)
            new = new * seen + tint * (1 - seen)
        img[win] = np.clip(img[win] * (1 - soft) + new * soft + 0.5, 0, 255).astype(np.uint8)
        inside = alpha > 0.5
        mask[win] = np.where(inside, 1.0, mask[win])
        centre[win] = np.where(inside, cen, centre[win])


def _strokes(img: U8, rng: np.random.Generator) -> None:
    """Draw a few pen strokes (handwriting, card marks) on ``img`` in place."""
    h, w = img.shape[:2]
    colour = [(30, 30, 30), (120, 40, 20), (40, 40, 150), (60, 60, 60)][int(rng.integers(4))]
    for _ in range(int(rng.integers(1, 6))):
        n = int(rng.integers(3, 9))
        start = rng.uniform((0, 0), (w, h))
        steps = rng.normal(0, 12, (n, 2)).cumsum(0)
        pts = np.round(start + steps).astype(np.int32)
        cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)


_INKS = [(25, 25, 25), (50, 45, 40), (120, 40, 20), (40, 60, 170), (30, 90, 150), (70, 30, 30)]
_FONTS = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
]
_CHARACTERS = "0123456789:/-.ABCDEFGHJKLMNPRSTUVWXYZabcdefghkmnprstuvwxyz"


def _writing(img: U8, rng: np.random.Generator, insects: F32 | None = None) -> None:
    """Write a few marker characters (the card's label: trap number, dates, times) on ``img`` in
    place, under the ``insects`` mask (insects land on the writing): thick strokes, any ink, size
    and slant, partly see-through. They are not insects."""
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(list(_CHARACTERS), int(rng.integers(1, 6))))
        scale = rng.uniform(0.8, 5.0)
        thick = max(2, round(scale * rng.uniform(1.0, 2.5)))
        org = (int(rng.integers(-w // 4, w // 2)), int(rng.integers(h // 4, h + h // 4)))
        cv2.putText(layer, text, org, _FONTS[int(rng.integers(len(_FONTS)))], scale, 255, thick, cv2.LINE_AA)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-40, 40), 1.0)
    turned = np.asarray(cv2.warpAffine(layer, m, (w, h)), np.float32)
    alpha: F32 = np.asarray(turned / 255 * rng.uniform(0.6, 1.0), np.float32)[..., None]
    if rng.random() < 0.5:
        alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 1.5)), np.float32)[..., None]
    if insects is not None:
        alpha = alpha * (insects < 0.5)[..., None]
    ink = np.array(_INKS[int(rng.integers(len(_INKS)))], np.float32) * rng.uniform(0.7, 1.3)
    img[:] = np.clip(img * (1 - alpha) + ink * alpha + 0.5, 0, 255).astype(np.uint8)


def unoutlined(found: NDArray[np.bool_], mask: F32, smallest: int = 20) -> NDArray[np.float32]:
    """Given where a model finds insects and people's ``mask`` (same size), return the (N, 2)
    centres (x, y) of the regions found, of ``smallest`` pixels or more, of which less than a fifth
    lies inside people's outlines: hard negatives for the training patches (``patch``)."""
    n, labels, stats, centres = cv2.connectedComponentsWithStats(found.astype(np.uint8), connectivity=8)
    outlined = np.bincount(labels.ravel(), (mask > 0.5).ravel(), minlength=n)
    area = stats[:, cv2.CC_STAT_AREA]
    keep = [k for k in range(1, n) if area[k] >= smallest and outlined[k] < 0.2 * area[k]]
    return np.asarray(centres[keep], np.float32).reshape(-1, 2)


def _blank(size: int, rng: np.random.Generator) -> U8:
    """Return a patch with no insect: a bare yellow or white card, a black or white frame, grey."""
    kind = int(rng.integers(5))
    base = [(20, 220, 230), (235, 240, 240), (5, 5, 5), (250, 250, 250), (128, 128, 128)][kind]
    img = np.empty((size, size, 3), np.float32)
    img[:] = np.array(base, np.float32) * rng.uniform(0.6, 1.1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _photometric(img: U8, rng: np.random.Generator) -> U8:
    """Return ``img`` with random colour, light, fog, blur and noise changes."""
    f = img.astype(np.float32) / 255.0
    if rng.random() < 0.3:  # hue shift: cards differ
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.integers(-12, 13))) % 180
        f = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32) / 255.0
    f *= rng.uniform(0.8, 1.2, 3).astype(np.float32)  # white balance
    if rng.random() < 0.2:  # over-exposed: the card's channels clip
        f *= rng.uniform(1.1, 1.8)
    f = np.clip(f, 0, 1) ** rng.uniform(0.7, 1.4)  # gamma
    c = rng.uniform(0.6, 1.3)
    f = (f - f.mean()) * c + f.mean() + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.5:  # light gradient across the patch
        h, w = f.shape[:2]
        a = rng.uniform(0, 2 * math.pi)
        ramp = (np.cos(a) * np.arange(w)[None, :] / w + np.sin(a) * np.arange(h)[:, None] / h).astype(
            np.float32
        )
        f *= (1 + rng.uniform(-0.4, 0.4) * (ramp - ramp.mean()))[..., None]
    if rng.random() < 0.3:  # shadows: soft dark bands (leaves, the trap's frame)
        h, w = f.shape[:2]
        a = rng.uniform(0, 2 * math.pi)
        period = rng.uniform(0.3, 1.5) * w
        phase = (np.cos(a) * np.arange(w)[None, :] + np.sin(a) * np.arange(h)[:, None]) / period
        band = 0.5 + 0.5 * np.sin(2 * math.pi * phase + rng.uniform(0, 2 * math.pi))
        f *= (1 - rng.uniform(0.2, 0.6) * band.astype(np.float32))[..., None]
    if rng.random() < 0.3:  # fog: contrast lost towards a light grey
        k = rng.uniform(0.1, 0.7)
        f = f * (1 - k) + k * rng.uniform(0.6, 0.95)
    if rng.random() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.8))
    f += rng.normal(0, rng.uniform(0, 0.03), f.shape).astype(np.float32)
    return np.asarray(np.clip(f * 255 + 0.5, 0, 255), np.uint8)


def patch(
    card: Card,
    size: int,
    rng: np.random.Generator,
    bank: list[Crop] | None = None,
    hard: NDArray[np.float32] | None = None,
) -> tuple[U8, F32, F32]:
    """Given a card, a patch side and a generator, return an augmented (image, mask, centre) patch;
    half the time with insects of ``bank`` pasted on it. ``hard``: (N, 2) points (x, y, working
    pixels) where a model in training takes for insects what people did not outline
    (``unoutlined``); HARD of the patches not centred on an insect are centred on one of them."""
    if rng.random() < 0.05:
        img = _photometric(_blank(size, rng), rng)
        if rng.random() < 0.5:
            _strokes(img, rng)
        if rng.random() < 0.5:
            _writing(img, rng)
        zero = np.zeros((size, size), np.float32)
        return img, zero, zero.copy()
    h, w = card.mask.shape
    if rng.random() < 0.7 and card.outlines:  # around an insect
        ys, xs = card.middles
        i = int(rng.integers(len(xs))) if len(xs) else 0
        cx = float(xs[i]) + rng.uniform(-size / 3, size / 3) if len(xs) else w / 2
        cy = float(ys[i]) + rng.uniform(-size / 3, size / 3) if len(xs) else h / 2
    elif hard is not None and len(hard) and rng.random() < HARD:
        x, y = hard[int(rng.integers(len(hard)))]
        cx, cy = float(x) + rng.uniform(-size / 3, size / 3), float(y) + rng.uniform(-size / 3, size / 3)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 360)
    scale = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
    if rng.random() < 0.5:
        m[0] = -m[0]
        m[0, 2] += size - 1
    border = cv2.BORDER_REFLECT_101
    img = np.asarray(
        cv2.warpAffine(card.image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border), np.uint8
    )
    mask = cv2.warpAffine(card.mask, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    centre = cv2.warpAffine(card.centre, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    mask_t: F32 = np.asarray(mask, np.float32)
    centre_t: F32 = np.asarray(centre, np.float32)
    if bank and rng.random() < PASTE:
        _paste(img, mask_t, centre_t, bank, rng)
    img = _photometric(img, rng)
    if rng.random() < 0.25:
        _strokes(img, rng)
    if rng.random() < WRITING:
        _writing(img, rng, mask_t)
    return img, mask_t, centre_t
