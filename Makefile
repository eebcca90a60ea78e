# The README's two commands, `make demo` and `make test`, and two helpers.
#   make build   install missing dependencies, Release build into $(BUILD_DIR)
#   make test    the whole test suite (scripts/test.sh)
#   make demo    echo load and idle-memory demo (scripts/demo.sh)
#   make clean   remove every build tree
BUILD_DIR ?= build/release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build test demo clean

all: build

build:
	sh scripts/deps.sh
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD_DIR) -j$(JOBS)

test:
	bash scripts/test.sh

demo:
	BUILD_DIR=$(BUILD_DIR) bash scripts/demo.sh

clean:
	rm -rf build $(BUILD_DIR)
