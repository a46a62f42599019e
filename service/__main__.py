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

from prometheus_client import start_http_server

from service.engine.errors import ConfigurationError
from service.grpc.server import serve
from service.settings import Settings
from service.startup import check_port_free

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
    check_port_free(settings.host, settings.metrics_port, "metrics")  # before the models load: fail fast
    serving = await serve(settings)
    try:
        metrics_http, _ = start_http_server(settings.metrics_port, settings.host, registry=serving.metrics.registry)
    except OSError as exc:
        await serving.shutdown(0)
        raise ConfigurationError(f"cannot bind the metrics port {settings.host}:{settings.metrics_port}: "
                                 f"{exc.strerror or exc}") from None
    log.info("metrics on http://%s:%d/metrics", settings.host, metrics_http.server_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining: serving open sessions until they end, for up to %.1f s", settings.shutdown_grace)
    await serving.shutdown(settings.shutdown_grace)
    metrics_http.shutdown()
    metrics_http.server_close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_args(sys.argv[1:] if argv is None else argv)
    configure_logging(settings)
    try:
        asyncio.run(run(settings))
    except ConfigurationError as exc:
        log.error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
