# llem: one entry point per task. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNNER ?= docker
# Test processes (pytest-xdist); each test file runs whole on one of them.
TEST_WORKERS ?= 2
STUDY ?= studies/demo.yaml
OUTPUT ?= results
TINY_MODEL := .llem/models/tiny-llama

DEVICE_WHEELS ?= .llem/device-wheels
DEVICE_VENV ?= .llem/device-venv
DEVICE_CHECK_MODE ?= gpu
# With OUT set (a job's collection folder) the figures go there, else to the ignored results/.
DEVICE_CHECK_OUT ?= $(if $(OUT),$(OUT),results/device-check)

.PHONY: help install test lint demo study nightly report model images bench gpu-check \
	device-wheels device-check clean-venv

help:
	@echo "make install   create $(VENV) and install llem with the pytorch, report and dev extras"
	@echo "make test      run the test suite (unit + integration; gpu tests skip without a GPU)"
	@echo "make lint      ruff + mypy (strict)"
	@echo "make demo      build the tiny model and run studies/demo.yaml (RUNNER=$(RUNNER))"
	@echo "make study     run STUDY=path/to/study.yaml"
	@echo "make nightly   run NIGHTLY_STUDY into NIGHTLY_ROOT/, compare with the last night; exit 1 on a regression"
	@echo "make report    print DIR's report and write DIR/report.html again"
	@echo "make images    build the cpu image (IMAGE=cpu|pytorch|vllm|tensorrt)"
	@echo "make bench     print the benchmark figures of tests/perf"
	@echo "make gpu-check on an NVIDIA GPU: energy, agreement, baseline, overhead"
	@echo "make device-wheels  fetch the wheels device-check installs offline ($(DEVICE_WHEELS))"
	@echo "make device-check   hardware validation on a bare GPU machine, no network (under 8 min);"
	@echo "                    DEVICE_CHECK_MODE=cpu runs it on replayed traces, no GPU"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[pytorch,report,dev]'
	touch $@

# The cpu image builds in the background while the unit tests run (they come first); the Docker
# tests' fixture runs the same build under the image lock, finds it done or reports its failure.
test: install
	mkdir -p .llem
	bash images/build.sh cpu > .llem/image-build.log 2>&1 & \
	$(BIN)/python -m pytest tests -q --durations=10 -n $(TEST_WORKERS) --dist loadfile; \
	status=$$?; wait; exit $$status

lint: install
	$(BIN)/ruff check harness orchestrator tests
	$(BIN)/mypy

model: install $(TINY_MODEL)/config.json

# Head size 64: a shape vLLM's CPU build has attention kernels for, so the same model serves the
# PyTorch demo and the vLLM-on-CPU study (studies/serving-cpu.yaml).
$(TINY_MODEL)/config.json:
	$(BIN)/llem tiny-model --for-vllm-cpu $(TINY_MODEL)

IMAGE ?= cpu

images: install
	$(BIN)/llem images build $(IMAGE)

# The docker runner needs the cpu image (built from the local recipe when no registry answers).
demo: model $(if $(filter docker,$(RUNNER)),images)
	$(BIN)/llem run studies/demo.yaml --runner $(RUNNER) --output $(OUTPUT)

study: install
	$(BIN)/llem run $(STUDY) --runner $(RUNNER) --output $(OUTPUT)

# One nightly: a new study directory under NIGHTLY_ROOT, its report, and comparison.md/.json
# against the last completed nightly there (docs/nightly.md: timers, cron, CI).
NIGHTLY_STUDY ?= studies/nightly.yaml
NIGHTLY_ROOT ?= results/nightly
NIGHTLY_ARGS ?=
nightly: install
	$(BIN)/llem nightly $(NIGHTLY_STUDY) --root $(NIGHTLY_ROOT) --runner $(RUNNER) $(NIGHTLY_ARGS)

report: install
	@test -n "$(DIR)" || { echo "usage: make report DIR=results/<study directory>"; exit 2; }
	$(BIN)/llem report $(DIR)

bench: model images
	$(BIN)/python tests/perf/bench_harness_overhead.py
	$(BIN)/python tests/perf/bench_expansion.py
	$(BIN)/python tests/perf/bench_orchestration.py
	$(BIN)/python tests/perf/bench_codecarbon_read.py
	$(BIN)/python tests/perf/bench_ci_coverage.py
	$(BIN)/python tests/perf/bench_compare.py

# On a machine with an NVIDIA GPU: a short real study plus the harness-overhead check.
gpu-check: install
	$(BIN)/python -m pytest tests/gpu -q
	$(BIN)/python tests/gpu/gpu_check.py

# Run where pip reaches an index; copy the folder with the repository to the GPU machine.
device-wheels:
	$(PYTHON) tests/gpu/device_wheels.py download $(DEVICE_WHEELS)

# One command on a GPU machine with PyTorch, transformers, nvidia-ml-py, pyarrow and scipy:
# a venv over the machine's packages, the rest installed offline, then the check itself.
device-check:
	$(PYTHON) tests/gpu/device_wheels.py venv $(DEVICE_WHEELS) $(DEVICE_VENV)
	PYTHONPATH=$(CURDIR) PYTHONUNBUFFERED=1 $(DEVICE_VENV)/bin/python tests/gpu/device_check.py \
		--mode $(DEVICE_CHECK_MODE) --out $(DEVICE_CHECK_OUT)

clean-venv:
	rm -rf $(VENV)
