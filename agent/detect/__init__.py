"""Insect detection on the trap's pictures: the detector seam and the annotations it yields.

A detector turns one JPEG into insect outlines (OpenCV contours in the full-resolution
image's pixels); :func:`to_annotations` turns those into the ``annotations`` list that
``/put_uid_annotations`` takes (see ``sticky-pi-api.md``), stored under the detector's
``name`` (the API's ``algo_name``, at most 64 characters) and ``version`` (``algo_version``,
at most 46: ``<unix timestamp>-<md5 of the parameters>``).

Detectors are chosen by ``[detector] type`` in the config; each is a settings class (a
:class:`DetectorSettings`) registered with its factory ``(settings)`` (:mod:`agent.registry`):

- ``none``: no detection (the default; its factory gives None).
- ``learned`` (:mod:`agent.detect.learned`): a small convolutional network (``insects.onnx``,
  trained by :mod:`agent.detect.train`) run by OpenCV's DNN module or onnxruntime.
- ``builtin`` (:mod:`agent.detect.builtin`): classical segmentation with OpenCV and
  NumPy, its few parameters in ``params.json`` (tuned by :mod:`agent.detect.tune_builtin`);
  the fallback where the network cannot run.
- ``memory`` (:mod:`agent.detect.memory`): the outlines it is given, for tests and demos.

Neither this module nor a detector's module imports NumPy or OpenCV when it loads (the trap's
core installs without them, and loading the config imports every detector module): they are
imported when a detector is made (:mod:`agent.lazy`). Every detector passes the same contract
tests (``tests/helpers/detector_contract.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from agent import registry
from agent.errors import StickyAgentError
from agent.registry import register
from agent.settings import _Section

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from agent.config import BuiltinDetectorConfig, DetectorConfig, LearnedDetectorConfig
    from agent.detect.memory import MemoryDetectorConfig

__all__ = [
    "ALGO_NAME_MAX",
    "ALGO_VERSION_MAX",
    "Detector",
    "DetectorError",
    "DetectorSettings",
    "NoDetectorConfig",
    "Outline",
    "make_detector",
    "to_annotations",
]

ALGO_NAME_MAX = 64
ALGO_VERSION_MAX = 46
FILL_COLOUR = "#ff0000"
STROKE_COLOUR = "#0000ff"


class DetectorError(StickyAgentError):
    """A detector cannot run: its parameters are missing or invalid, or an image cannot be decoded."""


@dataclass(frozen=True)
class Outline:
    """One insect: ``contour`` is an int32 OpenCV contour, shape (N, 1, 2), full-resolution pixels."""

    contour: NDArray[np.int32]

    def __post_init__(self) -> None:
        import numpy as np

        c = self.contour
        if c.dtype != np.int32 or c.ndim != 3 or c.shape[1:] != (1, 2) or c.shape[0] < 3:
            raise ValueError(f"an outline must be an int32 array of shape (N >= 3, 1, 2), got {c.shape}")

    @property
    def points(self) -> list[tuple[int, int]]:
        """Return the vertices as ``(x, y)`` pairs."""
        return [(int(x), int(y)) for x, y in self.contour.reshape(-1, 2)]


class Detector(Protocol):
    """Finds insects on one picture. ``name`` and ``version`` identify its annotations on the server."""

    name: str
    version: str

    def detect(self, jpeg: bytes) -> list[Outline]:
        """Given a JPEG's bytes, return the insects' outlines. Raise DetectorError if it cannot be decoded."""
        ...

    def close(self) -> None:
        """Release what the detector holds; safe to call twice."""


class DetectorSettings(_Section):
    """The base of every ``[detector]`` backend's settings; ``type: Literal[...]`` names the backend."""

    type: str


class NoDetectorConfig(DetectorSettings):
    """``[detector] type = "none"`` (the default): no detection."""

    type: Literal["none"]


@register("detector", NoDetectorConfig)
def make_no_detector(config: NoDetectorConfig) -> None:
    """Given ``[detector] type = "none"``, return None: no detector."""
    return None


@overload
def make_detector(config: NoDetectorConfig) -> None: ...
@overload
def make_detector(
    config: BuiltinDetectorConfig | LearnedDetectorConfig | MemoryDetectorConfig,
) -> Detector: ...
@overload
def make_detector(config: DetectorConfig) -> Detector | None: ...
def make_detector(config: DetectorConfig) -> Detector | None:
    """Given the ``[detector]`` config, return its detector, or None for ``type = "none"``.

    Raise DetectorError if the detector cannot be loaded (OpenCV missing, bad parameters).
    """
    try:
        detector: Detector | None = registry.create("detector", config)
    except ImportError as e:
        raise DetectorError(
            f"detector type {config.type!r} needs OpenCV and NumPy ({e}); on a Raspberry Pi: "
            "sudo apt install python3-opencv python3-numpy (never pip's wheels there), "
            "elsewhere: pip install 'sticky-agent[detect]'"
        ) from e
    return detector


def check_keys(cls: Any, data: dict[str, Any], what: str) -> set[str]:
    """Given a settings dataclass and its parsed JSON file, return the dataclass's field names.

    Raise ValueError if the file has a key the dataclass lacks (``info`` aside: notes on how it
    was made) or no ``created`` (the unix time in the detector's ``algo_version``).
    """
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known - {"info"}
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}")
    if "created" not in data:
        raise ValueError(f"missing 'created' (unix time of the {what})")
    return known


def algo_version(created: float, content: bytes, source: object) -> str:
    """Given the ``created`` time of a detector's model or parameters and their bytes, return
    the ``algo_version``: ``<created>-<md5 of the bytes>``. Raise DetectorError if that is longer
    than the API allows (``source`` names the file in the message)."""
    version = f"{int(created)}-{hashlib.md5(content).hexdigest()}"
    if len(version) > ALGO_VERSION_MAX:
        raise DetectorError(f"'created' in {source} is too large for a {ALGO_VERSION_MAX}-char version")
    return version


def to_annotations(
    outlines: list[Outline],
    fill_colour: str = FILL_COLOUR,
    stroke_colour: str = STROKE_COLOUR,
    value: int = 0,
) -> list[dict[str, Any]]:
    """Given outlines, return ``/put_uid_annotations`` annotation dicts (JSON-ready, plain ints).

    Each is ``{"contour": [[[x, y]], ...], "name": "insect", "fill_colour", "stroke_colour",
    "value"}``.
    """
    return [
        {
            "contour": [[[x, y]] for x, y in o.points],
            "name": "insect",
            "fill_colour": fill_colour,
            "stroke_colour": stroke_colour,
            "value": value,
        }
        for o in outlines
    ]
