"""`python -m service`: serve every model under `--models` over gRPC, with Prometheus metrics on the side.

SIGTERM / SIGINT drain gracefully: health goes NOT_SERVING, new sessions and requests get UNAVAILABLE, open
sessions are served until they end, and the process exits then; streams still open when `--shutdown-grace` is used
up are ended with UNAVAILABLE first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

from service.engine.errors import ConfigurationError
from service.grpc.server import serve
from service.grpc.tls import metrics_context
from service.memory import YOUNG_THRESHOLD, MallocCollector, limit_arenas, start_trimming, tune_collector
from service.metrics_http import MetricsServer
from service.settings import Settings
from service.startup import check_port_free
from service.tokens import metrics_tokens
from service.workers import die_with_parent, run_workers

log = logging.getLogger("service")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else plain)
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


async def run(settings: Settings) -> None:
    metrics_host = settings.metrics_bind_host
    check_port_free(metrics_host, settings.metrics_port, "metrics")  # before the models load: fail fast
    # before the models load: what is frozen is never collected, and an unloaded model must be
    log.debug("collector tuned: %d objects of the start frozen, young threshold %d", tune_collector(), YOUNG_THRESHOLD)
    serving = await serve(settings)
    serving.metrics.registry.register(MallocCollector())
    metrics_http = MetricsServer(serving.metrics.registry, settings.metrics_max_connections,
                                 settings.metrics_max_connections_per_peer, metrics_tokens(settings))
    try:
        context = metrics_context(settings)
        metrics_port = await metrics_http.start(metrics_host, settings.metrics_port, context)
    except OSError as exc:
        await serving.shutdown(0)
        raise ConfigurationError(f"cannot bind the metrics port {metrics_host}:{settings.metrics_port}: "
                                 f"{exc.strerror or exc}") from None
    where = "worker metrics at" if settings.reuse_port else "metrics on"  # --workers: the parent's sum is "on"
    log.info("%s http%s://%s:%d/metrics", where, "" if context is None else "s", metrics_host, metrics_port)
    trimming = start_trimming(settings.malloc_trim_interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if settings.session_store == "memory":
        log.info("draining: serving open sessions until they end, for up to %.1f s", settings.shutdown_grace)
    if trimming is not None:
        trimming.cancel()
    await serving.shutdown(settings.shutdown_grace)
    await metrics_http.close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_args(sys.argv[1:] if argv is None else argv)
    configure_logging(settings)
    die_with_parent()  # a --workers child: ends with its parent, however the parent ends
    limit_arenas(settings.malloc_arena_max)  # before any thread starts: glibc makes its arenas lazily
    try:
        if settings.workers > 1:
            return run_workers(settings, sys.argv[1:] if argv is None else argv)
        asyncio.run(run(settings))
    except ConfigurationError as exc:
        log.error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
