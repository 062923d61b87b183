"""Make a running DevServer sick the way the real server gets sick: one of its operations fails,
and the server answers that route with its 500 HTML page (its database or storage is down)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.devserver.store import StoreError


def answer_500(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, why: str = "database down"
) -> None:
    """Make ``target.name`` (e.g. ``server.app``/``"get_token"``, ``server.app.store``/
    ``"put_image"``) raise the StoreError the devserver answers with a 500; ``monkeypatch.undo()``
    heals it."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError(why)

    monkeypatch.setattr(target, name, broken)
