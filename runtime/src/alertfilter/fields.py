"""Dotted field paths into alerts, e.g. ``diaSource.visit``."""

from __future__ import annotations

from typing import Any

#: The visit id Rubin alerts carry: the per-visit cap's key (DMTN-102's alert schema).
DEFAULT_VISIT_FIELD = "diaSource.visit"
#: The alert id of Rubin alerts (the top-level ``diaSourceId``), shown in outputs and logs.
DEFAULT_ID_FIELD = "diaSourceId"


class MissingField(KeyError):
    """The alert has no value at ``path`` (a key is absent, or a record on the way is null)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(path)

    def __str__(self) -> str:
        return f"alert has no field {self.path!r}"


def parse_path(path: str) -> tuple[str, ...]:
    """Split ``"a.b.c"`` into ``("a", "b", "c")``.

    Raises:
        ValueError: for an empty path or an empty component.
    """
    parts = tuple(path.split("."))
    if not path or any(not p for p in parts):
        raise ValueError(f"invalid field path {path!r}: expected dotted names such as diaSource.visit")
    return parts


def get_field(alert: Any, parts: tuple[str, ...], allow_null: bool = False) -> Any:
    """The value at ``parts`` in ``alert``.

    Raises:
        MissingField: when a key is absent, a container on the way is not a dict, or the value is
            null and ``allow_null`` is False.
    """
    value = alert
    for p in parts:
        if not isinstance(value, dict) or p not in value:
            raise MissingField(".".join(parts))
        value = value[p]
        if value is None and not allow_null:
            raise MissingField(".".join(parts))
    return value
