# tessera front door. `make demo` and `make test` work on a fresh Debian machine: they install what they
# need (Debian packages with apt-get as root, Python packages into .venv/), build, and run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JOBS ?= $(shell nproc)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# libtorch-dev: the neural component (RQ-VAE, RQ-KMeans+; about 65 s and 160 MB installed); python3-torch:
# the PyTorch reference its tests compare with (/usr/bin/python3, the same torch 1.13; about 40 s more).
APT_PACKAGES := build-essential cmake pkg-config git clang libclang-rt-14-dev libomp-dev \
  libopenblas-dev liblemon-dev libzip-dev libhdf5-dev zlib1g-dev nlohmann-json3-dev libcli11-dev libgtest-dev \
  dataset-fashion-mnist valgrind qemu-user libtorch-dev python3-torch
CMAKE_ARGS := -DPython_EXECUTABLE=$(abspath $(PY))
DEMO_DIR := demo-out
# OpenMP workers wait without spinning: on small or shared machines spinning steals the cores BLAS needs.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-apt setup-python apt-lists build test test-cpp test-python test-sanitize fuzz demo bench clean

setup: setup-apt setup-python

# Idempotent: apt-get runs only when a package is missing.
setup-apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(PYTHON) >/dev/null || { $(SUDO) apt-get install -y -qq python3 python3-venv python3-dev >/dev/null; }

setup-python: $(VENV)/.installed

$(VENV)/.installed: requirements/runtime.txt requirements/build.txt requirements/test.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/test.txt
	@touch $@

# The Debian catalogue the demo embeds: package lists with English descriptions.
apt-lists:
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 && ls /var/lib/apt/lists/*_Translation-en* >/dev/null 2>&1 || \
	  $(SUDO) apt-get update -qq -o Acquire::Languages=en

build: setup
	cmake -S . -B build $(CMAKE_ARGS) >/dev/null
	cmake --build build -j$(JOBS)

test-cpp: build
	cd build && ctest --output-on-failure

test-python: build
	PYTHONPATH=build/python $(PY) -m pytest -q tests/python

# The C++ tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: setup
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_SANITIZE=ON -DTESSERA_BUILD_PYTHON=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build build-asan -j$(JOBS) --target tessera_tests tessera_cli
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./tessera_tests

# Every file loader under libFuzzer, briefly, from the seed corpus in fuzz/corpus.
fuzz: setup
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_FUZZ=ON \
	  -DTESSERA_BUILD_PYTHON=OFF -DTESSERA_BUILD_CLI=OFF -DTESSERA_BUILD_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build build-fuzz -j$(JOBS)
	bash fuzz/run.sh build-fuzz $${FUZZ_SECONDS:-12}

test: test-cpp test-python test-sanitize fuzz

demo: build apt-lists
	$(PY) scripts/demo.py --out $(DEMO_DIR)

bench: build
	$(PY) bench/bench_sid.py

clean:
	rm -rf build build-asan build-fuzz $(DEMO_DIR)
