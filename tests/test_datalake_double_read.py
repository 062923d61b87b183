"""The Data Lake double's read side, driven by the official ``layernext`` client (2.3.4):
``get_file_details`` (getItemDetails) and ``download_collection`` (the getAnnotations export and
the presigned GETs of the files), which the Data Lake sink's lookups read too."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers.datalake import (
    COLLECTION,
    KEY,
    SECRET,
    annotations_file,
    download_collection,
    official_client,
    record_sdk_sleeps,
)

from agent.devserver.datalake import DatalakeDouble

pytest.importorskip("layernext", reason="the official client (pip install layernext==2.3.4) is absent")

IMAGES = sorted((Path(__file__).parent / "data/real-images").glob("*.jpg"))
RECORD = {"device": "0a1b2c3d", "temperature": 21.5, "md5": "0" * 32}


@pytest.fixture
def lake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A double holding the real images (uploaded by the official client), and that client."""
    record_sdk_sleeps(monkeypatch)
    cards = tmp_path / "cards"
    cards.mkdir()
    for image in IMAGES:
        shutil.copyfile(image, cards / image.name)
    with DatalakeDouble({KEY: SECRET}) as double:
        client = official_client(double.url)
        client.upload_files_to_collection(str(cards), "image", COLLECTION, meta_data_object=RECORD)
        yield double, client


def test_file_details_answer_the_default_and_the_asked_fields(lake: tuple[Any, Any]) -> None:
    double, client = lake
    name = f"{COLLECTION}_{IMAGES[0].name}"
    details = client.get_file_details(name, None)
    assert sorted(details) == ["id", "name", "uniqueName", "url"]
    assert details["name"] == IMAGES[0].name and details["uniqueName"] == name
    assert requests.get(details["url"], timeout=5).content == IMAGES[0].read_bytes()
    asked = {"name": False, "fileSize": True, "storagePath": True, "temperature": True, "resolution": True}
    details = client.get_file_details(name, asked)
    assert "name" not in details and details["temperature"] == 21.5
    assert details["fileSize"] == IMAGES[0].stat().st_size
    assert details["storagePath"] == f"{COLLECTION}/{IMAGES[0].name}"
    assert details["resolution"] == {"width": 2592, "height": 1944}
    with pytest.raises(Exception, match="not found"):
        client.get_file_details(f"{COLLECTION}_absent.jpg", None)
    assert double.state.refusals[-1][:2] == ("item_details", 404)


def test_a_presigned_get_needs_its_signature(lake: tuple[Any, Any]) -> None:
    _, client = lake
    url = client.get_file_details(f"{COLLECTION}_{IMAGES[0].name}", None)["url"]
    forged = requests.get(url.replace("Signature=", "Signature=0"), timeout=5)
    assert forged.status_code == 403 and b"SignatureDoesNotMatch" in forged.content


def test_download_collection_gives_the_files_and_each_operations_annotations(
    lake: tuple[Any, Any], tmp_path: Path
) -> None:
    double, client = lake
    a, b = IMAGES[0].name, IMAGES[1].name
    outline = {"type": "polygon", "polygon": [[10, 10], [40, 12], [30, 50]], "label": "insect"}
    box = {"type": "rectangle", "bbox": [5, 6, 20, 30], "label": "insect", "confidence": 0.8}
    client.upload_annotations_for_collection(
        COLLECTION, "model@1", annotations_file(tmp_path, {a: [outline, box], b: []}), False, True
    )
    client.upload_annotations_for_collection(
        COLLECTION, "human-project", annotations_file(tmp_path, {a: [outline]}, "h.json"), False, False
    )
    collection_id = client.get_collection_id_by_name(COLLECTION)
    files = download_collection(client, collection_id, tmp_path / "down", ["model@1"])
    assert sorted(files) == sorted(p.name for p in IMAGES)
    assert all(files[p.name]["bytes"] == p.read_bytes() for p in IMAGES)
    assert files[a]["annotations"] == [
        {"type": "polygon", "label": "insect", "polygon": [[10, 10], [40, 12], [30, 50]]},
        {"type": "rectangle", "label": "insect", "bbox": [5, 6, 20, 30], "confidence": 0.8},
    ]
    assert files[b]["annotations"] == []
    machine = download_collection(client, collection_id, tmp_path / "machine", [])
    assert len(machine[a]["annotations"]) == 2  # every model run, not the human project
    assert double.state.client_jobs[-1]["status"] == 2  # the SDK reported its download done


def test_the_export_pages_and_names_the_operations_of_each_file(
    lake: tuple[Any, Any], tmp_path: Path
) -> None:
    double, client = lake
    client.upload_annotations_for_collection(
        COLLECTION, "model@1", annotations_file(tmp_path, {IMAGES[1].name: []}), False, True
    )
    collection_id = client.get_collection_id_by_name(COLLECTION)
    url = f"{double.url}/datalake/api/client/getAnnotations/{collection_id}/collection"
    pages, page = [], 0
    while True:
        query = {"pageNo": page, "pageSize": 3, "operationIdList": "[]", "annotationType": "machine"}
        answer = requests.get(url, params=query, auth=(KEY, SECRET), timeout=5).json()["data"]
        pages.append([(r["fileName"], r["rawAnnotations"]["operationIds"]) for r in answer["resourceArray"]])
        if not answer["nextPage"]:
            break
        page += 1
    assert [len(p) for p in pages] == [3, 1]
    held = dict(entry for p in pages for entry in p)
    assert held[IMAGES[1].name] == ["model@1"]  # an operation holding no shape is still named
    assert all(ops == [] for name, ops in held.items() if name != IMAGES[1].name)
    bad = requests.get(url, params={"pageSize": 0}, auth=(KEY, SECRET), timeout=5)
    assert bad.status_code == 400 and "pageSize" in bad.json()["error"]["message"]
