#!/usr/bin/env bash
# Tests the Rust SDK and the Rust plugins natively with cargo test (the NMEA
# plugin against a real gpsd fed by gpsfake), and checks that the SDK also
# builds for wasm32-wasi. Called by `make test` (mk/rust.mk).
set -euo pipefail
cd "$(dirname "$0")/.."
t=hack/rust-toolchain.sh
$t cargo sdk-rust test --offline
$t cargo sdk-rust/examples/conformance test --offline
$t cargo plugins/nmea-rust test --offline
$t cargo sdk-rust/examples/conformance build --offline --target wasm32-wasi
