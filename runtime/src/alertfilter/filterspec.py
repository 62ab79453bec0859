"""What the filter process is asked to run (:class:`FilterSpec`), what it says once ready
(:class:`Ready`), and the errors of starting it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .decoding import DecodingSpec


class FilterLoadError(ValueError):
    """The filter cannot be loaded (the source, its entrypoint, its imports, the decoding options).

    Attributes:
        line, column: where in the source (0 when it is not the source's fault); message: why.
    """

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class FilterProcessError(RuntimeError):
    """The filter process could not be started or ended before saying it was ready."""


@dataclass(frozen=True)
class FilterSpec:
    """What the filter process needs: JSON-compatible, and never a Kafka setting.

    Attributes:
        source: the filter's Python source; entrypoint: the class or function to use, or None.
        decoding: the decoding options; fields: ``--fields`` (``auto``, ``all`` or a list).
        visit_field, id_field: dotted paths; filter_timeout_s: the per-call budget, s (0: none).
        memory_limit_bytes: the process's address-space limit, bytes (0: none).
        log_format, log_level: as the runner's.
    """

    source: str
    entrypoint: str | None
    decoding: DecodingSpec
    visit_field: str
    id_field: str
    filter_timeout_s: float
    fields: str = "auto"
    memory_limit_bytes: int = 0
    log_format: str = "text"
    log_level: str = "info"

    def config(self) -> dict[str, Any]:
        """The ``C`` frame's content."""
        out = asdict(self)
        out["decoding"] = asdict(self.decoding)
        return out


@dataclass
class Ready:
    """What the filter process said once the filter was loaded: its name, the top-level fields it
    decodes (None: all) and whether that decoding is projected."""

    name: str
    fields: list[str] | None = None
    projected: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
