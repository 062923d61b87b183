"""The Data Lake double, proven honest by the official ``layernext`` client (2.3.4) driving it.

The backend is closed source: the client's behaviour is the contract. Each test does what a lab's
script does with ``layernext.LayerNextClient`` and checks what the double stored; what the client
cannot show (it ignores many answers) is checked on the double's record of refusals and, for the
presigned S3 side, with plain HTTP. The client's sleeps (30 s job polls and upload retries, 7 s
between annotation batches) are recorded instead of slept.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO
from helpers.datalake import COLLECTION, KEY, SECRET, annotations_file, record_sdk_sleeps

from agent.devserver.datalake import DatalakeDouble
from agent.devserver.datalake_state import JOB_FAILED, JOB_IN_PROGRESS, JOB_QUEUED

layernext = pytest.importorskip(
    "layernext", reason="the official client (pip install layernext==2.3.4) is absent"
)

IMAGES = sorted((REPO / "tests/data/real-images").glob("*.jpg"))
RECORD = {"device": "0a1b2c3d", "temperature": 21.5, "Tags": ["sticky-pi"]}


@pytest.fixture
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_sdk_sleeps(monkeypatch)


@pytest.fixture
def double(sdk_sleeps: list[float]) -> Any:
    with DatalakeDouble({KEY: SECRET}) as d:
        yield d


@pytest.fixture
def cards(tmp_path: Path) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir()
    for image in IMAGES:
        shutil.copyfile(image, folder / image.name)
    (folder / "notes.txt").write_text("not an image: the SDK leaves it out")
    return folder


def client(double: Any, secret: str = SECRET) -> Any:
    return layernext.LayerNextClient(KEY, secret, double.url)


def basic(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{KEY}:{secret}".encode()).decode()}


def polygon(points: list[list[float]], label: str = "insect") -> dict[str, Any]:
    return {"type": "polygon", "polygon": points, "label": label, "confidence": 0.9, "metadata": {}}


def box(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {"type": "rectangle", "bbox": [x, y, w, h], "label": "insect", "confidence": 0.8}


def test_upload_stores_every_image_with_its_bytes_and_the_record(double: Any, cards: Path) -> None:
    answer = client(double).upload_files_to_collection(
        str(cards), "image", COLLECTION, meta_data_object=RECORD
    )
    assert answer["is_success"] is True and answer["job_id"]
    files = double.state.collections[COLLECTION].files
    assert sorted(files) == [p.name for p in IMAGES]  # notes.txt left out by the client
    for image in IMAGES:
        stored = files[image.name]
        assert stored.data == (cards / image.name).read_bytes() == double.state.objects[stored.key]
        assert stored.metadata == RECORD
        assert stored.unique_name == f"{COLLECTION}_{image.name}"
    counts = double.state.requests
    assert counts["POST init_file"] == counts["PUT object"] == counts["POST finalize"] == len(IMAGES)
    assert counts["GET complete"] == 1 and double.state.refusals == []
    assert client(double).wait_for_job_complete(answer["job_id"]) == {
        "is_success": True,
        "job_status": "COMPLETED",
    }


def test_a_second_upload_of_the_same_files_is_skipped_as_existing(double: Any, cards: Path) -> None:
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    again = lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object={"device": "x"})
    assert again["is_success"] is True
    assert double.state.requests["POST init_file"] == 2 * len(IMAGES)
    assert double.state.requests["PUT object"] == len(IMAGES)  # nothing sent twice
    assert double.state.requests["POST presign"] == len(IMAGES)
    assert all(f.metadata == RECORD for f in double.state.collections[COLLECTION].files.values())
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, {"device": "y"}, meta_data_override=True)
    assert all(f.metadata["device"] == "y" for f in double.state.collections[COLLECTION].files.values())


def test_a_single_file_upload_returns_its_unique_name(double: Any, cards: Path) -> None:
    path = cards / IMAGES[0].name
    answer = client(double).upload_files_to_collection(
        str(path), "image", COLLECTION, meta_data_object=RECORD
    )
    assert answer["unique_name"] == f"{COLLECTION}_{IMAGES[0].name}"
    assert double.state.file(COLLECTION, IMAGES[0].name).data == path.read_bytes()  # type: ignore[union-attr]


def test_annotations_are_stored_and_the_same_operation_id_replaces_them(
    double: Any, cards: Path, tmp_path: Path
) -> None:
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    a, b = IMAGES[0].name, IMAGES[1].name
    outline = [[10, 10], [40, 12], [30, 50]]
    first = annotations_file(tmp_path, {a: [polygon(outline), box(5, 6, 20, 30)], b: [polygon(outline)]})
    assert lake.upload_annotations_for_collection(COLLECTION, "detector-1.0", first, False, True) is None
    stored = double.state.operations["detector-1.0"]
    shapes = stored[f"{COLLECTION}_{a}"]
    assert [s["type"] for s in shapes] == ["polygon", "rectangle"]
    assert shapes[0]["points"] == outline and shapes[0]["confidence"] == 0.9
    assert shapes[1]["points"] == [[5, 6], [25, 6], [25, 36], [5, 36]]
    assert shapes[1]["boxBoundariesAndDimensions"] == {"x": 5, "y": 6, "w": 20, "h": 30}
    assert shapes[0]["label"]["labelText"] == "insect"
    assert double.state.operation_info["detector-1.0"]["mode"] == 2  # a model run

    second = annotations_file(tmp_path, {a: [polygon([[1, 1], [2, 1], [2, 2]])], b: []}, "b.json")
    lake.upload_annotations_for_collection(COLLECTION, "detector-1.0", second, False, True)
    assert [s["points"] for s in stored[f"{COLLECTION}_{a}"]] == [[[1, 1], [2, 1], [2, 2]]]  # replaced
    assert stored[f"{COLLECTION}_{b}"] == []
    lake.upload_annotations_for_collection(COLLECTION, "detector-2.0", first, False, True)
    assert len(double.state.operations["detector-2.0"][f"{COLLECTION}_{a}"]) == 2  # another operation adds
    assert len(stored[f"{COLLECTION}_{a}"]) == 1 and double.state.refusals == []


def test_normalized_annotations_are_converted_to_pixels(double: Any, cards: Path, tmp_path: Path) -> None:
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    name = IMAGES[0].name  # 2592 x 1944
    path = annotations_file(tmp_path, {name: [polygon([[0.5, 0.5], [1.0, 0.5], [1.0, 1.0]])]})
    lake.upload_annotations_for_collection(COLLECTION, "detector-1.0", path, True, True)
    points = double.state.operations["detector-1.0"][f"{COLLECTION}_{name}"][0]["points"]
    assert points == [[1296.0, 972.0], [2592.0, 972.0], [2592.0, 1944.0]]


def test_the_sdk_ignores_a_refused_annotation_batch(double: Any, cards: Path, tmp_path: Path) -> None:
    """The client never reads the operation-data answer: a refusal is silent on its side."""
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    path = annotations_file(tmp_path, {IMAGES[0].name: [polygon([[1, 1], [2, 1], [2, 2]])], "gone.jpg": []})
    assert lake.upload_annotations_for_collection(COLLECTION, "detector-1.0", path, False, True) is None
    assert double.state.operations == {}  # all or nothing
    assert double.state.refusals == [
        ("operation_update", 406, f"no image with objectKey {COLLECTION}_gone.jpg in the Data Lake")
    ]


def test_the_sdk_drops_an_images_annotations_after_an_unknown_type(
    double: Any, cards: Path, tmp_path: Path
) -> None:
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    name = IMAGES[0].name
    ellipse = {"type": "ellipse", "label": "insect"}
    path = annotations_file(tmp_path, {name: [box(1, 1, 5, 5), ellipse, box(9, 9, 5, 5)]})
    lake.upload_annotations_for_collection(COLLECTION, "detector-1.0", path, False, True)
    shapes = double.state.operations["detector-1.0"][f"{COLLECTION}_{name}"]
    assert [s["boxBoundariesAndDimensions"]["x"] for s in shapes] == [1]  # the SDK stopped at "ellipse"


def test_a_wrong_secret_is_refused(double: Any) -> None:
    with pytest.raises(Exception, match="Authentication failed"):
        client(double, secret="wrong")
    assert double.state.refusals[-1][:2] == ("compatibility", 401)
    url = f"{double.url}/datalake/api/client/uploadMetadataInCollection"
    for headers in ({}, basic("wrong"), {"Authorization": "Basic !!!"}):
        r = requests.post(url, json={"collectionName": COLLECTION}, headers=headers, timeout=5)
        assert r.status_code == 401 and "Authorization Required" in r.json()["error"]["message"]
    assert COLLECTION not in double.state.collections


def test_the_job_is_polled_until_it_completes(sdk_sleeps: list[float], cards: Path) -> None:
    with DatalakeDouble({KEY: SECRET}, job_before=(JOB_QUEUED, JOB_IN_PROGRESS)) as double:
        lake = client(double)
        answer = lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
        assert double.state.collections[COLLECTION].files == {}  # indexed only when the job completes
        assert lake.wait_for_job_complete(answer["job_id"])["job_status"] == "COMPLETED"
        assert double.state.requests["GET job_status"] == 3 and sdk_sleeps == [30, 30]
        assert len(double.state.collections[COLLECTION].files) == len(IMAGES)


def test_a_failed_job_is_status_4_which_the_sdk_misreports_as_completed(cards: Path, sdk_sleeps: Any) -> None:
    with DatalakeDouble({KEY: SECRET}, job_outcome=JOB_FAILED) as double:
        lake = client(double)
        answer = lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
        # the SDK's wait_for_job_complete answers COMPLETED for status 4 (FAILED): a sink must not trust it
        assert lake.wait_for_job_complete(answer["job_id"]) == {"is_success": True, "job_status": "COMPLETED"}
        url = f"{double.url}/datalake/api/client/jobs/{answer['job_id']}/getStatus"
        status = requests.get(url, headers=basic(), timeout=5).json()
        assert status == {"isSuccess": True, "status": JOB_FAILED, "progress": 100.0}
        assert double.state.collections[COLLECTION].files == {} and double.state.objects == {}
        double.state.job_outcome = 2
        lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
        assert double.state.requests["PUT object"] == 2 * len(IMAGES)  # nothing was skipped
        assert len(double.state.collections[COLLECTION].files) == len(IMAGES)


def test_presigned_puts_and_finalize_are_checked(double: Any) -> None:
    """What a sink speaking plain HTTP must get right, which the SDK always does."""
    api = f"{double.url}/datalake/api/client"
    data = IMAGES[0].read_bytes()

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{api}/{path}", json=body, headers=basic(), timeout=5)

    begin = post(
        "uploadMetadataInCollection",
        {
            "collectionType": 5,
            "collectionName": COLLECTION,
            "metaDataObject": RECORD,
            "objectKeyList": ["a.jpg"],
        },
    ).json()
    assert begin["storageType"] == "AWS_S3"
    ids = post(
        "fileUpload/initializeMultipartUpload",
        {"fileName": "a.jpg", "collectionName": COLLECTION, "uploadId": begin["uploadId"]},
    ).json()
    assert (
        post(
            "fileUpload/initializeMultipartUpload",
            {"fileName": "b.jpg", "collectionName": COLLECTION, "uploadId": begin["uploadId"]},
        ).status_code
        == 406
    )
    parts = post(
        "fileUpload/getMultipartPreSignedUrls", {**ids, "parts": 1, "contentType": "image/jpeg"}
    ).json()
    url = parts["parts"][0]["signedUrl"]
    jpeg = {"Content-Type": "image/jpeg"}
    assert (
        requests.put(url.replace("Signature=", "Signature=0"), data=data, headers=jpeg, timeout=5).status_code
        == 403
    )
    put = requests.put(url, data=data, headers=jpeg, timeout=5)
    assert put.status_code == 200 and put.headers["ETag"].startswith('"')
    finalize = {**ids, "uploadId": begin["uploadId"], "finalizeUrl": url}
    bad = post(
        "fileUpload/finalizeMultipartUpload", {**finalize, "parts": [{"PartNumber": 1, "ETag": "0" * 32}]}
    )
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("InvalidPart")
    good = [{"PartNumber": 1, "ETag": put.headers["ETag"].strip('"')}]
    assert post("fileUpload/finalizeMultipartUpload", {**finalize, "parts": good}).status_code == 200
    complete = requests.get(
        f"{api}/collectionUploadingStatus/{begin['uploadId']}/complete",
        params={"isReturnedUniqueName": "False"},
        headers=basic(),
        timeout=5,
    )
    assert complete.status_code == 204
    assert double.state.file(COLLECTION, "a.jpg").data == data  # type: ignore[union-attr]
    assert (
        post("metadata/getCollectionIdByName", {"collectionName": "nope", "objectType": 5}).status_code == 406
    )


def test_the_sdk_retries_a_failed_put_after_30_s(double: Any, cards: Path, sdk_sleeps: list[float]) -> None:
    double.state.fail_puts = 1
    answer = client(double).upload_files_to_collection(
        str(cards), "image", COLLECTION, meta_data_object=RECORD
    )
    assert answer["is_success"] is True
    assert double.state.requests["PUT object"] == len(IMAGES) + 1 and 30 in sdk_sleeps
    assert double.state.refusals == [("object", 500, "InternalError")]
    files = double.state.collections[COLLECTION].files
    assert all(files[p.name].data == p.read_bytes() for p in IMAGES)


def test_an_upload_with_annotations_attaches_them_by_job_and_file_name(
    double: Any, cards: Path, tmp_path: Path
) -> None:
    name = IMAGES[2].name
    path = annotations_file(tmp_path, {name: [polygon([[1, 1], [9, 1], [9, 9]])]})
    annotation_data = {
        "json_data_file_path": path,
        "operation_unique_id": "detector-1.0",
        "is_normalized": False,
        "is_model_run": True,
    }
    client(double).upload_files_to_collection(
        str(cards), "image", COLLECTION, meta_data_object=RECORD, annotation_data=annotation_data
    )
    shapes = double.state.operations["detector-1.0"][f"{COLLECTION}_{name}"]
    assert [s["points"] for s in shapes] == [[[1, 1], [9, 1], [9, 9]]] and double.state.refusals == []


def test_an_old_sdk_version_is_reported_incompatible(double: Any) -> None:
    url = f"{double.url}/datalake/api/client/sdk/compatibility"
    assert requests.get(f"{url}/2.3.4", headers=basic(), timeout=5).json()["isCompatible"] is True
    old = requests.get(f"{url}/2.2.9", headers=basic(), timeout=5).json()
    assert old["isCompatible"] is False and "2.3.0" in old["message"]


def test_the_sdk_reports_success_when_every_file_failed(
    double: Any, tmp_path: Path, sdk_sleeps: list[float]
) -> None:
    """``is_success`` is only the answer to ``complete``: a sink must check each file itself."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(IMAGES[0], one / IMAGES[0].name)
    double.state.fail_puts = 10_000
    answer = client(double).upload_files_to_collection(str(one), "image", COLLECTION, meta_data_object=RECORD)
    assert answer["is_success"] is True
    assert double.state.collections[COLLECTION].files == {}
    assert double.state.requests["PUT object"] == 21  # first try + 20 retry rounds
    assert sdk_sleeps.count(30) == 20


def test_a_line_shaped_as_the_seed_documents_it_is_refused(double: Any, cards: Path, tmp_path: Path) -> None:
    """The seed gives a line's points under "polygon"; the SDK reads "line", so it sends a line
    without points, which the double refuses (the SDK ignores the refusal)."""
    lake = client(double)
    lake.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
    name = IMAGES[0].name
    seed_line = {"type": "line", "polygon": [[1, 1], [5, 5]], "label": "insect"}
    lake.upload_annotations_for_collection(
        COLLECTION, "human", annotations_file(tmp_path, {name: [seed_line]}), False, False
    )
    assert double.state.operations == {}
    assert double.state.refusals[-1][:2] == ("operation_update", 406)
    assert "line needs points" in double.state.refusals[-1][2]
    real_line = {"type": "line", "line": [[1, 1], [5, 5]], "label": "insect"}
    lake.upload_annotations_for_collection(
        COLLECTION, "human", annotations_file(tmp_path, {name: [real_line]}), False, False
    )
    assert double.state.operations["human"][f"{COLLECTION}_{name}"][0]["points"] == [[1, 1], [5, 5]]
    assert double.state.operation_info["human"]["mode"] == 1  # human annotations
