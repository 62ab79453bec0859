"""Run inside an image (``python -I /probe/probe_filterproc.py FILTER ALERTS [MEMORY_LIMIT]``): start the
filter process as ``alertfilter run`` does (its sandbox: no capabilities, the seccomp filter, the
address-space limit), load FILTER, filter the alerts of the container file ALERTS, and print one JSON
object: how long loading took, the outcomes, and the filter process's HOME.

A script rather than a command of the image, so that the tests ask the image nothing it does not
ship for every runner.
"""

from __future__ import annotations

import json
import sys
import time

from fastavro import reader, writer

from alertfilter.decoding import DecodingSpec
from alertfilter.filterspec import FilterLoadError, FilterSpec
from alertfilter.supervisor import FilterProcess


def alert_values(path: str) -> list[bytes]:
    """Each alert of a container file as a one-record container file (the ``container`` format)."""
    import io

    out = []
    with open(path, "rb") as fh:
        r = reader(fh)
        schema = r.writer_schema
        for rec in r:
            buf = io.BytesIO()
            writer(buf, schema, [rec])
            out.append(buf.getvalue())
    return out


def main() -> int:
    filter_path, alerts_path = sys.argv[1], sys.argv[2]
    memory = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    with open(filter_path, encoding="utf-8") as fh:
        source = fh.read()
    spec = FilterSpec(
        source, None, DecodingSpec("container"), "diaSource.ccdVisitId", "alertId", 10.0, memory_limit_bytes=memory
    )
    fp = FilterProcess(spec, hard_timeout_s=60.0, start_timeout_s=120.0)
    began = time.monotonic()
    try:
        ready = fp.start()
    except FilterLoadError as exc:
        print(json.dumps({"load_error": {"line": exc.line, "column": exc.column, "message": exc.message}}))
        return 0
    loaded = time.monotonic() - began
    home = getattr(fp, "_home", None)  # what the probe reports
    outcomes = list(fp.verdicts(alert_values(alerts_path)))
    fp.close()
    print(
        json.dumps(
            {
                "name": ready.name,
                "load_seconds": round(loaded, 3),
                "home": home,
                "outcomes": [{"kind": str(o.kind), "reason": str(o.reason), "message": o.message} for o in outcomes],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
