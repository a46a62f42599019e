# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SERVE_STAMP := $(VENV)/.serve-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: run test models report bench proto lint clean wheelhouse deploy-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[train,test]'
	touch $@ $(SERVE_STAMP)

## run: serve every model under models/ on gRPC :8001, metrics on :8002
run: $(SERVE_STAMP)
	$(PY) -m service --models models

## test: lint (ruff, mypy) and the whole suite (what .ci/run calls)
test: $(TEST_STAMP) deploy-deps lint
	$(PY) -m pytest

## models: retrain and re-export every shipped model from scratch
models: $(TEST_STAMP)
	$(PY) -m training build-all --force

## report: the fidelity studies (vowels, every cell x 5 seeds; adding problem T=200; about 60 min on 2 cores; not part of make test)
report: $(TEST_STAMP)
	$(PY) -m training report

## bench: throughput and latency against the compute and transport ceilings
bench: $(TEST_STAMP)
	$(PY) -m bench

## proto: regenerate the committed protobuf/gRPC code
proto: $(TEST_STAMP)
	$(PY) scripts/gen_proto.py

## lint: ruff and mypy
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service training modelrepo bench

## wheelhouse: every serving wheel, for `docker build` with --no-index (CPU image: Python 3.11, CUDA image: 3.12)
WHEEL_PYTHONS ?= 3.11 3.12
wheelhouse: $(SERVE_STAMP)
	rm -rf wheelhouse
	$(PIP) wheel --quiet --no-deps --wheel-dir wheelhouse .
	ort=$$($(PY) -c 'import onnxruntime; print(onnxruntime.__version__)') && for py in $(WHEEL_PYTHONS); do \
		$(PIP) download --quiet --dest wheelhouse --only-binary=:all: --python-version $$py \
			--platform manylinux_2_28_$$(uname -m) --platform manylinux_2_17_$$(uname -m) --platform manylinux2014_$$(uname -m) \
			wheelhouse/seqserve-*.whl onnxruntime==$$ort || exit 1; \
	done

## deploy-deps: nginx for tests/deploy (apt-get install where missing and root; the test skips otherwise)
deploy-deps:
	@sh deploy/ensure-nginx.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
