"""A fake of the ``libcamera`` Python bindings, only as much as the fake ``picamera2`` and
sticky-agent use: ``libcamera.controls.AfModeEnum`` (and the other autofocus enums),
``libcamera.Transform`` and ``libcamera.ColorSpace`` (default arguments of
``create_still_configuration``). Enum values are libcamera's.

Tests put this folder's parent on ``sys.path`` (see ``tests/test_picamera2.py``); it is never
installed.
"""

from __future__ import annotations

import enum


class Transform:
    """``libcamera.Transform(hflip=0, vflip=0, transpose=0)``."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose

    def __repr__(self) -> str:
        return f"<libcamera.Transform hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}>"


class ColorSpace:
    """``libcamera.ColorSpace``: only the named constructors picamera2 uses as defaults."""

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def Sycc() -> ColorSpace:
        return ColorSpace("sYCC")

    @staticmethod
    def Raw() -> ColorSpace:
        return ColorSpace("RAW")

    def __repr__(self) -> str:
        return f"<libcamera.ColorSpace '{self.name}'>"


class controls:
    """A submodule in the real bindings (``from libcamera import controls``), lower-case there too."""

    class AfModeEnum(enum.IntEnum):
        Manual = 0
        Auto = 1
        Continuous = 2

    class AfTriggerEnum(enum.IntEnum):
        Start = 0
        Cancel = 1

    class AfStateEnum(enum.IntEnum):
        Idle = 0
        Scanning = 1
        Focused = 2
        Failed = 3

    class draft:
        class NoiseReductionModeEnum(enum.IntEnum):
            Off = 0
            Fast = 1
            HighQuality = 2
            Minimal = 3
            ZSL = 4
