# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv, install torch first (explicitly, so that a CPU machine does not pull a
# multi-GB CUDA build through a bare requirement; GPU machines get CUDA from the same pin),
# then the project with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
GRID ?= model=tiny size=s,m,l itt=none,demo seed=1,2,3

.PHONY: install demo test grid report bench sync plan slurm-test prepare clean

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
	$(OFFLINE) $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

grid: install  ## the demo grid: 3 sizes x (no ITT, ITT) x 3 seeds
	$(OFFLINE) $(PY) train.py -m $(GRID)

report: install  ## the answer for the demo grid: ITT gain vs size
	$(OFFLINE) $(PY) evaluate.py report=outputs/results

prepare: install  ## on a machine with network: fill the HF caches for the grid (GRID=...)
	$(PY) -m xitt.prepare -m $(GRID)

bench: install  ## one table of ratios: xitt vs Trainer vs a plain loop, eval, tokenisation, grid, start-up (benchmarks/)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt || echo "bench: accelerate not installed: the Trainer rows are skipped"
	$(OFFLINE) $(PY) benchmarks/bench.py $(BENCH_ARGS)

sync: install  ## upload offline W&B runs (after `wandb login`)
	PATH=$(VENV)/bin:$$PATH scripts/sync-wandb.sh

plan: install  ## what the grid needs, what is stored, GPU-hours (no training)
	$(OFFLINE) $(PY) -m xitt.plan $(GRID)

slurm-test: install  ## the real one-node SLURM cluster test (installs slurm-wlm and munge)
	$(OFFLINE) $(PY) -m pytest -q tests/test_slurm.py

clean:
	rm -rf outputs
