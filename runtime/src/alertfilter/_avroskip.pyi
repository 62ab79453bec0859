# Type stub of the compiled skipper (_avroskip.c; see projection.py and history.py).
from typing import Any, overload

@overload
def field_offsets(body: bytes | memoryview, program: bytes, root: int) -> list[int]:
    """Offsets of the top-level fields of ``body`` and its end; raises ValueError on corrupt data."""

@overload
def field_offsets(
    body: bytes | memoryview, program: bytes, root: int, plans: dict[int, tuple[tuple[int, str], ...]]
) -> tuple[list[int], dict[int, list[dict[str, Any]] | None]]:
    """The offsets, and the records of the planned arrays read in the same walk (as :func:`items`)."""

def items(
    body: bytes | memoryview, program: bytes, node: int, wanted: tuple[tuple[int, str], ...]
) -> list[dict[str, Any]] | None:
    """The wanted ``(field index, key)`` scalar fields of each record of the array at ``node``
    (None: a null value); ValueError on corrupt data, TypeError for a field that is no scalar."""

def columns(
    body: bytes | memoryview, program: bytes, node: int, wanted: tuple[int, ...], kinds: tuple[int, ...]
) -> tuple[int, tuple[Any, ...]]:
    """``(n, columns)``: per wanted field index, ``(data, mask)`` bytes or a list (see _avroskip.c)."""
