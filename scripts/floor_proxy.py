"""The floor of a Trio relay: a TCP proxy that copies bytes both ways, nothing else.

``scripts/bench.py`` runs it pinned like the gateway, in front of the same
fake upstream, so that the gateway's CPU per relayed chunk has a reference:
what Trio itself costs to receive a chunk on one socket and send it on
another, with no HTTP parsing, no JSON and no ASGI. One upstream connection
per client connection, opened at the accept.

    python scripts/floor_proxy.py --upstream 8001     # prints READY <port>
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from functools import partial

import trio

_READ = 65536


async def _copy(src: trio.SocketStream, dst: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(_READ):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()  # either side ending ends the pair


async def _handle(upstream_port: int, client: trio.SocketStream) -> None:
    async with client:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
        except OSError:
            return
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_copy, client, upstream, nursery.cancel_scope)
            nursery.start_soon(_copy, upstream, client, nursery.cancel_scope)


async def _serve(port: int, upstream_port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
    bound = listeners[0].socket.getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    await trio.serve_listeners(partial(_handle, upstream_port), listeners)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--upstream", type=int, required=True, help="the upstream's port")
    args = parser.parse_args()
    with suppress(KeyboardInterrupt):
        trio.run(_serve, args.port, args.upstream)


if __name__ == "__main__":
    main()
