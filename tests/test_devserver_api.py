"""``stickyctl devserver --api tator|datalake``: the doubles as a developer runs them, driven by
the official clients (tator 1.8.1, layernext 2.3.4), stopped with Ctrl-C (exit 130)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import REPO


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "devserver", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err


@pytest.fixture
def tator_server() -> Iterator[str]:
    proc, url = start("--api", "tator", "--user", "lab:0123456789abcdef")
    try:
        yield url
    finally:
        stop(proc)


def test_devserver_api_tator_answers_the_official_client(tator_server: str) -> None:
    tator = pytest.importorskip("tator")
    api = tator.get_api(tator_server, "0123456789abcdef")
    assert api.get_media_type(1).dtype == "image"


def test_devserver_api_datalake_answers_the_official_client() -> None:
    layernext = pytest.importorskip("layernext")
    proc, url = start("--api", "datalake", "--user", "key-1:secret-1")
    try:
        layernext.LayerNextClient("key-1", "secret-1", url)  # the SDK's compatibility check
        with pytest.raises(Exception, match=r"(?i)auth"):
            layernext.LayerNextClient("key-1", "wrong", url)
    finally:
        stop(proc)


def test_devserver_api_double_needs_pairs() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "agent", "devserver", "--api", "tator", "--user", "no-token"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 2 and "NAME:TOKEN" in res.stderr
