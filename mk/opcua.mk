# OPC UA: the plugin (plugins/opcua) and its peer, node-opcua's server
# (hack/opcua/server.js), installed from npm into ~/.cache/wapper by
# hack/opcua/ensure-node-opcua.sh (needs Node.js 20 or later with npm).

TEST_PREREQS += opcua-peer

.PHONY: opcua-peer opcua-test bench-opcua

# Cold: an npm install of about 70 MB, under a minute; warm: instant.
opcua-peer:
	@hack/opcua/ensure-node-opcua.sh >/dev/null

# Only the OPC UA tests: the plugin's own, then through wapper-host.
opcua-test: build bin/plugins/opcua.wasm opcua-peer
	$(GO) test -count=1 ./plugins/opcua
	$(GO) test -count=1 -run 'TestOPCUA' ./e2e

# make bench: reads/s of the wasm OPC UA plugin through the host runtime
# against gopcua's native client, same node-opcua server, same run.
BENCH_STEPS += bench-opcua

bench-opcua: plugins opcua-peer
	$(call bench_save,WAPPER_BENCH=1 $(GO) test -count=1 -run '^TestOPCUAThroughput$$' -v ./e2e,opcua.txt)
