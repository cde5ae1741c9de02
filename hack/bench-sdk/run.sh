#!/bin/sh
# Runs the SDK benchmark (make bench): one word for the Makefile's
# BENCH_STEPS, whose entries are run one word each.
set -e
cd "$(dirname "$0")/../.."
exec "${GO:-go}" run ./hack/bench-sdk "$@"
