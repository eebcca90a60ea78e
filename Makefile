# SPDX-License-Identifier: MIT
# The README's two commands, `make demo` and `make test`, and two helpers.
#   make build   install missing dependencies, Release build into $(BUILD_DIR)
#   make test    the whole test suite (scripts/test.sh)
#   make demo    echo load and idle-memory demo (scripts/demo.sh)
#   make cross   every cross target, built and run where it can (scripts/cross.sh)
#   make package-test  install into a temporary prefix, build and run a program
#                against it with find_package and pkg-config (scripts/package-test.sh)
#   make man-check  every public function has its manual page (scripts/man-check.sh)
#   make abi-check  the ABI against the last release's (scripts/abi-check.sh)
#   make deb     the Debian packages, into build/deb (scripts/deb.sh)
#   make clean   remove every build tree
BUILD_DIR ?= build/release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build test demo cross package-test man-check abi-check deb clean

all: build

build:
	sh scripts/deps.sh
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD_DIR) -j$(JOBS)

test:
	bash scripts/test.sh

demo:
	BUILD_DIR=$(BUILD_DIR) bash scripts/demo.sh

cross:
	bash scripts/cross.sh all

package-test:
	bash scripts/package-test.sh

man-check:
	bash scripts/man-check.sh

abi-check:
	bash scripts/abi-check.sh

deb:
	bash scripts/deb.sh

clean:
	rm -rf build $(BUILD_DIR)
