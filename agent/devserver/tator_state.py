"""The Tator double's data: users' tokens, media and localization types with their attribute
types, stored objects, media and localizations (:class:`TatorState`), and the checks the real
server applies to attributes (:func:`check_attributes`) and its md5 (:func:`tator_md5`)."""

from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

THROTTLE_PER_S = 100
MAX_LIST = 500
LOCALIZATION_DTYPES = ("box", "poly", "dot", "line")


class TatorError(Exception):
    """A refusal the double answers with ``status`` and ``{"message", "details"}``."""

    def __init__(self, status: int, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


@dataclass
class AttributeType:
    """One user-defined attribute of a media or localization type."""

    name: str
    dtype: str  # bool, int, float, string, datetime, geopos
    required: bool = False
    default: Any = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass
class EntityType:
    """A media type (``dtype`` image/video) or a localization type (``dtype`` box/poly/dot/line)."""

    id: int
    project: int
    name: str
    dtype: str
    attribute_types: list[AttributeType] = field(default_factory=list)


def default_types() -> list[EntityType]:
    """Return the types of the double's project 1: an image media type (id 1) with the record's
    attributes, a polygon (id 2) and a box (id 3) localization type with detector attributes."""
    record = [
        AttributeType("device", "string"),
        AttributeType("datetime", "datetime"),
        AttributeType("temperature", "float"),
        AttributeType("humidity", "float"),
        AttributeType("battery", "int"),
        AttributeType("location", "geopos"),
        AttributeType("manual", "bool"),
    ]
    detector = [
        AttributeType("Label", "string", default="insect"),
        AttributeType("Algorithm", "string"),
        AttributeType("Algorithm version", "string"),
    ]
    return [
        EntityType(1, 1, "Sticky card", "image", record),
        EntityType(2, 1, "Insect outline", "poly", detector),
        EntityType(3, 1, "Insect box", "box", detector),
    ]


def tator_md5(data: bytes) -> str:
    """Given a file's bytes, return Tator's "md5" (``tator.util.md5sum``): the md5 of the hex md5
    of the first 100 MB followed by the size in decimal."""
    inner = hashlib.md5(data[: 100 * 1024 * 1024]).hexdigest()
    return hashlib.md5(inner.encode() + str(len(data)).encode()).hexdigest()


def check_uuid(value: str | None) -> str:
    """Given an ``elemental_id`` (a UUID field on the server), return it in canonical form, or a
    new one if None. Raise TatorError (400) if it is not a UUID, as the server's validation does."""
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise TatorError(400, f"\u201c{value}\u201d is not a valid UUID.", "elemental_id") from None


def _check_value(attr: AttributeType, value: Any) -> bool:
    if value is None:
        return True
    checks: dict[str, Callable[[Any], bool]] = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "datetime": lambda v: isinstance(v, str),
        "geopos": lambda v: (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        ),
    }
    return checks.get(attr.dtype, lambda v: True)(value)


def check_attributes(types: Iterable[AttributeType], given: dict[str, Any] | None) -> dict[str, Any]:
    """Given a type's attribute types and the attributes of a spec, return the attributes stored:
    unknown names dropped, defaults filled in. Raise TatorError (400) if a required attribute with
    no default is missing or a value has the wrong type."""
    given = given or {}
    out: dict[str, Any] = {}
    for attr in types:
        if attr.name in given:
            value = given[attr.name]
            if not _check_value(attr, value):
                raise TatorError(400, f"Invalid attribute value for {attr.name} of dtype {attr.dtype}!")
            out[attr.name] = value
        elif attr.default is not None:
            out[attr.name] = attr.default
        elif attr.required:
            raise TatorError(400, f"Missing attribute value for '{attr.name}'!", "Missing attribute value")
    return out


class TatorState:
    """The double's data, behind one lock: tokens, types, stored objects, media, localizations."""

    def __init__(self, tokens: dict[str, str], types: list[EntityType], import_after_reads: int) -> None:
        self.lock = threading.Lock()
        self.tokens = dict(tokens)  # token -> user name
        self.types = {t.id: t for t in types}
        self.import_after_reads = import_after_reads
        self.secret = uuid.uuid4().hex.encode()
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.media: dict[int, dict[str, Any]] = {}
        self.media_bytes: dict[int, bytes] = {}
        self.pending: dict[int, list[Any]] = {}  # media id -> [reads left, url]
        self.localizations: dict[int, dict[str, Any]] = {}
        self.sections: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.requests: collections.Counter[str] = collections.Counter()
        #: ``"<METHOD> <endpoint>"`` -> how many of the next such requests are carried out but
        #: their answer cut half-way (a lost answer), e.g. ``{"POST medias": 1}``.
        self.lose_answers: collections.Counter[str] = collections.Counter()
        self.recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def take_lost_answer(self, request: str) -> bool:
        """Return True (once per count) if the answer to ``request`` is to be lost."""
        with self.lock:
            if self.lose_answers[request] > 0:
                self.lose_answers[request] -= 1
                return True
            return False

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()[:32]
