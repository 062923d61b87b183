"""Run pip as if on another machine, for tests/test_pi_install.py:

    python -S tests/helpers/pip_resolve.py PIP_DIR MACHINE PYTHON_VERSION -- install --dry-run ...

pip's ``--platform`` and ``--python-version`` choose which wheels fit, but pip evaluates
environment markers (``platform_machine == "aarch64"``, ``python_version < "3.12"``) against the
interpreter it runs on. This sets ``platform.machine()`` and the Python version that the markers
see to MACHINE and PYTHON_VERSION (e.g. ``aarch64 3.13.5``), then runs the pip found in PIP_DIR
(a folder holding only the ``pip`` package: with ``-S`` nothing else of this machine's
site-packages is visible).
"""

from __future__ import annotations

import platform
import runpy
import sys


def main() -> None:
    pip_dir, machine, version, sep, *pip_args = sys.argv[1:]
    assert sep == "--", sys.argv
    parts = tuple(version.split("."))
    platform.machine = lambda: machine
    platform.python_version = lambda: version
    platform.python_version_tuple = lambda: (parts[0], parts[1], parts[2])  # type: ignore[assignment]
    sys.path.insert(0, pip_dir)
    sys.argv = ["pip", *pip_args]
    runpy.run_module("pip", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
