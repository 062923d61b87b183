"""The trap's identity: its device id.

A Sticky Pi's id is the last 8 hex digits of the Raspberry Pi's CPU serial
(``Serial`` in ``/proc/cpuinfo``, also ``/sys/firmware/devicetree/base/serial-number``),
unless the configuration sets one.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.capture.naming import DEVICE_ID_RE
from agent.errors import DeviceIdError

CPUINFO = Path("/proc/cpuinfo")
DT_SERIAL = Path("/sys/firmware/devicetree/base/serial-number")
_SERIAL_RE = re.compile(r"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", re.MULTILINE)


def cpu_serial(cpuinfo: Path = CPUINFO, dt_serial: Path = DT_SERIAL) -> str | None:
    """Return the CPU serial in lower case, or None if neither source has one."""
    try:
        m = _SERIAL_RE.search(cpuinfo.read_text(errors="replace"))
        if m:
            return m.group(1).lower()
    except OSError:
        pass
    try:
        raw = dt_serial.read_bytes().rstrip(b"\0\n").decode("ascii", "replace").strip()
        if raw and all(c in "0123456789abcdefABCDEF" for c in raw):
            return raw.lower()
    except OSError:
        pass
    return None


def device_id(configured: str | None, cpuinfo: Path = CPUINFO, dt_serial: Path = DT_SERIAL) -> str:
    """Given the configured id (or None), return the device id.

    Raise DeviceIdError if none is configured and the CPU serial is missing, too
    short or all zeros (as on some boards and every laptop).
    """
    if configured is not None:
        if not DEVICE_ID_RE.match(configured):
            raise DeviceIdError(f"device.id must be 8 lower-case hex digits, got {configured!r}")
        return configured
    serial = cpu_serial(cpuinfo, dt_serial)
    if serial is None or len(serial) < 8 or int(serial, 16) == 0:
        raise DeviceIdError(
            "no CPU serial number found (not a Raspberry Pi?); set [device] id = "
            '"<8 lower-case hex digits>" in the configuration'
        )
    return serial[-8:]
