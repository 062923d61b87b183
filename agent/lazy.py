"""Heavy libraries (numpy, OpenCV) imported at their first use, not when a backend module loads.

Loading the configuration imports every backend module (:mod:`agent.registry`), and the trap's
core installs without numpy or OpenCV; so a backend that computes with them writes::

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_import("numpy", globals(), "np")

and uses ``np`` as usual. The first attribute looked up (``np.zeros``, inside a function) imports
numpy and puts the module itself in the backend's namespace in place of the stand-in, so later
uses cost nothing. A missing library raises its usual ImportError at that first use; a backend's
factory calls :func:`require` to raise it when the backend is made, not mid-capture.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for module ``name`` under ``alias`` in ``namespace`` until it is first used."""

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name = name
        self._namespace = namespace
        self._alias = alias

    def load(self) -> ModuleType:
        """Import the module, put it in place of this stand-in, and return it. Raise ImportError
        if it is not installed."""
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        if attr in ("_name", "_namespace", "_alias"):  # not set yet
            raise AttributeError(attr)
        return getattr(self.load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_import(name: str, namespace: dict[str, Any], alias: str) -> Any:
    """Given a module name and where it will be used (a module's ``globals()`` and the name it
    goes by there), return a stand-in that imports it at its first attribute access."""
    return LazyModule(name, namespace, alias)


def require(*modules: Any) -> None:
    """Given modules or their lazy stand-ins, import those not imported yet. Raise ImportError
    (its ``name`` the missing module) if one is not installed."""
    for module in modules:
        if isinstance(module, LazyModule):
            module.load()
