# Data sinks (host/sink): Redis and MariaDB come from Debian (hack/deps.sh);
# InfluxDB 1.8, whose /api/v2/write is InfluxDB v2's write API, is built
# from InfluxData's source on the Go module proxy into ~/.cache/wapper by
# hack/influxdb/ensure-influxd.sh.

TEST_PREREQS += influxdb-peer

.PHONY: influxdb-peer sinks-test

# Cold: about 90 modules and a 3-5 minute build on 2 cores; warm: instant.
influxdb-peer:
	@hack/influxdb/ensure-influxd.sh >/dev/null

sinks-test: deps plugins influxdb-peer otelcol-peer
	$(GO) test -count=1 ./host/sink

# make bench: readings/s into Redis and MySQL (MariaDB) through the host's
# sinks (routing, bbolt queue, batched writes) against a native Go client's
# writes, per reading and batched, to the same servers in the same run
# (host/sink/bench_test.go; WAPPER_BENCH_SINK_N readings, default 20000;
# about a minute on 2 cores). It needs only redis-server and MariaDB.
BENCH_STEPS += bench-sinks

.PHONY: bench-sinks
bench-sinks: deps
	$(call bench_save,WAPPER_BENCH=1 $(GO) test -count=1 -timeout 30m -run '^TestSinkThroughput$$' -v ./host/sink,sinks.txt)

# The OpenTelemetry Collector (otlp receiver, file exporter) the otel sink's
# tests send to, built from hack/otelcol (a module of its own) into
# ~/.cache/wapper. Cold: about 450 MB of modules and 3-4 minutes; warm:
# instant.
TEST_PREREQS += otelcol-peer

.PHONY: otelcol-peer
otelcol-peer:
	@hack/otelcol/ensure-otelcol.sh >/dev/null
