"""The Tator sink against the Tator double, checked through the official ``tator`` client.

What the sink stores is read back with ``tator.get_api(host, token)`` (``get_media_list``,
``get_media``, ``get_localization_list``), as a lab's own script would see it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.sink_contract import SinkContract, SinkHarness
from helpers.tator_sink import RECORD, TOKEN, TatorHarness, contour, image_record, tator_sink, token_file

from agent.config import load_config
from agent.devserver.tator import TatorDouble
from agent.devserver.tator_state import AttributeType, EntityType, default_types
from agent.errors import ConfigError, SinkAuthError, SinkForbidden, SinkRejected, SinkUnreachable
from agent.registry import create
from agent.sinks.base import AnnotationBatch
from agent.sinks.tator import TatorSettings, make_sink
from agent.sinks.tator_records import media_elemental_id, tator_md5_of_data

tator = pytest.importorskip("tator", reason="the official Tator client (pip install tator==1.8.1) is absent")


class TestTatorSink(SinkContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[SinkHarness]:
        harness = TatorHarness(tmp_path)
        yield harness
        harness.close()


@pytest.fixture
def double() -> Any:
    with TatorDouble({TOKEN: "trap-uploader"}) as t:
        yield t


@pytest.fixture
def api(double: TatorDouble) -> Any:
    return tator.get_api(double.url, TOKEN)


def test_upload_single_part_is_held_with_its_record_as_attributes(
    double: Any, api: Any, tmp_path: Path
) -> None:
    sink = tator_sink(double)
    image, data = image_record(tmp_path, manual=True)
    assert sink.lookup_images([image]) == {}
    sink.upload_image(image, data)
    [media] = api.get_media_list(1, type=1)
    assert media.name == image.name and media.md5 == tator.util.md5sum(str(image.path))
    assert media.elemental_id == media_elemental_id(image.key)
    assert double.state.media_bytes[media.id] == data
    assert media.attributes == {
        "device": "0a1b2c3d",
        "datetime": "2024-06-01T12:00:00Z",
        "temperature": 21.5,
        "humidity": 55.2,
        "battery": 80,
        "location": [-123.25, 49.26],
        "manual": True,
    }
    assert double.state.requests["PUT object"] == 1 and double.state.requests["POST upload_completion"] == 0
    held = sink.lookup_images([image])
    assert held[image.key].md5 == image.md5 and held[image.key].remote_id == media.id
    sink.close()


def test_multipart_upload_above_the_part_size(double: Any, api: Any, tmp_path: Path) -> None:
    sink = tator_sink(double, part_size=100_000)
    image, data = image_record(tmp_path)
    sink.upload_image(image, data)
    parts = -(-len(data) // 100_000)
    assert parts >= 3 and double.state.requests["PUT object"] == parts
    assert double.state.requests["POST upload_completion"] == 1
    [media] = api.get_media_list(1, elemental_id=media_elemental_id(image.key))
    assert api.get_media(media.id).media_files.image[0].size == len(data)
    assert double.state.media_bytes[media.id] == data


def test_unknown_readings_are_left_out_and_attributes_are_chosen(
    double: Any, api: Any, tmp_path: Path
) -> None:
    unknown = {**RECORD, "T": -300.0, "H": -1.0, "B": 0, "lat": 0.0, "lng": 0.0}
    image, data = image_record(tmp_path, record=unknown)
    tator_sink(
        double, attributes=["device", "temperature", "humidity", "battery", "lat", "lng"]
    ).upload_image(image, data)
    assert api.get_media_list(1)[0].attributes == {"device": "0a1b2c3d"}


def test_retry_after_a_lost_create_answer_makes_no_second_media(
    double: Any, api: Any, tmp_path: Path
) -> None:
    sink = tator_sink(double)
    image, data = image_record(tmp_path)
    double.state.lose_answers["POST medias"] = 1
    with pytest.raises(SinkUnreachable, match="cut"):
        sink.upload_image(image, data)
    assert len(api.get_media_list(1)) == 1  # Tator made it; we never heard
    sink.upload_image(image, data)  # the worker's retry
    assert len(api.get_media_list(1)) == 1 and double.state.requests["POST medias"] == 1
    assert image.key in sink.lookup_images([image])


def test_media_not_yet_imported_is_not_held_and_never_made_twice(tmp_path: Path) -> None:
    with TatorDouble({TOKEN: "u"}, import_after_reads=6) as double:
        api = tator.get_api(double.url, TOKEN)
        sink = tator_sink(double, confirm_reads=2)
        image, data = image_record(tmp_path)
        sink.upload_image(image, data)  # two reads back: still importing; left to the lookup
        assert sink.lookup_images([image]) == {}
        with pytest.raises(SinkRejected, match="without its file"):
            sink.upload_image(image, data)  # finds it, waits a little, does not make another
        assert double.state.requests["POST medias"] == 1
        assert image.key in sink.lookup_images([image])  # imported at last
        assert len(api.get_media_list(1)) == 1


def test_a_different_picture_under_the_same_key_is_a_conflict(double: Any, api: Any, tmp_path: Path) -> None:
    sink = tator_sink(double)
    image, data = image_record(tmp_path)
    sink.upload_image(image, data)
    other, other_data = image_record(tmp_path / "..", data=data + b"\0")  # same key, other bytes
    held = sink.lookup_images([other])[other.key]
    assert held.md5 == tator_md5_of_data(data) != other.md5  # Tator's own value: never ours
    sink.upload_image(other, other_data)  # never a second media for the key
    assert len(api.get_media_list(1)) == 1


def test_a_copy_uploaded_by_the_official_client_is_found_by_md5(
    double: Any, api: Any, tmp_path: Path
) -> None:
    image, data = image_record(tmp_path)
    for _ in tator.util.upload_media(api, 1, str(image.path)):
        pass
    sink = tator_sink(double)
    assert sink.lookup_images([image])[image.key].md5 == image.md5
    sink.upload_image(image, data)
    assert len(api.get_media_list(1)) == 1


def _batch(image: Any, n: int, version: str = "2024-05-01-abc") -> AnnotationBatch:
    annotations = [contour(100 + 60 * i, 200) for i in range(n)]
    return AnnotationBatch(image.key, image.md5, "learned", version, annotations)


def test_outlines_become_normalized_polygons_replaced_on_resend(
    double: Any, api: Any, tmp_path: Path
) -> None:
    sink = tator_sink(double)
    image, data = image_record(tmp_path)
    sink.upload_image(image, data)
    assert sink.lookup_annotations([image]) == set()
    sink.upload_annotations(image, _batch(image, 3))
    media_id = api.get_media_list(1)[0].id
    rows = api.get_localization_list(1, media_id=[media_id])
    assert len(rows) == 3
    first = min(rows, key=lambda r: r.points[0][0])
    assert first.points[0] == [pytest.approx(100 / 2592, abs=1e-6), pytest.approx(200 / 1944, abs=1e-6)]
    assert first.attributes == {
        "Label": "insect",
        "Algorithm": "learned",
        "Algorithm version": "2024-05-01-abc",
    }
    assert sink.lookup_annotations([image]) == {(image.key, "learned", "2024-05-01-abc")}
    sink.upload_annotations(image, _batch(image, 3))  # the same again: nothing changes
    assert double.state.requests["POST localizations"] == 1
    sink.upload_annotations(image, _batch(image, 2))  # a new set of the same version replaces
    assert len(api.get_localization_list(1, media_id=[media_id])) == 2
    sink.upload_annotations(image, _batch(image, 4, version="2024-06-01-def"))  # another version stays beside
    assert len(api.get_localization_list(1, media_id=[media_id])) == 6
    assert sink.lookup_annotations([image]) == {
        (image.key, "learned", "2024-05-01-abc"),
        (image.key, "learned", "2024-06-01-def"),
    }
    sink.upload_annotations(image, _batch(image, 0))  # no insect left by that version: none kept
    assert len(api.get_localization_list(1, media_id=[media_id])) == 4


def test_a_cut_short_set_is_not_held_and_over_500_go_in_several_requests(
    double: Any, api: Any, tmp_path: Path
) -> None:
    sink = tator_sink(double)
    image, data = image_record(tmp_path)
    sink.upload_image(image, data)
    batch = AnnotationBatch(
        image.key, image.md5, "learned", "v1", [contour(5 * (i % 500), 3 * (i // 500)) for i in range(1001)]
    )
    double.state.lose_answers["POST localizations"] = 0
    real_post = sink.api.rest
    calls = []

    def fail_third(method: str, path: str, **kw: Any) -> Any:
        if method == "POST" and path.startswith("Localizations"):
            calls.append(len(kw["body"]))
            if len(calls) == 3:
                raise SinkUnreachable("cut")
        return real_post(method, path, **kw)

    sink.api.rest = fail_third  # type: ignore[method-assign]
    with pytest.raises(SinkUnreachable):
        sink.upload_annotations(image, batch)
    assert calls == [500, 500, 1]
    assert sink.lookup_annotations([image]) == set()  # 1000 of 1001: not held
    sink.api.rest = real_post  # type: ignore[method-assign]
    sink.upload_annotations(image, batch)
    assert len(api.get_localization_list(1, media_id=[api.get_media_list(1)[0].id])) == 1001
    assert sink.lookup_annotations([image]) == {(image.key, "learned", "v1")}


def test_box_types_get_bounding_boxes(tmp_path: Path) -> None:
    with TatorDouble({TOKEN: "u"}) as double:
        api = tator.get_api(double.url, TOKEN)
        sink = tator_sink(double, localization_type=3)
        image, data = image_record(tmp_path)
        sink.upload_image(image, data)
        sink.upload_annotations(image, _batch(image, 1))
        [box] = api.get_localization_list(1, type=3)
        assert (box.x, box.y) == (pytest.approx(100 / 2592, abs=1e-6), pytest.approx(200 / 1944, abs=1e-6))
        assert (box.width, box.height) == (
            pytest.approx(40 / 2592, abs=1e-6),
            pytest.approx(40 / 1944, abs=1e-6),
        )


def test_annotations_for_an_image_tator_does_not_hold_are_refused(double: Any, tmp_path: Path) -> None:
    image, _ = image_record(tmp_path)
    with pytest.raises(SinkRejected, match="holds no media"):
        tator_sink(double).upload_annotations(image, _batch(image, 1))


def test_bad_token_is_an_auth_error_though_tator_answers_400(double: Any, tmp_path: Path) -> None:
    sink = tator_sink(double, token="not-the-token")
    image, data = image_record(tmp_path)
    for call in (sink.probe, lambda: sink.lookup_images([image]), lambda: sink.upload_image(image, data)):
        with pytest.raises(SinkAuthError, match="Invalid token") as e:
            call()
        assert "not-the-token" not in str(e.value)


def test_throttling_is_unreachable_with_a_wait(tmp_path: Path) -> None:
    now = [1000.0]
    with TatorDouble({TOKEN: "u"}, clock=lambda: now[0]) as double:
        sink = tator_sink(double)
        for _ in range(50):  # 2 requests each: the media type and the localization type
            sink.probe()
        with pytest.raises(SinkUnreachable, match="throttled") as e:
            sink.probe()
        assert e.value.retry_after == 1.0
        now[0] += 1.0
        sink.probe()


def test_probe_names_a_wrong_id_and_a_wrong_shape(double: Any, tmp_path: Path) -> None:
    with pytest.raises(SinkForbidden, match=r"no MediaType 9 .*media_type"):
        tator_sink(double, media_type=9).probe()
    with pytest.raises(SinkForbidden, match="project 1, not 2"):
        tator_sink(double, project=2).probe()
    image, _ = image_record(tmp_path)
    with pytest.raises(SinkForbidden, match=r"may not use project 2 .*sink\.tator\.project"):
        tator_sink(double, project=2).lookup_images([image])
    with pytest.raises(SinkForbidden, match=r"no LocalizationType 1 .*localization_type"):
        tator_sink(double, localization_type=1).probe()  # a media type's id
    tator_sink(double).probe()
    tator_sink(double, localization_type=None).probe()


def test_a_dot_type_is_refused(tmp_path: Path) -> None:
    dots = [*default_types(), EntityType(4, 1, "Insect dot", "dot", [AttributeType("Algorithm", "string")])]
    with TatorDouble({TOKEN: "u"}, types=dots) as double, pytest.raises(SinkForbidden, match="poly or box"):
        tator_sink(double, localization_type=4).probe()


def test_close_stops_every_later_request(double: Any, tmp_path: Path) -> None:
    sink = tator_sink(double)
    sink.close()
    with pytest.raises(SinkUnreachable, match="stopping"):
        sink.probe()


def test_config_table_token_file_and_registry(double: Any, tmp_path: Path) -> None:
    table = {
        "type": "tator",
        "name": "lab-tator",
        "host": double.url,
        "project": 1,
        "media_type": 1,
        "section": "Field 2024",
        "localization_type": 2,
        "credentials": str(token_file(tmp_path)),
    }
    settings = TatorSettings.model_validate(table)
    assert settings.media_section == "Field 2024" and settings.section == "sink.lab-tator"
    sink = create("sink", settings)
    sink.probe()
    image, data = image_record(tmp_path)
    sink.upload_image(image, data)
    assert tator.get_api(double.url, TOKEN).get_media_list(1)[0].name == image.name
    with pytest.raises(ValueError, match="plain http"):
        TatorSettings.model_validate({**table, "host": "http://tator.example.org"})
    with pytest.raises(ValueError, match="token"):
        TatorSettings.model_validate({**table, "token": "abc"})  # never in the config
    assert make_sink(settings).name == "lab-tator"
    assert json.dumps(settings.model_dump(mode="json")).count(TOKEN) == 0


def test_sink_tables_accept_tator(tmp_path: Path, write_config: Any) -> None:
    path = write_config()
    text = path.read_text() + (
        '\n[[sink]]\ntype = "tator"\nname = "tator"\nhost = "https://tator.example.org"\n'
        'project = 3\nmedia_type = 7\nlocalization_type = 8\nattributes = ["device", "battery"]\n'
    )
    path.write_text(text)
    try:
        config = load_config(path, environ={})
    except ConfigError as e:  # pragma: no cover - shows the problems
        raise AssertionError(str(e)) from None
    [sink] = [s for s in config.sinks if s.type == "tator"]
    assert (sink.project, sink.media_type, sink.attributes) == (3, 7, ["device", "battery"])


def test_when_is_utc_in_the_elemental_id() -> None:
    utc = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    other_zone = utc.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert media_elemental_id(("0a1b2c3d", utc)) == media_elemental_id(("0a1b2c3d", other_zone))


def test_a_sync_worker_delivers_captures_and_outlines_to_tator(double: Any, api: Any, tmp_path: Path) -> None:
    """The whole path: captures of a trap (synthetic camera) reach Tator through the worker."""
    from helpers.sinktrap import capture_annotated, close_sinks, sink_workers

    from agent.config import config_from_mapping
    from agent.queue.syncrows import add_annotation
    from agent.service import Pipeline

    table = {"type": "tator", "name": "lab-tator", "host": double.url, "project": 1, "media_type": 1}
    table.update(localization_type=2, credentials=str(token_file(tmp_path)), probe_interval="1s")
    data = {
        "device": {"id": "0a1b2c3d"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "camera": {"type": "synthetic", "width": 320, "height": 240, "seed": 5},
        "sink": [table],
    }
    config = config_from_mapping(data, environ={})
    pipeline = Pipeline.build(config)
    workers = sink_workers(config, pipeline)
    worker = workers["lab-tator"]
    try:
        ids = capture_annotated(pipeline, 3, "", "", None)
        add_annotation(pipeline.queue, ids[0], "learned", "1000-abc", [contour(10, 20, 30)])
        for _ in range(6):
            worker.cycle()
        media = api.get_media_list(1)
        assert len(media) == 3 and all(m.media_files.image for m in (api.get_media(m.id) for m in media))
        assert {m.attributes["device"] for m in media} == {"0a1b2c3d"}
        [outline] = api.get_localization_list(1, media_id=[m.id for m in media])
        assert outline.attributes["Algorithm version"] == "1000-abc"
        assert double.state.requests["POST medias"] == 3  # no second copy of anything
    finally:
        close_sinks(workers)
        pipeline.close()


def test_a_refused_presigned_put_is_a_rejection_not_a_stop(double: Any, tmp_path: Path) -> None:
    sink = tator_sink(double)
    real = sink.api.rest

    def tampered(method: str, path: str, **kw: Any) -> Any:
        answer = real(method, path, **kw)
        if path.startswith("UploadInfo"):
            answer["urls"] = [u.replace("X-Amz-Signature=", "X-Amz-Signature=0") for u in answer["urls"]]
        return answer

    sink.api.rest = tampered  # type: ignore[method-assign]
    image, data = image_record(tmp_path)
    with pytest.raises(SinkRejected, match="presigned URL was refused"):
        sink.upload_image(image, data)
    assert double.state.media == {}


def test_the_sink_paces_its_requests_under_tators_throttle() -> None:
    """Tator throttles a user over 100 requests in a second: the sink's requests are paced at 50/s
    with one second of burst, so no second ever sees more than 100 of them."""
    from agent.sinks.tator import REQUESTS_PER_S
    from agent.sinks.throttle import TokenBucket

    now = [0.0]
    sent: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(REQUESTS_PER_S, clock=lambda: now[0], sleep=sleep)
    for _ in range(400):
        bucket.take(1)
        sent.append(now[0])
    worst = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert worst <= 100
    assert sent[-1] == pytest.approx((400 - REQUESTS_PER_S) / REQUESTS_PER_S, rel=0.05)
