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


class QueueError(StorageError):
    """The SQLite queue is unusable: locked, corrupted, or of a newer schema than this agent."""


class CaptureBusyError(StickyAgentError):
    """Another capture holds the capture lock and did not release it in time."""
