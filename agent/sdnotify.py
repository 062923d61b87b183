"""A tiny ``sd_notify(3)`` client: tell systemd we are ready, alive, or stopping. No dependency.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace) and waits for ``READY=1``; with ``WatchdogSec=`` it also sets ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``) and restarts the service unless ``WATCHDOG=1`` arrives within that
period. Outside systemd (a laptop, the tests without a socket) every call is a no-op, and a
notification that cannot be sent is logged, never raised: it must not take the agent down.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"


def socket_address(value: str | None) -> str | None:
    """Given ``$NOTIFY_SOCKET``, return the address to send to (``@x`` -> ``\\0x``), or None."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: neither an absolute path nor an @abstract name", value)
    return None


class Notifier:
    """Sends notifications to one systemd notification socket (or nowhere)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        return cls(socket_address(environ.get(NOTIFY_SOCKET_ENV)))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send ``state`` (``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=..."``, newline-separated
        assignments). Return True if it was sent, False if there is no socket or sending failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode("utf-8", "replace"), self.address)
        except OSError as e:
            log.warning("could not notify systemd (%s): %s", state.split("\n", 1)[0], e)
            self.close()
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification to ``$NOTIFY_SOCKET``; a no-op (False) when it is unset."""
    notifier = Notifier.from_env(environ)
    try:
        return notifier.notify(state)
    finally:
        notifier.close()


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Return how often to send ``WATCHDOG=1``, in seconds: half of ``$WATCHDOG_USEC``.

    None when no watchdog is set, the value is not a positive integer, or ``$WATCHDOG_PID``
    names another process (the watchdog is then not ours to feed).
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(WATCHDOG_USEC_ENV)
    if not raw:
        return None
    wd_pid = environ.get(WATCHDOG_PID_ENV)
    if wd_pid:
        try:
            if int(wd_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1e6 / 2
