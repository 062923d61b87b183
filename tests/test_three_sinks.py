"""The demo's three sinks end to end: config/demo.toml's Sticky Pi, Tator and Data Lake sinks,
the doubles ``stickyctl demo`` serves for them, one sync worker each. Captures and their
annotations reach all three, checked as each platform's users would (the official ``tator`` and
``layernext`` clients; plain HTTP for the Sticky Pi API, whose client is not on PyPI); with one
platform down the other two go on syncing, and retention waits for every required sink."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers.datalake import download_collection, official_client, record_sdk_sleeps
from helpers.net import free_port
from helpers.sinktrap import capture_annotated, close_sinks, sink_workers

from agent.config import Config, config_from_mapping
from agent.devserver.demo import DEMO_SECRETS, serve_doubles
from agent.queue import deliveries as dq
from agent.service import Pipeline
from agent.sinks.datalake_shapes import operation_id
from agent.sinks.worker import SyncWorker

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
ALGO, VERSION = "sticky-agent-builtin", "1795960800-0123456789abcdef"
OUTLINES = [
    {"contour": [[[40, 50]], [[90, 52]], [[88, 95]], [[42, 90]]], "name": "insect", "value": 1},
    {"contour": [[[200, 100]], [[230, 100]], [[230, 140]]], "name": "insect", "value": 1},
]


def demo_config(tmp_path: Path, keep_days: float | None) -> Config:
    """Return config/demo.toml's configuration with its data and its platforms moved into
    ``tmp_path`` and onto free ports of 127.0.0.1 (the sinks themselves as the file has them)."""
    data = tomllib.loads(DEMO.read_text())
    data["storage"] = {"data_dir": str(tmp_path / "demo-data")}
    data["camera"] = {**data["camera"], "width": 640, "height": 480}
    data["retention"] = {"keep_days": keep_days} if keep_days is not None else {}
    data["detector"] = {"type": "none"}
    data["web"] = {"enabled": False}
    for sink in data["sink"]:
        key = "host" if sink["type"] == "tator" else "url"
        sink[key] = f"http://127.0.0.1:{free_port()}"
        sink["credentials"] = str(tmp_path / "secrets" / Path(sink["credentials"]).name)
    return config_from_mapping(data, environ={})


class Platforms:
    """What each platform holds, read by its own users' means."""

    def __init__(self, config: Config, served: dict[str, str], folder: Path) -> None:
        self.config, self.served, self.folder = config, served, folder

    def _stickypi_series(self, what: str) -> list[dict[str, Any]]:
        """Return every row of the Sticky Pi API's ``/get_<what>_series/metadata``."""
        url = self.served["stickypi"]
        token = requests.post(f"{url}/get_token", auth=DEMO_SECRETS["stickypi"], timeout=10).json()["token"]
        ever = {
            "device": "%",
            "start_datetime": "2000-01-01T00:00:00Z",
            "end_datetime": "2100-01-01T00:00:00Z",
        }
        answer = requests.post(f"{url}/get_{what}_series/metadata", auth=(token, ""), json=[ever], timeout=10)
        rows = answer.json()
        assert isinstance(rows, list)
        return rows

    def stickypi(self) -> dict[str, str]:
        """Return ``{device.datetime: md5}`` of the images the Sticky Pi API holds."""
        return {f"{r['device']}.{r['datetime']}": r["md5"] for r in self._stickypi_series("image")}

    def stickypi_annotations(self) -> int:
        """Return how many annotation rows the Sticky Pi API holds."""
        return len(self._stickypi_series("uid_annotations"))

    def tator(self) -> tuple[dict[str, str], int]:
        """Return ``({media name: Tator md5}, localizations)`` through the official client."""
        tator = pytest.importorskip("tator", reason="the official client (tator==1.8.1) is absent")
        api = tator.get_api(self.served["tator"], DEMO_SECRETS["tator"][1])
        media = {m.name: m.md5 for m in api.get_media_list(1)}
        return media, len(api.get_localization_list(1))

    def lake(self) -> dict[str, Any]:
        """Return the lake's files with their annotations, through the official client."""
        key, secret = DEMO_SECRETS["datalake"]
        client = official_client(self.served["lake"], secret, key)
        collection_id = client.get_collection_id_by_name("demo-traps")
        down = self.folder / f"down-{len(list(self.folder.glob('down-*')))}"
        return download_collection(client, collection_id, down, [operation_id(ALGO, VERSION)])


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Yield the demo's config, pipeline, a worker per sink and the doubles by sink name (with
    ``keep_days`` from the test's ``keep_days`` marker, else no retention)."""
    record_sdk_sleeps(monkeypatch)
    marker = request.node.get_closest_marker("keep_days")
    config = demo_config(tmp_path, marker.args[0] if marker else None)
    with serve_doubles(config) as served:
        doubles = {sink.name: double for sink, double in served}
        pipeline = Pipeline.build(config)
        workers = sink_workers(config, pipeline)
        try:
            yield config, pipeline, workers, doubles
        finally:
            close_sinks(workers)
            pipeline.close()


def drain(worker: SyncWorker) -> None:
    for _ in range(20):
        if worker.cycle() > 0:
            return


def test_a_capture_reaches_all_three_platforms_with_its_annotations(demo: Any, tmp_path: Path) -> None:
    config, pipeline, workers, doubles = demo
    assert [s.type for s in config.sinks] == ["stickypi", "tator", "datalake"]
    ids = capture_annotated(pipeline, 2, ALGO, VERSION, OUTLINES)
    images = [i for i in pipeline.queue.images(10) if i.id in ids]
    for w in workers.values():
        drain(w)
    for name in workers:
        t = dq.totals(pipeline.queue, name)
        assert (t.verified, t.waiting, t.annotations_sent) == (2, 0, 2), name
    platforms = Platforms(config, {n: d.url for n, d in doubles.items()}, tmp_path)
    names = {Path(i.path).name for i in images}
    held = platforms.stickypi()
    assert sorted(held.values()) == sorted(i.md5 for i in images)
    assert platforms.stickypi_annotations() == 2
    media, localizations = platforms.tator()
    assert set(media) == names and localizations == 2 * len(OUTLINES)
    files = platforms.lake()
    assert set(files) == names
    for img in images:
        original = (config.storage.data_dir / img.path).read_bytes()
        assert files[Path(img.path).name]["bytes"] == original
        assert len(files[Path(img.path).name]["annotations"]) == len(OUTLINES)


@pytest.mark.keep_days(0)
def test_one_platform_down_leaves_the_others_syncing_and_retention_waits_for_it(
    demo: Any, tmp_path: Path
) -> None:
    _, pipeline, workers, doubles = demo
    first = pipeline.capturer.capture(manual=False)
    assert first.ok and first.image is not None
    doubles["tator"].stop()  # Tator is down (required); the lake is optional
    second = pipeline.capturer.capture(manual=False)
    assert second.ok and second.image is not None
    for w in workers.values():
        drain(w)
    assert workers["tator"].reachable is False
    assert workers["stickypi"].reachable is True and workers["lake"].reachable is True
    for name in ("stickypi", "lake"):
        assert dq.totals(pipeline.queue, name).verified == 2, name
    assert dq.totals(pipeline.queue, "tator").waiting == 2
    # keep_days = 0: every original is due, but Tator (required) holds none of them yet
    assert {i.state for i in pipeline.queue.images(10)} == {"captured"}
    assert pipeline.queue.published()["sink.tator.reachable"] == "no"
