"""The exception tree of sticky-agent.

Every error the agent raises on purpose derives from :class:`StickyAgentError`, so
the CLI can print ``stickyctl: error: <message>`` for any of them and the
scheduler can log-and-count a failed capture without catching unrelated bugs.
Messages say what went wrong and, where there is one, how to fix it.
"""

from __future__ import annotations


class StickyAgentError(Exception):
    """Root of every error sticky-agent raises on purpose."""


class ConfigError(StickyAgentError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists every problem found, each as ``"<key.path>: <reason>"``.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        if self.problems:
            message = message + "\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(message)


class DeviceIdError(StickyAgentError):
    """No usable device id: no CPU serial found and none configured, or a malformed one."""


class HardwareError(StickyAgentError):
    """A hardware backend (camera, flash, sensors) failed or is unavailable."""


class CameraError(HardwareError):
    """The camera could not be opened or did not deliver a frame."""


class FlashError(HardwareError):
    """The flash could not be driven."""


class SensorError(HardwareError):
    """An environment sensor could not be read (captures go on with unknown values)."""


class ClockError(StickyAgentError):
    """The system clock cannot be trusted for an image's identity (e.g. it reads 1970)."""


class ImageFormatError(StickyAgentError):
    """A file name or EXIF record does not follow the Sticky Pi image format."""


class StorageError(StickyAgentError):
    """Writing an image, a thumbnail or the queue database failed (disk full, I/O error)."""


class DiskFullError(StorageError):
    """Too little free disk to write an image safely, and nothing may be deleted to make room."""


class QueueError(StorageError):
    """The SQLite queue is unusable: locked, corrupted, or of a newer schema than this agent."""


class QueueFullError(QueueError, DiskFullError):
    """The queue database cannot grow: the disk (or SQLite's page limit) is full."""


class DuplicateImageError(QueueError):
    """The queue already has an image with this device and second, or at this path."""


class CaptureBusyError(StickyAgentError):
    """Another capture holds the capture lock and did not release it in time."""


class CredentialsError(ConfigError):
    """The API credentials are missing, malformed, or readable by other users."""


class SyncError(StickyAgentError):
    """Talking to a remote sink failed. Subclasses say whether to retry, back off, or stop."""


class SinkUnreachable(SyncError):
    """The remote could not be reached or is overloaded (timeouts, resets, 429/502/503/504).

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkProtocolError(SinkUnreachable):
    """The remote answered, but not as the API does: a body that is not JSON or of the wrong
    shape, a redirect, an answer over the size limit, a token that cannot be used.

    Such a remote is not the API we sync with (a captive portal, a proxy, a wrong URL, a broken
    or hostile server), so the worker treats it like an unreachable API: it backs off and
    probes again, and no image is counted as refused. The message names the route and what was
    wrong, never the body.
    """


class SinkAuthError(SyncError):
    """The remote refused the credentials (401 even after a fresh token)."""


class SinkForbidden(SyncError):
    """The account may not do this (403: e.g. a read-only user uploading)."""


class SinkRejected(SyncError):
    """The remote refused one request (the Sticky Pi API answers every failure with a 500).

    The client cannot tell why: it must ask the server what it now holds.
    """


def describe_unexpected(error: BaseException, limit: int = 200) -> str:
    """Given an exception that is not one of ours, return one short line naming it
    (``KeyError: 'md5'``), cut to ``limit`` characters, for a log line or a CLI error."""
    text = " ".join(str(error).split())
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
