"""Score a detector against people's outlines in Sticky Pi annotated SVGs.

The Sticky Pi "Universal Insect Detector" ground truth is an Inkscape SVG: one
``<image>`` holding the original JPEG as a base64 ``data:`` URL and one ``<path>`` per
insect (``name="insect"``, or no ``name`` in outlines added by hand). Path data use
``M m L l H h V v Z z``, and ``C c S s Q q T t`` where people drew curves (flattened into
segments; an arc ``A a`` becomes a line to its end). Only trusted local files are read.

Each detection is matched to at most one person's outline, one to one, by the IoU of the
filled polygons (rasterised at half scale); Hungarian matching with SciPy when it is
installed, else greedy by IoU descending. Scores are given at IoU >= 0.5, >= 0.33 (the
Sticky Pi validation threshold) and >= 0.25.
"""

from __future__ import annotations

import base64
import io
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from agent.detect import Detector

THRESHOLDS = (0.5, 0.33, 0.25)
IOU_SCALE = 0.5
_TOKEN_RE = re.compile(r"[MmLlHhVvZzCcSsQqTtAa]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "Z": 0, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}
_CURVE_STEPS = 8
_XLINK = "{http://www.w3.org/1999/xlink}href"

Polygon = NDArray[np.float64]


@dataclass(frozen=True)
class AnnotatedImage:
    """One annotated picture: its JPEG, size, and people's outlines as float (N, 2) pixels."""

    path: Path
    jpeg: bytes
    width: int
    height: int
    outlines: list[Polygon]


def _bezier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Given a Bezier's control points (start first), return points along it, start excluded."""
    p = np.asarray(points, dtype=np.float64)
    out: list[tuple[float, float]] = []
    for t in np.linspace(0.0, 1.0, _CURVE_STEPS + 1)[1:]:
        q = p.copy()
        for k in range(len(q) - 1, 0, -1):  # de Casteljau
            q[:k] = (1 - t) * q[:k] + t * q[1 : k + 1]
        out.append((float(q[0, 0]), float(q[0, 1])))
    return out


def parse_path_d(d: str) -> list[Polygon]:
    """Given an SVG path ``d`` string, return its subpaths as float arrays of shape (N, 2).

    Handles absolute and relative commands and implicit repeats (numbers after ``M``
    continue as ``L``, after ``m`` as ``l``). Raise ValueError if the data are malformed.
    """
    tokens = _TOKEN_RE.findall(d)
    if re.sub(r"[\s,]", "", d) != "".join(tokens):
        raise ValueError(f"unexpected characters in path data {d[:60]!r}")
    subpaths: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    x = y = 0.0
    start = (0.0, 0.0)
    last_ctrl: tuple[float, float] | None = None
    cmd, i = "", 0
    while i < len(tokens):
        if tokens[i].isalpha():
            cmd, i = tokens[i], i + 1
        elif not cmd:
            raise ValueError(f"path data must start with a command: {d[:60]!r}")
        up, rel = cmd.upper(), cmd.islower()
        n = _ARITY[up]
        raw = tokens[i : i + n]
        if len(raw) != n or any(t.isalpha() for t in raw):
            raise ValueError(f"command {cmd!r} needs {n} numbers in path data {d[:60]!r}")
        args = [float(v) for v in raw]
        i += n
        ox, oy = (x, y) if rel else (0.0, 0.0)
        ctrl: tuple[float, float] | None = None
        if up == "M":
            if len(current) > 1:
                subpaths.append(current)
            x, y = start = (ox + args[0], oy + args[1])
            current = [start]
            cmd = "l" if rel else "L"
        elif up == "Z":
            if len(current) > 1:
                subpaths.append(current)
            (x, y), current, cmd = start, [start], ""
        elif up in "LHVA":
            if up in "LA":
                x, y = ox + args[-2], oy + args[-1]
            elif up == "H":
                x = ox + args[0]
            else:
                y = oy + args[0]
            current.append((x, y))
        else:
            pts = [(ox + args[k], oy + args[k + 1]) for k in range(0, n, 2)]
            if up in "ST":  # smooth curves reflect the previous control point
                prev = last_ctrl if last_ctrl is not None else (x, y)
                pts.insert(0, (2 * x - prev[0], 2 * y - prev[1]))
            ctrl = pts[-2]
            current.extend(_bezier([(x, y), *pts]))
            x, y = pts[-1]
        last_ctrl = ctrl
    if len(current) > 1:
        subpaths.append(current)
    return [np.asarray(s, dtype=np.float64) for s in subpaths]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _length(value: str | None, default: float) -> float:
    m = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))", value or "")
    return float(m.group(1)) if m else default


def read_annotated_svg(path: Path) -> AnnotatedImage:
    """Given a Sticky Pi annotated SVG, return its JPEG and outlines in the JPEG's pixels.

    Every ``<path>`` is an insect unless its ``name`` is something else; each subpath of
    three points or more is one outline. Raise ValueError if the file is not XML, has no
    embedded JPEG or a path cannot be parsed; OSError if it cannot be read.
    """
    from PIL import Image

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: not an SVG file ({e})") from None
    image = next((e for e in root.iter() if _local(e.tag) == "image"), None)
    href = None if image is None else (image.get(_XLINK) or image.get("href"))
    if image is None or not href or "base64," not in href:
        raise ValueError(f"{path}: no <image> with an embedded base64 JPEG")
    jpeg = base64.b64decode("".join(href.split("base64,", 1)[1].split()))
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            width, height = im.size
    except OSError as e:
        raise ValueError(f"{path}: the embedded image cannot be read ({e})") from None
    # Paths are in SVG user units: map them onto the JPEG's pixels through the <image> box.
    ix, iy = _length(image.get("x"), 0.0), _length(image.get("y"), 0.0)
    sx = width / _length(image.get("width"), width)
    sy = height / _length(image.get("height"), height)
    outlines: list[Polygon] = []
    for el in root.iter():
        if _local(el.tag) != "path" or el.get("name", "insect") != "insect":
            continue
        try:
            subpaths = parse_path_d(el.get("d", ""))
        except ValueError as e:
            raise ValueError(f"{path}: path {el.get('id')}: {e}") from None
        outlines.extend((sp - (ix, iy)) * (sx, sy) for sp in subpaths if len(sp) >= 3)
    return AnnotatedImage(path=path, jpeg=jpeg, width=width, height=height, outlines=outlines)


def collect_svgs(paths: Iterable[Path]) -> list[Path]:
    """Given files and folders, return the SVG files they name or hold (folders: ``*.svg``, sorted).

    Raise FileNotFoundError if a path does not exist, ValueError if no SVG is found.
    """
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.glob("*.svg")))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    if not found:
        raise ValueError("no .svg files to evaluate")
    return found


def iou_matrix(pred: Sequence[Polygon], truth: Sequence[Polygon], scale: float = IOU_SCALE) -> NDArray[Any]:
    """Given predicted and true polygons ((N, 2) or (N, 1, 2), pixels), return their IoU matrix.

    Polygons are filled with ``cv2.fillPoly`` at ``scale``; only pairs whose bounding
    boxes overlap are rasterised. Shape ``(len(pred), len(truth))``.
    """
    import cv2

    out = np.zeros((len(pred), len(truth)), dtype=np.float64)
    p = [np.asarray(a, dtype=np.float64).reshape(-1, 2) * scale for a in pred]
    t = [np.asarray(a, dtype=np.float64).reshape(-1, 2) * scale for a in truth]
    pb = [(*a.min(0), *a.max(0)) for a in p]
    tb = [(*a.min(0), *a.max(0)) for a in t]
    for i, (a, ab) in enumerate(zip(p, pb, strict=True)):
        for j, (b, bb) in enumerate(zip(t, tb, strict=True)):
            if ab[0] > bb[2] or bb[0] > ab[2] or ab[1] > bb[3] or bb[1] > ab[3]:
                continue
            x0, y0 = np.floor(min(ab[0], bb[0])) - 1, np.floor(min(ab[1], bb[1])) - 1
            w = int(np.ceil(max(ab[2], bb[2]) - x0)) + 2
            h = int(np.ceil(max(ab[3], bb[3]) - y0)) + 2
            ma = np.zeros((h, w), np.uint8)
            mb = np.zeros((h, w), np.uint8)
            cv2.fillPoly(ma, [np.round(a - (x0, y0)).astype(np.int32)], 1)
            cv2.fillPoly(mb, [np.round(b - (x0, y0)).astype(np.int32)], 1)
            union = int(np.count_nonzero(ma | mb))
            if union:
                out[i, j] = np.count_nonzero(ma & mb) / union
    return out


def match_count(iou: NDArray[Any], threshold: float) -> int:
    """Given an IoU matrix, return how many one-to-one pairs with IoU >= ``threshold`` it allows.

    Hungarian (most pairs, then the highest IoU) with SciPy, else greedy by IoU descending.
    """
    ok = iou >= threshold
    if not ok.any():
        return 0
    try:
        from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        used_p: set[int] = set()
        used_t: set[int] = set()
        pairs = sorted(zip(*np.nonzero(ok), strict=True), key=lambda ij: -iou[ij])
        for i, j in pairs:
            if i not in used_p and j not in used_t:
                used_p.add(int(i))
                used_t.add(int(j))
        return len(used_p)
    weight = np.where(ok, 1.0 + iou / (min(iou.shape) + 1), 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return int(np.count_nonzero(ok[rows, cols]))


@dataclass(frozen=True)
class Score:
    """Counts for one image or a set of them; ``matched`` maps an IoU threshold to true positives."""

    name: str
    truth: int
    detected: int
    matched: dict[float, int]
    count_error: int
    seconds: float = 0.0

    def precision(self, t: float) -> float:
        return self.matched[t] / self.detected if self.detected else 1.0

    def recall(self, t: float) -> float:
        return self.matched[t] / self.truth if self.truth else 1.0

    def f1(self, t: float) -> float:
        p, r = self.precision(t), self.recall(t)
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "truth": self.truth,
            "detected": self.detected,
            "count_error": self.count_error,
            "seconds": round(self.seconds, 3),
        }
        for t in sorted(self.matched, reverse=True):
            d[f"iou_{t:g}"] = {
                "matched": self.matched[t],
                "precision": round(self.precision(t), 4),
                "recall": round(self.recall(t), 4),
                "f1": round(self.f1(t), 4),
            }
        return d


def score_image(name: str, pred: Sequence[Polygon], truth: Sequence[Polygon], seconds: float = 0.0) -> Score:
    """Given one image's predicted and true outlines, return its Score at each of THRESHOLDS."""
    iou = iou_matrix(pred, truth)
    return Score(
        name=name,
        truth=len(truth),
        detected=len(pred),
        matched={t: match_count(iou, t) for t in THRESHOLDS},
        count_error=abs(len(pred) - len(truth)),
        seconds=seconds,
    )


def combine(scores: Sequence[Score], name: str = "overall") -> Score:
    """Given per-image Scores, return their sum (micro average; count_error is summed)."""
    return Score(
        name=name,
        truth=sum(s.truth for s in scores),
        detected=sum(s.detected for s in scores),
        matched={t: sum(s.matched[t] for s in scores) for t in THRESHOLDS},
        count_error=sum(s.count_error for s in scores),
        seconds=sum(s.seconds for s in scores),
    )


@dataclass
class Report:
    """Per-image Scores, their combination, and the detector that was scored."""

    detector: dict[str, str]
    images: list[Score] = field(default_factory=list)

    @property
    def overall(self) -> Score:
        return combine(self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "images": [s.to_dict() for s in self.images],
            "overall": self.overall.to_dict(),
        }

    def format(self) -> str:
        """Return a table: one line per image and one overall, at each IoU threshold."""
        head = f"{'image':<36} {'people':>6} {'found':>6} {'|err|':>5}"
        for t in THRESHOLDS:
            head += f"  {'P@' + format(t, 'g'):>6} {'R@' + format(t, 'g'):>6} {'F1@' + format(t, 'g'):>7}"
        lines = [f"detector {self.detector['name']} {self.detector['version']}", head]
        for s in [*self.images, self.overall]:
            line = f"{s.name[:36]:<36} {s.truth:>6} {s.detected:>6} {s.count_error:>5}"
            for t in THRESHOLDS:
                line += f"  {s.precision(t):>6.3f} {s.recall(t):>6.3f} {s.f1(t):>7.3f}"
            lines.append(line)
        return "\n".join(lines)


def evaluate(detector: Detector, paths: Iterable[Path]) -> Report:
    """Given a detector and SVG files or folders, return its Report against people's outlines.

    Raise FileNotFoundError or ValueError if the SVGs are missing or malformed.
    """
    report = Report(detector={"name": detector.name, "version": detector.version})
    for path in collect_svgs(paths):
        image = read_annotated_svg(path)
        t0 = time.perf_counter()
        found = detector.detect(image.jpeg)
        elapsed = time.perf_counter() - t0
        pred = [o.contour.reshape(-1, 2).astype(np.float64) for o in found]
        report.images.append(score_image(path.name, pred, image.outlines, elapsed))
    return report
