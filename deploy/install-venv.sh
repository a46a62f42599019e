#!/bin/sh
# Builds the serving virtualenv from the wheelhouse alone (`--no-index`): run by the Dockerfile's build stage.
#   install-venv.sh DEVICE WHEELHOUSE VENV      DEVICE = cpu | cuda
# pyproject.toml selects onnxruntime-gpu on Linux x86_64; the CPU image swaps in the CPU build of the same
# release (`make wheelhouse` downloads both), which is ~20x smaller and needs no CUDA libraries.
set -eu
device="$1"
wheels="$2"
venv="$3"

python3 -m venv "$venv"
pip="$venv/bin/pip"
wheel=$(ls "$wheels"/seqserve-*.whl)  # with the load generator extra: the compose `loadtest` service runs this image
"$pip" install --no-cache-dir --no-index --find-links "$wheels" "$wheel[loadtest]"
if [ "$device" = cpu ] && "$pip" show onnxruntime-gpu >/dev/null 2>&1; then
    release=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')
    "$pip" uninstall --yes onnxruntime-gpu
    "$pip" install --no-cache-dir --no-index --find-links "$wheels" "onnxruntime==$release"
fi
# The swapped CPU build trips `pip check` (seqserve declares onnxruntime-gpu), so check by importing instead.
[ "$device" = cpu ] || "$pip" check
"$venv/bin/python" -c 'import onnxruntime, grpc, service.__main__, service.healthcheck'
# Nothing is installed at run time: leave pip out of the image.
"$pip" uninstall --yes pip
