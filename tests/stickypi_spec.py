"""The spec's reader of Sticky Pi image files, for the tests: a re-export of
:mod:`agent.devserver.parser` (``parse_file_name``, ``parse_image``, ``SpecError``...), plus where
the test fixtures are.

``TEST_DATA`` (``tests/data``, see its README) holds the real files the tests need: they are part of
the repository, so a fresh clone passes its tests alone. ``SHARED`` is the development folder
beside the checkout (training data, specs): only optional, clearly skipped checks may read it
(``needs_shared``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.devserver.parser import *  # noqa: F403

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
REAL_IMAGES = TEST_DATA / "real-images"
ANNOTATED = TEST_DATA / "annotated"

SHARED = REPO.parent / "shared"
SHARED_ANNOTATED = SHARED / "data" / "annotated"
needs_shared = pytest.mark.skipif(
    not SHARED_ANNOTATED.is_dir(),
    reason=f"optional: needs the development data beside the checkout ({SHARED_ANNOTATED})",
)
