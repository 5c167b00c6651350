# Thin wrapper over CMake.  Every target installs the Debian packages it
# needs first (scripts/install-deps.sh), so a fresh machine needs nothing else.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo bench-loss bench-linear bench-mpi bench-train bench-python fuzz install python clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure

# The main job: the cleverhans tutorial CNN with label smoothing 0.1 on
# Fashion-MNIST, 6 epochs of Adam 1e-3 at batch 128, then the test evaluation.
demo: build
	@scripts/install-deps.sh data
	$(BUILD)/lsr train --data /usr/share/datasets/fashion-mnist --model cleverhans-cnn \
	    --epochs 6 --batch 128 --optimizer adam --lr 1e-3 --smoothing 0.1 --seed 0 \
	    --out $(BUILD)/demo-model.safetensors --metrics $(BUILD)/demo-metrics.jsonl

bench-loss: build
	@scripts/install-deps.sh bench
	$(BUILD)/bench_loss

bench-mpi: build
	sh bench/bench_mpi.sh $(BUILD)/lsr

bench-linear: build
	@scripts/install-deps.sh bench
	$(BUILD)/bench_linear

bench-train: build
	@scripts/install-deps.sh bench data
	LSR=$(BUILD)/lsr bench/bench_train.sh

# lsr.torch against F.cross_entropy (the loss alone, the binding's overhead, an
# LM-head training step), on the package in python/ over this build's library
bench-python: build
	@scripts/install-deps.sh bench
	LSR_LIBRARY=$(BUILD)/liblsr.so PYTHONPATH=python /usr/bin/python3 bench/bench_python.py $(JOBS)

# make fuzz SECONDS=N: every libFuzzer harness for N seconds (clang 14)
SECONDS ?= 60
fuzz: deps
	@scripts/install-deps.sh fuzz
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLSR_FUZZ=ON -DLSR_ONEDNN=OFF -DLSR_BUILD_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	@scripts/fuzz.sh $(SECONDS)

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The Python package (python/: lsr for NumPy, lsr.torch for PyTorch) for
# Debian's /usr/bin/python3, with the shared library inside it.
python: build
	@scripts/install-deps.sh python
	cp -L $(BUILD)/liblsr.so python/lsr/liblsr.so
	/usr/bin/python3 -m pip install --quiet --no-build-isolation --no-deps --no-index \
	    --break-system-packages ./python

clean:
	rm -rf $(BUILD) build-*
