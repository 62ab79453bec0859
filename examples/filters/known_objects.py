"""Sources on objects already seen more than once.

Written carelessly on purpose for the demo: it reads ``diaObject["nDiaSources"]`` without checking
that ``diaObject`` is present, so it raises TypeError on alerts without an associated object
(solar-system sources). The runner counts each such alert as an error, sends it to the filter's
dead-letter topic with the exception in its headers, and carries on.
"""

from alertfilter import AlertFilter


class KnownObjects(AlertFilter):
    def filter(self, alert):
        return alert["diaObject"]["nDiaSources"] > 1
