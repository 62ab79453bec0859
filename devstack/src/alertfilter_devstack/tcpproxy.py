"""A TCP forwarder: the Strimzi stand-in's "broker pod" (development only).

``python tcpproxy.py LISTEN_PORT TARGET_HOST TARGET_PORT``

The local stack's Kafka brokers run on the host. For runner pods to reach the pool's broker the way
they reach a Strimzi broker (a pod labelled ``strimzi.io/cluster=<name>``, ``strimzi.io/kind=Kafka``
behind ``<name>-kafka-bootstrap:9092``, which the runners' NetworkPolicy allows), the stand-in runs
this script in such a pod; it forwards every connection to the broker's listener on the kind
network's gateway. That listener advertises the bootstrap Service's name, so every later
connection comes through here too. Standard library only: it runs in the runner image.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_port: int, host: str, port: int) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection(host, port)
        except OSError as exc:
            print(f"tcpproxy: cannot reach {host}:{port}: {exc}", file=sys.stderr, flush=True)
            w.close()
            return
        await asyncio.gather(_pipe(r, tw), _pipe(tr, w))

    server = await asyncio.start_server(handle, "0.0.0.0", listen_port)
    print(f"tcpproxy: :{listen_port} -> {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
