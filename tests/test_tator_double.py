"""The Tator double, proven honest by the official ``tator`` client (1.8.x) driving it.

The client builds its functions from the double's ``/schema``; each test does what a lab's own
script does with ``tator.get_api`` and ``tator.util.upload_media``, and checks what the double
stored. Refusals are checked against the real server's answers (400 ``{"message","details"}`` for
schema failures, bad tokens and throttling; 404 for unknown ids).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from agent.devserver.tator import TatorDouble, tator_md5

tator = pytest.importorskip("tator", reason="the official Tator client (pip install tator==1.8.1) is absent")
ApiException = pytest.importorskip("tator.exceptions").ApiException

IMAGE = REPO / "tests/data/real-images/1b74105a.2020-07-05_10-07-16.jpg"
TOKEN = "0123456789abcdef"


@pytest.fixture
def double() -> Any:
    with TatorDouble({TOKEN: "trap-uploader"}) as t:
        yield t


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "0a1b2c3d.2024-06-01_12-00-00.jpg"
    shutil.copyfile(IMAGE, path)
    return path


def upload(api: Any, path: Path, **kwargs: Any) -> Any:
    answers = [answer for _progress, answer in tator.util.upload_media(api, 1, str(path), **kwargs)]
    return answers[-1]


def test_upload_media_single_part_stores_the_bytes_with_tators_md5(double: Any, image: Path) -> None:
    api = tator.get_api(double.url, TOKEN)
    attrs = {"device": "0a1b2c3d", "temperature": 21.5, "manual": False, "not a type attribute": 1}
    response = upload(api, image, section="Trap 0a1b2c3d", attributes=attrs)
    media_id = response.id
    assert isinstance(media_id, int) and "created" in response.message
    media = api.get_media(media_id)
    assert media.name == image.name and media.md5 == tator.util.md5sum(str(image)) == tator_md5(
        image.read_bytes()
    )
    assert media.media_files.image[0].resolution == [1944, 2592]
    assert double.state.media_bytes[media_id] == image.read_bytes()
    # unknown attributes are dropped, known ones kept
    assert media.attributes == {"device": "0a1b2c3d", "temperature": 21.5, "manual": False}


def test_multipart_upload_is_completed_with_the_parts_etags(double: Any, image: Path) -> None:
    api = tator.get_api(double.url, TOKEN)
    response = upload(api, image, chunk_size=100_000)  # 4 parts -> UploadCompletion
    assert double.state.requests["POST upload_completion"] == 1
    assert double.state.requests["PUT object"] == 4
    assert double.state.media_bytes[response.id] == image.read_bytes()


def test_lookup_by_md5_and_elemental_id_and_no_server_side_dedup(double: Any, image: Path) -> None:
    api = tator.get_api(double.url, TOKEN)
    md5 = tator.util.md5sum(str(image))
    first = upload(api, image)
    second = upload(api, image)  # the server does no de-duplication: two media
    assert first.id != second.id
    found = api.get_media_list(1, md5=md5)
    assert sorted(m.id for m in found) == sorted([first.id, second.id])
    eid = api.get_media(first.id).elemental_id
    assert [m.id for m in api.get_media_list(1, elemental_id=eid)] == [first.id]
    assert api.get_media_list(1, md5="0" * 32) == []


def test_localizations_polygons_normalized_up_to_500(double: Any, image: Path) -> None:
    api = tator.get_api(double.url, TOKEN)
    media_id = upload(api, image).id
    specs = [
        {
            "media_id": media_id,
            "type": 2,
            "frame": 0,
            "elemental_id": str(uuid.UUID(int=i + 1)),
            "points": [[0.1, 0.1], [0.2, 0.1], [0.15, 0.2]],
            "attributes": {"Algorithm": "learned-1"},
        }
        for i in range(3)
    ]
    created = api.create_localization_list(1, body=specs)
    assert len(created.id) == 3
    rows = api.get_localization_list(1, media_id=[media_id])
    assert {r.elemental_id for r in rows} == {str(uuid.UUID(int=i + 1)) for i in range(3)}
    assert rows[0].attributes == {"Label": "insect", "Algorithm": "learned-1"}  # default filled in
    with pytest.raises(ApiException) as e:
        api.create_localization_list(1, body=[specs[0]] * 501)
    assert e.value.status == 400
    with pytest.raises(ApiException) as e:  # a coordinate outside 0..1
        api.create_localization_list(1, body=[{**specs[0], "points": [[1.5, 0.1], [0.2, 0.1]]}])
    assert e.value.status == 400
    with pytest.raises(ApiException) as e:  # a polygon type without points
        api.create_localization_list(1, body=[{"media_id": media_id, "type": 2, "frame": 0}])
    assert e.value.status == 400


def test_refusals_are_400_with_message_and_details(double: Any, image: Path) -> None:
    bad = tator.get_api(double.url, "not-a-token")
    with pytest.raises(ApiException) as e:
        bad.get_media_type(1)
    assert e.value.status == 400 and "Invalid token" in json.loads(e.value.body)["message"]
    api = tator.get_api(double.url, TOKEN)
    with pytest.raises(ApiException) as e:  # md5 is required
        api.create_media_list(1, body={"type": 1, "name": "x.jpg"})
    body = json.loads(e.value.body)
    assert e.value.status == 400 and set(body) == {"message", "details"} and "md5" in body["details"]
    with pytest.raises(ApiException) as e:
        api.get_media(999)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:  # a wrong attribute type
        api.create_media_list(
            1, body={"type": 1, "name": "x.jpg", "md5": "0" * 32, "attributes": {"battery": "full"}}
        )
    assert e.value.status == 400


def test_throttle_is_100_requests_per_second_per_user() -> None:
    now = [1000.0]
    with TatorDouble({TOKEN: "u"}, clock=lambda: now[0]) as t:
        api = tator.get_api(t.url, TOKEN)
        for _ in range(100):
            api.get_media_type(1)
        with pytest.raises(ApiException) as e:
            api.get_media_type(1)
        assert e.value.status == 400 and "throttled" in json.loads(e.value.body)["message"]
        now[0] += 1.0
        assert api.get_media_type(1).dtype == "image"


def test_import_is_asynchronous_media_files_appear_later(image: Path) -> None:
    with TatorDouble({TOKEN: "u"}, import_after_reads=2) as t:
        api = tator.get_api(t.url, TOKEN)
        media_id = upload(api, image).id
        assert api.get_media(media_id).media_files == {}
        assert api.get_media(media_id).media_files == {}
        assert api.get_media(media_id).media_files.image[0].size == image.stat().st_size


def test_localization_type_and_bulk_delete_by_the_official_client(double: Any, image: Path) -> None:
    api = tator.get_api(double.url, TOKEN)
    loc_type = api.get_localization_type(2)
    assert loc_type.dtype == "poly" and loc_type.project == 1
    assert {a["name"] for a in loc_type.attribute_types} >= {"Algorithm", "Algorithm version"}
    media_id = upload(api, image).id
    spec = {"media_id": media_id, "type": 2, "frame": 0, "points": [[0.1, 0.1], [0.2, 0.1], [0.15, 0.2]]}
    ids = api.create_localization_list(1, body=[spec, spec, spec]).id
    with pytest.raises(ApiException) as e:  # the safety count does not match: nothing deleted
        api.delete_localization_list(1, media_id=[media_id], count=2, localization_bulk_delete={"ids": ids})
    assert e.value.status == 400 and len(api.get_localization_list(1, media_id=[media_id])) == 3
    api.delete_localization_list(1, media_id=[media_id], localization_bulk_delete={"ids": ids[:1]})
    assert len(api.get_localization_list(1, media_id=[media_id])) == 2  # marked deleted, hidden
    assert len(api.get_localization_list(1, media_id=[media_id], show_deleted=1)) == 3
    api.delete_localization_list(1, media_id=[media_id], localization_bulk_delete={"ids": ids, "prune": 1})
    # the query hides what was marked deleted, so the purge leaves it (as the server's queryset does)
    assert [r.id for r in api.get_localization_list(1, media_id=[media_id], show_deleted=1)] == ids[:1]
    with pytest.raises(ApiException) as e:  # elemental ids are UUIDs on the server
        api.get_media_list(1, elemental_id="not-a-uuid")
    assert e.value.status == 400
