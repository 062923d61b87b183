"""What the contract suites share (huey's StorageTests idea: one suite per seam, one small test
class per backend, each naming its backend in ``backend``)."""

from __future__ import annotations

from agent import registry


def _subclasses(base: type) -> list[type]:
    out = []
    for sub in base.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def untested_backends(seam: str, contract: type) -> set[str]:
    """Given a seam and its contract's base class, return the seam's registered backends that no
    test class of the contract (a subclass with ``backend = "<name>"``) runs against."""
    covered = {getattr(cls, "backend", None) for cls in _subclasses(contract)}
    return set(registry.backends(seam)) - covered
