# Type stub of the compiled skipper (_avroskip.c; see projection.py).
def field_offsets(body: bytes, program: bytes, root: int) -> list[int]:
    """Offsets of the top-level fields of ``body`` and its end; raises ValueError on corrupt data."""
