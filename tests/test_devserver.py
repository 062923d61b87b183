"""``stickyctl devserver`` against the wire protocol of ``shared/specs/sticky-pi-api.md``.

Real HTTP over 127.0.0.1 with ``requests`` against :class:`DevServer` on a free port. Real images
are copied as bytes from ``shared/data/real-images`` (read-only, never modified); variants are
built in memory. Time is an injected clock, never a sleep.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import piexif
import pytest
import requests
from PIL import Image
from stickypi_spec import REAL_IMAGES

from agent.devserver import User, parse_user
from agent.devserver.app import DevServer

NEW = "512858f4.2022-05-17_18-46-57.jpg"
NEW2 = "512858f4.2022-05-17_18-34-50.jpg"
LEGACY = "5c173ff2.2020-06-20_21-33-24.jpg"
IMAGE_FIELDS = [
    "id", "device", "datetime", "md5", "device_version", "width", "height", "lat", "lng", "alt",
    "temp", "hum", "lum", "bat", "but", "datetime_created", "api_version", "api_user_id", "url",
]  # fmt: skip
ANNOTATION_FIELDS = [
    "id", "parent_image_id", "algo_name", "algo_version", "n_objects", "json",
    "datetime_created", "api_version", "api_user_id",
]  # fmt: skip
USERS = [User("alice", "secret"), User("reader", "r", "read"), User("root", "toor", "admin")]
T0 = 1_700_000_000.0
ALGO_VERSION = "1598113346-ad2cd78dfaca12821046dfb8994724d5"


class Clock:
    """A settable clock (unix seconds)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(tmp_path: Path, clock: Clock) -> Iterator[DevServer]:
    with DevServer(tmp_path / "srv", USERS, clock=clock, token_lifetime=3600) as srv:
        yield srv


def blob(name: str) -> bytes:
    """The bytes of a real image (a copy: the shared file is only read)."""
    return (REAL_IMAGES / name).read_bytes()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def get_token(srv: DevServer, user: str = "alice", password: str = "secret") -> str:
    r = requests.post(f"{srv.url}/get_token", auth=(user, password), timeout=10)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert isinstance(token, str)
    return token


def post(srv: DevServer, route: str, body: Any, token: str) -> requests.Response:
    return requests.post(f"{srv.url}{route}", json=body, auth=(token, ""), timeout=10)


def upload(
    srv: DevServer, token: str, name: str, data: bytes, digest: str | None = "", field: str | None = None
) -> requests.Response:
    """POST one file to /_put_new_images; ``digest=""`` sends the right md5, None sends none."""
    form = {} if digest is None else {f"{name}.md5": digest or md5(data)}
    files = {field or name: (name, data, "image/jpeg")}
    return requests.post(f"{srv.url}/_put_new_images", data=form, files=files, auth=(token, ""), timeout=30)


def key(name: str) -> dict[str, str]:
    device, stamp, _ = name.split(".")
    date, time = stamp.split("_")
    return {"device": device, "datetime": f"{date}T{time.replace('-', ':')}Z"}


def metadata(srv: DevServer, token: str, *names: str) -> list[dict[str, Any]]:
    r = post(srv, "/get_images/metadata", [key(n) for n in names], token)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def assert_html_500(r: requests.Response) -> None:
    assert r.status_code == 500
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text.lower()
    with pytest.raises(ValueError):
        json.loads(r.text)


# -- authentication -------------------------------------------------------------------------------


def test_token_flow(server: DevServer) -> None:
    r = requests.post(f"{server.url}/get_token", auth=("alice", "secret"), timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"token", "expiration"}
    assert body["expiration"] == int(T0 + 3600)
    assert post(server, "/get_images/metadata", [key(NEW)], body["token"]).json() == []
    assert server.requests["/get_token"] == 1
    assert server.requests["/get_images/metadata"] == 1


def test_default_token_lifetime_is_24h(tmp_path: Path, clock: Clock) -> None:
    with DevServer(tmp_path / "srv", USERS, clock=clock) as srv:
        r = requests.post(f"{srv.url}/get_token", auth=("alice", "secret"), timeout=10)
        assert r.json()["expiration"] == int(T0 + 86400)


@pytest.mark.parametrize("auth", [("alice", "wrong"), ("nobody", "secret"), None])
def test_wrong_password_is_401(server: DevServer, auth: tuple[str, str] | None) -> None:
    r = requests.post(f"{server.url}/get_token", auth=auth, timeout=10)
    assert r.status_code == 401
    assert r.text == "Unauthorized Access"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Authentication Required"'


def test_bad_token_is_401(server: DevServer) -> None:
    token = get_token(server)
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    for bad in ("not-a-token", forged, "YWxpY2U.99999999999.abc"):
        r = post(server, "/get_images/metadata", [key(NEW)], bad)
        assert r.status_code == 401
        assert r.text == "Unauthorized Access"
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Authentication Required"'


def test_expired_token_is_401(server: DevServer, clock: Clock) -> None:
    token = get_token(server)
    clock.now += 3599
    assert post(server, "/get_images/metadata", [key(NEW)], token).status_code == 200
    clock.now += 2
    r = post(server, "/get_images/metadata", [key(NEW)], token)
    assert r.status_code == 401
    assert r.text == "Unauthorized Access"
    assert post(server, "/get_images/metadata", [key(NEW)], get_token(server)).status_code == 200


def test_token_survives_restart(tmp_path: Path, clock: Clock) -> None:
    with DevServer(tmp_path / "srv", USERS, clock=clock) as first:
        token = get_token(first)
    with DevServer(tmp_path / "srv", USERS, clock=clock) as second:
        assert post(second, "/get_images/metadata", [key(NEW)], token).status_code == 200


# -- routing and content types --------------------------------------------------------------------


def test_json_route_without_json_content_type_is_415(server: DevServer) -> None:
    token = get_token(server)
    r = requests.post(
        f"{server.url}/get_images/metadata",
        data=json.dumps([key(NEW)]),
        headers={"Content-Type": "text/plain"},
        auth=(token, ""),
        timeout=10,
    )
    assert r.status_code == 415


@pytest.mark.parametrize("route", ["/get_images", "/get_image_series", "/get_uid_annotations"])
def test_route_without_suffix_is_404(server: DevServer, route: str) -> None:
    assert post(server, route, [], get_token(server)).status_code == 404


@pytest.mark.parametrize("what", ["thumbnail_mini", "bogus"])
def test_an_unknown_image_what_is_a_500_only_when_an_image_matches(server: DevServer, what: str) -> None:
    """The real server fails making a found row's URL: with nothing found it answers ``[]``."""
    token = get_token(server)
    r = post(server, f"/get_images/{what}", [key(NEW)], token)
    assert (r.status_code, r.json()) == (200, [])
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    assert_html_500(post(server, f"/get_images/{what}", [key(NEW)], token))
    assert_html_500(post(server, f"/get_images/{what}", [], token))  # the empty WHERE, as always
    assert post(server, "/get_images/thumbnail-mini", [key(NEW)], token).status_code == 200


@pytest.mark.parametrize("what", ["metadata", "image", "thumbnail", "thumbnail-mini"])
def test_an_empty_key_list_on_get_images_is_a_500(server: DevServer, what: str) -> None:
    """The real server builds ``SELECT ... WHERE `` with no condition for ``[]``."""
    token = get_token(server)
    assert_html_500(post(server, f"/get_images/{what}", [], token))
    assert post(server, f"/get_images/{what}", [key(NEW)], token).json() == []


def test_an_empty_key_list_on_get_uid_annotations_is_an_empty_answer(server: DevServer) -> None:
    token = get_token(server)
    for what in ("metadata", "data"):
        r = post(server, f"/get_uid_annotations/{what}", [], token)
        assert (r.status_code, r.json()) == (200, [])


def test_a_get_route_is_405(server: DevServer) -> None:
    r = requests.get(f"{server.url}/get_images/metadata", auth=("alice", "secret"), timeout=10)
    assert r.status_code == 405


def test_a_token_may_ask_for_a_new_token(server: DevServer, clock: Clock) -> None:
    token = get_token(server)
    clock.now += 10
    r = requests.post(f"{server.url}/get_token", auth=(token, ""), timeout=10)
    assert r.status_code == 200
    assert r.json()["expiration"] == int(T0 + 10 + 3600)


def test_invalid_json_is_400_and_json_not_a_list_is_500(server: DevServer) -> None:
    token = get_token(server)
    r = requests.post(
        f"{server.url}/get_images/metadata",
        data="[{",
        headers={"Content-Type": "application/json"},
        auth=(token, ""),
        timeout=10,
    )
    assert r.status_code == 400
    assert_html_500(post(server, "/get_images/metadata", {"device": "512858f4"}, token))
    assert_html_500(post(server, "/get_images/metadata", [{"device": "512858f4"}], token))  # no datetime
    assert_html_500(post(server, "/get_images/metadata", [{**key(NEW), "datetime": None}], token))
    assert_html_500(post(server, "/get_images/metadata", [{"datetime": key(NEW)["datetime"]}], token))


# -- images -----------------------------------------------------------------------------------------


def test_a_key_asked_twice_matches_its_image_once(server: DevServer) -> None:
    token = get_token(server)
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    legacy_form = {"device": "512858f4", "datetime": "2022-05-17_18-46-57"}
    rows = post(server, "/get_images/metadata", [key(NEW), key(NEW), legacy_form], token).json()
    assert len(rows) == 1
    body = annotation_body(NEW, md5(blob(NEW)))
    assert post(server, "/put_uid_annotations", body, token).status_code == 200
    assert len(post(server, "/get_uid_annotations/metadata", [key(NEW), key(NEW)], token).json()) == 1


def test_upload_real_image_then_metadata(server: DevServer) -> None:
    token = get_token(server)
    data = blob(NEW)
    r = upload(server, token, NEW, data)
    assert r.status_code == 200, r.text
    [put] = r.json()
    assert list(put) == IMAGE_FIELDS[:-1]  # no "url" in the upload's answer
    assert put["id"] is None
    # the answer carries the parser's values, not the stored (rounded) ones
    assert (put["alt"], put["bat"], put["but"]) == (97.3, 72.0, True)
    assert isinstance(put["bat"], float)

    [row] = metadata(server, token, NEW)
    assert list(row) == IMAGE_FIELDS
    assert isinstance(row["id"], int)
    assert {k: v for k, v in row.items() if k not in ("id", "api_user_id", "api_version")} == {
        "device": "512858f4",
        "datetime": "2022-05-17T18:46:57Z",
        "md5": md5(data),
        "device_version": "3.1.0",
        "width": 4056,
        "height": 3040,
        "lat": 49.26142,
        "lng": -123.25088,
        "alt": 97,  # a small integer column
        "temp": 20.6,
        "hum": 42.6,
        "lum": 1.2,
        "bat": 72,
        "but": 1,  # raw SQL on a BOOLEAN (TINYINT) column: 1/0, not true/false
        "datetime_created": "2023-11-14T22:13:20Z",
        "url": "",
    }
    assert isinstance(row["api_user_id"], int)
    assert row["api_version"] == put["api_version"] == "1.0.0"  # the server library's, not the agent's
    # The legacy datetime form is accepted on input.
    legacy_query = [{"device": "512858f4", "datetime": "2022-05-17_18-46-57"}]
    assert post(server, "/get_images/metadata", legacy_query, token).json() == [row]


def test_upload_legacy_image(server: DevServer) -> None:
    token = get_token(server)
    assert upload(server, token, LEGACY, blob(LEGACY)).status_code == 200
    [row] = metadata(server, token, LEGACY)
    assert (row["width"], row["height"]) == (2592, 1944)
    assert row["lat"] is row["lng"] is row["alt"] is None  # the server's "no GPS"
    assert row["bat"] is row["but"] is None
    assert row["device_version"] == "1.0.0"  # the column's default on the real server
    # temp/hum as a MariaDB FLOAT reads back (the EXIF holds 21.899999618530273, 76.80000305175781)
    assert (row["temp"], row["hum"]) == (21.9, 76.8)


def test_downloads_and_thumbnails(server: DevServer, clock: Clock) -> None:
    token = get_token(server)
    data = blob(NEW)
    assert upload(server, token, NEW, data).status_code == 200
    sizes = {"image": (4056, 3040), "thumbnail": (512, 384), "thumbnail-mini": (128, 96)}
    urls = {}
    for what, size in sizes.items():
        [row] = post(server, f"/get_images/{what}", [key(NEW)], token).json()
        urls[what] = row["url"]
        got = requests.get(row["url"], timeout=10)
        assert got.status_code == 200
        with Image.open(io.BytesIO(got.content)) as img:
            assert img.size == size
    assert requests.get(urls["image"], timeout=10).content == data

    tampered = urls["image"][:-1] + ("0" if urls["image"][-1] != "0" else "1")
    assert requests.get(tampered, timeout=10).status_code == 403
    other_key = urls["thumbnail"].replace("/thumbnail/", "/image/")
    assert requests.get(other_key, timeout=10).status_code == 403
    clock.now += 7 * 86400 + 1
    assert requests.get(urls["image"], timeout=10).status_code == 403


def test_duplicate_upload_is_500_and_overwrites_the_object(server: DevServer) -> None:
    token = get_token(server)
    original = blob(NEW)
    assert upload(server, token, NEW, original).status_code == 200
    assert_html_500(upload(server, token, NEW, original))
    # Other bytes under the same name: rejected by the database, but the file is replaced first.
    impostor = blob(NEW2)
    assert_html_500(upload(server, token, NEW, impostor))
    [row] = post(server, "/get_images/image", [key(NEW)], token).json()
    assert row["md5"] == md5(original)
    assert requests.get(row["url"], timeout=10).content == impostor


def test_md5_mismatch_is_500_and_stores_nothing(server: DevServer, tmp_path: Path) -> None:
    token = get_token(server)
    assert_html_500(upload(server, token, NEW, blob(NEW), digest="0" * 32))
    assert metadata(server, token, NEW) == []
    assert not [p for p in (tmp_path / "srv").rglob("*.jpg")]
    assert upload(server, token, NEW, blob(NEW), digest=None).status_code == 200  # md5 is optional


def without_exif(data: bytes) -> bytes:
    out = io.BytesIO()
    piexif.remove(data, out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "field", "data"),
    [
        pytest.param(NEW, "file", lambda: blob(NEW), id="field-named-file"),
        pytest.param("512858f4.2019-10-31_23-59-59.jpg", None, lambda: blob(NEW), id="before-2019-11"),
        pytest.param("512858g4.2022-05-17_18-46-57.jpg", None, lambda: blob(NEW), id="non-hex-device"),
        pytest.param("512858f4.2022-05-17.jpg", None, lambda: blob(NEW), id="bad-name"),
        pytest.param(NEW, None, lambda: without_exif(blob(NEW)), id="no-exif"),
        pytest.param(NEW, None, lambda: b"not a jpeg", id="not-a-jpeg"),
    ],
)
def test_rejected_uploads_are_500_html(server: DevServer, name: str, field: str | None, data: Any) -> None:
    token = get_token(server)
    assert_html_500(upload(server, token, name, data(), field=field))
    assert metadata(server, token, NEW) == []


def test_a_body_over_nginx_limit_is_413(server: DevServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """nginx's ``client_max_body_size 100M`` answers 413 before the API sees the request (the
    limit is lowered here so the test does not send 100 MB)."""
    from agent.devserver import app

    token = get_token(server)
    monkeypatch.setattr(app, "MAX_CONTENT_LENGTH", 1000)
    assert upload(server, token, NEW, blob(NEW)).status_code == 413
    monkeypatch.undo()
    assert upload(server, token, NEW, blob(NEW)).status_code == 200


def test_no_file_is_500(server: DevServer) -> None:
    token = get_token(server)
    r = requests.post(f"{server.url}/_put_new_images", data={"a": "b"}, auth=(token, ""), timeout=10)
    assert_html_500(r)


def test_several_files_commit_each_on_its_own(server: DevServer) -> None:
    token = get_token(server)
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    files = {NEW2: (NEW2, blob(NEW2), "image/jpeg"), NEW: (NEW, blob(NEW), "image/jpeg")}
    r = requests.post(f"{server.url}/_put_new_images", files=files, auth=(token, ""), timeout=30)
    assert_html_500(r)
    assert len(metadata(server, token, NEW, NEW2)) == 2  # NEW2 was committed before NEW failed


def assert_403(r: requests.Response) -> None:
    """A role refusal as flask-httpauth sends it: the 401's body and header with status 403."""
    assert r.status_code == 403
    assert r.text == "Unauthorized Access"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Authentication Required"'


def test_two_parts_with_one_name_store_the_first_only(server: DevServer) -> None:
    token = get_token(server)
    files = [(NEW, (NEW, blob(NEW), "image/jpeg")), (NEW, (NEW, b"not a jpeg", "image/jpeg"))]
    r = requests.post(f"{server.url}/_put_new_images", files=files, auth=(token, ""), timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()) == 1
    assert metadata(server, token, NEW)[0]["md5"] == md5(blob(NEW))


def test_read_only_user_gets_403(server: DevServer) -> None:
    token = get_token(server, "reader", "r")
    assert_403(upload(server, token, NEW, blob(NEW)))
    assert_403(post(server, "/put_uid_annotations", [], token))
    # the role is checked before the body is read: no 415 and no 500 for a read-only user
    r = requests.post(f"{server.url}/put_uid_annotations", data="x", auth=(token, ""), timeout=10)
    assert_403(r)
    no_file = requests.post(f"{server.url}/_put_new_images", data={"a": "b"}, auth=(token, ""), timeout=10)
    assert_403(no_file)
    assert post(server, "/get_images/metadata", [key(NEW)], token).json() == []


def test_delete_images_is_admin_only(server: DevServer) -> None:
    token = get_token(server)
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    assert_403(post(server, "/delete_images", [key(NEW)], token))
    admin = get_token(server, "root", "toor")
    r = post(server, "/delete_images", [key(NEW), key(NEW2)], admin)
    assert r.status_code == 200
    [row] = r.json()
    assert (row["device"], row["datetime"]) == ("512858f4", "2022-05-17T18:46:57Z")
    assert row["but"] is True and "url" not in row  # the ORM's row: a bool and no url
    assert post(server, "/delete_images", [key(NEW)], admin).json() == []
    assert metadata(server, token, NEW) == []
    assert upload(server, token, NEW, blob(NEW)).status_code == 200  # may be uploaded again


def test_get_image_series(server: DevServer) -> None:
    token = get_token(server)
    for name in (NEW, NEW2, LEGACY):
        assert upload(server, token, name, blob(name)).status_code == 200

    def series(device: str, start: str, end: str) -> list[tuple[str, str]]:
        query = [{"device": device, "start_datetime": start, "end_datetime": end}]
        r = post(server, "/get_image_series/metadata", query, token)
        assert r.status_code == 200, r.text
        return [(row["device"], row["datetime"]) for row in r.json()]

    everything = series("%", "2019-11-01T00:00:00Z", "2030-01-01T00:00:00Z")
    assert everything == [
        ("512858f4", "2022-05-17T18:34:50Z"),
        ("512858f4", "2022-05-17T18:46:57Z"),
        ("5c173ff2", "2020-06-20T21:33:24Z"),
    ]
    assert series("5c%", "2019-11-01_00-00-00", "2030-01-01_00-00-00") == [everything[2]]
    assert series("%", "2022-05-17T18:34:50Z", "2022-05-17T18:46:57Z") == [everything[0]]  # [start, end)
    [row] = post(
        server,
        "/get_image_series/thumbnail",
        [
            {
                "device": "5c173ff2",
                "start_datetime": "2020-01-01T00:00:00Z",
                "end_datetime": "2021-01-01T00:00:00Z",
            }
        ],
        token,
    ).json()
    assert "/files/thumbnail/" in row["url"]


# -- annotations ------------------------------------------------------------------------------------


def annotation_body(name: str, digest: str, algo_version: str = ALGO_VERSION) -> list[dict[str, Any]]:
    contour = [[[10, 12]], [[20, 12]], [[20, 30]]]
    outline = {"contour": contour, "name": "insect", "fill_colour": "#ff0000", "stroke_colour": "#0000ff"}
    meta = {"algo_name": "sticky-pi-universal-insect-detector", "algo_version": algo_version}
    return [
        {
            "metadata": {**meta, **key(name), "md5": digest},
            "annotations": [{**outline, "value": 0}, {**outline, "value": 1}],
        }
    ]


def test_annotations(server: DevServer) -> None:
    token = get_token(server)
    data = blob(NEW)
    body = annotation_body(NEW, md5(data))
    assert_html_500(post(server, "/put_uid_annotations", body, token))  # parent missing

    assert upload(server, token, NEW, data).status_code == 200
    assert_html_500(post(server, "/put_uid_annotations", annotation_body(NEW, "0" * 32), token))
    r = post(server, "/put_uid_annotations", body, token)
    assert r.status_code == 200, r.text
    [put] = r.json()
    assert list(put) == ANNOTATION_FIELDS
    assert put["json"] == ""
    assert put["n_objects"] == 2
    assert_html_500(post(server, "/put_uid_annotations", body, token))  # duplicate triple
    assert_html_500(post(server, "/put_uid_annotations", annotation_body(NEW, md5(data), "x" * 47), token))
    other = annotation_body(NEW, md5(data), "1598113347-ad2cd78dfaca12821046dfb8994724d5")
    assert post(server, "/put_uid_annotations", other, token).status_code == 200

    [image] = metadata(server, token, NEW)
    r = post(server, "/get_uid_annotations/metadata", [key(NEW), key(NEW2)], token)
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 2
    assert all("json" not in row and row["parent_image_id"] == image["id"] for row in rows)
    assert rows[0] == {k: v for k, v in put.items() if k != "json"}

    [first, _] = post(server, "/get_uid_annotations/data", [key(NEW)], token).json()
    assert list(first) == ANNOTATION_FIELDS
    assert json.loads(first["json"]) == body[0]
    # any <what> but metadata includes the json, as on the real server
    assert post(server, "/get_uid_annotations/json", [key(NEW)], token).json() == [first, _]


def test_algo_name_over_64_characters_is_500(server: DevServer) -> None:
    token = get_token(server)
    data = blob(NEW)
    assert upload(server, token, NEW, data).status_code == 200
    body = annotation_body(NEW, md5(data))
    body[0]["metadata"]["algo_name"] = "n" * 65
    assert_html_500(post(server, "/put_uid_annotations", body, token))
    body[0]["metadata"]["algo_name"] = "n" * 64
    assert post(server, "/put_uid_annotations", body, token).status_code == 200


def test_column_limits() -> None:
    """``alt`` and ``bat`` are small integers (rounded; out of range is the database's error, a
    500), ``lat``/``lng`` keep 6 decimals."""
    from agent.devserver.values import StoreError, decimal6_column, smallint_column

    assert (smallint_column(97.5, "alt"), smallint_column(-97.5, "alt"), smallint_column(None, "bat")) == (
        98,
        -98,
        None,
    )
    with pytest.raises(StoreError, match="alt=40000"):
        smallint_column(40000, "alt")
    assert decimal6_column(49.12345678) == 49.123457


def test_request_counter(server: DevServer) -> None:
    token = get_token(server)
    upload(server, token, NEW, blob(NEW))
    metadata(server, token, NEW)
    metadata(server, token, NEW)
    assert server.requests["/_put_new_images"] == 1
    assert server.requests["/get_images/metadata"] == 2


# -- users ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "user"),
    [
        ("alice:secret", User("alice", "secret", "write")),
        ("bob:pw:read", User("bob", "pw", "read")),
        ("root:pw:admin", User("root", "pw", "admin")),
        ("carol:a:b:c", User("carol", "a:b:c", "write")),
        ("dave:x:write", User("dave", "x", "write")),
    ],
)
def test_parse_user(spec: str, user: User) -> None:
    assert parse_user(spec) == user


@pytest.mark.parametrize("spec", ["alice", ":pw", "alice:", "alice::admin", "a b:pw", "x" * 33 + ":pw"])
def test_parse_user_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="NAME:PASSWORD"):
        parse_user(spec)


# -- as the real server answers (a local rebuild of sticky-pi-api, probed) ---------------------------


def test_a_token_with_a_non_empty_password_is_accepted(server: DevServer) -> None:
    """The real server tries the token first and ignores the password when it verifies."""
    token = get_token(server)
    r = requests.post(f"{server.url}/get_images/metadata", json=[key(NEW)], auth=(token, "x"), timeout=10)
    assert (r.status_code, r.json()) == (200, [])
    bad = requests.post(f"{server.url}/get_images/metadata", json=[key(NEW)], auth=("nope", "x"), timeout=10)
    assert bad.status_code == 401
    assert requests.post(f"{server.url}/get_token", auth=("alice", ""), timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("when", "found"),
    [
        ("2022-05-17T18:46:57Z", 1),
        ("2022-05-17_18-46-57", 1),
        ("2022-05-17 18:46:57", 1),  # the stored text itself (SUBSTR(datetime, 1, 19) = '...')
        ("2022-05-17T18:46:57", 0),  # forms it does not parse silently find nothing
        ("2022-05-17T18:46:57+00:00", 0),
        ("2022-05-17T18:46:57.000Z", 0),
        ("yesterday", 0),
    ],
)
def test_key_datetime_forms(server: DevServer, when: str, found: int) -> None:
    token = get_token(server)
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    assert (
        post(server, "/put_uid_annotations", annotation_body(NEW, md5(blob(NEW))), token).status_code == 200
    )
    query = [{"device": "512858f4", "datetime": when}]
    for route in ("/get_images/metadata", "/get_uid_annotations/metadata"):
        r = post(server, route, query, token)
        assert (r.status_code, len(r.json())) == (200, found), route


def test_device_ids_compare_case_insensitively(server: DevServer, tmp_path: Path) -> None:
    """MariaDB's collation: an upper-case key finds the stored lower-case image, an upper-case
    upload of a stored key is a duplicate (its object is written first, as any re-upload)."""
    token = get_token(server)
    data = blob(NEW)
    assert upload(server, token, NEW, data).status_code == 200
    upper = NEW.replace("512858f4", "512858F4")
    [row] = post(server, "/get_images/metadata", [key(upper)], token).json()
    assert row["device"] == "512858f4"
    assert len(post(server, "/get_images/metadata", [key(NEW), key(upper)], token).json()) == 1
    assert_html_500(upload(server, token, upper, data))
    series = [
        {
            "device": "512858F%",
            "start_datetime": "2020-01-01T00:00:00Z",
            "end_datetime": "2030-01-01T00:00:00Z",
        }
    ]
    assert len(post(server, "/get_image_series/metadata", series, token).json()) == 1
    body = annotation_body(upper, md5(data))
    assert post(server, "/put_uid_annotations", body, token).status_code == 200
    assert len(post(server, "/get_uid_annotations/metadata", [key(NEW)], token).json()) == 1
    admin = get_token(server, "root", "toor")
    [deleted] = post(server, "/delete_images", [key(upper)], admin).json()
    assert deleted["device"] == "512858f4"
    assert not (tmp_path / "srv" / "files" / "image" / "512858f4" / NEW).exists()


def test_an_annotation_put_stores_all_items_or_none(server: DevServer) -> None:
    token = get_token(server)
    data = blob(NEW)
    assert upload(server, token, NEW, data).status_code == 200
    good = annotation_body(NEW, md5(data), "1")
    bad = annotation_body(NEW, "0" * 32, "2")
    assert_html_500(post(server, "/put_uid_annotations", good + bad, token))
    assert post(server, "/get_uid_annotations/metadata", [key(NEW)], token).json() == []
    assert_html_500(post(server, "/put_uid_annotations", good + good, token))  # a duplicate within
    assert post(server, "/get_uid_annotations/metadata", [key(NEW)], token).json() == []
    r = post(server, "/put_uid_annotations", good + annotation_body(NEW, md5(data), "2"), token)
    assert r.status_code == 200
    assert [a["algo_version"] for a in r.json()] == ["1", "2"]


def test_annotation_rows_have_no_user_id(server: DevServer) -> None:
    token = get_token(server)
    assert upload(server, token, NEW, blob(NEW)).status_code == 200
    [put] = post(server, "/put_uid_annotations", annotation_body(NEW, md5(blob(NEW))), token).json()
    [got] = post(server, "/get_uid_annotations/data", [key(NEW)], token).json()
    assert put["api_user_id"] is None and got["api_user_id"] is None
    [image] = metadata(server, token, NEW)
    assert isinstance(image["api_user_id"], int)  # images do record their uploader


def test_the_upload_answer_of_a_legacy_image_has_the_parser_values(server: DevServer) -> None:
    token = get_token(server)
    [put] = upload(server, token, LEGACY, blob(LEGACY)).json()
    assert (put["temp"], put["hum"]) == (21.899999618530273, 76.80000305175781)
    assert put["device_version"] is None and "url" not in put


def test_get_uid_annotations_series(server: DevServer) -> None:
    """The route the official client's ``get_images_with_uid_annotations_series`` calls."""
    token = get_token(server)
    for name in (NEW, NEW2, LEGACY):
        assert upload(server, token, name, blob(name)).status_code == 200
        body = annotation_body(name, md5(blob(name)))
        assert post(server, "/put_uid_annotations", body, token).status_code == 200
    images = {r["id"]: r["device"] for r in metadata(server, token, NEW, NEW2, LEGACY)}

    def series(what: str, device: str, start: str, end: str) -> list[dict[str, Any]]:
        query = [{"device": device, "start_datetime": start, "end_datetime": end}]
        r = post(server, f"/get_uid_annotations_series/{what}", query, token)
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        return rows

    rows = series("metadata", "5128%", "2022-05-17T18:34:50Z", "2030-01-01T00:00:00Z")
    assert len(rows) == 2 and all(
        "json" not in r and images[r["parent_image_id"]] == "512858f4" for r in rows
    )
    [one] = series("data", "%", "2022-05-17T18:34:50Z", "2022-05-17T18:46:57Z")  # [start, end)
    assert json.loads(one["json"]) == annotation_body(NEW2, md5(blob(NEW2)))[0]
    assert series("metadata", "%", "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z") == []


def test_get_users_is_admin_only(server: DevServer) -> None:
    assert_403(post(server, "/get_users", [{"username": "%"}], get_token(server)))
    r = post(server, "/get_users", [{"username": "r%"}], get_token(server, "root", "toor"))
    assert r.status_code == 200
    assert sorted((u["username"], u["can_write"], u["is_admin"]) for u in r.json()) == [
        ("reader", False, False),
        ("root", True, True),
    ]
    assert all("password" not in k for u in r.json() for k in u)


def test_float_columns_read_back_as_mariadb_floats() -> None:
    from agent.devserver.values import float_column

    assert [float_column(v) for v in (21.899999618530273, 17.0, 1.86, -300.0, None)] == [
        21.9,
        17.0,
        1.86,
        -300.0,
        None,
    ]
