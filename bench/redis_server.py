"""A private `redis-server` (Debian's) on a free port, no persistence, for the session store bench and tests.

`RedisServer()` starts one (`--save '' --appendonly no`) and returns once its log says it accepts connections and
a PING answers (no polling, no sleep); `stop()` ends it, `start()` brings it back on the same port, empty.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import redis

READY = "Ready to accept connections"
START_TIMEOUT_S = 30.0  # a safety net against a hung start


def redis_binary() -> str | None:
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self) -> None:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (make deploy-deps installs Debian's package)")
        self._binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        argv = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--loglevel", "notice"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        for line in self.process.stdout:  # blocks on the log: no polling, no sleep
            if READY in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {self.process.wait(START_TIMEOUT_S)} before it was ready")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # the rest of the log, dropped
        with self.client() as client:
            client.ping()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(START_TIMEOUT_S)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
