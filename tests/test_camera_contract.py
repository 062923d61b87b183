"""One contract, every camera backend (huey's StorageTests idea): each backend's test class
only says how to make one; the tests are shared. The picamera2 backend joins with its fake."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.lighting import RecordingLight
from PIL import Image
from stickypi_spec import REAL_IMAGES

from agent.config import ReplayCameraConfig, SyntheticCameraConfig
from agent.errors import CameraError, FlashError
from agent.hardware.camera import Camera, make_camera
from agent.hardware.camera.replay import ReplayCamera


class CameraContract:
    """Behaviour every camera backend must have."""

    #: Whether the backend encodes the JPEG itself (replay passes the file's bytes on).
    encodes = True

    def make(self, tmp_path: Path) -> Camera:
        raise NotImplementedError

    def make_kept(self, state_dir: Path | None) -> Camera | None:
        """A camera that keeps its place in its sequence in ``state_dir`` (None: a backend
        without a sequence, e.g. a real camera)."""
        return None

    def test_a_new_run_goes_on_where_the_last_one_stopped(self, tmp_path: Path) -> None:
        """Each ``stickyctl capture`` and each agent start is a new camera object: the sequence
        (the synthetic card's insects, the replay folder) goes on instead of starting again."""
        reference = self.make_kept(None)
        if reference is None:
            pytest.skip("a real camera has no sequence to keep")
        reference.open()
        expected = [reference.capture(85).jpeg for _ in range(3)]
        reference.close()
        assert len(set(expected)) == 3
        state = tmp_path / "data"
        got = []
        for run in (2, 1):  # two processes: the first takes two pictures, the second one
            camera = self.make_kept(state)
            assert camera is not None
            camera.open()
            got += [camera.capture(85).jpeg for _ in range(run)]
            camera.close()
        assert got == expected

    @pytest.fixture
    def camera(self, tmp_path: Path) -> Camera:
        cam = self.make(tmp_path)
        yield cam
        cam.close()

    def test_capture_before_open_is_a_camera_error(self, camera: Camera) -> None:
        with pytest.raises(CameraError):
            camera.capture(90)

    def test_frames_are_jpegs_of_the_stated_size(self, camera: Camera) -> None:
        camera.open()
        for _ in range(3):
            frame = camera.capture(85)
            assert frame.jpeg[:2] == b"\xff\xd8"
            with Image.open(io.BytesIO(frame.jpeg)) as im:
                im.load()
                assert im.format == "JPEG"
                assert im.size == (frame.width, frame.height)

    def test_sensor_name_makes_a_valid_model(self, camera: Camera) -> None:
        camera.open()
        frame = camera.capture(85)
        assert frame.sensor == camera.sensor
        assert re.fullmatch(r"[A-Za-z0-9_]{1,40}", f"RP_{frame.sensor}")

    def test_exposure_facts_are_positive_or_unknown(self, camera: Camera) -> None:
        camera.open()
        frame = camera.capture(85)
        assert frame.exposure_us is None or frame.exposure_us > 0
        assert frame.analogue_gain is None or frame.analogue_gain > 0

    def test_close_is_idempotent_and_reopen_works(self, camera: Camera) -> None:
        camera.open()
        camera.capture(85)
        camera.close()
        camera.close()
        camera.open()
        assert camera.capture(85).jpeg

    def test_the_flash_is_lit_once_for_the_exposure_and_off_before_the_encode(
        self, camera: Camera, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        light = RecordingLight()
        save = Image.Image.save

        def recording_save(im: Image.Image, *args: object, **kwargs: object) -> None:
            light.events.append("encode (lit)" if light.lit_now else "encode")
            save(im, *args, **kwargs)  # type: ignore[arg-type]

        camera.open()
        assert light.events == []  # opening the camera does not light the flash
        monkeypatch.setattr(Image.Image, "save", recording_save)
        frame = camera.capture(85, light)
        assert frame.jpeg[:2] == b"\xff\xd8"
        assert light.events[:2] == ["on", "off"]
        assert light.events[2:] == (["encode"] if self.encodes else [])
        camera.close()
        assert light.events[-1] != "on"

    def test_a_flash_that_fails_fails_the_capture_and_the_camera_goes_on(self, camera: Camera) -> None:
        camera.open()
        with pytest.raises(FlashError, match="would not switch on"):
            camera.capture(85, RecordingLight(fail=FlashError("flash on GPIO 23 would not switch on")))
        light = RecordingLight()
        assert camera.capture(85, light).jpeg
        assert light.events == ["on", "off"]


class TestSyntheticCamera(CameraContract):
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
