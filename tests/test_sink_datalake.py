"""The Data Lake sink against the Data Lake double on 127.0.0.1, checked through the official
``layernext`` client (what a lab's script reads back) and the double's record of requests.

The sink contract (tests/helpers/sink_contract.py) runs here too, with the double behind a
fault proxy that loses answers on demand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.datalake import (
    COLLECTION,
    KEY,
    SECRET,
    DatalakeHarness,
    download_collection,
    official_client,
    record_sdk_sleeps,
    unique_name,
)
from helpers.faultproxy import Fault
from helpers.sink_contract import REAL_IMAGES, SinkContract, SinkHarness, make_record, outlines
from helpers.sinktrap import capture_annotated, close_sinks, sink_workers
from werkzeug.wrappers import Response

from agent import registry
from agent.config import config_from_mapping
from agent.devserver.datalake_state import JOB_FAILED, JOB_IN_PROGRESS, JOB_QUEUED
from agent.errors import SinkAuthError, SinkForbidden, SinkProtocolError, SinkRejected, SinkUnreachable
from agent.queue import deliveries as dq
from agent.queue.syncrows import add_annotation
from agent.service import Pipeline
from agent.sinks.base import AnnotationBatch, ImageRecord
from agent.sinks.datalake import DataLakeSettings, make_sink

pytest.importorskip("layernext", reason="the official client (pip install layernext==2.3.4) is absent")

ALGO, VERSION = "sticky-agent-test", "1700000000-0123abcd"
OP = f"{ALGO}@{VERSION}"


@pytest.fixture
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_sdk_sleeps(monkeypatch)


@pytest.fixture
def lake(sdk_sleeps: list[float]) -> Iterator[DatalakeHarness]:
    harness = DatalakeHarness(sdk_sleeps)
    yield harness
    harness.sink.close()
    harness.close()


class TestDataLakeSink(SinkContract):
    @pytest.fixture
    def harness(self, lake: DatalakeHarness) -> Iterator[SinkHarness]:
        yield lake


def real_record(folder: Path, n: int = 1) -> tuple[ImageRecord, bytes]:
    source = sorted(REAL_IMAGES.glob("*.jpg"))[0]
    return make_record(folder, n, data=source.read_bytes())


def outlines_of(n: int) -> list[dict[str, Any]]:
    triangles = [[[[5 + 9 * i, 6]], [[12 + 9 * i, 6]], [[12 + 9 * i, 15]]] for i in range(n)]
    return [{"contour": t, "name": "insect", "value": 1} for t in triangles]


def batch(record: ImageRecord, n: int = 3, version: str = VERSION) -> AnnotationBatch:
    return AnnotationBatch(record.key, record.md5, ALGO, version, outlines(record, n))


def test_an_upload_is_what_the_official_client_reads_back(lake: DatalakeHarness, tmp_path: Path) -> None:
    record, data = real_record(tmp_path)
    lake.sink.upload_image(record, data)
    client = official_client(lake.double.url)
    name = unique_name(lake.state, record)
    fields = {"fileSize": True, "md5": True, "device": True, "datetime": True, "temperature": True}
    details = client.get_file_details(name, fields)
    assert details["name"] == record.name and details["fileSize"] == len(data)
    assert details["md5"] == record.md5 and details["device"] == record.key[0]
    assert details["datetime"] == f"{record.key[1]:%Y-%m-%dT%H:%M:%SZ}" and details["temperature"] == 21.5
    collection_id = client.get_collection_id_by_name(COLLECTION)
    files = download_collection(client, collection_id, tmp_path / "down", [])
    assert files[record.name]["bytes"] == data  # the bytes, intact
    counts = lake.state.requests
    assert counts["POST begin_upload"] == counts["PUT object"] == counts["GET job_status"] == 1
    assert lake.state.refusals == []


def test_an_image_the_lake_has_is_not_sent_again(lake: DatalakeHarness, tmp_path: Path) -> None:
    record, data = real_record(tmp_path)
    lake.sink.upload_image(record, data)
    lake.sink.upload_image(record, data)  # e.g. a retry whose lookup was lost
    assert lake.state.requests["POST init_file"] == 2
    assert lake.state.requests["PUT object"] == lake.state.requests["POST presign"] == 1
    assert lake.images_held() == 1


def test_a_failed_job_is_a_refusal_and_nothing_is_held(sdk_sleeps: list[float], tmp_path: Path) -> None:
    lake = DatalakeHarness(sdk_sleeps, job_outcome=JOB_FAILED, job_before=(JOB_QUEUED,))
    try:
        record, data = real_record(tmp_path)
        with pytest.raises(SinkRejected, match=r"job .* failed \(status 4\)"):
            lake.sink.upload_image(record, data)
        assert lake.sink.lookup_images([record]) == {}
        lake.state.job_outcome = 2  # the lake works again: the next try uploads anew
        lake.sink.upload_image(record, data)
        assert lake.sink.lookup_images([record])[record.key].md5 == record.md5
        assert lake.images_held() == 1
    finally:
        lake.close()


def test_a_job_slower_than_the_bound_is_polled_again_never_uploaded_twice(
    sdk_sleeps: list[float], tmp_path: Path
) -> None:
    lake = DatalakeHarness(sdk_sleeps, job_before=(JOB_IN_PROGRESS,) * 7)
    try:
        record, data = real_record(tmp_path)
        with pytest.raises(SinkUnreachable, match="checked again next time"):
            lake.sink.upload_image(record, data)
        assert lake.sleeps == [0.2, 0.5, 1.0, 2.0]  # bounded by job_timeout (5 s), recorded, not slept
        assert lake.sink.lookup_images([record]) == {}  # not indexed yet
        lake.sink.upload_image(record, data)  # the retry polls the same job until it completes
        assert lake.state.requests["POST begin_upload"] == lake.state.requests["PUT object"] == 1
        assert lake.sink.lookup_images([record])[record.key].md5 == record.md5
        assert lake.images_held() == 1
    finally:
        lake.close()


@pytest.mark.parametrize("lost", ["/initializeMultipartUpload", "/finalizeMultipartUpload", "/getStatus"])
def test_a_retry_after_any_lost_answer_leaves_one_file(
    lake: DatalakeHarness, tmp_path: Path, lost: str
) -> None:
    record, data = real_record(tmp_path)
    lake.proxy.once("GET" if lost == "/getStatus" else "POST", lost, Fault.DROP_AFTER)
    with pytest.raises(SinkUnreachable):
        lake.sink.upload_image(record, data)
    if record.key not in lake.sink.lookup_images([record]):
        lake.sink.upload_image(record, data)
    assert lake.sink.lookup_images([record])[record.key].md5 == record.md5
    assert lake.images_held() == 1
    assert len(lake.state.collections[COLLECTION].files) == 1


def test_annotations_are_polygons_replaced_on_resend_as_the_official_client_reads_them(
    lake: DatalakeHarness, tmp_path: Path
) -> None:
    record, data = real_record(tmp_path)
    lake.sink.upload_image(record, data)
    lake.sink.upload_annotations(record, batch(record, 3))
    lake.sink.upload_annotations(record, batch(record, 2))  # the detector's answer changed: replaced
    assert lake.sink.lookup_annotations([record]) == {(record.key, ALGO, VERSION)}
    client = official_client(lake.double.url)
    collection_id = client.get_collection_id_by_name(COLLECTION)
    files = download_collection(client, collection_id, tmp_path / "down", [OP])
    shapes = files[record.name]["annotations"]
    expected = [[[p[0][0], p[0][1]] for p in a["contour"]] for a in outlines(record, 2)]
    assert [s["polygon"] for s in shapes] == expected
    assert {s["type"] for s in shapes} == {"polygon"} and {s["label"] for s in shapes} == {"insect"}
    assert lake.state.operation_info[OP]["mode"] == 2  # a model run
    assert lake.state.refusals == []


def test_another_detector_version_adds_its_own_annotations_and_boxes_go_too(
    lake: DatalakeHarness, tmp_path: Path
) -> None:
    record, data = real_record(tmp_path)
    sink = lake.make(lake.double.url, shapes=("polygon", "rectangle"))
    try:
        sink.upload_image(record, data)
        sink.upload_annotations(record, batch(record, 2))
        sink.upload_annotations(record, batch(record, 0, version="1800000000-ffff"))  # no insect
        assert sink.lookup_annotations([record]) == {
            (record.key, ALGO, VERSION),
            (record.key, ALGO, "1800000000-ffff"),
        }
    finally:
        sink.close()
    name = unique_name(lake.state, record)
    shapes = lake.state.operations[OP][name]
    assert [s["type"] for s in shapes] == ["polygon", "rectangle"] * 2
    assert shapes[1]["boxBoundariesAndDimensions"] == {"x": 5.0, "y": 6.0, "w": 8.0, "h": 9.0}


def test_a_refused_annotation_batch_is_reported_not_ignored(lake: DatalakeHarness, tmp_path: Path) -> None:
    record, data = real_record(tmp_path)
    other, _ = real_record(tmp_path, 2)
    lake.sink.upload_image(record, data)
    with pytest.raises(SinkRejected, match="no image with objectKey"):
        lake.sink.upload_annotations(other, batch(other))  # the collection lacks this file
    bad = batch(record)
    bad.annotations[0]["contour"] = "not a contour"
    with pytest.raises(SinkRejected, match="no contour"):
        lake.sink.upload_annotations(record, bad)
    assert lake.state.operations == {}


def test_a_foreign_file_under_the_name_is_a_conflict(lake: DatalakeHarness, tmp_path: Path) -> None:
    record, _ = make_record(tmp_path, 1)
    lake.put_foreign(record)
    found = lake.sink.lookup_images([record])[record.key]
    assert found.md5 != record.md5 and found.remote_id == lake.state.file(COLLECTION, record.name).file_id  # type: ignore[union-attr]


def test_a_wrong_secret_is_an_auth_error_and_an_old_protocol_is_forbidden(
    lake: DatalakeHarness, tmp_path: Path
) -> None:
    record, data = real_record(tmp_path)
    bad = lake.with_bad_credentials()
    try:
        with pytest.raises(SinkAuthError, match="refused the API key"):
            bad.probe()
        with pytest.raises(SinkAuthError, match="401"):
            bad.lookup_images([record])
        with pytest.raises(SinkAuthError, match="401"):
            bad.upload_image(record, data)
        assert COLLECTION not in lake.state.collections
    finally:
        bad.close()
    lake.state.min_sdk_version = (9, 0, 0)
    with pytest.raises(SinkForbidden, match=r"upgrade to 9\.0\.0"):
        lake.sink.probe()


def test_settings_load_the_api_key_from_the_credentials_directory(
    tmp_path: Path, lake: DatalakeHarness
) -> None:
    (tmp_path / "datalake-key").write_text(f"{KEY}:{SECRET}\n")
    (tmp_path / "datalake-key").chmod(0o600)
    assert registry.backend("sink", "datalake").settings is DataLakeSettings
    settings = DataLakeSettings(name="lake", type="datalake", url=lake.double.url, collection=COLLECTION)
    sink = make_sink(settings, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    try:
        sink.probe()
        assert sink.requests_sent == 1
    finally:
        sink.close()
    for key, value, error in [
        ("url", "http://lake.example.org", "plain http"),
        ("collection", "a/b", "without '/'"),
        ("part_size", 1024, "greater than or equal"),
    ]:
        with pytest.raises(ValueError, match=error):
            DataLakeSettings(**{"name": "lake", "type": "datalake", "url": "https://l.example.org",
                                "collection": "c", key: value})  # fmt: skip


def test_close_cuts_a_job_poll_that_waits(sdk_sleeps: list[float], tmp_path: Path) -> None:
    lake = DatalakeHarness(sdk_sleeps, job_before=(JOB_IN_PROGRESS,) * 50)
    waiting = threading.Event()
    sink = lake.make(lake.double.url, job_timeout=600.0)
    sink._sleep = lambda s: (waiting.set(), sink._wait(s))  # type: ignore[method-assign]
    record, data = real_record(tmp_path)
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            sink.upload_image(record, data)
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        assert waiting.wait(10)
        sink.close()
        worker.join(10)
        assert not worker.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], SinkUnreachable)
    finally:
        sink.close()
        lake.close()


def test_the_bytes_go_through_the_bandwidth_cap(lake: DatalakeHarness, tmp_path: Path) -> None:
    class Cap:
        taken = 0

        def take(self, n: int) -> None:
            self.taken += n

    record, data = real_record(tmp_path)
    cap = Cap()
    lake.sink.upload_image(record, data, cap)  # type: ignore[arg-type]
    assert cap.taken == len(data)


def test_the_sync_worker_delivers_images_and_annotations_to_the_lake(
    lake: DatalakeHarness, tmp_path: Path
) -> None:
    (tmp_path / "lake-key").write_text(f"{KEY}:{SECRET}\n")
    (tmp_path / "lake-key").chmod(0o600)
    settings = {"name": "lake", "type": "datalake", "url": lake.double.url, "collection": COLLECTION,
                "credentials": str(tmp_path / "lake-key"), "probe_interval": "1s"}  # fmt: skip
    config = config_from_mapping(
        {
            "device": {"id": "0a1b2c3d"},
            "storage": {"data_dir": str(tmp_path / "data")},
            "camera": {"type": "synthetic", "width": 320, "height": 240, "seed": 5},
            "sink": [settings],
        },
        environ={},
    )
    pipeline = Pipeline.build(config)
    workers = sink_workers(config, pipeline)
    worker = workers["lake"]
    try:
        ids = capture_annotated(pipeline, 2, ALGO, VERSION, None)
        add_annotation(pipeline.queue, ids[0], ALGO, VERSION, outlines_of(3))
        for _ in range(3):
            worker.cycle()
        assert dq.totals(pipeline.queue, "lake").verified == 2
        assert lake.images_held() == 2
        files = lake.state.collections[COLLECTION].files
        client = official_client(lake.double.url)
        down = download_collection(client, client.get_collection_id_by_name(COLLECTION), tmp_path / "d", [OP])
        assert {n: len(f["annotations"]) for n, f in down.items()} == {n: 0 for n in files} | {
            Path(image.path).name: 3 for image in pipeline.queue.images(10) if image.id == ids[0]
        }
    finally:
        close_sinks(workers)
        pipeline.close()


def test_a_file_over_the_part_size_goes_in_parts(lake: DatalakeHarness, tmp_path: Path) -> None:
    record, _ = real_record(tmp_path)
    data = bytes(range(256)) * (11 * 2**20 // 256 + 7)  # 11 MiB and a bit: 3 parts of 5 MiB
    big = dataclasses.replace(record, md5=hashlib.md5(data).hexdigest(), size=len(data))
    sink = lake.make(lake.double.url, part_size=5 * 2**20)
    try:
        sink.upload_image(big, data)
        assert sink.lookup_images([big])[big.key].md5 == big.md5
    finally:
        sink.close()
    assert lake.state.requests["PUT object"] == 3
    assert lake.state.file(COLLECTION, record.name).data == data  # type: ignore[union-attr]


def test_a_refused_or_failed_put_is_a_refusal_and_the_next_try_gets_new_urls(
    lake: DatalakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, data = real_record(tmp_path)
    presign = lake.state.presign

    def expired(body: dict[str, Any], base_url: str) -> dict[str, Any]:
        answer = presign(body, base_url)
        for part in answer["parts"]:
            part["signedUrl"] = part["signedUrl"].replace("Signature=", "Signature=0")
        return answer

    monkeypatch.setattr(lake.state, "presign", expired)
    with pytest.raises(SinkRejected, match=r"403.*SignatureDoesNotMatch.*new URLs"):
        lake.sink.upload_image(record, data)
    monkeypatch.setattr(lake.state, "presign", presign)
    lake.state.fail_puts = 1
    with pytest.raises(SinkRejected, match="500"):
        lake.sink.upload_image(record, data)
    lake.sink.upload_image(record, data)
    assert lake.sink.lookup_images([record])[record.key].md5 == record.md5
    assert lake.images_held() == 1


def test_no_content_reads_as_absent_and_a_foreign_404_is_not(
    lake: DatalakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, data = real_record(tmp_path)
    lake.sink.upload_image(record, data)
    monkeypatch.setattr(lake.double.app, "_item_details", lambda request: Response(status=204))
    assert lake.sink.lookup_images([record]) == {}  # the SDK's "No content found"
    monkeypatch.setattr(lake.double.app, "_item_details", lambda request: Response("<h1>gone</h1>", 404))
    with pytest.raises(SinkProtocolError, match="without the Data Lake's error body"):
        lake.sink.lookup_images([record])


def test_a_complete_that_does_not_list_the_file_is_a_refusal(
    lake: DatalakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, data = real_record(tmp_path)
    monkeypatch.setattr(lake.state, "complete", lambda upload_id: [])
    with pytest.raises(SinkRejected, match=f"does not list {record.name}"):
        lake.sink.upload_image(record, data)
