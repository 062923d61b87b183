"""The learned insect detector: a small convolutional network (ONNX) run by OpenCV's DNN module.

The picture is decoded reduced (long side ``work_side``, 1296 px for a 5 MP card), scaled
to [-0.5, 0.5] and padded to a multiple of 32; the network (:mod:`agent.detect.net`,
trained by :mod:`agent.detect.train`) returns two maps at half that resolution: the
insect mask and each insect's centre (distance to its outline, normalised); with ``views``
2 or 4 it also sees the picture turned half way round (and mirrored), and the maps come
from the mean of the views' logits. Insects are
the blobs of centre above ``centre_threshold``, grown by watershed over the mask above
``mask_threshold``, so touching insects stay apart; each region's outer contour, in
full-resolution pixels, is one outline. Regions under ``min_area`` or over
``max_area`` (pixels of a 2592-wide image, scaled with the picture) are dropped, and so
are those whose mean mask probability is under ``min_confidence``.

Runtimes: ``opencv`` (``cv2.dnn``, in Raspberry Pi OS's python3-opencv 4.6 and later)
or ``onnxruntime`` (optional, faster); ``auto`` takes onnxruntime when it is installed.
The model (``insects.onnx``) and its settings (``insects.json``: ``created``, thresholds
and the leave-one-trap-out scores it was shipped with) live next to this module; the
version is ``<created>-<md5 of both files>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, field_validator

from agent.detect import DetectorError, DetectorSettings, Outline, algo_version, check_keys
from agent.detect.builtin import decode
from agent.lazy import lazy_import, require
from agent.registry import register

if TYPE_CHECKING:
    import cv2
    import numpy as np
    from numpy.typing import NDArray

    F32 = NDArray[np.float32]
else:  # extras: imported when a detector is made, not with the config (agent.lazy)
    cv2 = lazy_import("cv2", globals(), "cv2")
    np = lazy_import("numpy", globals(), "np")

ALGO_NAME = "sticky-agent-learned"
DEFAULT_MODEL = Path(__file__).with_name("insects.onnx")
MULTIPLE = 32
#: Input pixels per output pixel of the models before ``output_stride`` was a setting.
OUTPUT_STRIDE = 2
#: Areas in the settings are pixels of an image this wide (the annotated cards').
REF_SIDE = 2592

Runtime = Literal["auto", "opencv", "onnxruntime"]

#: ``views`` setting: the axes each view is flipped along ((0, 1): turned half way round).
VIEWS: dict[int, tuple[tuple[int, ...], ...]] = {1: ((),), 2: ((), (0, 1)), 4: ((), (0, 1), (0,), (1,))}


@dataclass(frozen=True)
class Settings:
    """Post-processing settings and provenance, from ``insects.json``."""

    created: int
    work_side: int = 1296
    mask_threshold: float = 0.5
    centre_threshold: float = 0.5
    min_area: float = 300.0
    max_area: float = 80000.0
    upsample: int = 2
    #: Input pixels per pixel of the network's maps (1: maps at the working size).
    output_stride: int = OUTPUT_STRIDE
    simplify: float = 1.0
    #: 1: the input is divided by the picture's median colour (the card's), so cards of any
    #: colour and exposure look alike; 2: and by its local background too (six channels);
    #: 0: scaled to [-0.5, 0.5] only. See ``input_blob``.
    normalise: int = 0
    #: The network runs on horizontal strips giving at most this many rows each (with at least
    #: ``STRIP_OVERLAP`` more above and below, for context), to bound its memory; all the same
    #: size (``strips``); 0: the whole picture at once.
    strip_rows: int = 256
    #: An insect's mean mask probability over its region must reach this (its confidence).
    min_confidence: float = 0.0
    #: Views of the picture the network sees, their maps averaged (``VIEWS``): 1, the picture as it
    #: is; 2, and turned half way round; 4, and mirrored each way. Each view costs one more run.
    views: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Given parsed JSON, return Settings (``info`` ignored). Raise ValueError if invalid."""
        known = check_keys(cls, data, "settings")
        for k in known & set(data):
            if isinstance(data[k], bool) or not isinstance(data[k], int | float):
                raise ValueError(f"{k} must be a number")
        s = cls(**{k: v for k, v in data.items() if k in known})
        if s.normalise not in (0, 1, 2):
            raise ValueError("normalise must be 0, 1 or 2")
        if s.strip_rows % MULTIPLE or s.strip_rows < 0:
            raise ValueError(f"strip_rows must be a multiple of {MULTIPLE} (0: no strips)")
        if s.output_stride not in (1, 2):
            raise ValueError("output_stride must be 1 or 2")
        check_views(s.views)
        if not (64 <= s.work_side <= 8192 and 1 <= s.upsample <= 4):
            raise ValueError("out of range: need 64 <= work_side <= 8192 and 1 <= upsample <= 4")
        if not (0 < s.mask_threshold < 1 and 0 < s.centre_threshold < 1 and 0 <= s.min_confidence < 1):
            raise ValueError("thresholds must be between 0 and 1")
        return s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_views(views: int) -> None:
    """Raise ValueError unless ``views`` is a number of views the detector knows (``VIEWS``)."""
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEWS))}, not {views}")


def magnified(s: Settings, work_side: int) -> Settings:
    """Given settings and another working size, return settings for pictures whose insects are
    ``work_side / s.work_side`` times smaller: the smallest and largest insect scaled with them, so
    they stay the sizes the network sees."""
    k = (s.work_side / work_side) ** 2
    return replace(s, work_side=work_side, min_area=s.min_area * k, max_area=s.max_area * k)


def settings_path(model: Path) -> Path:
    """Given a model file, return its settings file (same name, ``.json``)."""
    return model.with_suffix(".json")


def load_model(model: Path | None = None) -> tuple[bytes, Settings, str]:
    """Given a model file (default: the packaged one), return its bytes, Settings and algo_version.

    Raise DetectorError if the model or its settings file is missing or invalid.
    """
    model = DEFAULT_MODEL if model is None else model
    try:
        onnx = model.read_bytes()
        raw = settings_path(model).read_bytes()
        settings = Settings.from_dict(json.loads(raw))
    except OSError as e:
        raise DetectorError(f"cannot read the insect model {e.filename}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise DetectorError(f"invalid insect model settings {settings_path(model)}: {e}") from None
    return onnx, settings, algo_version(settings.created, onnx + raw, settings_path(model))


class _Net(Protocol):
    def __call__(self, blob: F32) -> F32: ...


def _opencv(onnx: bytes) -> _Net:
    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx, np.uint8))
    except cv2.error as e:
        raise DetectorError(f"OpenCV cannot load the insect model: {str(e).strip()[:200]}") from None

    def run(blob: F32) -> F32:
        net.setInput(blob)
        return np.asarray(net.forward(), np.float32)

    return run


def _onnxruntime(onnx: bytes) -> _Net:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])

    def run(blob: F32) -> F32:
        return np.asarray(session.run(None, {"image": blob})[0], np.float32)

    return run


def make_runtime(onnx: bytes, runtime: Runtime = "auto") -> _Net:
    """Given the model's bytes and a runtime name, return a function from input blob to logits.

    Raise DetectorError if the runtime is missing or cannot load the model.
    """
    if runtime in ("auto", "onnxruntime"):
        try:
            return _onnxruntime(onnx)
        except ImportError:
            if runtime == "onnxruntime":
                raise DetectorError(
                    "runtime 'onnxruntime' is not installed (pip install onnxruntime)"
                ) from None
    return _opencv(onnx)


#: The card colour is at least this (8-bit), so a black frame's noise is not blown up.
CARD_FLOOR = 40.0


def card_colour(bgr: NDArray[np.uint8]) -> F32:
    """Given a BGR picture, return its median colour (the card's: insects cover a small part of it)."""
    return np.asarray(np.median(bgr[::4, ::4].reshape(-1, 3), axis=0), np.float32)


#: ``normalise = 2``: the local background is found on a picture reduced this many times...
BACKGROUND_STEP = 8
#: ...by a grey closing this wide there (dark things narrower than STEP x CLOSE pixels vanish).
BACKGROUND_CLOSE = 9


def coarse_background(bgr: NDArray[np.uint8]) -> F32:
    """Given a BGR picture, return the card's colour on a BACKGROUND_STEP times smaller grid: dark
    things narrower than about BACKGROUND_STEP x BACKGROUND_CLOSE pixels closed over, smoothed."""
    h, w = bgr.shape[:2]
    step = BACKGROUND_STEP
    small = cv2.resize(bgr, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (BACKGROUND_CLOSE, BACKGROUND_CLOSE))
    small = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REFLECT_101)
    small = cv2.blur(small, (5, 5), borderType=cv2.BORDER_REFLECT_101)
    return np.asarray(small, np.float32).reshape(small.shape[0], small.shape[1], -1)


def background_rows(coarse: F32, size: tuple[int, int], rows: tuple[int, int]) -> F32:
    """Given a coarse background, the picture's (w, h) and rows [a, b), return the background of
    those rows at full size (bilinear, as ``cv2.resize`` maps pixels), so a strip needs no more."""
    w, h = size
    a, b = rows
    ch, cw = coarse.shape[:2]
    fx, fy = cw / w, ch / h
    m = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, (a + 0.5) * fy - 0.5]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(coarse, m, (w, b - a), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.float32).reshape(b - a, w, -1)


def local_background(bgr: NDArray[np.uint8]) -> F32:
    """Given a BGR picture, return the card's colour around each pixel (``coarse_background``,
    brought back to full size)."""
    h, w = bgr.shape[:2]
    return background_rows(coarse_background(bgr), (w, h), (0, h))


def channels(normalise: int) -> int:
    """Given the ``normalise`` setting, return how many channels the network's input has."""
    return 6 if normalise == 2 else 3


def input_blob(
    bgr: NDArray[np.uint8], normalise: int, card: F32 | None = None, background: F32 | None = None
) -> F32:
    """Given a BGR picture (a whole one, a strip or a training patch) and the ``normalise``
    setting, return the network's (1, C, H', W') input, mirrored out to multiples of 32:

    - 0: the picture scaled to [-0.5, 0.5];
    - 1: the picture divided by the card's colour (``card``, default its ``card_colour``) minus 1;
    - 2: that, and three more channels: the picture divided by its local background
      (``background``, default ``local_background``) minus 1, so shadows, light gradients and
      card colour fall away.

    Values are clipped to [-1, 2]. Each channel is written straight into the blob (little memory).
    """
    h, w = bgr.shape[:2]
    if normalise and card is None:
        card = card_colour(bgr)
    if normalise == 2 and background is None:
        background = local_background(bgr)
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if ph or pw:  # features are pixel by pixel: mirroring the inputs mirrors them
        bgr = np.asarray(cv2.copyMakeBorder(bgr, 0, ph, 0, pw, cv2.BORDER_REFLECT_101), np.uint8)
        if background is not None:
            background = np.asarray(
                cv2.copyMakeBorder(background, 0, ph, 0, pw, cv2.BORDER_REFLECT_101), np.float32
            ).reshape(h + ph, w + pw, -1)
    blob = np.empty((1, channels(normalise), h + ph, w + pw), np.float32)
    for c in range(3):
        plane, out = bgr[..., c], blob[0, c]
        if not normalise:
            np.multiply(plane, np.float32(1 / 255), out=out)
            out -= 0.5
            continue
        assert card is not None
        np.divide(plane, np.maximum(card[c], np.float32(CARD_FLOOR)), out=out)
        out -= 1
        np.clip(out, -1, 2, out=out)
        if normalise == 2:
            assert background is not None
            local = blob[0, 3 + c]
            np.divide(plane, np.maximum(background[..., c], np.float32(CARD_FLOOR)), out=local)
            local -= 1
            np.clip(local, -1, 2, out=local)
    return blob


def sigmoid(x: F32) -> F32:
    """Given logits, return their probabilities (a new array, computed in place in it)."""
    out = np.clip(x, -30, 30).astype(np.float32, copy=False)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


def regions(mask: F32, centre: F32, s: Settings) -> NDArray[np.int32]:
    """Given mask and centre probabilities, return a label image: 0 background, 1.. one per insect."""
    fg = (mask > s.mask_threshold).astype(np.uint8)
    seeds = ((centre > s.centre_threshold) & (fg > 0)).astype(np.uint8)
    n, labels = cv2.connectedComponents(seeds, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, np.int32)
    markers = np.where(seeds > 0, labels + 1, np.where(fg > 0, 0, 1)).astype(np.int32)
    relief = np.clip((1 - centre) * 255, 0, 255).astype(np.uint8)
    cv2.watershed(cv2.merge([relief, relief, relief]), markers)
    markers -= 1
    markers[markers < 0] = 0  # watershed lines and background
    if s.min_confidence > 0:  # drop the regions the network is unsure of
        inside = markers > 0
        ids = markers[inside]
        total = np.bincount(ids, mask[inside], minlength=n)
        weak = total < s.min_confidence * np.maximum(np.bincount(ids, minlength=n), 1)
        weak[0] = False
        markers[weak[markers]] = 0
    return markers


def outlines_of(
    labels: NDArray[np.int32], k: float, full_size: tuple[int, int], s: Settings
) -> list[Outline]:
    """Given a label image, its full-resolution pixels per label pixel ``k``, and the full (w, h),
    return each label's outer contour in full-resolution pixels (inside the picture)."""
    fw, fh = full_size
    # full pixels of this picture per pixel of a 2592-wide card, squared
    area_unit = (k * s.upsample / s.output_stride * s.work_side / REF_SIDE) ** 2
    ys, xs = np.nonzero(labels)
    if not len(ys):
        return []
    ids = labels[ys, xs]
    order = np.argsort(ids, kind="stable")
    ids, ys, xs = ids[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    out: list[Outline] = []
    for a, b in zip(starts, [*starts[1:], len(ids)], strict=True):
        area = (b - a) * k * k
        if area < s.min_area * area_unit or area > s.max_area * area_unit:
            continue
        x0, y0 = int(xs[a:b].min()), int(ys[a:b].min())
        one = np.zeros((int(ys[a:b].max()) - y0 + 1, int(xs[a:b].max()) - x0 + 1), np.uint8)
        one[ys[a:b] - y0, xs[a:b] - x0] = 1
        contours, _ = cv2.findContours(one, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
        c = ((c + np.array([x0 + 0.5, y0 + 0.5], np.float32)) * k - 0.5).astype(np.float32)
        eps = s.simplify * math.sqrt(area_unit)
        simple = cv2.approxPolyDP(c.reshape(-1, 1, 2), eps, True) if eps > 0 else c.reshape(-1, 1, 2)
        if len(simple) < 3:
            continue
        xy = np.rint(simple)
        xy[..., 0] = np.clip(xy[..., 0], 0, fw - 1)
        xy[..., 1] = np.clip(xy[..., 1], 0, fh - 1)
        out.append(Outline(np.ascontiguousarray(xy, dtype=np.int32)))
    return out


#: Rows of context above and below each strip (input pixels), at least.
STRIP_OVERLAP = 128


def strips(h: int, rows: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Given a picture's height, the rows each strip gives at most (0: no strips) and the network's
    stride, return the strips as (a, b, top, bottom): the network sees input rows [a, b) and gives
    output rows [top, bottom) (in output pixels). The windows are ``rows`` plus twice STRIP_OVERLAP
    rows (the last one down to the bottom), spread evenly, starting on multiples of ``stride``, so
    the network sees one input size (and keeps one set of buffers); each gives the rows halfway
    into its overlaps with its neighbours, with at least STRIP_OVERLAP rows of context."""
    window = rows + 2 * STRIP_OVERLAP
    out_h = -(-h // stride)
    if not rows or h <= window:
        return [(0, h, 0, out_h)]
    n = -(-(h - 2 * STRIP_OVERLAP) // rows)
    starts = [round(i * (h - window) / (n - 1)) // stride * stride for i in range(n)]
    ends = [a + window for a in starts[:-1]] + [h]
    cuts = [0] + [(b + a) // 2 // stride for a, b in zip(starts[1:], ends[:-1], strict=True)] + [out_h]
    return list(zip(starts, ends, cuts[:-1], cuts[1:], strict=True))


def upsampled(m: F32, upsample: int) -> F32:
    """Given a map and a factor, return the map that many times larger (bilinear), contiguous."""
    if upsample == 1:
        return np.ascontiguousarray(m)
    h, w = m.shape
    big = cv2.resize(np.ascontiguousarray(m), (w * upsample, h * upsample), interpolation=cv2.INTER_LINEAR)
    return np.asarray(big, np.float32)


def probabilities(logits: F32, size: tuple[int, int], upsample: int, stride: int) -> tuple[F32, F32]:
    """Given the network's logits, the picture's (w, h), the maps' upsampling and the network's
    output stride, return mask and centre maps (unpadded)."""
    w, h = size
    ow, oh = -(-w // stride), -(-h // stride)
    mask = sigmoid(upsampled(logits[0, 0, :oh, :ow], upsample))
    return mask, sigmoid(upsampled(logits[0, 1, :oh, :ow], upsample))


class LearnedDetectorConfig(DetectorSettings):
    """``[detector] type = "learned"``: the small neural network (this module)."""

    type: Literal["learned"]
    #: An ``.onnx`` model (its ``.json`` settings beside it) instead of the one shipped in the package.
    model: Path | None = None
    #: ``auto``: onnxruntime when installed, else OpenCV's DNN module.
    runtime: Runtime = "auto"
    #: Long side, in pixels, pictures are reduced to for the network; default the model's
    #: (1296: insects the size they are on the 2592-wide cards it learnt). Larger when the
    #: camera sees insects smaller (``stickyctl detect run --max-side N --overlay`` to check).
    max_side: int | None = Field(default=None, ge=320, le=8192)
    #: Views of each picture the network's maps average (1, 2 or 4; default the model's): fewer
    #: are faster (a Pi Zero 2 W), more find a little more.
    views: Literal[1, 2, 4] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        if v is not None and not v.with_suffix(".json").is_file():
            raise ValueError(f"no settings file {v.with_suffix('.json')} beside the model")
        return v


class LearnedDetector:
    """The learned detector, with the packaged model unless ``model`` names another ``.onnx``.
    Raise ImportError if OpenCV or NumPy is not installed, DetectorError if the model is bad."""

    name = ALGO_NAME

    def __init__(
        self,
        model: Path | None = None,
        runtime: Runtime = "auto",
        max_side: int | None = None,
        views: int | None = None,
    ) -> None:
        require(cv2, np)
        onnx, self.settings, self.version = load_model(model)
        if max_side is not None and max_side != self.settings.work_side:
            self.settings = magnified(self.settings, max_side)
        if views is not None:
            try:
                check_views(views)
            except ValueError as e:
                raise DetectorError(str(e)) from None
            self.settings = replace(self.settings, views=views)
        self._net = make_runtime(onnx, runtime)

    def maps(self, bgr: NDArray[np.uint8]) -> tuple[F32, F32]:
        """Given a BGR picture at the working size, return its mask and centre probability maps,
        from the mean of its ``views``' logits (each turned back): turning or mirroring a picture
        of even sides as one of its views does turns or mirrors them."""
        s = self.settings
        h, w = bgr.shape[:2]
        st, up = s.output_stride, s.upsample
        if s.views == 1:
            return probabilities(self._logits(bgr), (w, h), up, st)
        # the views see the picture cut to even sides (so their maps line up), an odd last row or
        # column taking its neighbour's values; their logits are averaged (measured better than
        # averaging probabilities), in place at the network's resolution: little memory beside
        # one view's
        even = bgr[: h - h % st, : w - w % st]
        even = np.ascontiguousarray(even) if w % st else even
        eh, ew = even.shape[:2]
        oh, ow = eh // st, ew // st
        total = np.zeros((1, 2, -(-h // st), -(-w // st)), np.float32)
        for axes in VIEWS[s.views]:
            logits = self._logits(np.ascontiguousarray(np.flip(even, axes)) if axes else even)[:, :, :oh, :ow]
            total[:, :, :oh, :ow] += np.flip(logits, tuple(a + 2 for a in axes)) if axes else logits
            del logits
        total /= np.float32(s.views)
        total[:, :, oh:] = total[:, :, oh - 1 : oh]
        total[:, :, :, ow:] = total[:, :, :, ow - 1 : ow]
        return probabilities(total, (w, h), up, st)

    def _logits(self, bgr: NDArray[np.uint8]) -> F32:
        """Given a BGR picture at the working size, return the network's logits for it (maps of
        at least its size over ``output_stride``; ``probabilities`` cuts them)."""
        h, w = bgr.shape[:2]
        s = self.settings
        card = card_colour(bgr) if s.normalise else None
        coarse = coarse_background(bgr) if s.normalise == 2 else None

        def blob(a: int, b: int) -> F32:  # the network's input for rows [a, b)
            bg = None if coarse is None else background_rows(coarse, (w, h), (a, b))
            return input_blob(bgr[a:b], s.normalise, card, bg)

        pieces = strips(h, s.strip_rows, s.output_stride)
        if len(pieces) == 1:
            return self._net(blob(0, h))
        st = s.output_stride
        ow, oh = -(-w // st), -(-h // st)
        logits = np.empty((1, 2, oh, ow), np.float32)
        for a, b, top, bottom in pieces:
            out = self._net(blob(a, b))
            logits[:, :, top:bottom] = out[:, :, top - a // st : bottom - a // st, :ow]
        return logits

    def prepare(self, jpeg: bytes) -> tuple[NDArray[np.uint8], float, tuple[int, int]]:
        """Given a JPEG's bytes, return it in BGR at the working size, the full pixels per working
        pixel, and the full (w, h). Raise DetectorError if undecodable."""
        side = self.settings.work_side
        bgr, full = decode(jpeg, side)
        h, w = bgr.shape[:2]
        if max(w, h) != side:  # a small picture: up to the scale the network learnt
            k = side / max(w, h)
            size = (max(1, round(w * k)), max(1, round(h * k)))
            bgr = np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR), np.uint8)
        return np.asarray(bgr, np.uint8), max(full) / side, full

    def detect(self, jpeg: bytes) -> list[Outline]:
        """Given a JPEG's bytes, return the insects' Outlines. Raise DetectorError if undecodable."""
        return self.detect_work(*self.prepare(jpeg))

    def detect_work(self, bgr: NDArray[np.uint8], k: float, full_size: tuple[int, int]) -> list[Outline]:
        """Given a BGR picture at the working scale, full pixels per working pixel ``k`` and the full
        (w, h), return the insects' Outlines in full pixels."""
        mask, centre = self.maps(bgr)
        return self.outlines_from_maps(mask, centre, k, full_size, self.settings)

    @staticmethod
    def outlines_from_maps(
        mask: F32, centre: F32, k: float, full_size: tuple[int, int], settings: Settings
    ) -> list[Outline]:
        """Given probability maps, full pixels per working pixel, the full (w, h), settings: the Outlines."""
        labels = regions(mask, centre, settings)
        return outlines_of(labels, k * settings.output_stride / settings.upsample, full_size, settings)

    def close(self) -> None:
        """Nothing to release (the runtime's memory goes with the detector)."""


@register("detector", LearnedDetectorConfig)
def make_learned_detector(config: LearnedDetectorConfig) -> LearnedDetector:
    """Given ``[detector] type = "learned"``, return the detector. Raise ImportError without
    OpenCV or NumPy, DetectorError if its model is bad or its runtime missing."""
    return LearnedDetector(config.model, config.runtime, config.max_side, config.views)
