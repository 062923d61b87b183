"""hardware/install.sh: its dry run prints every action and changes nothing (on any machine),
it writes the credentials file root-only, and it is shellcheck clean."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "hardware" / "install.sh"
#: What a real run creates or changes; a dry run must leave all of it as it was.
TOUCHED = [
    Path("/opt/sticky-agent"),
    Path("/etc/sticky-agent"),
    Path("/var/lib/sticky-agent"),
    Path("/etc/systemd/system/sticky-agent.service"),
    Path("/usr/local/bin/stickyctl"),
]


def snapshot() -> dict[str, object]:
    state: dict[str, object] = {}
    for path in TOUCHED:
        try:
            st = path.lstat()
            state[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            state[str(path)] = None
    user = subprocess.run(["getent", "passwd", "sticky-agent"], capture_output=True, text=True)
    state["user"] = user.stdout
    return state


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        cwd="/",
    )


def test_dry_run_prints_every_action_and_changes_nothing() -> None:
    before = snapshot()
    result = dry_run()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "dry run: printing every action, changing nothing" in out
    actions = [line for line in out.splitlines() if line.startswith("[dry-run] ")]
    assert actions, out
    text = "\n".join(actions)
    expected = [
        "install -d -m 0750 -o sticky-agent -g sticky-agent /var/lib/sticky-agent",
        "install -d -m 0755 -o root -g root /etc/sticky-agent",
        "python -m pip install --disable-pip-version-check --no-cache-dir --upgrade --upgrade-strategy "
        f"only-if-needed --constraint /opt/sticky-agent/apt-constraints.txt {REPO}",
        "write /opt/sticky-agent/apt-constraints.txt",
        "check that numpy cv2 simplejpeg picamera2 come from apt, not from /opt/sticky-agent/venv",
        f"install -m 0644 -o root -g root {REPO}/systemd/sticky-agent.service "
        "/etc/systemd/system/sticky-agent.service",
        "systemctl daemon-reload",
        "systemctl enable",
    ]
    if "user sticky-agent: creating" in out:
        expected.append("useradd --system --user-group --groups video,gpio,i2c,spi")
    if not Path("/etc/sticky-agent/agent.toml").exists():
        expected.append(f"install -m 0644 -o root -g root {REPO}/config/pi.toml /etc/sticky-agent/agent.toml")
    for line in expected:
        assert line in text, f"{line!r} not among the printed actions:\n{out}"
    if not Path("/opt/sticky-agent/venv").exists():
        assert "python3 -m venv --system-site-packages /opt/sticky-agent/venv" in text
    if "apt packages: installing" in out:
        assert "apt-get install -y --no-install-recommends" in text
    else:
        assert "apt packages: all installed" in out
    if not Path("/etc/sticky-agent/api-credentials").exists():
        # no terminal and no --api-user: an empty root-only placeholder (LoadCredential= needs it)
        assert "install -m 0600 -o root -g root /dev/null /etc/sticky-agent/api-credentials" in text
    assert snapshot() == before


def test_dry_run_never_prints_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-Passw0rd\n")
    result = dry_run("--api-user", "trap-07", "--api-password-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    if not Path("/etc/sticky-agent/api-credentials").exists():
        assert "write /etc/sticky-agent/api-credentials (root:root 0600): API user trap-07" in result.stdout


def test_bad_options_are_refused() -> None:
    result = dry_run("--bogus")
    assert result.returncode == 1 and "unknown option: --bogus" in result.stderr
    result = dry_run("--api-password-file", "/nonexistent")
    assert result.returncode == 1 and "--api-password-file needs --api-user" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="writing a root:root file needs root")
def test_credentials_are_written_root_only_and_kept(tmp_path: Path) -> None:
    cred = tmp_path / "api-credentials"
    script = (
        f"source {SCRIPT}; CONF_DIR={tmp_path}; CRED_FILE={cred}; "
        "write_credentials trap-07 'pa ss:word'; install_credentials"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert cred.read_text() == "trap-07:pa ss:word\n"
    st = cred.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0 and st.st_gid == 0
    assert "exist, kept" in result.stdout and "pa ss" not in result.stdout
    assert list(tmp_path.iterdir()) == [cred]  # no temporary file left behind


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck); script not linted")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pip_package_shadowing_apt_is_refused(tmp_path: Path) -> None:
    """The venv check after pip: apt's modules pass, a numpy inside the venv fails the install."""
    system_python = Path("/usr/bin/python3")
    venv = tmp_path / "venv"
    made = subprocess.run(
        [str(system_python), "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv with {system_python}: {made.stderr.strip()}")
    check = f"source {SCRIPT}; VENV={venv}; check_apt_modules"
    clean = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "come from apt, not from the virtualenv" in clean.stdout
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "numpy").mkdir()
    (site / "numpy" / "__init__.py").write_text("")  # what a pip numpy wheel would put there
    shadowed = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=120)
    assert shadowed.returncode == 1
    assert (
        f"pip installed into {venv} what apt must provide: numpy ({site}/numpy/__init__.py)"
        in shadowed.stderr
    )
