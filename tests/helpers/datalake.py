"""Shared by the Data Lake tests: the double's account, the official client with its sleeps
recorded instead of slept, and a harness around the Data Lake sink for the sink contract."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.faultproxy import Fault, FaultProxy
from helpers.net import free_port

from agent.devserver.datalake import DatalakeDouble
from agent.devserver.datalake_state import JOB_COMPLETED, DatalakeState
from agent.sinks.base import ImageRecord
from agent.sinks.credentials import Credentials
from agent.sinks.datalake import DataLakeSink

KEY, SECRET = "key-0a1b2c3d", "s3cr3t"
COLLECTION = "trap-0a1b2c3d"
#: The SDK's modules that sleep (30 s job polls and upload retries, 7 s between annotation batches).
SDK_MODULES = ("layernext.datalake", "layernext.datalake.file_upload", "layernext.datalake.annotation")


class RecordingTime:
    """Stands in for ``time`` inside the SDK's modules: sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def record_sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the official client record its sleeps instead of sleeping; return the record."""
    fake = RecordingTime()
    for module in SDK_MODULES:
        monkeypatch.setattr(f"{module}.time", fake)
    return fake.sleeps


def official_client(url: str, secret: str = SECRET, key: str = KEY) -> Any:
    """Return the official ``layernext`` client of the double at ``url`` (skip without it)."""
    layernext = pytest.importorskip("layernext", reason="the official client (layernext==2.3.4) is absent")
    return layernext.LayerNextClient(key, secret, url)


def annotations_file(folder: Path, images: dict[str, list[dict[str, Any]]], name: str = "a.json") -> str:
    """Write an annotation file in the SDK's format; return its path."""
    path = folder / name
    path.write_text(json.dumps({"images": [{"image": k, "annotations": v} for k, v in images.items()]}))
    return str(path)


def unique_name(state: DatalakeState, record: ImageRecord, collection: str = COLLECTION) -> str:
    """Return the lake's unique name of ``record``'s file (``{storagePath}_{file name}``)."""
    return f"{state.collections[collection].storage_path}_{record.name}"


def download_collection(
    client: Any, collection_id: str, folder: Path, operations: list[str]
) -> dict[str, Any]:
    """Download a collection with the official client (files and the annotations of
    ``operations``) into ``folder``; return ``{file name: {"bytes", "annotations"}}``."""
    client.download_collection(collection_id, "machine", operations, str(folder), True)
    (group,) = [p for p in folder.iterdir() if p.is_dir()]
    (raw,) = group.glob("*.json")
    out = {}
    for entry in json.loads(raw.read_text())["images"]:
        out[entry["image"]] = {
            "bytes": (group / "data" / entry["image"]).read_bytes(),
            "annotations": entry["annotations"],
        }
    shutil.rmtree(group)
    return out


class DatalakeHarness:
    """The Data Lake double behind a fault proxy (for its API; presigned URLs go straight to the
    double, as they go to the storage), and a Data Lake sink of it."""

    def __init__(self, sdk_sleeps: list[float], **double: Any) -> None:
        self.double = DatalakeDouble({KEY: SECRET}, **double).start()
        self.state = self.double.state
        self.proxy = FaultProxy.for_url(self.double.url).__enter__()
        self.sleeps: list[float] = []
        self.sink = self.make(self.proxy.url)
        self.sdk_sleeps = sdk_sleeps

    def make(self, url: str, secret: str = SECRET, **kw: Any) -> DataLakeSink:
        """Return a Data Lake sink of ``url`` (its job-poll waits recorded in ``sleeps``)."""
        kw.setdefault("job_timeout", 5.0)
        return DataLakeSink(
            url,
            COLLECTION,
            Credentials(KEY, secret),
            connect_timeout=2,
            read_timeout=10,
            sleep=self.sleeps.append,
            **kw,
        )

    def close(self) -> None:
        self.proxy.__exit__(None, None, None)
        self.double.stop()

    # -- the contract's harness -----------------------------------------------------------------

    def lose_next_upload_answer(self) -> None:
        self.proxy.once("GET", "/complete", Fault.DROP_AFTER)

    def put_foreign(self, record: ImageRecord) -> None:
        """Upload another picture under ``record``'s file name with the official client (which
        writes no md5 of its own)."""
        folder = record.path.parent / "foreign"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(sorted(Path(__file__).parent.parent.joinpath("data/real-images").glob("*.jpg"))[1],
                        folder / record.name)  # fmt: skip
        client = official_client(self.double.url)
        client.upload_files_to_collection(str(folder / record.name), "image", COLLECTION, {"device": "other"})

    def images_held(self) -> int:
        """Every finalized file of every upload whose job completed (copies of a name count)."""
        return sum(
            len(upload.finalized)
            for upload in self.state.uploads.values()
            if self.state.jobs[upload.job_id].status == JOB_COMPLETED
        )

    def annotations_held(self, record: ImageRecord) -> int:
        if COLLECTION not in self.state.collections:
            return 0
        name = unique_name(self.state, record)
        return sum(len(held.get(name, [])) for held in self.state.operations.values())

    def with_bad_credentials(self) -> DataLakeSink:
        return self.make(self.double.url, secret="wrong-secret")

    def unreachable(self) -> DataLakeSink:
        return self.make(f"http://127.0.0.1:{free_port()}")
