"""One contract, every detector (huey's StorageTests idea): the learned network, the builtin
segmentation and the memory detector behave the same way where the detection worker relies on
them (``tests/helpers/detector_contract.py``)."""

from __future__ import annotations

from typing import ClassVar

from helpers.contracts import untested_backends
from helpers.detector_contract import PICTURE_SIZE, DetectorContract, picture

from agent.config import BuiltinDetectorConfig, LearnedDetectorConfig, MemoryDetectorConfig, NoDetectorConfig
from agent.detect import Detector, make_detector
from agent.detect.memory import MemoryDetector, outline


def test_every_detector_backend_has_a_contract_class() -> None:
    """A new backend is one module, one line in registry.BUILTIN and one class here."""
    assert untested_backends("detector", DetectorContract) == {"none"}


def test_the_none_backend_makes_no_detector() -> None:
    assert make_detector(NoDetectorConfig(type="none")) is None


class TestBuiltinDetector(DetectorContract):
    backend = "builtin"

    def make(self) -> Detector:
        return make_detector(BuiltinDetectorConfig(type="builtin"))


class TestLearnedDetector(DetectorContract):
    backend = "learned"

    def make(self) -> Detector:
        return make_detector(LearnedDetectorConfig(type="learned", runtime="opencv"))


class TestMemoryDetector(DetectorContract):
    backend = "memory"
    square: ClassVar[list[tuple[int, int]]] = [(10, 10), (40, 10), (40, 40), (10, 40)]

    def make(self) -> Detector:
        return make_detector(MemoryDetectorConfig(type="memory", outlines=[self.square]))

    def test_it_answers_with_what_it_is_given_and_records_what_it_saw(self) -> None:
        detector = self.make()
        assert isinstance(detector, MemoryDetector)
        w, h = PICTURE_SIZE
        corner = [(w - 5, h - 5), (w - 1, h - 5), (w - 1, h - 1)]
        detector.answers.append([outline(corner)])
        assert [o.points for o in detector.detect(picture())] == [corner]
        assert [o.points for o in detector.detect(picture())] == [self.square]  # then the configured ones
        assert len(detector.seen) == 2 and len(set(detector.seen)) == 1
