# The two commands of the README: `make demo` and `make test`.
.PHONY: demo test build clean
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
build:
	bash scripts/deps.sh
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/release -j
clean:
	rm -rf build
