"""The contract every sink keeps (huey's ``StorageTests`` idea): one suite, every backend.

A sink's test class inherits :class:`SinkContract` and provides a ``harness`` fixture: a
:class:`SinkHarness` around a platform on 127.0.0.1 (its protocol double) or in memory::

    class TestMemorySink(SinkContract):
        @pytest.fixture
        def harness(self) -> Iterator[SinkHarness]:
            yield MemoryHarness()

The suite checks what the sync worker relies on: lookups of absent, held and conflicting
images; an upload the platform then shows with the same md5; a retry after the answer to the
upload was lost that never makes a second copy; annotations sent only for a held image and
replaced, not duplicated, when sent again; typed errors for bad credentials and an absent
platform; ``close()`` twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import Iterator
from hashlib import md5 as md5_of
from pathlib import Path
from typing import Any, Protocol

import pytest
from PIL import Image, ImageDraw

from agent.capture.exif import Record, build_exif, insert_exif
from agent.errors import SinkAuthError, SinkRejected, SinkUnreachable, SyncError
from agent.sinks.base import AnnotationBatch, ImageRecord, RemoteImage, Sink

REAL_IMAGES = Path(__file__).resolve().parent.parent / "data" / "real-images"
DEVICE = "0a1b2c3d"


def card_jpeg(n: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """Return a small JPEG of a yellow card, different for each ``n``."""
    img = Image.new("RGB", size, (222, 205, 40))
    draw = ImageDraw.Draw(img)
    draw.ellipse((10 + n % 100, 20, 30 + n % 100, 34), fill=(30, 25, 20))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_record(
    folder: Path, n: int, data: bytes | None = None, device: str = DEVICE
) -> tuple[ImageRecord, bytes]:
    """Write image ``n`` to ``folder`` as a trap writes it (the picture ``data`` or a generated
    card, with the trap's EXIF for its time); return its record and bytes."""
    when = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=20 * n)
    picture = data if data is not None else card_jpeg(n)
    record_values = Record(v="1.0", T=21.5, H=48.0, B=87, lat=49.26, lng=-123.25)
    data = insert_exif(picture, build_exif(when=when, model="RP_imx477", record=record_values))
    path = folder / f"{device}.{when:%Y-%m-%d_%H-%M-%S}.jpg"
    path.write_bytes(data)
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    metadata = {"temperature": 21.5, "humidity": 48.0, "battery": 87, "lat": 49.26, "lng": -123.25, "b": 0}
    record = ImageRecord(
        key=(device, when),
        path=path,
        md5=md5_of(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        metadata=metadata,
        manual=False,
    )
    return record, data


def outlines(record: ImageRecord, n: int = 3) -> list[dict[str, Any]]:
    """Return ``n`` Sticky Pi annotations (square outlines, pixels) inside the image."""
    out = []
    for i in range(n):
        x, y = 5 + 12 * i, 6 + 7 * i
        square = [[[x, y]], [[x + 8, y]], [[x + 8, y + 9]], [[x, y + 9]]]
        out.append({"contour": square, "name": "insect", "value": 1, "fill_colour": "#ff0000",
                    "stroke_colour": "#0000ff"})  # fmt: skip
    return out


class SinkHarness(Protocol):
    """A sink under test and a handle on its platform."""

    #: The sink under test (closed by the suite).
    sink: Sink

    def lose_next_upload_answer(self) -> None:
        """Make the platform store the next image it is sent, but the answer never arrive."""

    def put_foreign(self, record: ImageRecord) -> None:
        """Make the platform hold another picture under ``record``'s key (a conflict)."""

    def images_held(self) -> int:
        """Return how many images the platform holds (every copy counted)."""
        ...

    def annotations_held(self, record: ImageRecord) -> int:
        """Return how many insect outlines the platform holds for ``record``'s image."""
        ...

    def with_bad_credentials(self) -> Sink:
        """Return a sink of the same platform whose credentials it refuses."""
        ...

    def unreachable(self) -> Sink:
        """Return a sink whose platform does not answer (nothing listens)."""
        ...


def held(sink: Sink, record: ImageRecord, tries: int = 6) -> RemoteImage | None:
    """Return what ``sink`` holds for ``record``, asking a few times (a platform may import an
    upload in the background, as Tator does), or None."""
    for _ in range(tries):
        found = sink.lookup_images([record]).get(record.key)
        if found is not None:
            return found
    return None


class SinkContract:
    """Behaviour every sink must have. Subclasses provide the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> Iterator[SinkHarness]:
        raise NotImplementedError

    @pytest.fixture
    def sink(self, harness: SinkHarness) -> Iterator[Sink]:
        yield harness.sink
        harness.sink.close()

    def test_probe_answers(self, sink: Sink) -> None:
        sink.probe()

    def test_an_absent_image_is_not_held(self, sink: Sink, tmp_path: Path) -> None:
        record, _ = make_record(tmp_path, 1)
        assert sink.lookup_images([record]) == {}
        assert sink.lookup_images([]) == {}
        assert sink.lookup_annotations([]) == set()

    def test_an_upload_is_then_held_with_the_same_md5(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, data = make_record(tmp_path, 2)
        sink.upload_image(record, data)
        found = held(sink, record)
        assert found is not None and found.md5 == record.md5
        assert harness.images_held() == 1

    def test_a_real_trap_picture_goes_through_intact(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        source = sorted(REAL_IMAGES.glob("*.jpg"))[0]
        record, data = make_record(tmp_path, 3, data=source.read_bytes())
        sink.upload_image(record, data)
        found = held(sink, record)
        assert found is not None and found.md5 == record.md5

    def test_another_picture_under_the_same_key_is_a_conflict(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, _ = make_record(tmp_path, 4)
        harness.put_foreign(record)
        found = held(sink, record)
        assert found is not None and found.md5 != record.md5

    def test_a_retry_after_a_lost_answer_makes_no_second_copy(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, data = make_record(tmp_path, 5)
        harness.lose_next_upload_answer()
        with pytest.raises(SyncError):
            sink.upload_image(record, data)
        # as the worker does: ask what is held, and send again only what is not
        if record.key not in sink.lookup_images([record]):
            sink.upload_image(record, data)
        found = held(sink, record)
        assert found is not None and found.md5 == record.md5
        assert harness.images_held() == 1

    def test_sending_a_held_image_again_never_makes_a_second_copy(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, data = make_record(tmp_path, 9)
        sink.upload_image(record, data)
        # e.g. Tator shows a media only once imported: a retry may come before that; the real
        # Sticky Pi server refuses a second copy with a 500 (SinkRejected)
        with contextlib.suppress(SinkRejected):
            sink.upload_image(record, data)
        found = held(sink, record)
        assert found is not None and found.md5 == record.md5
        assert harness.images_held() == 1

    def test_annotations_of_a_held_image_are_replaced_when_sent_again(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, data = make_record(tmp_path, 6)
        sink.upload_image(record, data)
        assert held(sink, record) is not None
        assert sink.lookup_annotations([record]) == set()
        batch = AnnotationBatch(record.key, record.md5, "sticky-agent-test", "1000-abc", outlines(record, 3))
        sink.upload_annotations(record, batch)
        assert (record.key, "sticky-agent-test", "1000-abc") in sink.lookup_annotations([record])
        assert harness.annotations_held(record) == 3
        # Tator and the data lake replace them; the real Sticky Pi server refuses the same
        # (algorithm, version) twice with a 500: either way, never a second set
        with contextlib.suppress(SinkRejected):
            sink.upload_annotations(record, batch)
        assert harness.annotations_held(record) == 3
        assert (record.key, "sticky-agent-test", "1000-abc") in sink.lookup_annotations([record])

    def test_annotations_of_an_image_the_platform_lacks_are_refused(
        self, sink: Sink, harness: SinkHarness, tmp_path: Path
    ) -> None:
        record, _ = make_record(tmp_path, 10)
        batch = AnnotationBatch(record.key, record.md5, "sticky-agent-test", "1000-abc", outlines(record, 2))
        with pytest.raises(SyncError):
            sink.upload_annotations(record, batch)
        assert sink.lookup_annotations([record]) == set()

    def test_refused_credentials_are_an_auth_error(self, harness: SinkHarness) -> None:
        bad = harness.with_bad_credentials()
        try:
            with pytest.raises(SinkAuthError):
                bad.probe()
        finally:
            bad.close()

    def test_an_absent_platform_is_unreachable(self, harness: SinkHarness, tmp_path: Path) -> None:
        gone = harness.unreachable()
        record, data = make_record(tmp_path, 7)
        try:
            with pytest.raises(SinkUnreachable):
                gone.probe()
            with pytest.raises(SinkUnreachable):
                gone.upload_image(record, data)
        finally:
            gone.close()

    def test_close_twice_and_nothing_after(self, harness: SinkHarness, tmp_path: Path) -> None:
        sink = harness.sink
        sink.close()
        sink.close()
        record, data = make_record(tmp_path, 8)
        with pytest.raises(SyncError):
            sink.upload_image(record, data)
