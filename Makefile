# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The model runtime (pyproject's extras `cpu` / `cuda`): onnxruntime (CPU) unless CUDA is asked for with
# DEVICE=cuda or DEVICE=auto (the default) finds an NVIDIA driver. The two builds install the same `onnxruntime`
# package and break each other, so a venv holding the other build has it removed first (use-runtime below).
DEVICE ?= auto
NVIDIA_DRIVER ?= /proc/driver/nvidia/version
ifeq ($(DEVICE),auto)
RUNTIME := $(if $(wildcard $(NVIDIA_DRIVER)),cuda,cpu)
else ifneq ($(filter $(DEVICE),cpu cuda),)
RUNTIME := $(DEVICE)
else
$(error DEVICE=$(DEVICE): use cpu, cuda or auto)
endif
OTHER := $(if $(filter cuda,$(RUNTIME)),cpu,cuda)
ORT_WHEEL_cpu := onnxruntime
ORT_WHEEL_cuda := onnxruntime-gpu
SERVE_STAMP := $(VENV)/.serve-$(RUNTIME)
TEST_STAMP := $(VENV)/.test-$(RUNTIME)

.PHONY: run test models report bench proto lint clean wheelhouse deploy-deps test-deps fuzz soak figures

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Removes the other onnxruntime build and its stamps; where both are in (their shared files may be either's), both
# go, so the install after it writes the wanted build whole.
define use-runtime
	@if $(PIP) show --quiet $(ORT_WHEEL_$(OTHER)) >/dev/null 2>&1; then \
		echo "$(VENV) has $(ORT_WHEEL_$(OTHER)): replacing it with $(ORT_WHEEL_$(RUNTIME)) (DEVICE=$(DEVICE))"; \
		$(PIP) uninstall --quiet --yes $(ORT_WHEEL_$(OTHER)); \
		if $(PIP) show --quiet $(ORT_WHEEL_$(RUNTIME)) >/dev/null 2>&1; then \
			$(PIP) uninstall --quiet --yes $(ORT_WHEEL_$(RUNTIME)); fi; \
	fi
	@rm -f $(VENV)/.serve-$(OTHER) $(VENV)/.test-$(OTHER)
endef

# The client package (client/: SDK, CLI, codec, native protobuf) first: the server depends on it.
$(SERVE_STAMP): pyproject.toml client/pyproject.toml | $(PY)
	$(use-runtime)
	$(PIP) install --quiet -e ./client
	$(PIP) install --quiet -e '.[$(RUNTIME)]'
	touch $@

$(TEST_STAMP): pyproject.toml client/pyproject.toml | $(PY)
	$(use-runtime)
	$(PIP) install --quiet -e ./client
	$(PIP) install --quiet -e '.[train,test,$(RUNTIME)]'
	touch $@ $(SERVE_STAMP)

## run: serve every model under models/ on gRPC :8001, metrics on :8002 (DEVICE=cpu|cuda|auto: the runtime
## installed and --device; auto: CUDA where an NVIDIA driver is found)
run: $(SERVE_STAMP)
	$(PY) -m service --models models$(if $(filter auto,$(DEVICE)),, --device $(DEVICE))

## test: lint (ruff, mypy) and the whole suite (what .ci/run calls)
test: $(TEST_STAMP) deploy-deps test-deps lint
	$(PY) -m pytest

## models: retrain and re-export every shipped model from scratch; import Silero VAD from its pip-installed wheel
models: $(TEST_STAMP)
	$(PY) -m modelrepo.importer.silero --force
	$(PY) -m training build-all --force

## report: the fidelity studies (vowels, every cell x 5 seeds; adding problem T=200 and T=400; about 57 min on 2 idle cores, 28 without T=400 (--long-length 0); not part of make test)
report: $(TEST_STAMP)
	$(PY) -m training report

## bench: every path side by side (native, Triton, hand-written baseline, echo ceiling); results in bench/results/local/
bench: $(TEST_STAMP)
	$(PY) -m bench

## fuzz: the live fuzz at length (make test runs 6,000 messages; FUZZ_MESSAGES, FUZZ_SEED to change)
FUZZ_MESSAGES ?= 100000
FUZZ_SEED ?= 12
fuzz: $(TEST_STAMP)
	FUZZ_MESSAGES=$(FUZZ_MESSAGES) FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest -s \
		tests/service/grpc/test_fuzz.py tests/service/grpc/test_decode.py tests/service/http/test_fuzz.py

## soak: 30 minutes at 256 churning streams (SIGKILLed clients too); RSS slope and sessions left (not in make test)
SOAK_MINUTES ?= 30
SOAK_STREAMS ?= 256
SOAK_FLAGS ?=
soak: $(TEST_STAMP)
	$(PY) scripts/soak.py --minutes $(SOAK_MINUTES) --streams $(SOAK_STREAMS) --json soak.json $(SOAK_FLAGS)

## figures: every picture under docs/images/ from its source (scripts/figures.py: graphviz, matplotlib); a test
## checks each is current with its source (docs/images/figures.json)
figures: $(TEST_STAMP)
	@sh scripts/ensure-package.sh dot graphviz
	$(PY) scripts/figures.py

## proto: regenerate the committed protobuf/gRPC code
proto: $(TEST_STAMP)
	$(PY) scripts/gen_proto.py

## lint: ruff and mypy
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service training modelrepo bench client/seqserve_client

## wheelhouse: every serving wheel, for `docker build` with --no-index (CPU image: Python 3.11, CUDA image: 3.12;
## both onnxruntime builds, each image installs its own)
WHEEL_PYTHONS ?= 3.11 3.12
# Needed by redis on a Python older than 3.11.3 (Debian bookworm's 3.11.2): `pip download --python-version 3.11`
# judges that marker by this machine's Python, so it is named here.
WHEEL_MARKER_DEPS := 'async-timeout>=4.0.3'
wheelhouse: $(SERVE_STAMP)
	rm -rf wheelhouse
	$(PIP) wheel --quiet --no-deps --wheel-dir wheelhouse ./client .
	for py in $(WHEEL_PYTHONS); do \
		$(PIP) download --quiet --dest wheelhouse --find-links wheelhouse --only-binary=:all: --python-version $$py \
			--platform manylinux_2_28_$$(uname -m) --platform manylinux_2_17_$$(uname -m) --platform manylinux2014_$$(uname -m) \
			"$$(ls wheelhouse/seqserve-*.whl)[loadtest,cpu,cuda]" $(WHEEL_MARKER_DEPS) || exit 1; \
	done

## deploy-deps: nginx for tests/deploy, redis-server for the session store tests (apt-get install where missing
## and root; the tests skip otherwise)
deploy-deps:
	@sh scripts/ensure-package.sh nginx nginx
	@sh scripts/ensure-package.sh redis-server redis-server

## test-deps: espeak-ng for the VAD speech test, chromium for the page's browser test, curl for the README's curl
## commands (apt-get install where missing and root; otherwise the tests that need them skip, the curl test fails)
test-deps:
	@sh scripts/ensure-package.sh espeak-ng espeak-ng
	@sh scripts/ensure-package.sh chromium chromium
	@sh scripts/ensure-package.sh curl curl

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
