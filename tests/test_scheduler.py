"""Scheduling: missed slots coalesce, captures never overlap, names never share a second,
windows and backward clock steps are handled."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
from conftest import run_stickyctl

from agent.capture.scheduler import JOB_ID, CaptureScheduler, WindowedTrigger, build_trigger
from agent.config import CaptureConfig, WindowConfig, load_config
from agent.service import Pipeline

UTC = dt.UTC


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class Recorder:
    """A capture job that records how often and how concurrently it ran."""

    def __init__(self, block: bool = False) -> None:
        self.runs = 0
        self.running = 0
        self.max_running = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        if not block:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.runs += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.started.set()
        self.release.wait(30)
        with self._lock:
            self.running -= 1
        self.done.set()


class Events:
    """APScheduler events of the capture job, with a way to wait for one."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.cond = threading.Condition()

    def __call__(self, event: object) -> None:
        with self.cond:
            self.codes.append(event.code)  # type: ignore[attr-defined]
            self.cond.notify_all()

    def wait_for(self, code: int, timeout: float = 10) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: code in self.codes, timeout)


def scheduler_with_first_slot_at(
    job: Recorder, first: dt.datetime, interval: str = "10s"
) -> tuple[CaptureScheduler, Events]:
    sched = CaptureScheduler(CaptureConfig(interval=interval), job)
    events = Events()
    sched._scheduler.add_listener(events, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
    sched._scheduler.modify_job(JOB_ID, next_run_time=first)
    return sched, events


def test_missed_slots_run_once_not_n_times() -> None:
    job = Recorder()
    now = dt.datetime.now(UTC)
    # the trap was suspended for an hour: 360 slots of 10 s were missed
    sched, events = scheduler_with_first_slot_at(job, now - dt.timedelta(hours=1))
    sched.start()
    assert job.done.wait(10)
    nxt = sched.next_run_time
    sched.shutdown(wait=True)  # joins the scheduler thread: its pass over the missed slots is over
    assert events.codes == [EVENT_JOB_SUBMITTED]
    assert job.runs == 1
    assert nxt is not None and now < nxt <= now + dt.timedelta(seconds=11)


def test_a_slot_due_while_a_capture_runs_does_not_overlap() -> None:
    job = Recorder(block=True)
    sched, events = scheduler_with_first_slot_at(job, dt.datetime.now(UTC))
    sched.start()
    try:
        assert job.started.wait(10)
        # the next slot comes due while the first capture still runs
        sched._scheduler.modify_job(JOB_ID, next_run_time=dt.datetime.now(UTC))
        assert events.wait_for(EVENT_JOB_MAX_INSTANCES)
        job.release.set()
        assert job.done.wait(10)
    finally:
        job.release.set()
        sched.shutdown(wait=True)
    assert events.codes == [EVENT_JOB_SUBMITTED, EVENT_JOB_MAX_INSTANCES]
    assert job.max_running == 1 and job.runs == 1


def test_interval_slots_sit_on_the_clock() -> None:
    trigger = build_trigger(CaptureConfig(interval="20m"))
    now = dt.datetime(2026, 6, 1, 10, 7, 13, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == dt.datetime(2026, 6, 1, 10, 20, tzinfo=UTC)
    # even a clock that boots in 1970 gets a slot in 20 minutes, not never
    boot = dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, boot) == dt.datetime(1970, 1, 1, 0, 20, tzinfo=UTC)


def fire_times(trigger: object, start: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    prev = None
    t = trigger.get_next_fire_time(prev, start)  # type: ignore[attr-defined]
    while t is not None and t < until:
        out.append(t)
        prev = t
        t = trigger.get_next_fire_time(prev, t)  # type: ignore[attr-defined]
    return out


def test_a_night_window_keeps_only_night_slots() -> None:
    window = WindowConfig(start="20:00", end="06:00")
    trigger = build_trigger(CaptureConfig(interval="20m", window=window))
    assert isinstance(trigger, WindowedTrigger)
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    times = fire_times(trigger, start, start + dt.timedelta(days=1))
    assert len(times) == 30  # 10 hours x 3 per hour
    assert times[0] == dt.datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
    assert times[-1] == dt.datetime(2026, 6, 2, 5, 40, tzinfo=UTC)
    assert all(window.contains(t.time()) for t in times)


def test_cron_and_window_together() -> None:
    trigger = build_trigger(CaptureConfig(cron="0 * * * *", window=WindowConfig(start="08:30", end="11:00")))
    start = dt.datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    times = fire_times(trigger, start, start + dt.timedelta(days=1))
    assert [t.hour for t in times] == [9, 10]


def test_a_backward_clock_step_pulls_the_next_slot_back() -> None:
    now = dt.datetime.now(UTC)
    first = build_trigger(CaptureConfig(interval="20m")).get_next_fire_time(None, now)
    sched, _ = scheduler_with_first_slot_at(Recorder(), first, "20m")
    sched.start()
    try:
        assert not sched.check_clock(now)
        # the clock stepped back a day: the slot computed before is now a day away
        sched._scheduler.modify_job(JOB_ID, next_run_time=now + dt.timedelta(days=1))
        assert sched.check_clock(now)
        nxt = sched.next_run_time
        assert nxt is not None and now < nxt <= now + dt.timedelta(minutes=20)
    finally:
        sched.shutdown()


class SteppingClock:
    """A clock that advances ``step`` seconds per reading, starting at a fixed time."""

    def __init__(self, step: float) -> None:
        self.t = dt.datetime(2026, 6, 1, 12, 0, 0, 100000, tzinfo=UTC)
        self.step = dt.timedelta(seconds=step)
        self.lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self.lock:
            self.t += self.step
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += dt.timedelta(seconds=seconds)


def test_captures_in_the_same_second_get_distinct_names(write_config: Callable[..., Path]) -> None:
    # three processes' pipelines in one: without a flash, as the pin is claimed once per process
    config = load_config(write_config(flash={"type": "none"}), environ={})
    pipelines = [Pipeline.build(config) for _ in range(3)]
    clock = SteppingClock(0.05)  # many readings per second: collisions are certain
    for p in pipelines:
        p.capturer.now, p.capturer.sleep = clock, clock.sleep
    results: list[object] = []

    def shoot(p: Pipeline) -> None:
        for _ in range(3):
            results.append(p.capturer.capture())

    threads = [threading.Thread(target=shoot, args=(p,)) for p in pipelines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(results) == 9 and all(r.ok for r in results)  # type: ignore[attr-defined]
        names = [r.image.path for r in results]  # type: ignore[attr-defined]
        assert len(set(names)) == 9
        assert len({r.image.datetime for r in results}) == 9  # type: ignore[attr-defined]
    finally:
        for p in pipelines:
            p.close()


def test_two_processes_capturing_at_once_get_distinct_names(write_config: Callable[..., Path]) -> None:
    import subprocess
    import sys

    cfg = write_config()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(cfg), "capture"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].split()[0] for o in outs}
    assert len(paths) == 3
    status = run_stickyctl("--config", str(cfg), "status", "--json")
    assert '"captured": {\n        "count": 3' in status.stdout
