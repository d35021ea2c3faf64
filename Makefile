# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv, install torch first (explicitly, so that a CPU machine does not pull a
# multi-GB CUDA build through a bare requirement; GPU machines get CUDA from the same pin),
# then the project with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
GRID ?= model=tiny size=s,m,l itt=none,demo seed=1,2

.PHONY: install demo test grid report bench sync clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install  ## one offline cell of the smoke-scale study: per-language F1
	$(OFFLINE) $(PY) train.py

test: install  ## the test suite, offline
	$(OFFLINE) $(PY) -m pytest -q

grid: install  ## the demo grid: 3 sizes x (no ITT, ITT) x 2 seeds
	$(OFFLINE) $(PY) train.py -m $(GRID)

report: install  ## the answer for the demo grid: ITT gain vs size
	$(OFFLINE) $(PY) evaluate.py report=outputs/results

bench: install  ## wall-clock figures of the issues (see scripts/bench.py)
	$(OFFLINE) $(PY) scripts/bench.py

sync:  ## upload offline W&B runs (after `wandb login`)
	find outputs -type d -name 'offline-run-*' -exec $(VENV)/bin/wandb sync {} +

clean:
	rm -rf outputs
