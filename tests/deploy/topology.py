"""The docker-compose topology without containers: `python -m service` replicas and nginx from deploy/nginx.conf.

Replicas bind port 0 and report their ports in their start-up log, which a reader thread follows (so nothing
polls and no port is guessed); readiness is the grpc.health.v1 `Watch` stream reaching SERVING. The balancer runs
the repository's own `deploy/nginx.conf` (linked, not copied) with this topology's two include files beside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import SERVER_PORTS, LogWatcher
from seqserve_client.security import PLAIN, Security
from tests.service.grpc.certs import Certs

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
WEB_CONF = REPO_ROOT / "deploy" / "balancer-compose" / "web.conf"  # the web front's server, WebSocket upgrades
START_TIMEOUT_S = 120.0
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def wait_serving(target: str, timeout: float = START_TIMEOUT_S, security: Security = PLAIN) -> None:
    """Block until `target`'s health service says SERVING (raises grpc.RpcError on timeout)."""
    with security.channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True
        )
        for reply in watch:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                return


class Replica:
    """One `python -m service` process on free ports, serving `models` on CPU."""

    def __init__(self, models: Path, *extra_args: str, security: Security = PLAIN) -> None:
        argv = [sys.executable, "-m", "service", "--models", str(models), "--host", "127.0.0.1", "--port", "0",
                "--http-port", "0", "--metrics-port", "0", "--device", "cpu", "--intra-op-threads", "1", *extra_args]
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env={**os.environ, **SINGLE_THREADED}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._log = LogWatcher(self.process.stderr, SERVER_PORTS)  # type: ignore[arg-type]
        self._log.start()
        self.port = int(self._log.found["port"].result(START_TIMEOUT_S))
        self.metrics_port = int(self._log.found["metrics"].result(START_TIMEOUT_S))
        self.target = f"127.0.0.1:{self.port}"
        self.http_target = f"127.0.0.1:{self._log.found['http'].result(START_TIMEOUT_S)}"
        wait_serving(self.target, security=security)

    def active_sessions(self) -> float:
        """Sum of the `seqserve_active_sessions` gauge over models, read from this replica's /metrics."""
        return self.metric_sum("seqserve_active_sessions{")

    def requests_served(self) -> float:
        """Sum of `seqserve_requests_total` over models and codes."""
        return self.metric_sum("seqserve_requests_total{")

    def metric_sum(self, prefix: str) -> float:
        """The sum of every sample on this replica's /metrics whose line starts with `prefix`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send `sig` and wait for the process to end; returns its exit code."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGKILL)
        self._log.join(timeout=10)
        self.process.stderr.close()  # type: ignore[union-attr]


class Balancer:
    """nginx with the repository's deploy/nginx.conf, listening on a free local port, in front of `upstreams`;
    with `certs`, TLS on both sides (its client certificate towards the replicas, for mTLS)."""

    def __init__(self, workdir: Path, upstreams: list[str], binary: str, certs: Certs | None = None,
                 web: list[str] | None = None) -> None:
        conf_dir = workdir / "nginx"
        (conf_dir / "seqserve").mkdir(parents=True)
        (conf_dir / "nginx.conf").symlink_to(NGINX_CONF)
        self.port = _free_port()
        self.target = f"127.0.0.1:{self.port}"
        if certs is None:
            (conf_dir / "seqserve" / "listen.conf").write_text(f"listen {self.target} http2;\n")
            (conf_dir / "seqserve" / "pass.conf").write_text("grpc_pass grpc://seqserve;\n")
        else:
            (conf_dir / "seqserve" / "listen.conf").write_text(
                f"listen {self.target} ssl http2;\nssl_certificate {certs.server_cert};\n"
                f"ssl_certificate_key {certs.server_key};\n"
            )
            (conf_dir / "seqserve" / "pass.conf").write_text(
                f"grpc_pass grpcs://seqserve;\ngrpc_ssl_trusted_certificate {certs.ca};\ngrpc_ssl_verify on;\n"
                f"grpc_ssl_name localhost;\ngrpc_ssl_certificate {certs.client_cert};\n"
                f"grpc_ssl_certificate_key {certs.client_key};\n"
            )
        (conf_dir / "seqserve" / "upstream.conf").write_text(
            "".join(f"server {u} max_fails=1 fail_timeout=5s;\n" for u in upstreams)
        )
        self.http_target = None
        if web is not None:  # the repository's web front server, on a free port in front of these HTTP ports
            self.http_target = f"127.0.0.1:{_free_port()}"
            servers = "".join(f"    server {u} max_fails=1 fail_timeout=5s;\n" for u in web)
            conf = WEB_CONF.read_text().replace("listen 8000;", f"listen {self.http_target};")
            conf = conf.replace("    server seqserve:8000 max_fails=1 fail_timeout=5s;\n", servers)
            (conf_dir / "seqserve" / "web.conf").write_text(conf)
        argv = [binary, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", "stderr",
                "-g", f"daemon off; pid {conf_dir / 'nginx.pid'};"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self._log = LogWatcher(self.process.stderr, {})
        self._log.start()
        wait_serving(self.target, security=PLAIN if certs is None else Security(ca=certs.ca))

    @property
    def log(self) -> str:
        return "".join(self._log.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.join(timeout=10)
        self.process.stderr.close()  # type: ignore[union-attr]


@contextmanager
def vanished(port: int) -> Iterator[None]:
    """While open, connects to local `port` (a killed replica's) time out instead of being refused, as they do to
    the address of a killed container, whose network interface went with it: nothing answers the SYN.

    A listener with a backlog of 0 whose one queue place is taken by a connection nobody accepts: the kernel drops
    every later SYN (the connecting side retransmits until its own timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(0)
        with socket.create_connection(("127.0.0.1", port)):
            yield


def _free_port() -> int:
    """A port nothing listens on now (nginx cannot bind port 0 and report it like the replicas do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
