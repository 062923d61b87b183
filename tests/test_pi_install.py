"""The Raspberry Pi install never replaces apt's numpy, OpenCV, picamera2 or simplejpeg.

On Raspberry Pi OS these come from apt, built against apt's numpy; a pip wheel in the agent's
``--system-site-packages`` venv would shadow them (on Bookworm a numpy 2 wheel breaks
picamera2's simplejpeg: "numpy.dtype size changed"). See ``../shared/design/pi-packages.md``.

The resolution test asks PyPI what ``hardware/install.sh``'s pip command would install on each
current release (64-bit), with apt's numpy as a constraint, and fails if that includes numpy (at
another version than apt's), OpenCV, picamera2 or simplejpeg. It needs PyPI and skips with a
message when it is unreachable. 32-bit Pi OS (armv7l) is not resolved here: PyPI has no armv7l
wheels of Pillow, which a Pi gets from piwheels.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

HELPER = REPO / "tests" / "helpers" / "pip_resolve.py"
#: What must stay apt's on a Pi (pip distribution names; apt's OpenCV has none).
APT_ONLY = re.compile(r"^(numpy|opencv(-contrib)?-python(-headless)?|picamera2|simplejpeg)$")


@dataclass(frozen=True)
class Release:
    python: str  # the full version markers see
    glibc: tuple[int, int]
    numpy: str  # python3-numpy
    opencv: str  # python3-opencv (no pip distribution: only for the record)


RELEASES = {
    "trixie": Release(python="3.13.5", glibc=(2, 41), numpy="2.2.4", opencv="4.10.0"),
    "bookworm": Release(python="3.11.2", glibc=(2, 36), numpy="1.24.2", opencv="4.6.0"),
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_sh_extras() -> str:
    """Return the extras hardware/install.sh installs with the core (e.g. ``[web]``)."""
    script = f'source {REPO}/hardware/install.sh && printf "%s" "$PIP_EXTRAS"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def install_sh_pip_args() -> list[str]:
    """Return the options hardware/install.sh gives ``pip install`` (before the constraints)."""
    script = f'source {REPO}/hardware/install.sh && printf "%s\\n" "${{PIP_INSTALL_ARGS[@]}}"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


def pip_env() -> dict[str, str]:
    """This machine's environment without its pip configuration (local wheel folders, caps)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_INDEX_URL", "PIP_CERT")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def require_index() -> None:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=15) as response:
            response.read(1)
    except OSError as e:
        pytest.skip(f"the package index {index} is unreachable ({e}): Pi install resolution not checked")


def test_the_core_depends_on_none_of_the_apt_only_packages_nor_werkzeug() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [normalise(re.split(r"[ <>=!~;\[]", d, maxsplit=1)[0]) for d in project["dependencies"]]
    assert not [n for n in names if APT_ONLY.match(n) or n == "werkzeug"], names
    extras = project["optional-dependencies"]
    assert any(d.startswith("opencv-python-headless") for d in extras["detect"])
    assert any(d.startswith("werkzeug") for d in extras["dev"])


@pytest.fixture(scope="module")
def agent_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout built once as a wheel: what ``pip install <checkout>`` installs (same metadata)."""
    require_index()
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        env=pip_env(),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = out.glob("sticky_agent-*.whl")
    return wheel


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("release", list(RELEASES))
def test_pi_install_resolves_without_replacing_apt_packages(
    release: str, tmp_path: Path, agent_wheel: Path
) -> None:
    rel = RELEASES[release]
    pip_spec = importlib.util.find_spec("pip")
    assert pip_spec is not None and pip_spec.submodule_search_locations
    pip_dir = tmp_path / "pip-only"
    pip_dir.mkdir()
    (pip_dir / "pip").symlink_to(next(iter(pip_spec.submodule_search_locations)))
    constraints = tmp_path / "apt-constraints.txt"
    constraints.write_text(f"numpy=={rel.numpy}\n")  # what install.sh writes on that release
    glibc_major, glibc_minor = rel.glibc
    platforms = [f"manylinux_{glibc_major}_{m}_aarch64" for m in range(glibc_minor, 16, -1)]
    platforms += ["manylinux2014_aarch64", "linux_aarch64"]
    report = tmp_path / "report.json"
    args = [
        "install",
        # install.sh's options; its --no-cache-dir changes no resolution, and a cache speeds reruns
        *(a for a in install_sh_pip_args() if a != "--no-cache-dir"),
        "--constraint",
        str(constraints),
        "--dry-run",
        "--quiet",
        "--report",
        str(report),
        "--target",  # pip takes --platform only for another folder: nothing is seen as installed
        str(tmp_path / "target"),
        "--python-version",
        ".".join(rel.python.split(".")[:2]),
        *(f"--platform={p}" for p in platforms),
        "--only-binary=:all:",
        f"{agent_wheel}{install_sh_extras()}",
    ]
    res = subprocess.run(
        [sys.executable, "-S", str(HELPER), str(pip_dir), "aarch64", rel.python, "--", *args],
        capture_output=True,
        text=True,
        env=pip_env(),
        timeout=600,
    )
    assert res.returncode == 0, f"pip cannot resolve the Pi install on {release}:\n{res.stderr[-3000:]}"
    data = json.loads(report.read_text())
    assert data["environment"]["platform_machine"] == "aarch64"
    assert data["environment"]["python_full_version"] == rel.python
    installed = {normalise(i["metadata"]["name"]): i["metadata"]["version"] for i in data["install"]}
    # the core and the web page (pure Python), nothing of the devserver's or the detector's
    assert "sticky-agent" in installed and "prometheus-client" in installed, installed
    # numpy at exactly apt's version would be apt's own (pip sees it installed); anything else of
    # these would shadow apt's build in the venv
    replaced = {
        n: v for n, v in installed.items() if APT_ONLY.match(n) and not (n == "numpy" and v == rel.numpy)
    }
    assert not replaced, (
        f"on {release} pip would install {replaced} over apt's numpy {rel.numpy} / OpenCV {rel.opencv}"
    )
