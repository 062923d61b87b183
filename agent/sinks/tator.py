"""The Tator sink: images become media, insect outlines become localizations.

The wire protocol is what the official ``tator`` client does (``../shared/specs/tator.md``):
``Authorization: Token <token>`` on every ``/rest`` call (never on the presigned ``PUT``s);
an image goes up as ``UploadInfo`` -> presigned ``PUT`` (several parts and ``UploadCompletion``
above the part size) -> ``DownloadInfo`` -> ``CreateMediaList``, and the server imports it
afterwards (``media_files`` stays empty until then).

Tator does no de-duplication, so every object this sink makes has a deterministic
``elemental_id`` (:mod:`agent.sinks.tator_records`): an image is looked up by it (then by
Tator's md5, for a copy another tool uploaded) before anything is sent, and a retry after a
lost answer finds the media the first try made. A media is reported held only once it has
its file. An outline set is held when exactly the elemental ids of a complete set are on the
media; sending it again deletes the old set first.

Tator answers most refusals with a 400 ``{"message", "details"}``, a bad token and throttling
included: the REST calls (:mod:`agent.sinks.tator_api`) read the message and raise
:class:`SinkAuthError` for a refused token, :class:`SinkUnreachable` (with the wait Tator asks
for) when throttled, and :class:`SinkRejected` otherwise; 403 is :class:`SinkForbidden`. The
token never appears in a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.errors import SinkForbidden, SinkProtocolError, SinkRejected
from agent.registry import register
from agent.sinks import transport  # the HTTP transport: loaded when a sink is made
from agent.sinks.base import (
    MAX_ANSWER_BYTES,
    AnnotationBatch,
    ImageKey,
    ImageRecord,
    RemoteImage,
    SinkSettings,
    check_url,
)
from agent.sinks.credentials import Secret, load_token
from agent.sinks.tator_api import PART_SIZE, TatorApi, has_file
from agent.sinks.tator_records import (
    ALGORITHM,
    ALGORITHM_VERSION,
    RECORD_FIELDS,
    RecordField,
    expected_localization_ids,
    localization_specs,
    media_attributes,
    media_elemental_id,
    tator_md5_of,
    tator_md5_of_data,
)
from agent.sinks.throttle import Bandwidth

#: Tator throttles each user at 100 requests/s: the sink paces itself at half of that (a burst
#: of one second's worth, so never over 100 in any second), leaving room for the lab's scripts.
REQUESTS_PER_S = 50.0

__all__ = ["TatorSettings", "TatorSink", "make_sink"]

log = logging.getLogger(__name__)

#: The most specs Tator takes in one create request.
MAX_LIST = 500
#: Media whose localizations one ``GetLocalizationList`` asks for.
MEDIA_PER_QUERY = 20
#: Imported media remembered (id and md5 by image key), for sending their annotations.
MEDIA_REMEMBERED = 4096
#: How long a lookup's "no copy under another name" stands for the upload that follows it.
ABSENT_FOR_S = 300.0


class TatorSettings(SinkSettings):
    """``[[sink]] type = "tator"``: a Tator project. The credentials file holds an API token."""

    type: Literal["tator"]
    #: ``https://tator.example.org`` (``http://`` only to this machine).
    host: str
    project: int = Field(ge=1)
    #: The id of the project's image media type.
    media_type: int = Field(ge=1)
    #: The media section (folder) new images go in (key ``section``; the name ``section`` is the
    #: table's config path in messages); default: one per trap (``Trap <device>``).
    media_section: str | None = Field(default=None, alias="section", min_length=1, max_length=128)
    #: A ``poly`` or ``box`` localization type for insect outlines; none: no annotations sent.
    localization_type: int | None = Field(default=None, ge=1)
    #: Which record fields become media attributes (the media type must declare them).
    attributes: list[RecordField] = Field(default_factory=lambda: list(RECORD_FIELDS))
    credential_name: str = "tator-token"

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_url(v)


class TatorSink:
    """A client of one Tator project, safe to share between upload threads."""

    def __init__(
        self,
        host: str,
        token: Secret,
        *,
        project: int,
        media_type: int,
        section: str | None = None,
        localization_type: int | None = None,
        attributes: Iterable[str] = RECORD_FIELDS,
        name: str = "tator",
        config_section: str = "sink.tator",
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: Path | None = None,
        pool_size: int = 4,
        part_size: int = PART_SIZE,
        confirm_reads: int = 3,
        pause: Callable[[float], None] = time.sleep,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """Raise ConfigError if a timeout is not a positive number or the CA bundle is unusable."""
        self.name = name
        self.http = transport.HttpTransport(
            "Tator",
            config_section,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ca_bundle=ca_bundle,
            pool_size=pool_size,
            max_answer_bytes=max_answer_bytes,
            requests_per_second=REQUESTS_PER_S,
        )
        self.api = TatorApi(
            self.http,
            host,
            token,
            project=project,
            media_type=media_type,
            localization_type=localization_type,
            part_size=part_size,
        )
        self.project, self.media_type, self.section = project, media_type, section
        self.localization_type = localization_type
        self.attributes = tuple(attributes)
        self.confirm_reads = max(1, confirm_reads)
        self._pause = pause
        self._loc_type: tuple[str, set[str]] | None = None  # (dtype, declared attribute names)
        self._lock = threading.Lock()
        #: Imported media seen lately, by image key (saves a query per image for annotations).
        self._imported: OrderedDict[ImageKey, dict[str, Any]] = OrderedDict()
        #: When a lookup last found no copy of an image at all (saves the md5 query of its upload).
        self._absent: OrderedDict[ImageKey, float] = OrderedDict()
        self._monotonic = time.monotonic

    @property
    def requests_sent(self) -> int:
        """Requests sent (for status and benchmarks)."""
        return self.http.requests_sent

    def close(self) -> None:
        """Stop: every request in flight is cut at once, and no request starts after."""
        self.http.close()

    # -- transport ----------------------------------------------------------------------

    # -- the Sink protocol ----------------------------------------------------------------

    def probe(self) -> None:
        """Read the media type (and the localization type): proves the host, the token, and that
        the ids are of this project. Raise SinkForbidden if an id is wrong."""
        media_type = self.api.entity_type("MediaType", self.media_type, "media_type")
        if media_type.get("dtype") != "image":
            raise SinkForbidden(
                f"Tator's media type {self.media_type} is of dtype {media_type.get('dtype')!r}, "
                f"not image: check {self.http.section}.media_type"
            )
        if self.localization_type is not None:
            with self._lock:
                self._loc_type = None
            self._localization_dtype()

    def _localization_dtype(self) -> tuple[str, set[str]]:
        """Return the localization type's dtype (``poly`` or ``box``) and declared attribute names,
        read once. Raise SinkForbidden if it is another shape."""
        assert self.localization_type is not None
        with self._lock:
            if self._loc_type is not None:
                return self._loc_type
        answer = self.api.entity_type("LocalizationType", self.localization_type, "localization_type")
        dtype = answer.get("dtype")
        if dtype not in ("poly", "box"):
            raise SinkForbidden(
                f"Tator's localization type {self.localization_type} is of dtype {dtype!r}; insect "
                f"outlines need a poly or box type: check {self.http.section}.localization_type"
            )
        declared = {
            a["name"] for a in answer.get("attribute_types") or [] if isinstance(a, dict) and "name" in a
        }
        missing = {ALGORITHM, ALGORITHM_VERSION} - declared
        if missing:
            log.warning(
                "%s: Tator's localization type %s does not declare the string attributes %s: "
                "annotations are sent again and again; add them to the type",
                self.name,
                self.localization_type,
                ", ".join(sorted(missing)),
            )
        with self._lock:
            self._loc_type = (str(dtype), declared)
        return self._loc_type

    def _find_media(self, image: ImageRecord, by_md5: bool = True) -> dict[str, Any] | None:
        """Return the media holding ``image``: by elemental id, else (``by_md5``) by Tator's md5 and
        the file's name (a copy another tool uploaded). Prefer one with its file, then the oldest."""
        rows = self.api.media_list(elemental_id=media_elemental_id(image.key))
        theirs = tator_md5_of(image)
        if not rows and by_md5 and theirs is not None:  # the same file, under the same name
            rows = [
                m for m in self.api.media_list(md5=theirs) if str(m.get("name")).lower() == image.name.lower()
            ]
        if not rows:
            return None
        return min(rows, key=lambda m: (not has_file(m), m.get("md5") != theirs, m["id"]))

    def _remember(self, image: ImageRecord, media: Mapping[str, Any]) -> None:
        if has_file(media) and media.get("md5") == tator_md5_of(image):
            with self._lock:
                self._imported[image.key] = {
                    "id": media["id"],
                    "md5": media["md5"],
                    "media_files": {"image": [1]},
                }
                self._imported.move_to_end(image.key)
                while len(self._imported) > MEDIA_REMEMBERED:
                    self._imported.popitem(last=False)

    def _forget(self, image: ImageRecord) -> None:
        with self._lock:
            self._imported.pop(image.key, None)

    def _imported_media(self, image: ImageRecord) -> dict[str, Any] | None:
        """Return the imported media holding ``image`` with our md5 (remembered, or looked up by
        elemental id), or None."""
        with self._lock:
            media = self._imported.get(image.key)
        if media is None:
            media = self._find_media(image, by_md5=False)
            if media is None or not has_file(media) or media.get("md5") != tator_md5_of(image):
                return None
            self._remember(image, media)
        return media

    def _remote(self, image: ImageRecord, media: Mapping[str, Any]) -> RemoteImage:
        same = media.get("md5") == tator_md5_of(image)
        return RemoteImage(image.md5 if same else str(media.get("md5")), remote_id=media["id"])

    def lookup_images(self, images: list[ImageRecord]) -> dict[ImageKey, RemoteImage]:
        """Return the images Tator holds with their file imported (one or two queries each)."""
        found = {}
        for image in images:
            media = self._find_media(image)
            if media is not None and has_file(media):
                found[image.key] = self._remote(image, media)
                self._remember(image, media)
            elif media is None:
                self._note_absent(image)
        return found

    def _note_absent(self, image: ImageRecord) -> None:
        """Note that Tator had no copy of ``image`` under any name or id just now."""
        with self._lock:
            self._absent[image.key] = self._monotonic()
            while len(self._absent) > MEDIA_REMEMBERED:
                self._absent.popitem(last=False)

    def _recently_absent(self, image: ImageRecord) -> bool:
        with self._lock:
            seen = self._absent.pop(image.key, None)
        return seen is not None and self._monotonic() - seen < ABSENT_FOR_S

    def upload_image(self, image: ImageRecord, data: bytes, throttle: Bandwidth | None = None) -> None:
        """Upload ``data`` as the client does and create its media, unless Tator already has a
        media for it. Then read it back (a few times) until its file is imported; one not yet
        imported is left for the next lookup. Raise SinkRejected if a media for this image has
        no file even after the reads (its import failed: delete it in Tator to send it again)."""
        # By elemental id always (our own earlier try, its answer lost); by md5 (a copy another
        # tool uploaded) unless the lookup just now found none.
        existing = self._find_media(image, by_md5=not self._recently_absent(image))
        if existing is not None:
            self._confirm(image, existing["id"], existing, created=False)
            return
        key = self.api.put_object(image.name, data, throttle)
        route = f"POST /rest/DownloadInfo/{self.project}"
        urls = self.api.rest(
            "POST", f"DownloadInfo/{self.project}", params={"expiration": 86400}, body={"keys": [key]}
        )
        if not (
            isinstance(urls, list)
            and urls
            and isinstance(urls[0], dict)
            and isinstance(urls[0].get("url"), str)
        ):
            raise SinkProtocolError(f"{route}: Tator's answer has no download URL")
        spec = {
            "type": self.media_type,
            "name": image.name,
            "md5": tator_md5_of_data(data),
            "section": self.section or f"Trap {image.key[0]}",
            "attributes": media_attributes(image, self.attributes),
            "size": len(data),
            "url": urls[0]["url"],
            "elemental_id": media_elemental_id(image.key),
        }
        answer = self.api.rest("POST", f"Medias/{self.project}", body=spec)
        media_id = answer.get("id") if isinstance(answer, dict) else None
        if isinstance(media_id, list) and len(media_id) == 1:
            media_id = media_id[0]
        if not isinstance(media_id, int):
            raise SinkProtocolError(f"POST /rest/Medias/{self.project}: Tator's answer has no media id")
        self._confirm(image, media_id, None, created=True)

    def _confirm(
        self, image: ImageRecord, media_id: int, media: dict[str, Any] | None, created: bool
    ) -> None:
        for attempt in range(self.confirm_reads + 1):
            if media is not None and has_file(media):
                self._remember(image, media)
                return
            if attempt == self.confirm_reads:
                break
            if attempt:
                self._pause(min(0.5 * 2**attempt, 4.0))
            media = self.api.media(media_id)
        if not created:
            raise SinkRejected(
                f"Tator holds media {media_id} for {image.name} without its file (not imported yet, "
                "or its import failed: delete the media in Tator to have the image sent again)"
            )
        log.info(
            "%s: media %s for %s is not imported yet; checked again later", self.name, media_id, image.name
        )

    def lookup_annotations(self, images: list[ImageRecord]) -> set[tuple[ImageKey, str, str]]:
        """Return ``(key, algo_name, algo_version)`` for every complete outline set on the images'
        media (one query per image, one per 20 images)."""
        if self.localization_type is None:
            return set()
        media = {}
        for image in images:
            found = self._imported_media(image)
            if found is not None:
                media[found["id"]] = image.key
        held = set()
        ids = sorted(media)
        for i in range(0, len(ids), MEDIA_PER_QUERY):
            chunk = ids[i : i + MEDIA_PER_QUERY]
            sets: dict[tuple[ImageKey, str, str], set[str]] = {}
            for row in self.api.localizations(chunk):
                attrs = row.get("attributes") or {}
                name, version = attrs.get(ALGORITHM), attrs.get(ALGORITHM_VERSION)
                if isinstance(name, str) and isinstance(version, str) and row.get("media") in media:
                    sets.setdefault((media[row["media"]], name, version), set()).add(
                        str(row.get("elemental_id"))
                    )
            for (key, name, version), eids in sets.items():
                if eids == expected_localization_ids(key, name, version, len(eids)):
                    held.add((key, name, version))
        return held

    def upload_annotations(self, image: ImageRecord, batch: AnnotationBatch) -> None:
        """Make the batch's outlines the image's localizations of this detector version: nothing
        if exactly that set is there, else the old ones deleted and the new ones created (500 per
        request). Raise SinkRejected if Tator has no such image with that md5. Without a
        localization type configured, annotations are not sent."""
        if self.localization_type is None:
            return
        dtype, declared = self._localization_dtype()
        media = self._imported_media(image)
        if media is None or batch.md5 != image.md5:
            raise SinkRejected(f"Tator holds no media {image.name} with md5 {batch.md5} for its annotations")
        try:
            self._replace_localizations(image, batch, media["id"], dtype, declared)
        except SinkRejected:
            self._forget(image)  # deleted in Tator meanwhile? look it up afresh next time
            raise

    def _replace_localizations(
        self, image: ImageRecord, batch: AnnotationBatch, media_id: int, dtype: str, declared: set[str]
    ) -> None:
        assert self.localization_type is not None
        specs = localization_specs(
            image, batch, media_id=media_id, type_id=self.localization_type, dtype=dtype, declared=declared
        )
        mine = [
            row
            for row in self.api.localizations([media_id])
            if (row.get("attributes") or {}).get(ALGORITHM) == batch.algo_name
            and (row.get("attributes") or {}).get(ALGORITHM_VERSION) == batch.algo_version
        ]
        if {str(r.get("elemental_id")) for r in mine} == {s["elemental_id"] for s in specs} and len(
            mine
        ) == len(specs):
            return
        if mine:
            ids = [r["id"] for r in mine]
            params = {"media_id": media_id, "type": self.localization_type, "count": len(ids)}
            self.api.rest(
                "DELETE", f"Localizations/{self.project}", params=params, body={"ids": ids, "prune": 1}
            )
        for i in range(0, len(specs), MAX_LIST):
            self.api.rest("POST", f"Localizations/{self.project}", body=specs[i : i + MAX_LIST])


@register("sink", TatorSettings)
def make_sink(config: TatorSettings, environ: Mapping[str, str] | None = None) -> TatorSink:
    """Given a Tator sink's settings, return its sink. Raise CredentialsError if the token file is
    missing, malformed or readable by others."""
    return TatorSink(
        config.host,
        load_token(config, environ),
        project=config.project,
        media_type=config.media_type,
        section=config.media_section,
        localization_type=config.localization_type,
        attributes=config.attributes,
        name=config.name,
        config_section=config.section,
        **config.http_options(),
    )
