"""Who may use the page: a password for anything but loopback, and CSRF tokens on every action.

The password comes from a file with one line ``username:password`` (mode 600), like the API's
credentials: ``[web] password_file``, else ``$CREDENTIALS_DIRECTORY/sticky-web`` (systemd
``LoadCredential=``). It is checked with HTTP Basic authentication on every request, so a
Prometheus server can scrape ``/metrics`` with ``basic_auth``. It never appears in a page, a
log line or an error message.

Every action (capture now, flash, lens, preview start/stop) is a ``POST`` carrying the CSRF
token of this agent process (an ``X-CSRF-Token`` header from the page's script, or a
``csrf`` form field) and, when the browser sends one, an ``Origin`` of this very page: a
page on another site cannot make the trap act, even with the technician's saved password.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import CredentialsError
from agent.sinks.credentials import Credentials
from agent.web.settings import WebConfig


@dataclass(frozen=True)
class WebPassword(Credentials):
    """The page's ``username:password`` (the password never in ``repr`` or ``str``)."""

    def accepts(self, authorization: str | None) -> bool:
        """Given an ``Authorization`` header, return True if it carries these credentials."""
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        ok_user = hmac.compare_digest(user.encode(), self.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


def password_path(config: WebConfig, environ: Mapping[str, str] | None = None) -> Path | None:
    """Given ``[web]``, return the password file to read, or None if none is configured."""
    environ = os.environ if environ is None else environ
    if config.password_file is not None:
        return config.password_file
    directory = environ.get("CREDENTIALS_DIRECTORY")
    return Path(directory) / config.credential_name if directory else None


def load_password(config: WebConfig, environ: Mapping[str, str] | None = None) -> WebPassword | None:
    """Given ``[web]``, return the page's credentials, or None when none are set and the page
    is bound to loopback.

    Raise CredentialsError if the page is bound to another address without a usable password
    file, or if a password file is readable by others or not one line ``username:password``.
    """
    path = password_path(config, environ)
    if path is not None and not path.exists() and config.password_file is None:
        path = None  # $CREDENTIALS_DIRECTORY without our credential: as if unset
    if path is None:
        if config.loopback:
            return None
        raise CredentialsError(
            f"[web] bind = {config.bind!r} makes the page reachable from the network, so it needs a "
            'password: set [web] password_file = "<file with username:password, chmod 600>" or run '
            f"under systemd with LoadCredential={config.credential_name}:<file>; or bind to 127.0.0.1"
        )
    try:
        st = path.stat()
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"[web] no password file at {path}") from None
    except OSError as e:
        raise CredentialsError(f"[web] cannot read the password file {path}: {e.strerror}") from None
    if st.st_mode & 0o006:
        raise CredentialsError(
            f"[web] the password file {path} is readable by others (mode {st.st_mode & 0o777:o}); "
            f"run: chmod 600 {path}"
        )
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if not lines and config.loopback:
        return None  # an empty credential (install.sh's placeholder) on loopback: no password
    if len(lines) != 1 or ":" not in lines[0]:
        raise CredentialsError(f"[web] the password file {path} must hold one line username:password")
    username, _, password = lines[0].partition(":")
    if not username or len(password) < 8:
        raise CredentialsError(
            f"[web] the password file {path} needs a username and a password of at least 8 characters"
        )
    return WebPassword(username, password)


class Csrf:
    """The CSRF token of this agent process, and the check every POST passes."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)

    def check(self, sent: str | None, origin: str | None, host: str | None) -> bool:
        """Given the token a POST carried, its ``Origin`` and ``Host`` headers, return True if
        the POST comes from this page."""
        if not sent or not hmac.compare_digest(sent.encode(), self.token.encode()):
            return False
        if origin and origin != "null":
            return urlsplit(origin).netloc == (host or "")
        return True
