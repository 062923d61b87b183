"""The camera seam: what a capture asks of a camera, and how a backend is chosen.

A backend is chosen by ``[camera] type`` in the config, or for one run by
``$STICKY_AGENT_CAMERA`` (gpiozero's ``GPIOZERO_PIN_FACTORY`` idea). Each backend is a module
holding its settings class (a :class:`CameraSettings`) and its camera, registered together with
``@register("camera", Settings)`` (:mod:`agent.registry`); its factory takes the settings and
``state_dir``. Backends:

- ``synthetic`` (:mod:`agent.hardware.camera.synthetic`): renders a realistic sticky card,
  deterministic for a seed; any laptop.
- ``replay`` (:mod:`agent.hardware.camera.replay`): cycles through the JPEGs of a folder.
- ``picamera2`` (:mod:`agent.hardware.camera.picamera2`): the Raspberry Pi camera. Its
  module is the only place that imports ``picamera2``/``libcamera``, when the camera opens.
- ``memory`` (:mod:`agent.hardware.camera.memory`): delivers the JPEGs a test gives it.

Every backend passes the same contract tests (``tests/helpers/camera_contract.py``, one test
class per backend in ``tests/test_camera_contract.py``).

The flash: ``Camera.capture`` takes the flash as a :data:`Lighting` (``Flash.lit``) and
enters it only around the exposure of the frames that make the picture, after the camera
is opened, configured, started and focused, and leaves it before the JPEG encode. The
flash is therefore on for a fraction of a second, not for the whole capture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent import registry
from agent.errors import CameraError
from agent.settings import _Section

if TYPE_CHECKING:
    from pathlib import Path

    from agent.config import CameraConfig


class CameraSettings(_Section):
    """The base of every ``[camera]`` backend's settings; ``type: Literal[...]`` names the backend."""

    type: str


#: The flash for one exposure: a context manager factory, lit while entered (``Flash.lit``).
Lighting = Callable[[], contextlib.AbstractContextManager[object]]


def no_lighting() -> contextlib.AbstractContextManager[object]:
    """The :data:`Lighting` of a capture without a flash."""
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Frame:
    """One encoded picture as a camera delivered it.

    ``jpeg`` is the encoded image; any EXIF it carries is replaced by the image
    writer without re-encoding. ``sensor`` names the sensor for EXIF ``Model``
    (``RP_<sensor>``). Exposure facts are ``None`` when the camera cannot tell.
    """

    jpeg: bytes
    width: int
    height: int
    sensor: str
    exposure_us: float | None = None
    analogue_gain: float | None = None
    #: Other per-frame facts the camera reported, e.g. ``SensorTemperature`` (°C), ``Lux``.
    extra: dict[str, float] = field(default_factory=dict)


class Camera(Protocol):
    """A camera backend. ``capture`` may be called many times between ``open`` and ``close``."""

    sensor: str

    def open(self) -> None:
        """Make the camera ready. Raise CameraError if it is absent or unusable."""

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        """Return one frame encoded as JPEG at ``quality``. Raise CameraError on failure.

        ``flash`` is entered once, just around the exposure of the frame(s) that make the
        picture (after opening, starting, focusing), and left before the encode, also when
        the capture fails.
        """
        ...

    def close(self) -> None:
        """Release the camera; safe to call twice or after a failed ``open``."""


def make_camera(config: CameraConfig, state_dir: Path | None = None) -> Camera:
    """Given the ``[camera]`` config, return an unopened camera of its ``type``. A simulated
    camera (synthetic, replay) keeps its place in its sequence across runs in ``state_dir``
    (the data folder; None: every run starts at the beginning).

    Raise CameraError if the backend cannot be loaded on this machine.
    """
    try:
        camera: Camera = registry.create("camera", config, state_dir=state_dir)
    except ImportError as e:
        if e.name == "numpy":  # the synthetic camera renders with numpy: an extra off a Pi
            raise CameraError(
                f"camera type {config.type!r} needs numpy, which is not installed: on a Raspberry Pi "
                "sudo apt install python3-numpy; elsewhere pip install 'sticky-agent[dev]'"
            ) from e
        raise CameraError(
            f"camera type {config.type!r} is not available in this version of sticky-agent "
            f'or on this machine ({e}); use type = "synthetic" or "replay", or set '
            "STICKY_AGENT_CAMERA=synthetic"
        ) from e
    return camera
