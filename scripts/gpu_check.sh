#!/usr/bin/env bash
# The CUDA path, proven in one go on a machine with an NVIDIA GPU (issue 9, item 8), in under 5 minutes:
#   1. installs what the machine lacks from the wheels in $WHEELS (.whl/) into $SITE (/tmp/seqserve-site), after
#      joining a wheel that travelled in parts (<wheel>.part-aa, -ab, ...: staged in $PARTS by earlier calls);
#   2. runs the tests marked `cuda` (tests/service/engine/test_cuda.py): the provider really is CUDA, the state of
#      sessions stepping together stays on the device across batches, outputs equal the CPU run;
#   3. runs `python -m bench.gpu`: steps/s of the 2x256 reference LSTM at 1, 64, 1024 and 4096 streams (client
#      processes as needed, the server on CUDA);
#   4. prints one table (machine, onnxruntime, tests, then the bench rows).
#
# Usage: bash scripts/gpu_check.sh [--dry-run | --stage]
#   --dry-run  CPU only, installs nothing: joins any parts, runs the cuda tests (they skip, saying why) and the bench
#              on the CPU provider at 1 and 4 streams for 0.5 s (what tests/scripts/test_gpu_check.py runs).
#   --stage    only copies the wheel parts carried in .whlparts/ to $PARTS, for the calls before the last (below).
# Environment: PYTHON (python3), WHEELS (.whl), PARTS (/tmp/seqserve-parts), SITE (/tmp/seqserve-site),
#   STREAMS (1,64,1024,4096), DURATION (5 s per point), OUT (where the JSON and log go; $OUT on the device machine).
#
# ON THE GPU MACHINE (the `run` tool, kind nvidia-h200: Python 3.12 with torch, numpy, grpcio, onnx and the CUDA 13
# runtime wheels nvidia-cublas, -cuda-runtime, -cuda-nvrtc, -cudnn-cu13, -cufft, -curand already installed; no
# network). onnxruntime-gpu 1.31.1 is built for CUDA 13 and cuDNN 9 (its `cuda`/`cudnn` extras name exactly those
# nvidia-* wheels: nvidia-cuda-nvrtc~=13.0, nvidia-cuda-runtime~=13.0, nvidia-cufft~=12.0, nvidia-curand~=10.0,
# nvidia-cudnn-cu13~=9.0, plus cuBLAS 13), so only it and the serving packages the image lacks travel. Its wheel is
# 244 MiB and one call carries at most 64 MiB (the working tree, ~3 MiB, included), so it travels in five 55 MiB
# parts over consecutive calls to the same warm machine (kept 30 s after each call: make the next call at once;
# files under /tmp stay while it is warm). Here, in the repository root, once (the folders are gitignored):
#   D="python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   $D -d .whlbig onnxruntime-gpu==1.31.1
#   $D -d .whl grpcio==1.85.3 grpcio-health-checking==1.80.1 grpcio-reflection==1.80.1 protobuf==6.33.6 \
#      pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5 \
#      typing-extensions==4.16.0 annotated-types==0.8.0 hdrhistogram==0.10.8 pytest==9.2.0 pluggy==1.6.0 \
#      iniconfig==2.3.0 pytest-asyncio==1.5.0 pytest-timeout==2.4.0                                  # 11 MiB
#   mkdir -p .whlparts && w=$(cd .whlbig && ls onnxruntime_gpu-*.whl) && split -b 55M -a 2 .whlbig/$w .whlparts/$w.part-
#   .venv/bin/python -m bench.gpu --export .gpu-repo     # the 2x256 LSTM (3 MiB), so nothing is exported there
# Then five calls, back to back (P = .whlparts/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl.part-):
#   run(carry=["${P}aa"], command="bash scripts/gpu_check.sh --stage", timeout_s=120)    and the same for ab, ac, ad
#   run(carry=[".whl", ".gpu-repo", "${P}ae"], command="bash scripts/gpu_check.sh", timeout_s=420)   # ~2-3 minutes
# If the machine went back between calls (the parts in /tmp are gone: the script says how many it joined), start over.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=${1:-}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
PARTS=${PARTS:-/tmp/seqserve-parts}
SITE=${SITE:-/tmp/seqserve-site}
OUT=${OUT:-/tmp/seqserve-gpu-check}
case "$MODE" in
  ""|--dry-run|--stage) ;;
  *) echo "usage: $0 [--dry-run | --stage]" >&2; exit 2 ;;
esac
mkdir -p "$OUT" "$PARTS"

if [ "$MODE" != --dry-run ] && [ -d .whlparts ]; then cp .whlparts/*.part-* "$PARTS"/ 2>/dev/null || true; fi
if [ "$MODE" = --stage ]; then ls -la "$PARTS"; exit 0; fi

# 1. wheels: join the parts, install everything in $WHEELS into $SITE (first on the path, before the image's own)
joined=$(mktemp -d)
for first in "$PARTS"/*.part-aa; do
  [ -e "$first" ] || continue
  wheel=$(basename "${first%.part-aa}")
  cat "${first%aa}"?? > "$joined/$wheel"
  echo "[gpu_check] joined $wheel from $(ls "${first%aa}"?? | wc -l) parts"
done
if [ "$MODE" = --dry-run ]; then
  echo "[gpu_check] dry run: CPU only, nothing installed ($(ls "$joined" | wc -l) joined wheel(s) left in $joined)"
  DEVICE=cpu; STREAMS=${STREAMS:-1,4}; DURATION=${DURATION:-0.5}; BENCH_EXTRA=(--warmup 0.2 --max-batch-size 64)
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  DEVICE=cuda; STREAMS=${STREAMS:-1,64,1024,4096}; DURATION=${DURATION:-5}; BENCH_EXTRA=()
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl "$joined"/*.whl)
  shopt -u nullglob
  if [ ${#wheels[@]} -gt 0 ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
    echo "[gpu_check] installed ${#wheels[@]} wheel(s) into $SITE"
  fi
  export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
ORT=$("$PYTHON" -c 'import onnxruntime as o; print(o.__version__, "providers:", ",".join(o.get_available_providers()))')
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)

# 2. the cuda tests (the image's own pytest plugins stay out: only asyncio and timeout are loaded)
set +e
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout 180 "$PYTHON" -m pytest -p pytest_asyncio.plugin -p pytest_timeout -p no:cacheprovider \
  -m cuda tests/service/engine/test_cuda.py -q -rs -W ignore::DeprecationWarning 2>&1 | tee "$OUT/cuda_tests.log"
TESTS_RC=${PIPESTATUS[0]}
set -e
TESTS=$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$OUT/cuda_tests.log" | tail -1 | tr -d '=' | xargs || true)

# 3. the bench (a carried .gpu-repo/ spares the export, which needs torch)
REPO=()
if [ -d .gpu-repo ]; then REPO=(--repository .gpu-repo); fi
set +e
timeout 240 "$PYTHON" -m bench.gpu --device "$DEVICE" --streams "$STREAMS" --duration "$DURATION" "${REPO[@]}" \
  "${BENCH_EXTRA[@]}" --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.md" 2> "$OUT/bench_gpu.log"
BENCH_RC=$?
set -e
[ $BENCH_RC -eq 0 ] || tail -30 "$OUT/bench_gpu.log"

# 4. one table
echo
echo "## gpu_check $(date -u +%Y-%m-%dT%H:%MZ) ($MODE)"
echo
echo "| what | result |"
echo "| --- | --- |"
echo "| GPU | ${GPU:-none found (nvidia-smi)} |"
echo "| onnxruntime | $ORT |"
echo "| cuda tests (pytest -m cuda) | ${TESTS:-no summary} (exit $TESTS_RC) |"
echo "| bench (python -m bench.gpu) | exit $BENCH_RC, $DEVICE, streams $STREAMS, $DURATION s each |"
echo
cat "$OUT/bench_gpu.md"
[ $TESTS_RC -eq 0 ] && [ $BENCH_RC -eq 0 ]
