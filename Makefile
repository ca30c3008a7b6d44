# duet — build, demo and test on a fresh machine.
#   make demo   build the CLI and run it on the bundled (random-weight) model
#   make test   every test: cargo tests, C example, header drift
SHELL := /bin/bash
ORT_VERSION := 1.31.1
ORT_DIR := $(CURDIR)/.ort
ORT_LIB := $(ORT_DIR)/lib/libonnxruntime.so.$(ORT_VERSION)
PYTHON ?= python3
CARGO ?= cargo
CC ?= gcc
export DUET_ORT_LIBRARY := $(ORT_LIB)

.PHONY: all build release fetch-ort demo test cargo-test c-example header clean

all: build

# ONNX Runtime for development and tests: the PyPI wheel, downloaded with pip and unpacked
# (no virtualenv, no Python import); only the shared libraries are kept.
fetch-ort: $(ORT_LIB)
$(ORT_LIB):
	@mkdir -p $(ORT_DIR)/wheel $(ORT_DIR)/lib
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest $(ORT_DIR)/wheel \
	  --platform manylinux_2_28_x86_64 --python-version 3.11 onnxruntime==$(ORT_VERSION)
	cd $(ORT_DIR)/lib && $(PYTHON) -m zipfile -e $(ORT_DIR)/wheel/onnxruntime-$(ORT_VERSION)-*.whl unpacked \
	  && cp unpacked/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION) unpacked/onnxruntime/capi/libonnxruntime_providers_shared.so . \
	  && rm -rf unpacked && ln -sf libonnxruntime.so.$(ORT_VERSION) libonnxruntime.so
	@echo "ONNX Runtime $(ORT_VERSION): $(ORT_LIB)"

build: fetch-ort
	$(CARGO) build --release

release: build

demo: build
	@echo "== duet demo: the bundled models are tiny RANDOM-WEIGHT test models; their output is gibberish by design."
	@echo "== For real text, export a real model:  pip install -r tools/requirements.txt && python tools/export_model.py google/flan-t5-small models/flan-t5-small"
	@echo "==   then:  target/release/duet generate --model models/flan-t5-small 'summarize: ...'"
	target/release/duet info --model tests/fixtures/t5-tiny
	target/release/duet generate --model tests/fixtures/t5-tiny --set num_beams=4 --set max_new_tokens=16 \
	  "summarize: The quick brown fox jumps over the lazy dog." "你好，世界 🙂"
	target/release/duet generate --model tests/fixtures/bart-tiny --json --set max_new_tokens=12 "Hello world"

test: fetch-ort cargo-test c-example
	@echo "make test: all passed"

cargo-test:
	$(CARGO) test --release

C_BUILD := examples/c/build
C_FLAGS := -std=c11 -Wall -Wextra -Werror -Iinclude
C_LINK := -Ltarget/release -lduet -Wl,-rpath,$(CURDIR)/target/release
c-example: build
	@mkdir -p $(C_BUILD)
	$(CC) $(C_FLAGS) examples/c/generate.c -o $(C_BUILD)/generate $(C_LINK)
	$(CC) $(C_FLAGS) tests/c/abi_checks.c -o $(C_BUILD)/abi_checks $(C_LINK)
	for x in summarize chat search; do $(CC) $(C_FLAGS) examples/c/$$x.c -o $(C_BUILD)/$$x $(C_LINK) -lm || exit 1; done
	$(C_BUILD)/generate tests/fixtures/t5-tiny --set max_new_tokens=12 "translate English to German: Hello." "你好，世界 🙂"
	$(C_BUILD)/generate tests/fixtures/bart-tiny --set num_beams=3 --set max_new_tokens=8 "Hello world"
	$(C_BUILD)/abi_checks tests/fixtures/t5-tiny
	$(C_BUILD)/abi_checks tests/fixtures/bart-tiny
	$(C_BUILD)/summarize tests/fixtures/t5-tiny
	$(C_BUILD)/chat tests/fixtures/bart-tiny 50
	$(C_BUILD)/search tests/fixtures/t5-tiny $(C_BUILD)/index.bin

header:
	DUET_BLESS_HEADER=1 $(CARGO) test --release --test header

clean:
	$(CARGO) clean
	rm -rf $(ORT_DIR) $(C_BUILD)
