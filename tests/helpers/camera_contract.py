"""The camera contract (huey's StorageTests idea): behaviour every camera backend must have.
A backend's test class (``tests/test_camera_contract.py``) only says how to make one."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.lighting import RecordingLight
from PIL import Image

from agent import registry
from agent.errors import CameraError, FlashError
from agent.hardware.camera import Camera


class CameraContract:
    """Behaviour every camera backend must have."""

    #: The ``type`` name of the backend the test class runs against.
    backend = ""
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
    def camera(self, tmp_path: Path) -> Iterator[Camera]:
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

    def test_the_backend_is_registered_and_close_is_safe_before_open(self, tmp_path: Path) -> None:
        assert self.backend in registry.backends("camera")
        camera = self.make(tmp_path)
        camera.close()
        camera.close()

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
