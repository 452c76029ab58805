# Every target that runs code depends on the setup stamp, so any of them works first on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
TORCH_VERSION := 2.13.0
PROTOS := $(wildcard protos/veil/v1/*.proto)
export PYTHONUNBUFFERED := 1

.PHONY: setup proto test soak demo run bench eval train lint k8s-validate lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the local CPU wheel: anything else would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[gateway,anonymizer,unlearner,cpu,faces,dev]'
	$(PY) -m veil_tools.protogen
	touch $@

proto: $(STAMP)
	$(PY) -m veil_tools.protogen

test: $(STAMP)
	$(PY) -m pytest -q -m "not soak" tests

soak: $(STAMP)
	$(PY) -m pytest -q -m soak tests

demo: $(STAMP)
	$(PY) -m veil_tools.demo --out out

run: $(STAMP)
	$(PY) -m veil_tools.localrun

bench: $(STAMP)
	$(PY) -m veil_tools.bench

# Ends with reports/privacy-utility.md; its inputs are committed beside it: the eval's JSON with its
# example grid (reports/eval.json; `veil eval` sweeps every level), the owner's and the unlearning
# bench's (reports/owner.json; reports/unlearning.json: 1% and 5% of 1500 subjects on 3 seeds, ~10 minutes).
# The eval's exit status 1 (a bar missed) goes on to the report, which lists the misses; a crash leaves
# no eval.json (removed first, written last), so the report cannot show an older run's numbers.
# Sized for the 2-core CPU (about 40 minutes once the evaluators are cached); on a GPU node use
# EVAL_SIZE="--tuning-probes 400 --audit-probes 400 --test-draws 2", the auditor's full size.
EVAL_SIZE ?= --probes 64 --sweep-levels 0,1,3,5,7,10 --tuning-probes 100 --audit-probes 100 \
	--test-draws 1 --audit-levels 1,2,5,10 --audit-eps 0.5,1,2,4
eval: $(STAMP)
	rm -f reports/eval.json
	$(PY) -m veil eval --model models/diffae-synth32 --json reports/eval.json --cache out/eval-cache \
		--examples reports/figures/levels-examples.png $(EVAL_SIZE) --audit-decode-tries 3 --write-card \
		|| test $$? -eq 1
	$(PY) -m veil_tools.owner --out reports/owner.json --cache out/owner-cache
	$(PY) -m veil_tools.bench.unlearning --seeds 1 2 3 --json reports/unlearning.json
	$(PY) -m veil_tools.report --owner reports/owner.json --privacy reports/eval.json --unlearning reports/unlearning.json --out reports

# `make train`: the shipped synthetic-face model's recipe. `make train DATA=path/to/celeba SIZE=64`:
# the same recipe on a CelebA-format folder (real CelebA for photo-real faces) at 64 or 128 px, on
# the GPU when there is one; rerunning the same command resumes from the run's last checkpoint.
SIZE ?= 64
train: $(STAMP)
ifeq ($(DATA),)
	$(PY) -m veil train --config models/diffae-synth32/train_config.json --run-dir runs/diffae-synth32
else
	$(PY) -m veil train --config models/diffae-synth32/train_config.json --data $(DATA) --image-size $(SIZE) \
		--run-dir runs/diffae-celeba$(SIZE) --export models/diffae-celeba$(SIZE) --model-version diffae-celeba$(SIZE)
endif

k8s-validate: $(STAMP)
	$(PY) -m veil_tools.k8svalidate

lock: $(STAMP)
	head -2 requirements/constraints.txt > requirements/constraints.txt.new
	$(PY) -m pip freeze --exclude-editable | sed '/^torch==/d' >> requirements/constraints.txt.new
	echo 'torch==$(TORCH_VERSION)' >> requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) out .pytest_cache
