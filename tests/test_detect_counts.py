"""New insects per capture: matching a capture's insects with the previous capture's, the queue
columns that hold the figures (schema 3), the detection worker filling them in whatever order
the images are detected, and ``stickyctl status`` showing them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from agent.detect import Outline
from agent.detect.tally import Blob, blob, blobs_of_annotations, tally
from agent.detect.worker import DetectionWorker
from agent.queue import Queue
from agent.queue.readonly import QueueReader
from agent.queue.schema import MIGRATIONS, SCHEMA_VERSION, Annotation

WHEN = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
CROP = REPO / "tests" / "data" / "detect" / "5595c586.2020-08-31_18-47-19.crop.svg"


def grid_blobs(n: int, dx: float = 0.0, dy: float = 0.0, seed: int = 0) -> list[Blob]:
    """``n`` insects scattered over a 2592 x 1944 card (sizes 30-90 px), shifted by (dx, dy)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform((100, 100), (2490, 1840), (n, 2))
    side = rng.uniform(30, 90, n)
    return [Blob(float(x + dx), float(y + dy), float(s * s)) for (x, y), s in zip(xy, side, strict=True)]


# --- matching ---------------------------------------------------------------------------------


def test_blob_is_the_polygon_centroid_and_area() -> None:
    b = blob([(10, 20), (50, 20), (50, 40), (10, 40)])
    assert (b.x, b.y, b.area) == (30, 30, 800)
    assert blob([(1, 1), (2, 2), (3, 3)]).area == 0  # degenerate: vertex mean, no area
    ann = [{"contour": [[[10, 20]], [[50, 20]], [[50, 40]], [[10, 40]]]}, {"contour": [[[1, 1]]]}]
    assert blobs_of_annotations(ann) == [b]


def test_the_same_insects_after_a_small_card_shift_are_not_new() -> None:
    prev = grid_blobs(60)
    t = tally(prev, grid_blobs(60, dx=23, dy=-17))
    assert (t.on_card, t.new, t.new_card) == (60, 0, False)
    assert t.shift == pytest.approx((23, -17), abs=1)


def test_added_insects_are_counted_new_and_lost_ones_are_not_negative() -> None:
    prev = grid_blobs(40)
    cur = grid_blobs(40, dx=4, dy=3)[5:] + grid_blobs(7, seed=99)  # 5 fell off, 7 arrived
    t = tally(prev, cur)
    assert (t.on_card, t.new, t.new_card) == (42, 7, False)


def test_an_insect_that_grew_or_moved_far_is_new() -> None:
    prev = [Blob(500, 500, 2500)]
    assert tally(prev, [Blob(503, 498, 2600)]).new == 0  # wings spread a little, same place
    assert tally(prev, [Blob(500, 500, 2500 * 4)]).new == 1  # four times the area: another insect
    assert tally(prev, [Blob(700, 500, 2500)]).new == 1  # 200 px away, alone: not the same


def test_a_sudden_drop_to_near_zero_is_a_new_card() -> None:
    t = tally(grid_blobs(50), grid_blobs(2, seed=5))
    assert (t.on_card, t.new, t.new_card) == (2, 2, True)
    # a few insects dropping off a sparse card is no new card
    assert not tally(grid_blobs(4), grid_blobs(1)).new_card
    # an empty card after an empty card: nothing new, no new card
    assert tally([], []) == tally([], []) and tally([], []).new == 0


def test_first_capture_on_an_empty_previous_card_counts_all() -> None:
    assert tally([], grid_blobs(9)).new == 9


# --- schema 3 -------------------------------------------------------------------------------


def test_schema_3_adds_the_tally_columns_and_keeps_annotations(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with sqlite3.connect(path) as c:  # a queue written by the previous release (schema 2)
        for version in MIGRATIONS[:2]:
            for statement in version:
                c.execute(statement)
        c.execute(
            "INSERT INTO images (device, datetime, path, md5, size, width, height, metadata, created_at,"
            " updated_at) VALUES ('0a1b2c3d', '2026-06-01 12:00:00', 'a.jpg', ?, 5, 4, 3, '{}',"
            " '2026-06-01 12:00:00', '2026-06-01 12:00:00')",
            ("0" * 32,),
        )
        c.execute(
            "INSERT INTO annotations (image_id, algo_name, algo_version, json, n_objects, created_at,"
            " updated_at) VALUES (1, 'a', '1-x', '[]', 7, '2026-06-01 12:00:00', '2026-06-01 12:00:00')"
        )
        c.execute("PRAGMA user_version = 2")
    q = Queue(path)
    assert q.schema_version == SCHEMA_VERSION >= 3
    with q.session() as s:
        row = s.query(Annotation).one()
        assert (row.n_objects, row.n_new, row.new_card) == (7, None, 0)
    q.close()


# --- the worker -----------------------------------------------------------------------------


def square(x: int, y: int, s: int = 40) -> Outline:
    return Outline(np.array([[[x, y]], [[x + s, y]], [[x + s, y + s]], [[x, y + s]]], dtype=np.int32))


class ScriptedDetector:
    """Returns the outlines scripted for each file's content, and records what it saw."""

    name = "scripted"
    version = "1-" + "0" * 32

    def __init__(self, script: dict[bytes, list[Outline]]) -> None:
        self.script = script
        self.seen: list[bytes] = []

    def detect(self, jpeg: bytes) -> list[Outline]:
        self.seen.append(jpeg)
        return self.script[jpeg]


def queue_with_captures(tmp_path: Path, n: int) -> Queue:
    q = Queue(tmp_path / "q.sqlite")
    for i in range(n):
        rel = f"0a1b2c3d/img{i}.jpg"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(f"capture {i}".encode())
        q.add_image(
            device="0a1b2c3d",
            when=WHEN + dt.timedelta(minutes=20 * i),
            path=rel,
            md5="0" * 32,
            size=9,
            width=2592,
            height=1944,
            metadata={"record": {}},
            manual=False,
        )
    return q


def test_the_worker_records_count_and_new_insects_whatever_the_order(tmp_path: Path) -> None:
    # capture 0: 3 insects; 1: the same shifted by (6, 4) and 2 new; 2: the card was replaced (1)
    first = [square(100, 100), square(600, 300), square(1200, 900)]
    second = [square(106, 104), square(606, 304), square(1206, 904), square(2000, 1500), square(300, 1700)]
    script = {b"capture 0": first, b"capture 1": second, b"capture 2": [square(50, 50)]}
    q = queue_with_captures(tmp_path, 3)
    detector = ScriptedDetector(script)
    worker = DetectionWorker(detector, q, tmp_path)  # type: ignore[arg-type]
    while worker.step():
        pass
    assert detector.seen == [b"capture 2", b"capture 1", b"capture 0"]  # newest first
    with q.session() as s:
        rows = [(a.n_objects, a.n_new, a.new_card) for a in s.query(Annotation).order_by(Annotation.image_id)]
    assert rows == [(3, None, 0), (5, 2, 0), (1, 1, 1)]

    reader = QueueReader(tmp_path / "q.sqlite")
    counts = reader.insect_counts(WHEN - dt.timedelta(hours=1))
    reader.close()
    assert counts["last_image"]["insects"] == 1 and counts["last_image"]["new"] == 1
    assert counts["last_image"]["new_card"] is True
    assert counts["new_since"] == 3 and counts["images_since"] == 3
    q.close()


def test_a_stored_annotation_is_what_the_tally_reads(tmp_path: Path) -> None:
    q = queue_with_captures(tmp_path, 2)
    script = {b"capture 0": [square(10, 10)], b"capture 1": [square(12, 11), square(900, 900)]}
    worker = DetectionWorker(ScriptedDetector(script), q, tmp_path)  # type: ignore[arg-type]
    while worker.step():
        pass
    with q.session() as s:
        last = s.query(Annotation).order_by(Annotation.image_id.desc()).first()
        assert last is not None
        assert len(json.loads(last.json)) == last.n_objects == 2 and last.n_new == 1
    q.close()


# --- a sequence made from a real card -------------------------------------------------------


def test_new_insects_on_a_sequence_made_from_a_real_card() -> None:
    """Capture 1 is a real card crop; capture 2 the same card shifted by (10, -6) px with three of
    its insects pasted elsewhere (new arrivals); capture 3 a fresh card with one insect."""
    import cv2

    from agent.detect.evaluate import read_annotated_svg
    from agent.detect.learned import LearnedDetector

    card = read_annotated_svg(CROP)
    first = cv2.imdecode(np.frombuffer(card.jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = first.shape[:2]
    shift = np.float32([[1, 0, 10], [0, 1, -6]])
    second = cv2.warpAffine(first, shift, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    blank = np.empty_like(first)
    blank[:] = np.median(first.reshape(-1, 3), axis=0)
    third = blank.copy()
    # paste three real insects (outlined by people) at free spots: (x, y) of the top-left corner
    insects = sorted(card.outlines, key=lambda o: -float(np.ptp(o[:, 0]) * np.ptp(o[:, 1])))[:3]
    for outline, (x, y), target in zip(
        insects, [(400, 230), (800, 150), (330, 480)], [second, second, second], strict=True
    ):
        paste(first, target, outline, x, y)
    paste(first, third, insects[0], 500, 380)

    det = LearnedDetector(runtime="opencv")

    def blobs(bgr: np.ndarray) -> list[Blob]:  # type: ignore[type-arg]
        k = 2592 / det.settings.work_side
        work = cv2.resize(bgr, (round(w / k), round(h / k)), interpolation=cv2.INTER_AREA)
        return [blob(o.points) for o in det.detect_work(work, k, (w, h))]

    b1, b2, b3 = blobs(first), blobs(second), blobs(third)
    assert len(b1) >= 8
    t2 = tally(b1, b2, 2592)
    assert t2.shift == pytest.approx((10, -6), abs=3)
    # the three pasted insects are new; the detector may also see an insect cut by the crop's
    # edge differently once shifted (in two pieces), or a faint speck on one capture only
    assert not t2.new_card and 3 <= t2.new <= 6 and t2.matched >= len(b1) - 3, t2
    t3 = tally(b2, b3, 2592)
    assert t3.new_card and t3.new == t3.on_card == 1, t3


def paste(src: np.ndarray, dst: np.ndarray, outline: np.ndarray, x: int, y: int) -> None:  # type: ignore[type-arg]
    """Copy the insect inside ``outline`` (pixels of ``src``) onto ``dst`` with its box's corner at (x, y)."""
    import cv2

    x0, y0 = np.floor(outline.min(0)).astype(int) - 3
    x1, y1 = np.ceil(outline.max(0)).astype(int) + 3
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(outline - (x0, y0)).astype(np.int32)], 255)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    patch = src[y0:y1, x0:x1]
    x, y = min(x, dst.shape[1] - (x1 - x0)), min(y, dst.shape[0] - (y1 - y0))
    region = dst[y : y + (y1 - y0), x : x + (x1 - x0)]
    region[mask > 0] = patch[mask > 0]


def test_status_shows_the_count_on_the_card_and_the_new_insects(tmp_path: Path) -> None:
    from agent.config import config_from_mapping
    from agent.status import collect_status, format_status

    q = queue_with_captures(tmp_path, 2)
    script = {b"capture 0": [square(10, 10)], b"capture 1": [square(12, 11), square(900, 900)]}
    worker = DetectionWorker(ScriptedDetector(script), q, tmp_path)  # type: ignore[arg-type]
    while worker.step():
        pass
    q.close()
    config = config_from_mapping(
        {
            "storage": {"data_dir": str(tmp_path), "queue": str(tmp_path / "q.sqlite")},
            "detector": {"type": "builtin"},
        },
        environ={},
    )
    status = collect_status(config, now=WHEN + dt.timedelta(hours=1))
    assert status["insects"]["last_image"]["new"] == 1 and status["insects"]["new_24h"] == 1
    text = format_status(status)
    line = " ".join(text[text.index("insects ") :].split("\nlast errors")[0].split())  # wrapped lines
    assert "2 on the latest image (img1.jpg), 1 new since the previous one" in line, line
    assert "1 new on 2 images in the last 24 h" in line, line
