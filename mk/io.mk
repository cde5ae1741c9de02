# Device I/O (issue 4): the host's socket, serial and GPIO functions
# (host/hostio, host/runtime/io.go), the Modbus and GPIO plugins, and their
# tests against real peers (a Modbus TCP server with mbpoll, pymodbus over a
# socat pty pair, gpiotest pins). `make test` runs them all through
# `go test ./...`.

# make bench: reads/s of the wasm Modbus plugin through the host runtime
# against a native Go Modbus client, same server, same run.
BENCH_STEPS += bench-modbus

.PHONY: bench-modbus
bench-modbus: plugins
	$(call bench_save,WAPPER_BENCH=1 $(GO) test -count=1 -run '^TestModbusThroughput$$' -v ./e2e,modbus.txt)

.PHONY: io-test
io-test: bin/plugins/modbus.wasm bin/plugins/gpio.wasm
	$(GO) test -count=1 ./host/hostio ./plugins/modbus
	$(GO) test -count=1 -run 'TestModbus|TestGPIO' ./e2e
