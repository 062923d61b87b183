"""Every command in README.md works as written in a fresh clone.

The README's shell blocks are parsed and each command is checked by kind: ``stickyctl`` commands
run for real (from a copy of ``config/``, so the repository stays clean; ``demo`` and ``run`` are
stopped with Ctrl-C once they work), benchmark scripts answer ``--help``, the install step names
extras that exist and the test command is the one ``.ci/run`` runs. The stickyctl table's commands
and options exist. A command of a new kind fails here until this test knows how to check it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO
from helpers.net import free_port
from test_agent import wait_for_line

README = (REPO / "README.md").read_text()
STICKYCTL = ".venv/bin/stickyctl"
#: Long-running commands: the log line that shows they work, before Ctrl-C.
LONG_RUNNING = {"demo": "started: device", "run": "started: device"}


def readme_commands() -> list[str]:
    """Return the commands of the README's ``sh`` blocks, in order (``&&`` chains split)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            out.extend(c.strip() for c in line.split("&&") if c.strip())
    return out


COMMANDS = readme_commands()
#: Commands for a Raspberry Pi with the agent installed (sudo, systemd): not run here, but what
#: they name is checked against the code (test_the_trap_commands_name_what_the_agent_reads).
ON_THE_TRAP = [c for c in COMMANDS if c.startswith(("sudo ", "echo ", "#   "))]
STICKYCTL_COMMANDS = [c for c in COMMANDS if c.startswith(STICKYCTL + " ")]


def test_the_readme_has_commands_and_each_is_of_a_known_kind() -> None:
    assert len(COMMANDS) >= 10 and STICKYCTL_COMMANDS
    known = ("python3 -m venv .venv", ".venv/bin/pip install ", STICKYCTL + " ", ".venv/bin/python ")
    unknown = [c for c in COMMANDS if not c.startswith(known) and c not in ON_THE_TRAP]
    assert not unknown, f"README commands this test does not check: {unknown}"


def test_install_steps_name_extras_that_exist() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for command in (c for c in COMMANDS if c.startswith(".venv/bin/pip install ")):
        for spec in re.findall(r"'\.\[([a-z,]+)\]'", command):
            assert set(spec.split(",")) <= extras, command
    venvs = [c for c in COMMANDS if c.startswith("python3 -m venv")]
    assert venvs and all(c == "python3 -m venv .venv" for c in venvs)


def test_the_test_command_is_what_ci_runs() -> None:
    (test_command,) = {c for c in COMMANDS if c.startswith(".venv/bin/python -m pytest")}
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.MULTILINE), test_command
    assert "git clone" in ci and "../shared" in ci  # it runs them in a clone with nothing beside it


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/python tests/bench/")])
def test_benchmark_scripts_start(command: str) -> None:
    script = shlex.split(command)[1]
    res = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder laid out like the checkout for the README's relative paths: a copy of ``config/``
    (its demo API on a free port: another demo may hold 8765) and the test fixtures."""
    (tmp_path / "config").mkdir()
    port = free_port()
    for src in (REPO / "config").glob("*.toml"):
        text = src.read_text().replace("127.0.0.1:8765", f"127.0.0.1:{port}")
        (tmp_path / "config" / src.name).write_text(text)
    (tmp_path / "tests").symlink_to(REPO / "tests")
    return tmp_path


def run_as_written(command: str, cwd: Path) -> None:
    """Run a README stickyctl command in ``cwd``; a long-running one until it works, then Ctrl-C."""
    args = shlex.split(command)[1:]
    argv = [sys.executable, "-m", "agent", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
    env["PYTHONPATH"] = str(REPO)  # the package as installed by the README's pip install -e
    sub = next((a for a in args if not a.startswith("-") and not a.endswith(".toml")), "")
    if sub in LONG_RUNNING:
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
        )
        lines: list[str] = []
        try:
            wait_for_line(proc, LONG_RUNNING[sub], lines)
        finally:
            proc.send_signal(signal.SIGINT)
            _, rest = proc.communicate(timeout=120)
        out = "".join(lines) + rest
        assert proc.returncode == 130 and "Traceback" not in out, f"{command}:\n{out}"
        return
    res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert res.returncode == 0, f"{command}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_every_stickyctl_command_works_as_written(sandbox: Path) -> None:
    for command in STICKYCTL_COMMANDS:
        run_as_written(command, sandbox)
    assert list((sandbox / "demo-data").rglob("*.jpg")), "the README's capture wrote no image"


@pytest.mark.parametrize("config", sorted({m for m in re.findall(r"config/[a-z-]+\.toml", README)}))
def test_every_config_the_readme_names_is_valid(config: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "agent", "--config", config, "config", "check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr


def table_commands() -> list[tuple[list[str], list[str]]]:
    """Return the stickyctl table's (command words, options) rows."""
    rows = []
    for cell in re.findall(
        r"^\| `([^`]+)` \|", README.split("## stickyctl", 1)[1].split("\n## ", 1)[0], re.M
    ):
        if cell.startswith("stickyctl"):
            continue
        words = [w for w in cell.split() if re.fullmatch(r"[a-z]+", w)]
        rows.append((words, re.findall(r"--[a-z-]+", cell)))
    return rows


@pytest.mark.parametrize(("words", "options"), table_commands(), ids=lambda v: " ".join(v) or "-")
def test_the_stickyctl_table_matches_the_commands(words: list[str], options: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "agent", *words, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    for option in options:
        assert option in res.stdout, f"stickyctl {' '.join(words)} has no {option}"


def test_the_trap_commands_name_what_the_agent_reads() -> None:
    """The web password set-up names the credential the page reads and a file the unit can load."""
    from agent.web.settings import WebConfig

    loads = [c for c in ON_THE_TRAP if "LoadCredential=" in c]
    assert loads, "the README no longer shows the web password's LoadCredential line"
    name, _, path = loads[0].split("LoadCredential=", 1)[1].partition(":")
    assert name == WebConfig().credential_name
    assert any(path in c and "tee" in c for c in ON_THE_TRAP) and any(
        f"chmod 600 {path}" in c for c in ON_THE_TRAP
    )
