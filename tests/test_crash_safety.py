"""Crash safety: SIGKILL a capture anywhere, restart, and nothing is half there or lost.

The requirement: a capture is either fully in (original + both thumbnails + queue row) or, after
the next start-up reconciliation, leaves nothing behind: no half image, no orphan, no lost row,
and never a lost file.

How the kills are placed:

* :func:`test_kill_at_checkpoint` kills ``stickyctl capture`` (the real entry point, a separate
  process) at each named step of a capture with ``STICKY_AGENT_KILL_AT`` (see
  ``agent/faults.py``), checks that the disk shows exactly the damage that step should leave,
  then reconciles and checks the invariant.
* :func:`test_kill_during_reconciliation` kills the reconciliation itself while it adopts an
  image, then reconciles again: a crash during repair must be repairable too.
* :func:`test_random_kills` SIGKILLs a process that captures back to back after a random
  delay, many rounds on the same data folder (state accumulates), and counts which kinds of
  damage the kills left, to show they landed at the interesting points and not only in between.

:func:`check_invariant` is the invariant; :func:`survey` describes the damage a kill left
before reconciliation (every file that is not part of a complete, rowed capture).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_stickyctl
from PIL import Image, ImageFile
from stickypi_spec import parse_image

from agent.capture.imagewriter import THUMBNAIL_SIZES, make_thumbnails, thumbnail_size
from agent.capture.reconcile import ReconcileReport
from agent.config import Config, load_config
from agent.faults import KILL_ENV
from agent.service import Pipeline

KILLED = -signal.SIGKILL  # Popen.returncode of a process that died by SIGKILL
WORKER = Path(__file__).parent / "helpers" / "crash_worker.py"
THUMB_KINDS = tuple(THUMBNAIL_SIZES)  # ("thumbnail", "thumbnail-mini")
# Files the agent keeps in the data folder's root besides the device folders.
ROOT_FILES = {".capture.lock", ".agent.lock", "queue.sqlite", "queue.sqlite-wal", "queue.sqlite-shm"}
#: the simulated camera's position (agent/hardware/camera/position.py): its temporary file may survive a
#: kill, and the next save truncates it
ROOT_FILES |= {"camera-position.json", "camera-position.json.tmp"}


@pytest.fixture(autouse=True)
def _no_kill_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process reconciles in-process: a stray kill spec must never kill pytest."""
    monkeypatch.delenv(KILL_ENV, raising=False)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process: ours without any STICKY_AGENT_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
    env.update(extra)
    return env


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def reconcile(config: Config) -> ReconcileReport:
    """What ``stickyctl run`` does first on start-up: build the pipeline, reconcile, (here) stop."""
    pipeline = Pipeline.build(config)
    try:
        return pipeline.reconcile()
    finally:
        pipeline.close()


def capture_at(config: Config, when: dt.datetime) -> str:
    """Take one complete capture in-process at ``when``; return its relative path."""
    pipeline = Pipeline.build(config)
    try:
        pipeline.capturer.now = lambda: when
        result = pipeline.capturer.capture()
    finally:
        pipeline.close()
    assert result.ok and result.image is not None, result.error
    return result.image.path


# -- the queue, read directly (not through the agent's code) ---------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    path: str
    md5: str
    size: int
    width: int
    height: int
    state: str


def read_rows(queue_path: Path) -> dict[str, Row]:
    """Return the image rows by path, after checking the database file is sound (f)."""
    with contextlib.closing(sqlite3.connect(queue_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], "queue database corrupt"
        rows = [Row(*r) for r in db.execute("SELECT id, path, md5, size, width, height, state FROM images")]
    by_path = {r.path: r for r in rows}
    assert len(by_path) == len(rows), "two rows for one path"
    return by_path


# -- what a kill left behind, before reconciliation -------------------------------------------


def kind_of(rel: Path) -> str:
    """``original``, ``thumbnail`` or ``thumbnail-mini``, from where the file is."""
    return rel.parts[-2] if rel.parts[-2] in THUMB_KINDS else "original"


def original_of(rel: Path) -> Path:
    """The original a thumbnail (or an original) belongs to, relative to the data folder."""
    return rel.parent.parent / rel.name if kind_of(rel) != "original" else rel


def survey(data_dir: Path, queue_path: Path) -> list[str]:
    """Label every file that is not part of a complete, rowed capture; sorted, empty if none.

    ``original~`` / ``thumbnail~`` / ``thumbnail-mini~``: a write cut before its rename;
    ``original``: an original with no row; ``thumbnail``/``thumbnail-mini``: a thumbnail
    whose original has no row; ``rowed original without <kind>``: a row's thumbnail missing.
    """
    rows = read_rows(queue_path) if queue_path.exists() else {}
    labels = []
    for path in data_dir.glob("*/*/**/*"):
        if not path.is_file():
            continue
        rel = path.relative_to(data_dir)
        if rel.name.endswith("~"):
            labels.append(kind_of(rel.with_name(rel.name[:-1])) + "~")
        elif str(original_of(rel)) not in rows:
            labels.append(kind_of(rel))
        elif kind_of(rel) == "original":
            labels.extend(
                f"rowed original without {k}"
                for k in THUMB_KINDS
                if not (path.parent / k / path.name).exists()
            )
    return sorted(labels)


# -- the invariant ----------------------------------------------------------------------------


def decode(im: Image.Image, what: str) -> None:
    """Decode every pixel; fail naming ``what`` if the JPEG is truncated or corrupt."""
    try:
        im.load()
    except OSError as e:
        pytest.fail(f"{what} does not decode fully: {e}")


@dataclass(frozen=True)
class State:
    """What the invariant saw: every row (by path) and the md5 of every original on disk."""

    rows: dict[str, Row]
    files: dict[str, str]


def check_invariant(
    data_dir: Path,
    queue_path: Path,
    before: State | None = None,
    verified: set[tuple[str, ...]] | None = None,
) -> State:
    """Assert that disk and queue hold only complete captures, and nothing of ``before`` was lost.

    (a) no ``~`` file anywhere; (b) every original has a row with its path, md5, size and
    dimensions, decodes fully and is a file the Sticky Pi server accepts; (c) both thumbnails
    exist, decode, have the expected size and are exactly the thumbnails of that original;
    (d) every row is ``captured`` (none flagged missing) and has its original; (e) no thumbnail
    without an original, no other stray file (e.g. quarantine); (f) the SQLite file passes
    ``integrity_check``; (g) compared with ``before``: no row disappeared or changed, the row
    count did not drop, and every original is still there with the same md5.

    ``verified`` caches the expensive decodes across rounds: a file set whose original and
    thumbnail hashes were already fully checked is not decoded again (hashes are always checked).
    """
    assert not ImageFile.LOAD_TRUNCATED_IMAGES, "Pillow would accept truncated images"
    rows = read_rows(queue_path)  # (f)
    files: dict[str, str] = {}
    thumbs: set[Path] = set()
    for path in sorted(data_dir.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(data_dir)
        assert not rel.name.endswith("~"), f"(a) half-written file left behind: {rel}"
        if len(rel.parts) == 1:
            assert rel.name in ROOT_FILES, f"(e) stray file in the data folder: {rel}"
            continue
        is_original = len(rel.parts) == 3 and rel.suffix == ".jpg"
        is_thumb = len(rel.parts) == 4 and rel.parts[2] in THUMB_KINDS and rel.suffix == ".jpg"
        assert is_original or is_thumb, f"(e) stray file (not an image or thumbnail): {rel}"
        if is_thumb:
            thumbs.add(rel)
            continue
        data = path.read_bytes()
        files[str(rel)] = md5 = hashlib.md5(data).hexdigest()
        row = rows.get(str(rel))
        assert row is not None, f"(b) original without a queue row: {rel}"
        assert (row.md5, row.size) == (md5, len(data)), f"(b) row does not describe the file: {rel}"
        thumb_paths = {k: path.parent / k / path.name for k in THUMB_KINDS}
        for kind, thumb in thumb_paths.items():
            assert thumb.is_file(), f"(c) {rel} has no {kind}"
        key = (str(rel), md5, *(md5_of(t) for t in thumb_paths.values()))
        if verified is not None and key in verified:
            continue
        with Image.open(io.BytesIO(data)) as im:
            decode(im, f"(b) original {rel}")
            assert im.size == (row.width, row.height), f"(b) row has the wrong dimensions: {rel}"
        parsed = parse_image(data, path.name, strict=False)  # what the server would store
        assert (parsed["md5"], parsed["width"], parsed["height"]) == (md5, row.width, row.height)
        expected = make_thumbnails(data)
        for kind, thumb in thumb_paths.items():
            with Image.open(thumb) as im:
                decode(im, f"(c) {kind} of {rel}")
                box = THUMBNAIL_SIZES[kind]
                assert im.size == thumbnail_size(row.width, row.height, box), f"(c) {kind} size: {rel}"
                assert im.width <= box[0] and im.height <= box[1]
            assert thumb.read_bytes() == expected[kind], f"(c) {kind} is not the thumbnail of {rel}"
        if verified is not None:
            verified.add(key)
    for thumb in thumbs:
        assert str(original_of(thumb)) in files, f"(e) thumbnail without its original: {thumb}"
    for row in rows.values():
        assert row.state == "captured", f"(d) row {row.path} is {row.state}: a capture was lost"
        assert row.path in files, f"(d) row {row.path} lost its file"
    if before is not None:  # (g)
        assert len(rows) >= len(before.rows), "(g) the queue lost rows"
        for was, old in before.rows.items():
            assert rows.get(was) == old, f"(g) row {was} disappeared or changed: {old} -> {rows.get(was)}"
        for was, old_md5 in before.files.items():
            assert files.get(was) == old_md5, f"(g) complete image {was} was lost or changed"
    return State(rows, files)


# -- 1. a kill at each named step of a capture ------------------------------------------------

# Kill spec -> what the killed capture leaves (see survey); none of these has a row yet.
# partial-written/renamed are hit once per file: 1 = original, 2 = thumbnail, 3 = thumbnail-mini.
CAPTURE_KILLS = {
    "frame": [],  # frame taken, nothing written
    "partial-written:1": ["original~"],  # original's bytes fsynced, not renamed
    "renamed:1": ["original"],  # original in place, no thumbnail
    "partial-written:2": ["original", "thumbnail~"],
    "renamed:2": ["original", "thumbnail"],
    "partial-written:3": ["original", "thumbnail", "thumbnail-mini~"],
    "renamed:3": ["original", "thumbnail", "thumbnail-mini"],
    "files-written": ["original", "thumbnail", "thumbnail-mini"],  # all files, no row yet
}


@pytest.mark.parametrize("spec", list(CAPTURE_KILLS))
def test_kill_at_checkpoint(spec: str, write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    config = load_config(cfg, environ={})
    data, queue_path = config.storage.data_dir, config.storage.queue_path
    # One complete capture first (a past second, so the killed one cannot collide with it).
    earlier = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5)
    capture_at(config, earlier)
    before = check_invariant(data, queue_path)

    r = run_stickyctl("--config", str(cfg), "capture", env={KILL_ENV: spec})
    assert r.returncode == KILLED, f"expected death by SIGKILL at {spec}: rc {r.returncode}\n{r.stderr}"
    assert r.stdout == "", "a killed capture reported a result"
    # The kill landed where it should: exactly that step's damage, and no row for it.
    assert survey(data, queue_path) == sorted(CAPTURE_KILLS[spec])
    assert read_rows(queue_path) == before.rows

    report = reconcile(config)
    damage = CAPTURE_KILLS[spec]
    assert len(report.removed_partials) == sum(d.endswith("~") for d in damage)
    assert len(report.adopted) == damage.count("original")  # a complete original is kept
    assert not report.quarantined and not report.missing
    after = check_invariant(data, queue_path, before)
    assert len(after.files) == len(before.files) + damage.count("original")
    assert not reconcile(config).changed, "a second reconciliation still found something to do"


# -- 2. a kill during the reconciliation that repairs a kill ----------------------------------

# Kill spec for the reconciliation -> what it leaves of its adoption of a bare original.
RECONCILE_KILLS = {
    "partial-written:1": ["original", "thumbnail~"],
    "renamed:1": ["original", "thumbnail"],
    "partial-written:2": ["original", "thumbnail", "thumbnail-mini~"],
    "renamed:2": ["original", "thumbnail", "thumbnail-mini"],  # all files, row not inserted
}


@pytest.mark.parametrize("spec", list(RECONCILE_KILLS))
def test_kill_during_reconciliation(spec: str, write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    config = load_config(cfg, environ={})
    data, queue_path = config.storage.data_dir, config.storage.queue_path
    r = run_stickyctl("--config", str(cfg), "capture", env={KILL_ENV: "renamed:1"})
    assert r.returncode == KILLED, r.stderr
    assert survey(data, queue_path) == ["original"]
    original = md5_of(next(data.glob("*/*/*.jpg")))

    r2 = subprocess.run(
        [sys.executable, str(WORKER), str(cfg), "reconcile"],
        env=child_env(**{KILL_ENV: spec}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r2.returncode == KILLED, f"reconciliation not killed at {spec}: rc {r2.returncode}\n{r2.stderr}"
    assert survey(data, queue_path) == sorted(RECONCILE_KILLS[spec])

    report = reconcile(config)
    assert len(report.adopted) == 1 and not report.quarantined
    after = check_invariant(data, queue_path)
    assert list(after.files.values()) == [original], "the original changed or was lost"


# -- 3. random kills, many rounds, one data folder -------------------------------------------

SEED = 20240611
ROUNDS = 40
MAX_DELAY_S = 0.15  # a capture takes ~10-25 ms here: a few captures per round at most


def label_round(labels: list[str]) -> str:
    """Name the stage a kill interrupted from the damage it left."""
    if not labels:
        return "clean (between captures, or before any file)"
    return "+".join(labels)


@pytest.mark.slow
def test_random_kills(write_config: Callable[..., Path], tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cfg = write_config()
    config = load_config(cfg, environ={})
    data, queue_path = config.storage.data_dir, config.storage.queue_path
    stderr_path = tmp_path / "worker.stderr"
    before: State | None = None
    verified: set[tuple[str, ...]] = set()
    stages: Counter[str] = Counter()
    reported_total = 0

    for n in range(ROUNDS):
        delay = rng.uniform(0.0, MAX_DELAY_S)
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(cfg), "loop"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=child_env(),
                cwd=REPO,
            )
        assert proc.stdout is not None
        try:
            ready = proc.stdout.readline()  # the pipeline is built: captures start now
            assert ready == "ready\n", f"round {n}: worker did not start\n{stderr_path.read_text()}"
            # The kill point (a timeout, not a sleep): the worker never exits on its own.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=delay)
        finally:
            proc.kill()  # SIGKILL
            out = proc.stdout.read()
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == KILLED, (
            f"round {n}: worker exited by itself (rc {proc.returncode})\n{out}\n{stderr_path.read_text()}"
        )
        # Captures the worker reported finished: their rows were committed before the kill.
        reported = [line.split() for line in out.splitlines()]
        assert all(fields[0] == "ok" and len(fields) == 3 for fields in reported), out
        reported_total += len(reported)

        labels = survey(data, queue_path)
        stages[label_round(labels)] += 1
        report = reconcile(config)
        assert len(report.removed_partials) == sum(x.endswith("~") for x in labels), (n, labels, report)
        assert len(report.adopted) == labels.count("original"), (n, labels, report)
        assert not report.quarantined and not report.missing, (n, report)

        state = check_invariant(data, queue_path, before, verified)
        for _, path, md5 in reported:
            assert state.files.get(path) == md5, f"round {n}: reported capture {path} lost or changed"
        before = state

    assert before is not None
    summary = "\n".join(f"  {count:3d}  {stage}" for stage, count in stages.most_common())
    print(f"\n{ROUNDS} rounds, {len(before.rows)} images, {reported_total} reported; stages:\n{summary}")
    repaired = ROUNDS - stages[label_round([])]
    # The kills must have landed inside captures, not only between them.
    assert repaired >= 2, f"only {repaired} rounds needed repair:\n{summary}"
    assert any("original" in s.split("+") for s in stages), f"no kill left an un-rowed original:\n{summary}"
    assert reported_total > 0, "no capture ever finished"
