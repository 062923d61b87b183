"""The sink contract (tests/helpers/sink_contract.py) against the in-memory sink and the Sticky
Pi sink (the devserver on 127.0.0.1, behind a fault proxy that loses answers on demand).
The Tator and Data Lake sinks run it in their own modules."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.faultproxy import Fault, FaultProxy
from helpers.net import free_port
from helpers.sink_contract import SinkContract, SinkHarness, card_jpeg, make_record

from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.sinks import memory
from agent.sinks.base import ImageRecord, Sink
from agent.sinks.credentials import Credentials
from agent.sinks.stickypi import StickyPiSink, api_datetime

PASSWORD = "pw-contract-1"


class MemoryHarness:
    def __init__(self, name: str) -> None:
        memory.forget(name)
        self.name = name
        self.platform = memory.platform(name)
        self.sink: Sink = memory.MemorySink(name, self.platform)

    def lose_next_upload_answer(self) -> None:
        self.platform.lose_answers = 1

    def put_foreign(self, record: ImageRecord) -> None:
        self.platform.images[record.key] = ("f" * 32, card_jpeg(999))

    def images_held(self) -> int:
        return len(self.platform.images)

    def annotations_held(self, record: ImageRecord) -> int:
        return sum(len(v) for k, v in self.platform.annotations.items() if k[0] == record.key)

    def with_bad_credentials(self) -> Sink:
        bad = memory.platform(self.name + "-bad")
        bad.bad_credentials = True
        return memory.MemorySink(self.name + "-bad", bad)

    def unreachable(self) -> Sink:
        gone = memory.platform(self.name + "-gone")
        gone.unreachable = True
        return memory.MemorySink(self.name + "-gone", gone)


class TestMemorySink(SinkContract):
    @pytest.fixture
    def harness(self, request: pytest.FixtureRequest) -> Iterator[SinkHarness]:
        yield MemoryHarness(f"contract-{request.node.name}")


class StickyPiHarness:
    """The devserver, reached through a fault proxy; checked with plain HTTP calls."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        users = [parse_user(f"alice:{PASSWORD}")]
        self.server = DevServer(folder / "srv", users).start()
        self.proxy = FaultProxy.for_url(self.server.url).__enter__()
        self.sink: Sink = self._sink(self.proxy.url, "alice", PASSWORD)

    def _sink(self, url: str, user: str, password: str) -> Sink:
        return StickyPiSink(url, Credentials(user, password), connect_timeout=2, read_timeout=10)

    def close(self) -> None:
        self.proxy.__exit__(None, None, None)
        self.server.stop()

    def _token(self) -> tuple[str, str]:
        answer = requests.post(f"{self.server.url}/get_token", auth=("alice", PASSWORD), timeout=10)
        answer.raise_for_status()
        return (answer.json()["token"], "")

    def _rows(self, route: str, body: object) -> list[dict[str, object]]:
        answer = requests.post(self.server.url + route, auth=self._token(), json=body, timeout=10)
        answer.raise_for_status()
        rows = answer.json()
        assert isinstance(rows, list)
        return rows

    def lose_next_upload_answer(self) -> None:
        self.proxy.once("POST", "/_put_new_images", Fault.DROP_AFTER)

    def put_foreign(self, record: ImageRecord) -> None:
        other, data = make_record(self.folder, 99)
        foreign = dataclasses.replace(other, key=record.key, path=record.path.with_suffix(".other.jpg"))
        foreign.path.write_bytes(data)
        # the same file name (key), another picture: as another trap or a re-flashed card would
        named = dataclasses.replace(foreign, path=foreign.path.parent / "x" / record.name)
        named.path.parent.mkdir(exist_ok=True)
        named.path.write_bytes(data)
        sink = self._sink(self.server.url, "alice", PASSWORD)
        sink.upload_image(named, data)
        sink.close()

    def images_held(self) -> int:
        series = {
            "device": "%",
            "start_datetime": "2019-11-01T00:00:00Z",
            "end_datetime": "2100-01-01T00:00:00Z",
        }
        return len(self._rows("/get_image_series/metadata", [series]))

    def annotations_held(self, record: ImageRecord) -> int:
        key = {"device": record.key[0], "datetime": api_datetime(record.key[1])}
        rows = self._rows("/get_uid_annotations/json", [key])
        total = 0
        for row in rows:
            value = row.get("json")
            parsed = json.loads(value) if isinstance(value, str) else value
            assert isinstance(parsed, dict)
            total += len(parsed.get("annotations", []))
        return total

    def with_bad_credentials(self) -> Sink:
        return self._sink(self.server.url, "alice", "wrong-password")

    def unreachable(self) -> Sink:
        return self._sink(f"http://127.0.0.1:{free_port()}", "alice", PASSWORD)


class TestStickyPiSink(SinkContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[SinkHarness]:
        harness = StickyPiHarness(tmp_path)
        yield harness
        harness.close()
