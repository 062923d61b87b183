"""``stickyctl doctor`` with several sinks: a line per sink (and per sink's credentials), one
sink down never hides another, a sink retention does not wait for only warns."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import run_stickyctl
from helpers.sinkconfig import credentials_file, two_sinks

from agent.config import load_config
from agent.doctor import by_sink, format_results
from agent.doctor.sinks import check_sinks
from agent.sinks import memory


def test_one_sink_down_one_fine(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = load_config(write_config(sink=two_sinks(tmp_path)), environ={})
    results = check_sinks(config, environ={})
    checks = {r.check: r for r in results}
    assert [r.check for r in results] == ["credentials stickypi", "sink stickypi", "sink lab"]
    assert checks["credentials stickypi"].status == "OK"
    down = checks["sink stickypi"]
    assert down.status == "FAIL" and "unreachable" in down.detail and down.hint
    assert "stickyctl demo" in down.hint  # a loopback address: the demo's servers
    assert checks["sink lab"].status == "OK" and "reachable" in checks["sink lab"].detail
    assert "not required" in checks["sink lab"].detail
    summary = by_sink(results)
    assert summary["stickypi"]["status"] == "FAIL" and summary["lab"]["status"] == "OK"
    assert all(len(line) <= 99 for line in format_results(results).splitlines())


def test_a_sink_not_required_only_warns_and_bad_credentials_stop_only_their_sink(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    sinks = two_sinks(tmp_path)
    sinks[0]["credentials"] = str(credentials_file(tmp_path, "no-colon-here"))
    platform = memory.platform(sinks[1]["platform"])
    platform.unreachable = True
    try:
        config = load_config(write_config(sink=sinks), environ={})
        checks = {r.check: r for r in check_sinks(config, environ={})}
    finally:
        memory.forget(sinks[1]["platform"])
    bad = checks["credentials stickypi"]
    assert bad.status == "FAIL" and "username:password" in bad.detail
    assert bad.hint and "write one line, username:password, to" in bad.hint
    assert "sink stickypi" not in checks  # never probed with credentials that cannot be read
    lab = checks["sink lab"]
    assert lab.status == "WARN" and "unreachable" in lab.detail and "(not required)" in lab.detail


def test_doctor_json_has_a_block_per_sink(write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(sink=two_sinks(tmp_path))
    result = run_stickyctl("--config", str(cfg), "doctor", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    # the memory platform lives in the doctor's own process: it answers there
    assert data["sinks"]["lab"] == {
        "status": "OK",
        "detail": "reachable, credentials accepted (not required: retention does not wait for it)",
        "hint": None,
        "credentials": None,
    }
    assert data["sinks"]["stickypi"]["status"] == "FAIL" and data["sinks"]["stickypi"]["credentials"] == "OK"
