"""Shared helpers for tests of the Tator sink: a queued image record from a real JPEG, a token
file, and a sink pointed at a Tator double."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from helpers.net import free_port
from PIL import Image

from agent.devserver.tator import TatorDouble
from agent.sinks.base import ImageRecord, Sink
from agent.sinks.credentials import Secret
from agent.sinks.tator import TatorSink
from agent.sinks.tator_records import media_elemental_id

REPO = Path(__file__).resolve().parents[2]
REAL_JPEG = REPO / "tests/data/real-images/1b74105a.2020-07-05_10-07-16.jpg"
TOKEN = "f00dcafe0123456789abcdef"
RECORD = {
    "v": "3.1.0",
    "T": 21.5,
    "H": 55.2,
    "B": 80,
    "L": 2.5,
    "lat": 49.26,
    "lng": -123.25,
    "a": 0.0,
    "l": 0,
    "b": 0,
}


def image_record(
    folder: Path,
    device: str = "0a1b2c3d",
    when: dt.datetime = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC),
    source: Path = REAL_JPEG,
    data: bytes | None = None,
    record: dict[str, Any] | None = None,
    manual: bool = False,
) -> tuple[ImageRecord, bytes]:
    """Return a queued image (its file written under ``folder``) and its bytes."""
    path = folder / f"{device}.{when.strftime('%Y-%m-%d_%H-%M-%S')}.jpg"
    if data is None:
        shutil.copyfile(source, path)
        data = path.read_bytes()
    else:
        path.write_bytes(data)
    with Image.open(path) as img:
        width, height = img.size
    metadata = {"record": dict(RECORD if record is None else record)}
    rec = ImageRecord(
        key=(device, when),
        path=path,
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        metadata=metadata,
        manual=manual,
    )
    return rec, data


def token_file(folder: Path, token: str = TOKEN) -> Path:
    """Write a private token file and return its path."""
    path = folder / "tator-token"
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return path


def tator_sink(double: TatorDouble, token: str = TOKEN, **kwargs: Any) -> TatorSink:
    """Return a Tator sink on the double's project 1, image type 1, polygon type 2."""
    options: dict[str, Any] = {"project": 1, "media_type": 1, "localization_type": 2, "pause": lambda s: None}
    options.update(kwargs)
    return TatorSink(double.url, Secret(token), **options)


def contour(x: int, y: int, size: int = 40) -> dict[str, Any]:
    """Return one Sticky Pi insect annotation: a square contour at ``(x, y)`` in pixels."""
    points = [[x, y], [x + size, y], [x + size, y + size], [x, y + size]]
    return {"contour": [[p] for p in points], "name": "insect", "value": 1, "fill_colour": "#0000ff"}


class TatorHarness:
    """The sink contract's harness: a Tator double, what it holds read with the official client."""

    def __init__(self, folder: Path) -> None:
        import tator  # the official client (the [test] extra)

        self.folder = folder
        self.double = TatorDouble({TOKEN: "trap-uploader"}).start()
        self.api = tator.get_api(self.double.url, TOKEN)
        self.sink: Sink = tator_sink(self.double)

    def lose_next_upload_answer(self) -> None:
        self.double.state.lose_answers["POST medias"] += 1

    def put_foreign(self, record: ImageRecord) -> None:
        folder = self.folder / "foreign"
        folder.mkdir(exist_ok=True)
        other, data = image_record(folder, device=record.key[0], when=record.key[1])
        sink = tator_sink(self.double)
        sink.upload_image(other, data)  # another picture under the same key
        sink.close()

    def images_held(self) -> int:
        return len(self.api.get_media_list(1))

    def annotations_held(self, record: ImageRecord) -> int:
        media = self.api.get_media_list(1, elemental_id=media_elemental_id(record.key))
        return len(self.api.get_localization_list(1, media_id=[m.id for m in media])) if media else 0

    def with_bad_credentials(self) -> Sink:
        return tator_sink(self.double, token="not-a-valid-token")

    def unreachable(self) -> Sink:
        return TatorSink(f"http://127.0.0.1:{free_port()}", Secret(TOKEN), project=1, media_type=1)

    def close(self) -> None:
        self.double.stop()
