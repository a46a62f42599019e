#!/bin/sh
# Builds the serving virtualenv from the wheelhouse alone (`--no-index`): run by the Dockerfile's build stage.
#   install-venv.sh DEVICE WHEELHOUSE VENV      DEVICE = cpu | cuda
# The onnxruntime build is the image's DEVICE, seqserve's extra of that name (cpu: onnxruntime, cuda:
# onnxruntime-gpu); `make wheelhouse` downloads both.
set -eu
device="$1"
wheels="$2"
venv="$3"

python3 -m venv "$venv"
pip="$venv/bin/pip"
wheel=$(ls "$wheels"/seqserve-*.whl)  # with the load generator extra: the compose `loadtest` service runs this image
"$pip" install --no-cache-dir --no-index --find-links "$wheels" "$wheel[loadtest,$device]"
"$pip" check
"$venv/bin/python" -c 'import onnxruntime, grpc, service.__main__, service.healthcheck'
# The CUDA image's onnxruntime is the GPU build (whether a GPU is there is checked at start-up: SEQSERVE_DEVICE=cuda).
[ "$device" = cpu ] || "$venv/bin/python" -c \
    'import onnxruntime as o; assert "CUDAExecutionProvider" in o.get_available_providers(), o.get_available_providers()'
# Nothing is installed at run time: leave pip out of the image.
"$pip" uninstall --yes pip
