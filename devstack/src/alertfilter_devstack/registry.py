"""A read-only schema registry over a folder of ``<id>.avsc`` files (development only).

``python -m alertfilter_devstack.registry --dir DIR --host ADDR --port PORT``

Answers what the runners' schema-registry client asks (the Confluent Schema Registry's
``GET /schemas/ids/<id>``: ``{"schema": "<the schema as a JSON string>"}``; 404 with error code
40403 for an unknown id) and ``GET /healthz``. The local stack listens on the kind network's
gateway so that runner pods reach it, and writes the schemas there as ``alertfilter produce`` sends
alerts (``write_schema_dir``); files are read at each request, so a new schema is served at once.
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_ID_PATH = re.compile(r"^/schemas/ids/(\d+)(?:/schema)?(?:\?.*)?$")


def make_handler(schema_dir: Path) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``schema_dir``."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, object] | str) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"status": "ok"})
                return
            m = _ID_PATH.match(self.path)
            f = schema_dir / f"{m.group(1)}.avsc" if m else None
            if f is None or not f.is_file():
                self._send(404, {"error_code": 40403, "message": "Schema not found"})
                return
            text = f.read_text()
            if self.path.split("?")[0].endswith("/schema"):
                self._send(200, text)
            else:
                self._send(200, {"schema": text})

        def log_message(self, *_: object) -> None:  # quiet: one line per alert batch is noise
            return

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alertfilter_devstack.registry")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer((args.host, args.port), make_handler(args.dir)).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
