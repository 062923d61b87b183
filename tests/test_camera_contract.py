"""One contract, every camera backend (huey's StorageTests idea): each backend's test class
only says how to make one; the tests are shared (``tests/helpers/camera_contract.py``). The
picamera2 backend joins with its fake (``tests/test_picamera2.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.camera_contract import CameraContract
from helpers.contracts import untested_backends
from helpers.lighting import RecordingLight, tiny_jpeg
from stickypi_spec import REAL_IMAGES

from agent.config import MemoryCameraConfig, ReplayCameraConfig, SyntheticCameraConfig
from agent.errors import CameraError
from agent.hardware.camera import Camera, make_camera
from agent.hardware.camera import memory as memory_camera
from agent.hardware.camera.replay import ReplayCamera


def test_every_camera_backend_has_a_contract_class() -> None:
    """A new backend is one module, one line in registry.BUILTIN and one class here."""
    assert untested_backends("camera", CameraContract) - {"picamera2"} == set()  # picamera2: test_picamera2


class TestSyntheticCamera(CameraContract):
    backend = "synthetic"

    def make(self, tmp_path: Path) -> Camera:
        return make_camera(SyntheticCameraConfig(type="synthetic", width=320, height=240, seed=5))

    def make_kept(self, state_dir: Path | None) -> Camera | None:
        config = SyntheticCameraConfig(type="synthetic", width=320, height=240, seed=5)
        return make_camera(config, state_dir=state_dir)

    def test_another_seed_starts_its_own_sequence(self, tmp_path: Path) -> None:
        seeded = {
            seed: SyntheticCameraConfig(type="synthetic", width=96, height=64, seed=seed) for seed in (5, 6)
        }
        first = make_camera(seeded[5], state_dir=tmp_path)
        first.open()
        first.capture(85)
        other = make_camera(seeded[6], state_dir=tmp_path)
        fresh = make_camera(seeded[6])
        other.open()
        fresh.open()
        assert other.capture(85).jpeg == fresh.capture(85).jpeg  # index 0 of seed 6


class TestReplayCamera(CameraContract):
    backend = "replay"
    encodes = False

    def make(self, tmp_path: Path) -> Camera:
        return make_camera(ReplayCameraConfig(type="replay", folder=REAL_IMAGES))

    def make_kept(self, state_dir: Path | None) -> Camera | None:
        return make_camera(ReplayCameraConfig(type="replay", folder=REAL_IMAGES), state_dir=state_dir)

    def test_each_stickyctl_capture_replays_the_next_file(self, write_config: Callable[..., Path]) -> None:
        from agent.config import load_config
        from agent.service import Pipeline

        config = load_config(write_config(camera={"type": "replay", "folder": str(REAL_IMAGES)}), environ={})
        delivered = []
        for _ in range(2):  # two `stickyctl capture` processes
            pipeline = Pipeline.build(config)
            assert pipeline.capturer.capture(manual=True).ok
            camera = pipeline.capturer.camera
            assert isinstance(camera, ReplayCamera)
            delivered.append(camera.delivered[-1].name)
            pipeline.close()
        assert delivered == [p.name for p in sorted(REAL_IMAGES.glob("*.jpg"))[:2]]

    def test_replay_passes_the_files_bytes_through(self, camera: Camera) -> None:
        camera.open()
        files = sorted(REAL_IMAGES.glob("*.jpg"))
        frames = [camera.capture(90) for _ in range(len(files) + 1)]
        assert [f.jpeg for f in frames[:-1]] == [p.read_bytes() for p in files]  # nothing re-encoded
        assert frames[-1].jpeg == frames[0].jpeg  # round and round


class TestMemoryCamera(CameraContract):
    backend = "memory"

    def make(self, tmp_path: Path) -> Camera:
        self.film = f"contract-{uuid.uuid4().hex}"
        return make_camera(MemoryCameraConfig(type="memory", film=self.film))

    def test_it_delivers_the_frames_handed_to_it_then_plain_ones(self, camera: Camera) -> None:
        film = memory_camera.film(self.film)
        given = [tiny_jpeg((40, 30)), tiny_jpeg((20, 16))]
        film.frames.extend(given)
        camera.open()
        light = RecordingLight()
        frames = [camera.capture(80, light) for _ in range(3)]
        assert [f.jpeg for f in frames[:2]] == given  # passed on as they are
        assert [(f.width, f.height) for f in frames] == [(40, 30), (20, 16), (64, 48)]
        assert light.events == ["on", "off"] * 3
        assert film.events == ["open", "capture 80", "capture 80", "capture 80"]
        memory_camera.forget(self.film)

    def test_a_failure_handed_to_it_fails_one_capture(self, camera: Camera) -> None:
        memory_camera.film(self.film).failures.append(CameraError("memory camera: gone"))
        camera.open()
        with pytest.raises(CameraError, match="gone"):
            camera.capture(85)
        assert camera.capture(85).jpeg[:2] == b"\xff\xd8"


def test_the_picamera2_backend_off_a_pi_says_how_to_install_picamera2() -> None:
    """No picamera2 here: the backend loads and constructs, and ``open`` says what to do.
    (It runs against a fake of picamera2 in ``tests/test_picamera2.py``.)"""
    from agent.config import Picamera2CameraConfig

    camera = make_camera(Picamera2CameraConfig(type="picamera2"))
    with pytest.raises(CameraError) as e:
        camera.open()
    message = str(e.value)
    assert message.startswith("picamera2 camera: picamera2 is not installed")
    assert "apt install python3-picamera2" in message and "--system-site-packages" in message
    assert "STICKY_AGENT_CAMERA=synthetic" in message
    camera.close()
