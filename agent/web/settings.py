"""``[web]``: the trap's own web page (off by default; loopback only unless a password is set)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from agent.settings import Duration, _Section


class WebConfig(_Section):
    """``[web]``: where the page is served, and how the live preview behaves."""

    enabled: bool = False
    #: The address to listen on. Loopback (``127.0.0.1``, ``::1``, ``localhost``) needs no
    #: password; any other address (``0.0.0.0``, the trap's LAN address) requires one.
    bind: str = "127.0.0.1"
    #: The TCP port; 0 picks a free one (tests).
    port: int = Field(default=8080, ge=0, le=65535)
    #: A file with one line ``username:password`` (mode 600). Default:
    #: ``$CREDENTIALS_DIRECTORY/<credential_name>`` (systemd ``LoadCredential=``).
    password_file: Path | None = None
    credential_name: str = "sticky-web"
    #: The live preview stops by itself this long after it was started (nobody stops it in
    #: the field).
    preview_timeout: Duration = 300.0
    #: Width in pixels of the preview frames.
    preview_width: int = Field(default=800, ge=160, le=1920)
    #: Seconds between preview frames.
    preview_interval: float = Field(default=0.5, ge=0.1, le=10)
    #: The preview pauses this long before a scheduled capture (the capture always wins).
    preview_pause_before: Duration = 3.0

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        if v == "localhost":
            return v
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f'must be an IP address like "127.0.0.1" or "0.0.0.0", got "{v}"') from None
        return v

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the page (no password needed)."""
        return self.bind == "localhost" or ipaddress.ip_address(self.bind).is_loopback

    @property
    def url(self) -> str:
        host = self.bind if self.bind not in ("0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"
