"""Server settings: command-line flags over `SEQSERVE_*` environment variables over defaults.

Built once at start-up (`Settings.from_args(sys.argv[1:])`) and passed down through constructors.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server. Field `max_batch_size` is flag `--max-batch-size`, env `SEQSERVE_MAX_BATCH_SIZE`."""

    model_config = SettingsConfigDict(env_prefix="SEQSERVE_", extra="forbid", frozen=True)

    models: Path = Field(Path("models"), description="model repository: <models>/<name>/<version>/")
    host: str = Field("0.0.0.0", description="address the gRPC server binds")
    port: int = Field(8001, ge=0, le=65535, description="gRPC port (native + Triton APIs); 0 picks a free port")
    metrics_port: int = Field(8002, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free port")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda: fail unless CUDA is really active; auto: CUDA if it loads, else CPU (warning)"
    )
    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads per model; 0 = auto: the fastest of 1, 2, 4 measured at "
        "load and re-measured while serving (more only for runs long enough for the executor, and 20 % faster per "
        "step up)"
    )
    max_batch_size: int = Field(64, ge=1, description="most steps in one model run; 1 turns batching off")
    max_queue_delay_us: int = Field(
        500, ge=0, description="how long a step may wait for company; an idle model never waits"
    )
    inline_run_max_us: int = Field(
        -1, ge=-1, description="run a batch on the event loop, skipping the executor hop, when the model's measured "
        "cost predicts at most this many microseconds for it; -1 = auto: when it predicts less than the measured "
        "cost of serving one message (~100 us); 0 always uses the executor"
    )
    # perf (issue 22)
    max_runs_in_flight: int = Field(
        0, ge=0, description="model runs of one model in flight at once (each in a worker thread, sessions disjoint; a "
        "further run starts only for at least half a full batch); 0 = auto: 2 where the cores hold two runs of the "
        "model's intra-op threads, else 1"
    )
    max_sessions: int = Field(1024, ge=1, description="open sessions per model; beyond: RESOURCE_EXHAUSTED")
    session_idle_timeout: float = Field(60.0, gt=0, description="seconds without a step before a session is evicted")
    session_store: str = Field(
        "memory", pattern=r"^(memory|(redis|rediss|unix)://.*)$",
        description="where sessions live: memory (this process) or redis://HOST:PORT/DB (shared by every replica; "
        "each step is written through before its answer)",
    )
    max_stored_sessions: int = Field(
        0, ge=0, description="with a shared session store: the most sessions it holds, all replicas together (the "
        "store's Redis database holds sessions only); beyond: RESOURCE_EXHAUSTED on a new session's first step. "
        "0 = no limit"
    )
    workers: int = Field(
        1, ge=1, description="server processes sharing the gRPC port (SO_REUSEPORT); their metrics are summed on "
        "--metrics-port"
    )
    reuse_port: bool = Field(
        False, description="bind the gRPC port with SO_REUSEPORT (set by --workers for its processes; off otherwise, "
        "so that a stale second server cannot silently share the port)"
    )
    max_request_steps: int = Field(65536, ge=1, description="steps per sequence in one request (chunk or Infer)")
    max_request_batch: int = Field(256, ge=1, description="sequences in one stateless request (Infer, ModelInfer)")
    max_run_steps: int = Field(
        4096, ge=1, description="a longer stateless sequence runs in segments of this many steps, its state "
        "carried: model runs and their memory stay bounded, other streams run in between"
    )
    max_streams_without_session: int = Field(
        1024, ge=1, description="streams open without a session (native: before open) or a request (Triton), at "
        "most, both fronts together (RESOURCE_EXHAUSTED)"
    )
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest gRPC message, both ways")
    stream_queue_size: int = Field(16, ge=1, description="chunks a stream may have queued before backpressure")
    reject_nonfinite: bool = Field(True, description="reject chunks holding NaN or Inf (INVALID_ARGUMENT)")
    require_models: str = Field(
        "any", min_length=1, description="when the server is ready (health SERVING, ServerReady): any = at least one "
        "model served, all = every version found, or NAME,NAME,... = each of these served"
    )
    shutdown_grace: float = Field(10.0, ge=0, description="seconds open sessions get to finish on SIGTERM/SIGINT")
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) of the server: gRPC and /metrics speak TLS; needs --tls-key"
    )
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: clients must present a certificate it signed (mTLS, gRPC and /metrics)"
    )
    auth_tokens: str | None = Field(
        None, description="bearer-token authentication: a JSON file (or the JSON itself) of token -> {principal, "
        "models, max_sessions}; every RPC then needs 'authorization: Bearer <token>'"
    )
    auth_exempt: str = Field(
        "health", description="services answering without a token when auth is on: health, reflection (comma list)"
    )
    max_sessions_per_client: int = Field(
        0, ge=0, description="open sessions per client (principal, or peer host without auth) over every model; "
        "0 = no limit"
    )
    malloc_arena_max: int = Field(
        2, ge=0, description="glibc malloc arenas at most (M_ARENA_MAX, set at start): fewer arenas keep less free "
        "memory under many threads; 0 = glibc's default (8 per core)"
    )
    malloc_trim_interval: float = Field(
        10.0, ge=0, description="seconds between malloc_trim calls that hand malloc's free pages back to the OS "
        "(less RSS kept as free heap under churn); 0 = never"
    )
    metrics_host: str | None = Field(None, description="address /metrics binds (default: --host)")
    metrics_tls: bool = Field(
        True, description="with --tls-cert, /metrics speaks TLS too (and mTLS with --tls-client-ca); "
        "--no-metrics-tls serves it plain, e.g. to a scraper on loopback"
    )
    metrics_max_connections: int = Field(
        64, ge=1, description="open /metrics connections at most; more are closed at once (no thread per connection)"
    )
    # -- model control (issue 19, docs/model-control.md) --
    model_control_mode: Literal["none", "poll", "explicit"] = Field(
        "poll", description="poll: a new or changed version folder is loaded (and a removed one unloaded) within "
        "--repository-poll-secs, and load/unload requests are honoured too; explicit: only load/unload requests "
        "change what is served after the start; none: what loads at the start is served until the end"
    )
    repository_poll_secs: float = Field(5.0, gt=0, description="seconds between two looks at the repository (poll)")
    version_drain_timeout: float = Field(
        600.0, ge=0, description="seconds an old version goes on serving its live sessions once a newer one serves; "
        "then they end with FAILED_PRECONDITION naming the newer version; 0 = until they end"
    )
    # -- store (issue 23): exactly-once steps under store faults, capacity, idle streams --------------------------
    session_store_timeout: float = Field(
        2.0, gt=0, description="seconds a session store call may take; a commit whose answer takes longer has its "
        "outcome read back (see --session-store-resolve-timeout)"
    )
    session_store_resolve_timeout: float = Field(
        8.0, gt=0, description="seconds spent learning the outcome of a commit whose answer was lost before the "
        "step is answered ABORTED 'outcome unknown'"
    )
    session_store_memory_fraction: float = Field(
        0.9, ge=0, le=1, description="a new session is refused (RESOURCE_EXHAUSTED) while the session store's "
        "Redis uses more than this share of its maxmemory; existing sessions go on. 0 = never"
    )
    first_message_timeout: float = Field(
        5.0, gt=0, description="seconds a new stream may take to send its first message (native: open; Triton: a "
        "request); then it ends with DEADLINE_EXCEEDED"
    )
    max_streams_without_session_per_client: int = Field(
        0, ge=0, description="of --max-streams-without-session, the most one client (its principal, or its peer "
        "host without --auth-tokens) holds; 0 = a quarter of it"
    )
    metrics_max_connections_per_peer: int = Field(
        8, ge=0, description="open /metrics connections from one peer host at most (one client cannot hold them "
        "all and block the scrapes); 0 = only --metrics-max-connections"
    )
    recycle_after: int = Field(
        0, ge=0, description="with --workers 2 or more: a worker that has answered this many requests is replaced, "
        "one at a time (a new one serves first; the old one drains, handing its sessions off with a shared store). "
        "0 = never"
    )
    recycle_rss_mib: int = Field(
        0, ge=0, description="with --workers 2 or more: a worker whose RSS reaches this many MiB is replaced the "
        "same way. 0 = never"
    )
    # -- the web front (issue 24, docs/web.md) ---------------------------------------------------------------------
    http_port: int = Field(
        8000, ge=0, le=65535, description="HTTP port (KServe v2 REST, WebSocket streams, the page at /); 0 picks a "
        "free port"
    )
    websocket_heartbeat: float = Field(
        20.0, gt=0, description="seconds between the server's WebSocket pings; a socket that leaves one unanswered "
        "as long is closed"
    )
    log_format: Literal["plain", "json"] = Field("plain", description="log line format")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    @field_validator("tls_cert", "tls_key", "tls_client_ca", "metrics_host", "auth_tokens", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # `SEQSERVE_TLS_CERT=` (compose's unset variables) means none

    @property
    def metrics_bind_host(self) -> str:
        """The address /metrics binds: `--metrics-host`, else `--host`."""
        return self.metrics_host or self.host

    @model_validator(mode="after")
    def _recycling_needs_workers(self) -> Settings:
        if (self.recycle_after or self.recycle_rss_mib) and self.workers < 2 and not self.reuse_port:
            raise ValueError("--recycle-after / --recycle-rss-mib need --workers 2 or more (the others serve while "
                             "one is replaced)")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> Settings:
        """Flags given in `argv` override the environment, which overrides the defaults."""
        parser = build_parser()
        given = vars(parser.parse_args(list(argv or [])))
        try:
            return cls(**given)
        except ValidationError as exc:
            first = exc.errors()[0]
            if not first["loc"]:  # a check across fields: its message names the flags
                parser.error(str(first["msg"]).removeprefix("Value error, "))
            parser.error(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")


def build_parser() -> argparse.ArgumentParser:
    """One flag per settings field; flags not given are absent from the result (so env and defaults apply)."""
    parser = argparse.ArgumentParser(prog="python -m service", description="Serve recurrent models over gRPC.")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "SEQSERVE_" + name.upper()
        help_text = f"{field.description} (env {env}, default {field.default})"
        kwargs: dict[str, object] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if field.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = list(get_args(field.annotation))
        parser.add_argument(flag, **kwargs)  # type: ignore[arg-type]
    return parser
