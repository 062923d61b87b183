"""HMAC-SHA256 signatures of the devserver's tokens and download URLs, with the data folder's
secret (``secret.key``, 0600, made on the first run)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from agent.devserver.values import StoreError


class Signer:
    """HMAC-SHA256 signatures of tokens and download URLs with the data folder's secret."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, message: str) -> str:
        """Given a message, return its hex signature."""
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def check(self, message: str, signature: str) -> bool:
        """Given a message and a claimed signature, return whether the signature is right."""
        return hmac.compare_digest(self.sign(message), signature)

    def make_token(self, user: str, expiration: int) -> str:
        """Given a user name and an expiration (unix seconds), return an opaque signed token."""
        name = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
        signature = self.sign(f"token\n{user}\n{expiration}")
        return f"{name}.{expiration}.{signature}"

    def token_user(self, token: str, now: float) -> str | None:
        """Given a token and the time, return its user's name, or None if it is forged or expired."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        try:
            user = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not self.check(f"token\n{user}\n{parts[1]}", parts[2]) or int(parts[1]) <= now:
            return None
        return user


def load_secret(path: Path) -> bytes:
    """Given the secret file's path, return its key, creating it (0600) on the first run."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise StoreError(f"{path} holds a key of {len(key)} bytes; delete it to make a new one")
    return key
