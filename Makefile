# osteolake — the two set-up commands are `make demo` and `make test`; both create .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
PATIENTS ?= 200

.PHONY: setup demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, from the CPU build on this machine's disk: a plain `pip install torch` pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	rm -rf $(DEMO)/hospital $(DEMO)/warehouse
	$(BIN)/osteolake synth --patients $(PATIENTS) --seed 7 --out $(DEMO)/hospital
	OSTEOLAKE_ISSUER=OSTEOLAKE-GENERAL $(BIN)/osteolake refresh --archive $(DEMO)/hospital/archive \
		--omop $(DEMO)/hospital/omop --warehouse $(DEMO)/warehouse --demo-key
	$(BIN)/python -m flows.demo_queries --warehouse $(DEMO)/warehouse

test: setup
	$(BIN)/python -m pytest

bench: setup
	@set -e; for b in bench/*.py; do case $$b in bench/_*) continue;; esac; \
		echo "== $$b"; $(BIN)/python $$b; done

lint: setup
	$(BIN)/ruff check flows tasks schemas warehouse synthetic bench tests
	$(BIN)/mypy

clean:
	rm -rf $(DEMO) .bench build *.egg-info
