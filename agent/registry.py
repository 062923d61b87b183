"""One convention for every pluggable seam: camera, flash, sensors, detector and sink.

A backend is a module. It holds its settings class (a config section whose ``type`` key is a
``Literal`` naming the backend) beside its implementation, and registers the two together::

    class TatorSettings(SinkSettings):
        type: Literal["tator"]
        host: str

    @register("sink", TatorSettings)
    class TatorSink: ...

The configuration is built from this registry: a seam's section (``[camera]``, each
``[[sink]]``) is the union of its backends' settings classes, chosen by ``type``, so unknown
keys and every error are reported with their path, backend by backend (Frigate's detector
plugins). Backends are the modules listed in :data:`BUILTIN` plus every module named by a
``sticky_agent.<seam>`` entry point of an installed distribution (gpiozero's pin factories):
adding one is one module, one line here (or one entry point) and one contract-test class.

Each seam's factory signature and base settings class:

=========  ==========================================  ====================================
seam       factory(settings, ...)                      settings base, protocol
=========  ==========================================  ====================================
camera     ``(settings, state_dir=None)``              ``agent.hardware.camera``
flash      ``(settings, pin_factory=None)``            ``agent.hardware.flash``
sensors    ``(settings, pin_factory=None)``            ``agent.hardware.sensors``
detector   ``(settings)`` (``none`` gives None)        ``agent.detect``
sink       ``(settings, environ=None)``                ``agent.sinks.base``
=========  ==========================================  ====================================

Every seam has an in-memory backend (``memory``; the sensors' is ``fake``) and a contract suite
(``tests/helpers/<seam>_contract.py``) that each backend's test class inherits.

Loading the config imports every backend module, so a backend imports its heavy libraries
(numpy, OpenCV, picamera2) inside the functions that need them, or through
:func:`agent.lazy.lazy_import`, never at module level (``tests/test_seams.py`` checks).
Every backend's object has a ``close()``. A settings class with a ``gpio_pins()`` method has
its pins checked against every other section's (a pin used twice is a config error).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

SEAMS = ("camera", "flash", "sensors", "detector", "sink")

#: The backend modules shipped with the agent, by seam.
BUILTIN: dict[str, tuple[str, ...]] = {
    "camera": (
        "agent.hardware.camera.synthetic",
        "agent.hardware.camera.replay",
        "agent.hardware.camera.picamera2",
        "agent.hardware.camera.memory",
    ),
    "flash": ("agent.hardware.flash",),
    "sensors": ("agent.hardware.sensors",),
    "detector": (
        "agent.detect",
        "agent.detect.builtin",
        "agent.detect.learned",
        "agent.detect.memory",
    ),
    "sink": (
        "agent.sinks.stickypi",
        "agent.sinks.memory",
        "agent.sinks.tator",
        "agent.sinks.datalake",
    ),
}

ENTRY_POINT_GROUP = "sticky_agent.{seam}"


@dataclass(frozen=True)
class Backend:
    """One registered backend: its seam, ``type`` name, settings class and factory."""

    seam: str
    name: str
    settings: type[BaseModel]
    factory: Callable[..., Any]


_backends: dict[str, dict[str, Backend]] = {seam: {} for seam in SEAMS}
_loaded: set[str] = set()
_lock = threading.RLock()

F = TypeVar("F", bound=Callable[..., Any])


def type_name(settings: type[BaseModel]) -> str:
    """Given a settings class, return the backend name its ``type: Literal[...]`` field holds.
    Raise TypeError if it has no such field."""
    field = settings.model_fields.get("type")
    names = get_args(field.annotation) if field is not None else ()
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{settings.__name__} needs a field type: Literal['<backend name>']")
    return names[0]


def register(seam: str, settings: type[BaseModel]) -> Callable[[F], F]:
    """Return a decorator registering its argument (a class or a function taking the settings)
    as the factory of the ``seam`` backend named by ``settings``' ``type``. Raise ValueError if
    the seam is unknown or another backend of the seam already has that name."""
    if seam not in SEAMS:
        raise ValueError(f"unknown seam {seam!r}; one of {SEAMS}")
    name = type_name(settings)

    def decorate(factory: F) -> F:
        with _lock:
            known = _backends[seam].get(name)
            if known is not None and known.factory is not factory:
                raise ValueError(f"two {seam} backends are named {name!r}")
            _backends[seam][name] = Backend(seam, name, settings, factory)
        return factory

    return decorate


def _load(seam: str) -> None:
    with _lock:
        if seam in _loaded:
            return
        _loaded.add(seam)
        for module in BUILTIN[seam]:
            importlib.import_module(module)
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP.format(seam=seam)):
            try:
                importlib.import_module(ep.value.partition(":")[0])
            except Exception as e:  # a broken plugin must not stop the trap
                log.error("cannot load the %s backend %r (%s): %s", seam, ep.name, ep.value, e)


def backends(seam: str) -> dict[str, Backend]:
    """Given a seam, return its backends by ``type`` name, loading them first."""
    _load(seam)
    return dict(_backends[seam])


def backend(seam: str, name: str) -> Backend:
    """Given a seam and a ``type`` name, return the backend. Raise KeyError if there is none."""
    found = backends(seam).get(name)
    if found is None:
        raise KeyError(f"no {seam} backend named {name!r}; known: {sorted(backends(seam))}")
    return found


def settings_union(seam: str) -> Any:
    """Given a seam, return the pydantic type of its section: the union of its backends'
    settings classes, chosen by ``type``."""
    classes = tuple(b.settings for b in backends(seam).values())
    if len(classes) == 1:
        return Annotated[classes[0], Field(discriminator="type")]
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


def create(seam: str, settings: BaseModel, *args: Any, **kwargs: Any) -> Any:
    """Given a seam and a backend's validated settings, return a new backend object made by its
    factory (``factory(settings, *args, **kwargs)``)."""
    return backend(seam, type_name(type(settings))).factory(settings, *args, **kwargs)
