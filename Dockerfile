# seqserve image: one Dockerfile, two devices.
#
#   make wheelhouse                                   # every serving wheel, built on the host (offline build)
#   docker build -t seqserve:cpu .                    # CPU image (default)
#   docker build -t seqserve:cuda --build-arg DEVICE=cuda .
#
# Needs BuildKit (the default builder of current Docker and of docker compose): it builds only the stages the
# chosen DEVICE uses, and the wheelhouse is bind-mounted into the build stage, never copied into a layer.
# Nothing is downloaded during the build apart from the base images: pip installs from wheelhouse/ with
# --no-index. Where no registry is reachable, pass locally built bases with --build-arg PYTHON_IMAGE=...
# (tests/deploy/compose_smoke.sh shows how).
#
# CUDA: onnxruntime-gpu 1.31 from PyPI is built against CUDA 13 and cuDNN 9, hence the CUDA 13 + cuDNN 9
# runtime base; Ubuntu 24.04's Python is 3.12, which is why `make wheelhouse` also fetches cp312 wheels.

ARG DEVICE=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-cuda
# The distribution's own Python and venv of the CUDA base release; nothing else.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# ---- build: the virtualenv, from the wheelhouse only ------------------------------------------------------------
# base-${DEVICE} is one of the two stages above, not a registry image.
# hadolint ignore=DL3006
FROM base-${DEVICE} AS build
ARG DEVICE
COPY deploy/install-venv.sh /usr/local/bin/install-venv
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \
    install-venv "${DEVICE}" /wheelhouse /opt/seqserve/venv

# ---- runtime: Python + the virtualenv + the models; no torch, no compiler, no pip -------------------------------
# hadolint ignore=DL3006
FROM base-${DEVICE} AS runtime
ARG DEVICE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="seqserve" \
      org.opencontainers.image.description="Stateful gRPC serving of recurrent sequence models on onnxruntime (${DEVICE})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="seqserve"

RUN useradd --system --uid 10001 --user-group --home-dir /opt/seqserve --no-create-home seqserve
COPY --from=build /opt/seqserve/venv /opt/seqserve/venv
# The shipped models; mount another repository over this folder (read-only) to serve other models.
COPY models /opt/seqserve/models

ENV PATH=/opt/seqserve/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEQSERVE_MODELS=/opt/seqserve/models \
    SEQSERVE_DEVICE=${DEVICE} \
    SEQSERVE_HOST=0.0.0.0 \
    SEQSERVE_PORT=8001 \
    SEQSERVE_HTTP_PORT=8000 \
    SEQSERVE_METRICS_PORT=8002

# numeric, so runAsNonRoot-style checks can verify it without the image's /etc/passwd
USER 10001:10001
WORKDIR /opt/seqserve
EXPOSE 8000 8001 8002
# Ready only once every model is loaded and warmed up: grpc.health.v1 says SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# Exec form: the server is PID 1 and gets SIGTERM itself (health NOT_SERVING, drain, exit within the grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
