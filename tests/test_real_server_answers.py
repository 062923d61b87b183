"""The Sticky Pi client reads answers shaped as the real server sends them (a local rebuild of
sticky-pi-api behind nginx, probed): JSON labelled ``text/html; charset=utf-8`` (Flask 2.2),
gzip-encoded by nginx above 1000 bytes, ``but`` as ``1``/``0``, FLOAT columns, presigned S3
URLs, and the stored spelling of a device id that MariaDB matched case-insensitively."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator

import pytest
from helpers.hostile_server import Answer, HostileServer

from agent.sinks.credentials import Credentials
from agent.sinks.stickypi import StickyPiSink

KEY = ("5c173ff2", dt.datetime(2020, 6, 20, 21, 33, 24, tzinfo=dt.UTC))
MD5 = "65e69135d29871e8ee0ac453583effaf"
ROW = {  # a /get_images/metadata row as the real server answered it (key order included)
    "datetime_created": "2026-11-29T14:20:00Z", "api_version": "1.0.0", "api_user_id": 2, "id": 1,
    "device": "5c173ff2", "datetime": "2020-06-20T21:33:24Z", "md5": MD5, "device_version": "1.0.0",
    "width": 2592, "height": 1944, "lat": None, "lng": None, "alt": None, "temp": 21.9, "hum": 76.8,
    "lum": None, "bat": None, "but": 1, "url": "",
}  # fmt: skip


def flask_answer(value: object, gzipped: bool) -> Answer:
    body = json.dumps(value).encode() + b"\n"
    headers = {"Content-Type": "text/html; charset=utf-8"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return Answer(200, headers, lambda: [body])


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("device", ["5c173ff2", "5C173FF2"])
def test_a_real_server_answer_is_read(server: HostileServer, gzipped: bool, device: str) -> None:
    server.serve("/get_token", flask_answer({"token": "t0k", "expiration": 4_000_000_000}, gzipped))
    server.serve("/get_images/metadata", flask_answer([{**ROW, "device": device}], gzipped))
    sink = StickyPiSink(server.url, Credentials("demo", "pw"), connect_timeout=2, read_timeout=5)
    try:
        found = sink.lookup_keys([KEY])
    finally:
        sink.close()
    assert list(found) == [KEY]
    assert (found[KEY].md5, found[KEY].remote_id) == (MD5, 1)
