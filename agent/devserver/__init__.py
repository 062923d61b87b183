"""``stickyctl devserver``: a local server speaking the Sticky Pi API, for development only.

It answers like the public Sticky Pi server (``../shared/specs/sticky-pi-api.md``), quirks
included: HTTP Basic everywhere, tokens, every route a ``POST``, 500 with an HTML body for every
failed upload, a re-upload overwriting the stored file before the database rejects it. It is for
the README demo, development and the sync tests, never for production: plain HTTP, users and
passwords given on the command line, no rate limits.

Modules: :mod:`.parser` (reads an image the way the server does), :mod:`.values` (datetimes and
column types as the real database holds them), :mod:`.signing` (tokens and download URLs),
:mod:`.store` (SQLite and files under one data folder), :mod:`.wire` (refusals, JSON bodies and
lookup keys), :mod:`.app` (the WSGI application, :class:`~.app.DevServer` and :func:`~.app.serve`).
This module holds only the users and a port check, so importing it stays cheap.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Literal

from agent.errors import StickyAgentError

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
#: The server's ``api_user`` column width.
MAX_USER_NAME = 32


@dataclasses.dataclass(frozen=True)
class User:
    """A devserver account: ``read`` is read-only (``can_write`` false), ``admin`` may delete."""

    name: str
    password: str
    role: Role = "write"

    @property
    def can_write(self) -> bool:
        """Return whether this user may upload images and annotations."""
        return self.role != "read"

    @property
    def is_admin(self) -> bool:
        """Return whether this user may delete images."""
        return self.role == "admin"


def parse_user(spec: str) -> User:
    """Given ``NAME:PASSWORD[:ROLE]``, return the :class:`User`.

    ROLE is ``read``, ``write`` (the default) or ``admin``. The password may contain ``:``; a
    last ``:``-field that is a role name is taken as the role. Raise :class:`ValueError`, with
    a message saying what is wrong and the expected form, if the name or password is empty, the
    name is longer than 32 characters or has spaces, or the spec has no ``:`` at all.
    """
    form = "expected NAME:PASSWORD[:ROLE] with ROLE one of read, write, admin"
    name, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"user {spec!r}: no ':' found; {form}")
    role: Role = "write"
    password, sep, last = rest.rpartition(":")
    if sep and last in ROLES:
        role = last
    else:
        password = rest
    if not name:
        raise ValueError(f"user {spec!r}: empty user name; {form}")
    if len(name) > MAX_USER_NAME or any(c.isspace() for c in name):
        raise ValueError(f"user name {name!r}: at most {MAX_USER_NAME} characters and no spaces; {form}")
    if not password:
        raise ValueError(f"user {name!r}: empty password; {form}")
    return User(name, password, role)


def check_port_free(host: str, port: int) -> None:
    """Given an address, return if a server can listen there; raise StickyAgentError naming it if not."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            sock.bind((host, port))
        except OSError as e:
            raise StickyAgentError(
                f"cannot listen on {host}:{port}: {e.strerror or e} (another program, or another demo, "
                "uses it? stop it, or choose another port with --port)"
            ) from None
