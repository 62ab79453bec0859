"""Small readers for the tests' assertions."""

from __future__ import annotations

from typing import Any


def env_dict(env: list[dict[str, Any]]) -> dict[str, Any]:
    """A container's env list as ``{name: value}`` (``valueFrom`` when it has no value)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}
