# Rust: the SDK (sdk-rust), the Rust conformance plugin and the NMEA mapper,
# built with Debian's rustc 1.63 through hack/rust-toolchain.sh, which
# installs it where missing. Build output lives in ~/.cache/wapper-cargo.

RUST_SDK_SRC := $(wildcard sdk-rust/Cargo.toml sdk-rust/.cargo/config.toml sdk-rust/src/*.rs)

EXTRA_PLUGINS += bin/plugins/nmea-rust.wasm
TEST_PREREQS += bin/testplugins/conformance-rust.wasm
TEST_STEPS += hack/rust-test.sh

.PHONY: rust-test
testplugins: bin/testplugins/conformance-rust.wasm

bin/plugins/nmea-rust.wasm: $(RUST_SDK_SRC) $(wildcard plugins/nmea-rust/Cargo.toml plugins/nmea-rust/.cargo/config.toml plugins/nmea-rust/src/*.rs)
	hack/rust-toolchain.sh wasm plugins/nmea-rust nmea_rust $@

bin/testplugins/conformance-rust.wasm: $(RUST_SDK_SRC) $(wildcard sdk-rust/examples/conformance/Cargo.toml sdk-rust/examples/conformance/.cargo/config.toml sdk-rust/examples/conformance/src/*.rs)
	hack/rust-toolchain.sh wasm sdk-rust/examples/conformance conformance_rust $@

rust-test:
	hack/rust-test.sh
