"""Run ``stickyctl`` with some imports failing, as on a machine without an extra or under Ctrl-C:

    python tests/helpers/import_faults.py missing numpy,cv2,werkzeug -- --config C status
    python tests/helpers/import_faults.py interrupt agent.config -- --config C status

``missing``: importing a named module (or one of its submodules) raises ModuleNotFoundError, as
when the extra that provides it is not installed (the trap's core install has no numpy, OpenCV
or werkzeug). ``interrupt``: importing it raises KeyboardInterrupt, as a Ctrl-C that lands while
stickyctl is still loading its modules.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class ImportFault(importlib.abc.MetaPathFinder):
    """A finder that fails the import of ``names`` (and their submodules) the way ``mode`` says."""

    def __init__(self, mode: str, names: list[str]) -> None:
        self.mode = mode
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            if self.mode == "interrupt":
                raise KeyboardInterrupt
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def main() -> int:
    mode, names, sep, *args = sys.argv[1:]
    assert mode in ("missing", "interrupt") and sep == "--", sys.argv
    for name in list(sys.modules):
        if any(name == n or name.startswith(n + ".") for n in names.split(",")):
            del sys.modules[name]
    sys.meta_path.insert(0, ImportFault(mode, names.split(",")))
    sys.argv = ["stickyctl", *args]
    from agent.__main__ import main as stickyctl

    return stickyctl()


if __name__ == "__main__":
    sys.exit(main())
