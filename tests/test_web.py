"""The trap's web page over real HTTP on 127.0.0.1, against a running agent (no browser here:
``test_web_browser.py`` drives Chromium). Security, CSV export, metrics, the preview's rules."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import run_stickyctl
from helpers.webagent import DEVICE, WebAgent, wait_for, web_agent, write_agent_config
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config
from agent.errors import CredentialsError
from agent.hardware.camera import Frame
from agent.locks import capture_lock
from agent.service import Agent
from agent.web.auth import Csrf, load_password
from agent.web.preview import Preview, sharpness
from agent.web.settings import WebConfig


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def analysed_images(w: WebAgent) -> int:
    db = sqlite3.connect(w.agent.config.storage.queue_path)
    try:
        return int(db.execute("SELECT count(DISTINCT image_id) FROM annotations").fetchone()[0])
    finally:
        db.close()


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebAgent]:
    """One agent with three analysed captures, shared by the read-only tests of this module."""
    with web_agent(tmp_path_factory.mktemp("trap")) as w:
        for n in range(1, 4):
            w.capture()
            wait_for(lambda n=n: analysed_images(w) >= n)
        yield w


def test_the_dashboard_shows_the_device_last_capture_and_sink(trap: WebAgent) -> None:
    status, html = fetch(trap.url)
    assert status == 200
    assert DEVICE in html and "last capture" in html and 'data-sink="stickypi"' in html
    assert "Capturing normally" in html or "verdict" in html


def test_export_csv_has_one_row_per_queued_image_matching_the_queue(trap: WebAgent) -> None:
    status, text = fetch(trap.url + "export.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    db = sqlite3.connect(trap.agent.config.storage.queue_path)
    queued = db.execute(
        "SELECT i.md5, coalesce(d.state, 'waiting'),"
        " (SELECT n_objects FROM annotations a WHERE a.image_id = i.id) FROM images i"
        " LEFT JOIN deliveries d ON d.image_id = i.id AND d.sink = 'stickypi' ORDER BY i.datetime"
    ).fetchall()
    db.close()
    assert [(r["md5"], r["sync_stickypi"]) for r in rows] == [(m, s) for m, s, _ in queued]
    assert [int(r["insects_on_card"]) for r in rows] == [n for _, _, n in queued]
    first, *later = rows
    assert first["device"] == DEVICE and first["button"] == "1" and first["temperature_c"] == "20.5"
    assert first["lat"] == "49.26" and first["battery_pct"] == "77"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["datetime"])
    for prev, row in zip(rows, later, strict=False):
        assert int(row["new_insects"]) == max(0, int(row["insects_on_card"]) - int(prev["insects_on_card"]))


def test_stickyctl_export_csv_prints_the_same_rows(trap: WebAgent) -> None:
    assert trap.agent.config.source is not None
    result = run_stickyctl("--config", str(trap.agent.config.source), "export", "--csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == fetch(trap.url + "export.csv")[1]


def test_metrics_parse_and_carry_the_queue_and_the_trap(trap: WebAgent) -> None:
    status, text = fetch(trap.url + "metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "device"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    images = sum(v for (name, _), v in samples.items() if name == "sticky_images")
    assert images == 3
    at_sink = {dict(k)["state"]: v for (name, k), v in samples.items() if name == "sticky_queue_images"}
    assert set(at_sink) == {"waiting", "uploaded", "verified", "failed", "conflict"}
    assert sum(at_sink.values()) == 3
    assert samples[("sticky_sink_required", (("sink", "stickypi"),))] == 1
    assert samples[("sticky_capture_attempts_24h", (("outcome", "ok"),))] == 3
    assert samples[("sticky_battery_percent", ())] == 77
    assert samples[("sticky_temperature_celsius", ())] == 20.5
    assert samples[("sticky_disk_free_bytes", ())] > 0
    assert ("sticky_clock_trusted", ()) in samples
    assert ("sticky_insects_on_card", ()) in samples
    last = samples[("sticky_last_capture_timestamp_seconds", ())]
    assert abs(last - time.time()) < 600


def test_actions_need_the_csrf_token_and_this_origin(trap: WebAgent) -> None:
    token = csrf_of(fetch(trap.url + "aim")[1])
    assert fetch(trap.url + "preview/flash", b"on=1")[0] == 403
    assert fetch(trap.url + "preview/flash", b"on=1&csrf=wrong")[0] == 403
    evil = {"X-CSRF-Token": token, "Origin": "http://evil.example"}
    assert fetch(trap.url + "preview/flash", b"on=1", evil)[0] == 403
    status, _ = fetch(trap.url + "preview/flash", b"on=0", {"X-CSRF-Token": token})
    assert status == 200
    assert fetch(trap.url + "capture")[0] == 405  # a GET never acts


def test_a_foreign_host_header_is_refused_on_loopback(trap: WebAgent) -> None:
    """DNS rebinding: a site resolving its name to 127.0.0.1 must not read the page."""
    port = trap.url.rsplit(":", 1)[1].strip("/")
    assert fetch(trap.url, headers={"Host": f"evil.example:{port}"})[0] == 421


def test_no_secret_is_in_any_page(trap: WebAgent) -> None:
    pages = ["", "aim", "captures", "counts", "status.json", "export.csv", "metrics", "fragment/dashboard"]
    for page in pages:
        status, text = fetch(trap.url + page)
        assert status == 200, page
        assert "secret-password" not in text, page


def lan_config(tmp_path: Path, password: str | None) -> Path:
    web: dict[str, Any] = {"enabled": True, "bind": "0.0.0.0", "port": 0}
    if password is not None:
        pw = tmp_path / "web-password"
        pw.write_text(f"tech:{password}\n")
        pw.chmod(0o600)
        web["password_file"] = str(pw)
    return write_agent_config(tmp_path, web=web, detector=None)


def test_a_lan_bound_page_will_not_start_without_a_password(tmp_path: Path) -> None:
    agent = Agent(load_config(lan_config(tmp_path, None), environ={}))
    with pytest.raises(CredentialsError, match="needs a password"):
        agent.start()
    assert agent.web is None and agent.scheduler is None


def test_a_lan_bound_page_refuses_requests_without_the_password(tmp_path: Path) -> None:
    agent = Agent(load_config(lan_config(tmp_path, "field-password-1"), environ={}))
    agent.start()
    try:
        assert agent.web is not None
        url = agent.web.url
        status, body = fetch(url)
        assert status == 401 and "field-password-1" not in body
        wrong = base64.b64encode(b"tech:guess").decode()
        assert fetch(url + "metrics", headers={"Authorization": f"Basic {wrong}"})[0] == 401
        right = base64.b64encode(b"tech:field-password-1").decode()
        status, html = fetch(url, headers={"Authorization": f"Basic {right}"})
        assert status == 200 and DEVICE in html and "field-password-1" not in html
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("content", "mode", "error"),
    [
        ("tech:long-enough\n", 0o644, "readable by others"),
        ("just-a-password\n", 0o600, "one line username:password"),
        ("tech:short\n", 0o600, "at least 8"),
    ],
)
def test_a_bad_password_file_is_named_and_never_quoted(
    tmp_path: Path, content: str, mode: int, error: str
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(content)
    pw.chmod(mode)
    with pytest.raises(CredentialsError, match=error) as e:
        load_password(WebConfig(bind="0.0.0.0", password_file=pw))
    assert str(pw) in str(e.value) and "long-enough" not in str(e.value)


def test_credentials_directory_supplies_the_password(tmp_path: Path) -> None:
    (tmp_path / "sticky-web").write_text("tech:from-systemd-1\n")
    (tmp_path / "sticky-web").chmod(0o400)
    password = load_password(WebConfig(bind="0.0.0.0"), environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert password is not None and password.username == "tech" and "from-systemd" not in repr(password)
    assert load_password(WebConfig(), environ={}) is None  # loopback: no password needed


@pytest.mark.parametrize(
    ("web", "error"),
    [
        ({"bind": "trap.local"}, "web.bind: must be an IP address"),
        ({"port": 70000}, "web.port"),
        ({"pasword_file": "x"}, "web.pasword_file: unknown key"),
        ({"preview_timeout": "soon"}, "web.preview_timeout: must be a duration"),
    ],
)
def test_web_config_errors_name_their_key(tmp_path: Path, web: dict[str, Any], error: str) -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(write_agent_config(tmp_path, web=web), environ={})
    assert any(p.startswith(error) for p in e.value.problems), e.value.problems


def test_csrf_check() -> None:
    csrf = Csrf("tok")
    assert csrf.check("tok", None, "127.0.0.1:8080")
    assert csrf.check("tok", "http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not csrf.check("tok", "http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not csrf.check("tik", None, "127.0.0.1:8080")
    assert not csrf.check(None, None, "127.0.0.1:8080")


# -- the preview shares the camera: captures win, it stops by itself ---------------------


class RecordingCamera:
    """A camera double that records preview frames; sharp or blurred on demand."""

    sensor = "fake"

    def __init__(self) -> None:
        self.previews = 0
        self.blurred = False

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def capture(self, quality: int) -> Frame:
        raise AssertionError("the preview must not take a capture from a camera that can preview")

    def preview(self, width: int) -> Frame:
        from PIL import Image, ImageFilter

        self.previews += 1
        rng = np.random.default_rng(0)
        img = Image.fromarray(rng.integers(0, 255, (240, 320), dtype=np.uint8), "L")
        if self.blurred:
            img = img.filter(ImageFilter.GaussianBlur(4))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG")
        return Frame(buf.getvalue(), 320, 240, "fake", exposure_us=10000.0, analogue_gain=1.5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_preview(tmp_path: Path, due: list[str | None], clock: FakeClock) -> tuple[Preview, RecordingCamera]:
    camera = RecordingCamera()
    config = WebConfig(preview_timeout=60, preview_interval=0.1, preview_width=160)
    preview = Preview(config, tmp_path, lambda: camera, lambda: None, lambda: due[0], clock=clock)
    return preview, camera


def test_the_preview_pauses_while_a_capture_is_due_and_resumes_after(tmp_path: Path) -> None:
    due: list[str | None] = ["a scheduled capture is due"]
    clock = FakeClock()
    preview, camera = make_preview(tmp_path, due, clock)
    preview.start()
    try:
        wait_for(lambda: preview.paused == "a scheduled capture is due")
        assert camera.previews == 0 and preview.state()["paused"] == "a scheduled capture is due"
        due[0] = None
        frame = preview.wait_frame(0, timeout=30)
        assert frame is not None and frame.exposure_us == 10000.0 and frame.analogue_gain == 1.5
    finally:
        preview.close()


def test_the_preview_takes_no_frame_while_a_capture_holds_the_camera(tmp_path: Path) -> None:
    clock = FakeClock()
    preview, camera = make_preview(tmp_path, [None], clock)
    with capture_lock(tmp_path, timeout=1):
        preview.start()
        wait_for(lambda: preview.paused == "a capture is in progress")
        assert camera.previews == 0
    assert preview.wait_frame(0, timeout=30) is not None
    preview.close()


def test_the_preview_stops_by_itself_after_its_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    preview, _ = make_preview(tmp_path, [None], clock)
    preview.start()
    assert preview.wait_frame(0, timeout=30) is not None
    assert preview.state()["running"] and preview.state()["remaining_s"] == 60
    clock.now += 61
    thread = preview._thread
    assert thread is not None
    thread.join(timeout=30)
    assert not thread.is_alive() and not preview.state()["running"]
    assert preview.wait_frame(10**6, timeout=1) is None  # streams end


def test_sharpness_falls_when_the_picture_is_blurred(tmp_path: Path) -> None:
    preview, camera = make_preview(tmp_path, [None], FakeClock())
    preview.start()
    try:
        sharp = wait_for(lambda: preview.frame).sharpness
        camera.blurred = True
        blurred = wait_for(lambda: preview.frame if preview.frame and preview.frame.seq > 2 else None)
        assert blurred.sharpness < sharp / 5
    finally:
        preview.close()
    assert sharpness(np.zeros((50, 50), np.uint8)) == 0.0


def test_the_page_pauses_the_preview_before_a_scheduled_slot() -> None:
    from agent.web.app import WebApp

    soon = SimpleNamespace(next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    later = SimpleNamespace(next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    app = WebApp.__new__(WebApp)
    app.config = SimpleNamespace(web=WebConfig(preview_pause_before=3))  # type: ignore[assignment]
    app.agent = SimpleNamespace(manual_requested=False, scheduler=soon)  # type: ignore[assignment]
    assert app._capture_due() == "a scheduled capture is due"
    app.agent.scheduler = later
    assert app._capture_due() is None
    app.agent.manual_requested = True
    assert app._capture_due() == "a capture was asked for"


def test_the_synthetic_camera_defocuses_with_its_lens_and_blur_setting(tmp_path: Path) -> None:
    from agent.config import SyntheticCameraConfig
    from agent.hardware.camera.synthetic import FOCUS_DIOPTRES, SyntheticCamera
    from agent.web.preview import scale_frame

    cam = SyntheticCamera(SyntheticCameraConfig(type="synthetic", width=1296, height=972, seed=2))
    cam.open()
    cam.capture(80)
    before = cam.captures
    focused = scale_frame(cam.preview(640), 640, 1, None).sharpness
    cam.set_lens_position(FOCUS_DIOPTRES + 3)
    defocused = scale_frame(cam.preview(640), 640, 2, None).sharpness
    assert cam.captures == before  # a preview does not advance the capture sequence
    # Sensor noise (added after the defocus, as on a real sensor) sets a floor: about half.
    assert defocused < focused / 1.6
    blurry = SyntheticCamera(SyntheticCameraConfig(type="synthetic", width=1296, height=972, seed=2, blur=20))
    blurry.open()
    assert scale_frame(blurry.preview(640), 640, 1, None).sharpness < focused / 1.6


def test_the_preview_stream_serves_jpeg_frames(trap: WebAgent) -> None:
    assert fetch(trap.url + "preview.mjpg")[0] == 409  # a GET does not start the camera
    token = csrf_of(fetch(trap.url + "aim")[1])
    fetch(trap.url + "preview/start", b"", {"X-CSRF-Token": token})
    got: list[bytes] = []

    def read() -> None:
        with urllib.request.urlopen(trap.url + "preview.mjpg", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            while len(got) < 2:
                got.append(r.readline())

    t = threading.Thread(target=read)
    t.start()
    t.join(timeout=60)
    fetch(trap.url + "preview/stop", b"", {"X-CSRF-Token": token})
    assert got and got[0].startswith(b"--frame")


def test_the_counts_plot_agrees_with_the_export(trap: WebAgent) -> None:
    status, html = fetch(trap.url + "counts?days=1")
    assert status == 200
    bars = re.findall(
        r'<rect class="bar"[^>]*data-new="(\d+)" data-on-card="(\d*)" data-images="(\d+)"', html
    )
    assert len(bars) >= 24
    rows = list(csv.DictReader(io.StringIO(fetch(trap.url + "export.csv")[1])))
    assert sum(int(images) for _, _, images in bars) == len(rows)
    assert sum(int(new) for new, _, _ in bars) == sum(int(r["new_insects"] or 0) for r in rows)
    assert [c for _, c, _ in bars if c][-1] == rows[-1]["insects_on_card"]
