"""Run astronomers' Python filters against a survey's Kafka alert stream.

Public API for filter authors:

- :class:`AlertFilter`: base class; override ``filter(self, alert) -> bool``.
- :func:`load_filter`: compile filter source held in a string into a callable.
- :func:`check_source`: the same rules checked without running the source (the operator's check).
- :class:`FilterSourceError`: what both raise, with ``line``, ``column`` and ``message``.
"""

from .api import AlertFilter, FilterSourceError, LoadedFilter, SourceCheck, check_source, load_filter

__all__ = ["AlertFilter", "FilterSourceError", "LoadedFilter", "SourceCheck", "check_source", "load_filter"]
__version__ = "0.1.0"
