"""The synthetic camera renders a deterministic, yellow, insect-collecting sticky card."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from agent.config import SyntheticCameraConfig
from agent.errors import CameraError
from agent.hardware.camera import Frame, make_camera
from agent.hardware.camera.synthetic import SyntheticCamera


def _camera(seed: int = 0, rate: float = 0.5, width: int = 640, height: int = 480) -> SyntheticCamera:
    config = SyntheticCameraConfig(
        type="synthetic", width=width, height=height, seed=seed, insects_per_capture=rate
    )
    camera = SyntheticCamera(config)
    camera.open()
    return camera


def _pixels(frame: Frame) -> np.ndarray:
    with Image.open(io.BytesIO(frame.jpeg)) as im:
        assert im.format == "JPEG"
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _dark_fraction(frame: Frame) -> float:
    """Fraction of pixels much darker than any part of the card (insect bodies)."""
    return float((_pixels(frame)[..., :2].mean(axis=2) < 80).mean())


def test_frame_has_configured_size_and_reports_exposure() -> None:
    camera = _camera(width=640, height=480)
    frame = camera.capture(90)
    assert (frame.width, frame.height) == (640, 480)
    assert _pixels(frame).shape == (480, 640, 3)
    assert frame.sensor == "synthetic"
    assert frame.exposure_us is not None and 10_000 <= frame.exposure_us <= 30_000
    assert frame.analogue_gain is not None and 1.0 <= frame.analogue_gain <= 2.0


def test_make_camera_builds_the_synthetic_backend() -> None:
    camera = make_camera(SyntheticCameraConfig(type="synthetic", width=320, height=240))
    assert isinstance(camera, SyntheticCamera)


def test_picture_is_predominantly_yellow() -> None:
    rgb = _pixels(_camera().capture(90))
    r, g, b = (rgb[..., i].mean() for i in range(3))
    assert r > 120 and g > 110 and b < 80
    assert r > 2 * b and g > 2 * b
    hue = np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("HSV"))[..., 0]
    yellowish = (hue > 25) & (hue < 50)  # yellow is 60 deg = 42.5 in Pillow's 0-255 hue
    assert yellowish.mean() > 0.9


def test_illumination_is_uneven_like_a_flash() -> None:
    luma = _pixels(_camera().capture(90)).mean(axis=2)
    h, w = luma.shape
    centre = luma[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean()
    corners = np.mean([luma[:40, :40].mean(), luma[-40:, -40:].mean()])
    assert centre > corners + 10


def test_same_seed_gives_identical_bytes() -> None:
    a, b = _camera(seed=7), _camera(seed=7)
    for _ in range(3):
        fa, fb = a.capture(85), b.capture(85)
        assert fa.jpeg == fb.jpeg
        assert (fa.exposure_us, fa.analogue_gain) == (fb.exposure_us, fb.analogue_gain)


def test_different_seeds_differ() -> None:
    assert _camera(seed=1).capture(90).jpeg != _camera(seed=2).capture(90).jpeg


def test_successive_captures_differ_and_exposure_varies() -> None:
    camera = _camera()
    frames = [camera.capture(90) for _ in range(4)]
    assert len({f.jpeg for f in frames}) == 4
    assert len({f.exposure_us for f in frames}) > 1


def test_quality_changes_the_encoding() -> None:
    assert len(_camera().capture(95).jpeg) > len(_camera().capture(60).jpeg)


def test_insects_accumulate() -> None:
    camera = _camera(rate=1.0, width=320, height=240)
    counts = []
    for _ in range(50):
        camera.capture(80)
        counts.append(camera.insects_on_card)
    assert counts[0] >= 1  # a few insects from the start
    assert all(a <= b for a, b in itertools.pairwise(counts))
    assert counts[-1] > counts[0] + 20
    assert camera.captures == 50


def test_no_arrivals_at_rate_zero() -> None:
    camera = _camera(rate=0.0, width=320, height=240)
    counts = set()
    for _ in range(10):
        camera.capture(80)
        counts.add(camera.insects_on_card)
    assert len(counts) == 1


def test_dark_insects_are_visible_and_grow_with_their_number() -> None:
    camera = _camera(seed=3, rate=8.0)
    first = _dark_fraction(camera.capture(90))
    n_first = camera.insects_on_card
    for _ in range(25):
        last_frame = camera.capture(90)
    assert camera.insects_on_card > n_first
    assert first > 0
    assert _dark_fraction(last_frame) > 2 * first


def test_state_is_kept_across_close_and_open() -> None:
    camera, fresh = _camera(seed=5, rate=2.0), _camera(seed=5, rate=2.0)
    camera.capture(90)
    camera.close()
    camera.close()  # twice is fine
    camera.open()
    fresh.capture(90)
    assert camera.capture(90).jpeg == fresh.capture(90).jpeg
    assert camera.captures == 2


def test_capture_before_open_raises() -> None:
    camera = SyntheticCamera(SyntheticCameraConfig(type="synthetic", width=320, height=240))
    with pytest.raises(CameraError, match="before open"):
        camera.capture(90)
    assert camera.captures == 0


def test_capture_after_close_raises() -> None:
    camera = _camera()
    camera.close()
    with pytest.raises(CameraError):
        camera.capture(90)


def test_bad_quality_raises() -> None:
    with pytest.raises(CameraError, match="quality"):
        _camera().capture(0)
