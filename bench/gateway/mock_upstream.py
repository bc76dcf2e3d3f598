"""A minimal OpenAI-compatible upstream for the gateway bench (Keel's fault server, no faults)."""

from __future__ import annotations

import argparse
import asyncio

from keel.testing.fault_server import FaultServer

REPLY = " ".join(["token"] * 40)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=40)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = FaultServer(reply=" ".join(["token"] * args.words), port=args.port)
    asyncio.run(server.serve_forever())


if __name__ == "__main__":
    main()
