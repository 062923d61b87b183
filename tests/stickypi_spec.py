"""The spec's reader of Sticky Pi image files, for the tests: a re-export of
:mod:`agent.devserver.parser` (``parse_file_name``, ``parse_image``, ``SpecError``...), plus where
the shared specification folder and the real example images are (``SHARED``, ``REAL_IMAGES``).
"""

from __future__ import annotations

from pathlib import Path

from agent.devserver.parser import *  # noqa: F403

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_IMAGES = SHARED / "data" / "real-images"
