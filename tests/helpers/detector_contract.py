"""The detector contract (huey's StorageTests idea): behaviour every detector must have. A
backend's test class (``tests/test_detector_contract.py``) only says how to make one; ``none``
has no detector object (its factory gives None) and is checked there on its own."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import pytest
from PIL import Image
from stickypi_spec import REAL_IMAGES

from agent import registry
from agent.detect import ALGO_NAME_MAX, ALGO_VERSION_MAX, Detector, DetectorError, Outline, to_annotations

#: The size the contract's picture is reduced to (a real trap picture, 4:3).
PICTURE_SIZE = (1296, 972)


@functools.cache
def picture() -> bytes:
    """Return a real Sticky Pi picture reduced to PICTURE_SIZE, as JPEG bytes."""
    path = sorted(REAL_IMAGES.glob("*.jpg"))[0]
    with Image.open(path) as im:
        small = im.convert("RGB").resize(PICTURE_SIZE, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=90)
    return out.getvalue()


class DetectorContract:
    """Behaviour every detector must have."""

    #: The ``type`` name of the backend the test class runs against.
    backend = ""

    def make(self) -> Detector:
        raise NotImplementedError

    @pytest.fixture
    def detector(self) -> Any:
        made = self.make()
        yield made
        made.close()

    def test_the_backend_is_registered(self) -> None:
        assert self.backend in registry.backends("detector")

    def test_name_and_version_fit_the_api(self, detector: Detector) -> None:
        assert 0 < len(detector.name) <= ALGO_NAME_MAX
        assert 0 < len(detector.version) <= ALGO_VERSION_MAX

    def test_outlines_lie_on_the_picture_and_make_annotations(self, detector: Detector) -> None:
        outlines = detector.detect(picture())
        assert isinstance(outlines, list)
        w, h = PICTURE_SIZE
        for outline in outlines:
            assert isinstance(outline, Outline)
            assert all(0 <= x < w and 0 <= y < h for x, y in outline.points)
        annotations = to_annotations(outlines)
        assert len(annotations) == len(outlines)
        json.dumps(annotations)  # plain ints, JSON-ready

    def test_the_same_picture_gives_the_same_outlines(self, detector: Detector) -> None:
        first = [o.points for o in detector.detect(picture())]
        assert [o.points for o in detector.detect(picture())] == first

    def test_bytes_that_are_no_picture_are_a_detector_error(self, detector: Detector) -> None:
        with pytest.raises(DetectorError):
            detector.detect(b"not a jpeg at all")
        assert isinstance(detector.detect(picture()), list)  # and it goes on

    def test_close_is_safe_twice(self) -> None:
        made = self.make()
        made.close()
        made.close()
