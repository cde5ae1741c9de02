# `wapper plugin new` (registry/plugincli/scaffold) writes the SDK into new
# plugin projects from sdk.txtar, a generated copy of sdk-go, abi and
# sdk-rust embedded in bin/wapper. make build refreshes it first, so the
# binary always carries the SDK of this tree; TestSDKArchiveCurrent fails
# when the committed copy is stale.
SCAFFOLD_SDK := registry/plugincli/scaffold/sdk.txtar
SCAFFOLD_SDK_SRC := $(shell find abi sdk-go sdk-rust/src -name testdata -prune -o -name target -prune -o -type f \( -name '*.go' -o -name '*.rs' -o -name go.mod -o -name SPEC.md \) -print 2>/dev/null) sdk-rust/Cargo.toml

build: $(SCAFFOLD_SDK)

$(SCAFFOLD_SDK): $(SCAFFOLD_SDK_SRC)
	$(GO) run ./registry/plugincli/scaffold/internal/gensdk -root . -out $@
