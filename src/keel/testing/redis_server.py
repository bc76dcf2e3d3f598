"""A throwaway ``redis-server`` on loopback (Debian's package; ``make install-dev`` installs it):
for tests and benchmarks of the Redis ledger. Nothing is saved to disk.

    with RedisServer() as redis:
        settings = ... f"ledger: {{backend: redis, redis_url: '{redis.url}'}}"
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise RuntimeError(
                "redis-server is not installed: `make install-dev` installs Debian's redis-server "
                "(or: apt-get install -y redis-server)"
            )
        self.binary = found
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="keel-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self._dir.name, "--protected-mode", "yes"]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                said = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"redis-server exited: {said}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()
