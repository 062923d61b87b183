"""A sink's secret: ``username:password`` (or one token) from a file named in config, or systemd.

With ``credentials = "<path>"`` in the sink's table the file is read and refused if other
users can read it. Without it, ``$CREDENTIALS_DIRECTORY/<credential_name>`` is read (systemd's
``LoadCredential=``, which makes such files private to the service). The secret is kept out
of ``repr`` so it cannot leak into a log line or an exception message; it never goes in the
config file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agent.errors import CredentialsError
from agent.sinks.base import SinkSettings

S = TypeVar("S", bound=SinkSettings)

#: A ``username:password`` line is short; anything longer is not a credentials file.
MAX_CREDENTIALS_BYTES = 4096


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.username}:<hidden>"


def credentials_path(config: SinkSettings, environ: Mapping[str, str] | None = None) -> Path:
    """Given a sink's settings, return where its credentials are read from.

    Raise CredentialsError if neither a file nor ``$CREDENTIALS_DIRECTORY`` is given.
    """
    environ = os.environ if environ is None else environ
    if config.credentials is not None:
        return config.credentials
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        return Path(directory) / config.credential_name
    raise CredentialsError(
        f'no credentials for {config.section}: set credentials = "<file>" in its table or run '
        f"under systemd with LoadCredential={config.credential_name}:<file>"
    )


def read_secret_line(config: SinkSettings, environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """Given a sink's settings, return its credentials file and the one line it holds.

    Raise CredentialsError if the file is missing, not a regular file (a FIFO or a device
    would hang or never end), over 4 kB, not UTF-8, readable or writable by others, or not
    one line. The message never contains the secret.
    """
    path = credentials_path(config, environ)
    try:
        # O_NONBLOCK: a FIFO must not hang the open; only a regular file is then read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CredentialsError(f"no credentials file at {path}") from None
    except OSError as e:
        raise CredentialsError(f"cannot read the credentials file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError(f"the credentials file {path} is not a regular file")
        if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise CredentialsError(
                f"the credentials file {path} is readable or writable by every user "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
            )
        data = os.read(fd, MAX_CREDENTIALS_BYTES + 1)
    except OSError as e:
        raise CredentialsError(f"cannot read the credentials file {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIALS_BYTES:
        raise CredentialsError(f"the credentials file {path} is over {MAX_CREDENTIALS_BYTES} bytes")
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CredentialsError(f"the credentials file {path} is not UTF-8 text") from None
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if any(not ch.isprintable() for line in lines for ch in line):
        raise CredentialsError(f"the credentials file {path} holds control characters")
    if len(lines) != 1:
        raise CredentialsError(f"the credentials file {path} must hold one line")
    return path, lines[0]


def load_credentials(config: SinkSettings, environ: Mapping[str, str] | None = None) -> Credentials:
    """Given a sink's settings, return its ``username:password`` credentials (for the data lake:
    ``api_key:secret``). Raise CredentialsError as :func:`read_secret_line` does, or if the line
    is not ``username:password``. The message never contains the password."""
    path, line = read_secret_line(config, environ)
    if ":" not in line:
        raise CredentialsError(f"the credentials file {path} must hold one line username:password")
    username, _, password = line.partition(":")
    if not username or not password:
        raise CredentialsError(f"the credentials file {path} has an empty username or password")
    return Credentials(username, password)


def load_token(config: SinkSettings, environ: Mapping[str, str] | None = None) -> Secret:
    """Given a sink's settings, return its API token (one line, no spaces). Raise
    CredentialsError as :func:`read_secret_line` does, or if the line holds a space or a colon."""
    path, line = read_secret_line(config, environ)
    if any(ch.isspace() for ch in line) or ":" in line:
        raise CredentialsError(f"the credentials file {path} must hold one token (no spaces or colons)")
    return Secret(line)


@dataclass(frozen=True)
class Secret:
    """A token, kept out of ``repr`` and ``str``."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "<hidden>"


#: Where the systemd unit's ``LoadCredential=`` lines read each sink's secret from.
UNIT_CREDENTIALS_DIR = Path("/etc/sticky-agent")


def unit_credentials(credential_name: str) -> Path:
    """Given a credential's name, return the file the systemd unit loads it from
    (``sticky-api`` keeps its historical ``api-credentials``)."""
    return UNIT_CREDENTIALS_DIR / ("api-credentials" if credential_name == "sticky-api" else credential_name)


def with_unit_credentials(settings: S, environ: Mapping[str, str] | None = None) -> S:
    """Given a sink's settings, return them with the credentials file the systemd unit loads
    when neither a ``credentials`` key nor ``$CREDENTIALS_DIRECTORY`` names one (a command run
    outside the service, e.g. by a technician with sudo)."""
    env = os.environ if environ is None else environ
    if settings.credentials is None and not env.get("CREDENTIALS_DIRECTORY"):
        return settings.model_copy(update={"credentials": unit_credentials(settings.credential_name)})
    return settings
