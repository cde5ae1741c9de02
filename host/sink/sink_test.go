package sink_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/sink"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/dbtest"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// header is the plugin and model of the test devices: count is a counter
// (a new value at every read), level a constant.
const header = `
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: meter-model, namespace: plant}
spec:
  protocol: virtual
  properties:
  - {name: count, type: INT, accessMode: ReadOnly}
  - {name: level, type: FLOAT, accessMode: ReadOnly}
---
`

// device returns a Device "plant/NAME" whose count and level have the
// given pushMethods (YAML, indented for the property).
func device(name, countPush, levelPush string) string {
	return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %s, namespace: plant}
spec:
  deviceModelRef: {name: meter-model}
  protocol: {protocolName: virtual}
  properties:
  - name: count
    collectCycle: 50
    reportCycle: 50
    visitors: {protocolName: virtual, configData: {kind: counter}}
    pushMethod:
%s
  - name: level
    collectCycle: 100
    reportCycle: 100
    visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 21.5}}
    pushMethod:
%s
`, name, countPush, levelPush)
}

// reading is a reading the host handed to the sinks.
type reading struct {
	device, property, value string
	ms                      int64
}

// harness runs a device manager with the virtual plugin and the sinks.
type harness struct {
	t       *testing.T
	mgr     *devices.Manager
	reg     *prometheus.Registry
	secrets string // the secrets directory
	st      *store.Store
	stop    func()

	mu     sync.Mutex
	pushed []reading // readings with a dbMethod or otel, as the sinks got them
}

func newHarness(t *testing.T, o sink.Options) *harness {
	t.Helper()
	virtual := testenv.Plugin(t, "virtual")
	log := slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &harness{t: t, reg: prometheus.NewRegistry(), secrets: t.TempDir()}
	h.mgr = hosttest.Manager(t, log, filepath.Dir(virtual), devices.Options{StateCycle: time.Second, FlushInterval: time.Second})
	var err error
	if h.st, err = store.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.st.Close() })
	events, cancel := h.mgr.SubscribeFunc("test", 1<<14, func(ev *devices.Event) bool { return ev.Type == devices.EventReading })
	go func() {
		for ev := range events {
			for _, tw := range ev.Twins {
				if tw.Push != nil && (tw.Push.DBMethod != nil || tw.Push.OTEL != nil) && !tw.ReportedTime.IsZero() {
					h.mu.Lock()
					h.pushed = append(h.pushed, reading{ev.Name, tw.Property, tw.Reported, tw.ReportedTime.UnixMilli()})
					h.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(cancel)
	h.run(o, log)
	return h
}

// run starts the sinks on the harness's database; h.stop stops them.
func (h *harness) run(o sink.Options, log *slog.Logger) {
	o.DB, o.Path, o.Logger = h.st.DB(), h.st.Path(), log
	if o.Registerer == nil {
		o.Registerer = h.reg
	}
	if o.Secrets == nil {
		o.Secrets = hostio.SecretDir(h.secrets)
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	s := sink.New(h.mgr, o)
	s.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("sinks: %v", err)
		}
	}
	h.t.Cleanup(h.stop)
}

// secret writes key of secret name.
func (h *harness) secret(name, key, value string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Join(h.secrets, name), 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.secrets, name, key), []byte(value), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// readings returns the readings handed to the sinks so far, of one
// device and property.
func (h *harness) readings(dev, prop string) []reading {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []reading
	for _, r := range h.pushed {
		if r.device == dev && r.property == prop {
			out = append(out, r)
		}
	}
	return out
}

// readingsUntil returns the readings of readings taken at or before ms:
// those the sinks had before they stopped, when ms is the last stored
// (the device reads on after).
func readingsUntil(rs []reading, ms int64) []reading {
	var out []reading
	for _, r := range rs {
		if r.ms <= ms {
			out = append(out, r)
		}
	}
	return out
}

// sinkStatus returns the status of one sink of a property of plant/dev.
func (h *harness) sinkStatus(dev, prop, method string) devices.SinkStatus {
	h.t.Helper()
	d, err := h.mgr.Device("plant", dev)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range d.Sinks {
		if s.Property == prop && s.Method == method {
			return s
		}
	}
	return devices.SinkStatus{}
}

// waitFor polls cond for up to two minutes; the bound is generous, no
// test depends on speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dataModel is mapper-framework's common.DataModel, as stored in Redis.
type dataModel struct {
	DeviceName, PropertyName, Namespace, Value, Type string
	TimeStamp                                        int64
}

// redisReadings returns the sorted set of a device as mapper-framework's
// redis dbMethod leaves it, checking that each score is its member's
// TimeStamp.
func redisReadings(t *testing.T, c *redis.Client, key string) []dataModel {
	t.Helper()
	zs, err := c.ZRangeWithScores(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]dataModel, 0, len(zs))
	for _, z := range zs {
		var m dataModel
		dec := json.NewDecoder(strings.NewReader(z.Member.(string)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("member %q is not mapper-framework's DataModel: %v", z.Member, err)
		}
		if float64(m.TimeStamp) != z.Score {
			t.Fatalf("member %q has score %v, want its TimeStamp", z.Member, z.Score)
		}
		out = append(out, m)
	}
	return out
}

// TestRedisAndMySQL: readings land in Redis and MySQL in mapper-framework's
// shapes, with passwords from the host's secrets; Redis stopped for a
// while and started again loses none of them: they wait in the queue,
// shown in the device's status and the metrics, and are written when it
// is back.
func TestRedisAndMySQL(t *testing.T) {
	rs := dbtest.Redis(t, "redis-pw")
	my := dbtest.MariaDB(t, "kubeedge", "mapper", "mysql-pw")
	h := newHarness(t, sink.Options{Batch: 50})
	h.secret("dbmethod-redis", "password", "redis-pw")
	h.secret("dbmethod-mysql", "password", "mysql-pw")
	hosttest.Apply(t, h.mgr, header+device("meter",
		"      dbMethod:\n        redis:\n          redisClientConfig: {addr: \""+rs.Addr+"\", db: 0, poolsize: 4, minIdleConns: 1}",
		"      dbMethod:\n        mysql:\n          mysqlClientConfig: {addr: \""+my.Addr+"\", database: kubeedge, userName: mapper}"))

	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: "redis-pw"})
	defer rc.Close()
	waitFor(t, "10 readings of count in redis", func() bool { return len(redisReadings(t, rc, "meter")) >= 10 })
	for _, m := range redisReadings(t, rc, "meter") {
		if m.DeviceName != "meter" || m.Namespace != "plant" || m.PropertyName != "count" || m.Type != "INT" {
			t.Fatalf("redis member %+v, want device meter of plant, property count, type INT (its model's)", m)
		}
		if _, err := strconv.Atoi(m.Value); err != nil {
			t.Fatalf("redis member value %q is not the counter's", m.Value)
		}
	}

	db, err := sql.Open("mysql", "mapper:mysql-pw@tcp("+my.Addr+")/kubeedge")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, "3 rows of level in mysql", func() bool {
		var n int
		return db.QueryRow("SELECT COUNT(*) FROM `plant/meter/level`").Scan(&n) == nil && n >= 3
	})
	cols, err := db.Query("SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='kubeedge' AND TABLE_NAME='plant/meter/level' ORDER BY ORDINAL_POSITION")
	if err != nil {
		t.Fatal(err)
	}
	var shape []string
	for cols.Next() {
		var name, typ, extra string
		if err := cols.Scan(&name, &typ, &extra); err != nil {
			t.Fatal(err)
		}
		shape = append(shape, strings.TrimSpace(name+" "+typ+" "+extra))
	}
	cols.Close()
	if got, want := strings.Join(shape, ", "), "id int(11) auto_increment, ts datetime, field text"; got != want {
		t.Errorf("table plant/meter/level has columns %q, want mapper-framework's %q", got, want)
	}
	var ts, field string
	if err := db.QueryRow("SELECT ts, field FROM `plant/meter/level` ORDER BY id LIMIT 1").Scan(&ts, &field); err != nil {
		t.Fatal(err)
	}
	first := h.readings("meter", "level")[0]
	if want := time.UnixMilli(first.ms).Format(time.DateTime); field != "21.5" || ts != want {
		t.Errorf("first row ts %q field %q, want %q and 21.5", ts, field, want)
	}

	// Redis goes away: readings queue up, and the status says why.
	rs.Stop()
	waitFor(t, "count's redis sink down with 20 readings queued", func() bool {
		s := h.sinkStatus("meter", "count", "dbMethod.redis")
		return s.Error != "" && s.Queued >= 20
	})
	if s := h.sinkStatus("meter", "level", "dbMethod.mysql"); s.Error != "" || s.Written < 3 {
		t.Errorf("mysql sink %+v while redis is down, want it writing", s)
	}
	if v := metric(t, h.reg, "wapper_sink_up", "redis"); v != 0 {
		t.Errorf("wapper_sink_up{kind=redis} %v while down", v)
	}
	rs.Start()
	waitFor(t, "count's queue empty", func() bool {
		s := h.sinkStatus("meter", "count", "dbMethod.redis")
		return s.Error == "" && s.Queued == 0
	})
	h.stop()
	// Every reading the host took is in Redis, once.
	stored := map[string]int{}
	var last int64
	for _, m := range redisReadings(t, rc, "meter") {
		stored[m.Value+"@"+strconv.FormatInt(m.TimeStamp, 10)]++
		last = max(last, m.TimeStamp)
	}
	took := readingsUntil(h.readings("meter", "count"), last)
	for _, r := range took {
		if n := stored[r.value+"@"+strconv.FormatInt(r.ms, 10)]; n != 1 {
			t.Fatalf("reading %+v is in redis %d times, want once", r, n)
		}
	}
	if len(stored) != len(took) {
		t.Errorf("redis holds %d readings, the host took %d", len(stored), len(took))
	}
	s := h.sinkStatus("meter", "count", "dbMethod.redis")
	if s.Dropped != 0 || s.Written != uint64(len(took)) {
		t.Errorf("status %+v, want %d written and none dropped", s, len(took))
	}
	t.Logf("%d count readings, all in redis after it was down", len(took))
}

// metric returns the value of a gauge or counter with label kind, or 0.
func metric(t *testing.T, g prometheus.Gatherer, name, kind string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestBoundCredentialsRefusals: a sink that refuses the credentials says
// so in the device's status; while it does, readings past the queue's
// bound are dropped, oldest first, and counted in the status and the
// metrics; a fixed secret is used at the next attempt, and the newest
// readings land. Sinks that cannot be used (TDEngine, a missing address,
// no database) are refused in the status, never ignored.
func TestBoundCredentialsRefusals(t *testing.T) {
	rs := dbtest.Redis(t, "right")
	my := dbtest.MariaDB(t, "kubeedge", "mapper", "right")
	const bound = 15
	h := newHarness(t, sink.Options{Buffer: bound, Batch: 10})
	h.secret("dbmethod-redis", "password", "wrong")
	h.secret("dbmethod-mysql", "password", "wrong")
	hosttest.Apply(t, h.mgr, header+device("meter",
		"      dbMethod:\n        redis:\n          redisClientConfig: {addr: \""+rs.Addr+"\"}",
		"      dbMethod:\n        mysql:\n          mysqlClientConfig: {addr: \""+my.Addr+"\", database: kubeedge, userName: mapper}")+
		"---\n"+device("odd",
		"      dbMethod:\n        TDEngine:\n          TDEngineClientConfig: {addr: \"127.0.0.1:6041\", dbName: db}\n        redis:\n          redisClientConfig: {db: 1}",
		"      dbMethod: {}"))

	waitFor(t, "both sinks refusing the password, count's queue full", func() bool {
		r, m := h.sinkStatus("meter", "count", "dbMethod.redis"), h.sinkStatus("meter", "level", "dbMethod.mysql")
		return strings.Contains(r.Error, "WRONGPASS") && strings.Contains(m.Error, "Access denied") && r.Queued == bound && r.Dropped >= 5
	})
	if v := metric(t, h.reg, "wapper_sink_dropped_total", "redis"); v < 5 {
		t.Errorf("wapper_sink_dropped_total{kind=redis} %v, want the readings past the bound", v)
	}
	for _, c := range []struct{ prop, method, want string }{
		{"count", "dbMethod.TDEngine", "pushMethod.dbMethod.TDEngine is not supported by wapper-host"},
		{"count", "dbMethod.redis", "pushMethod.dbMethod.redis.redisClientConfig.addr is required"},
		{"level", "dbMethod", "pushMethod.dbMethod names no database"},
	} {
		s := h.sinkStatus("odd", c.prop, c.method)
		if !strings.Contains(s.Error, c.want) || s.Dropped == 0 {
			t.Errorf("odd %s %s: status %+v, want error %q and readings counted as dropped", c.prop, c.method, s, c.want)
		}
	}

	// The right password: the newest readings, those within the bound,
	// land.
	h.secret("dbmethod-redis", "password", "right")
	h.secret("dbmethod-mysql", "password", "right")
	waitFor(t, "both sinks writing", func() bool {
		r, m := h.sinkStatus("meter", "count", "dbMethod.redis"), h.sinkStatus("meter", "level", "dbMethod.mysql")
		return r.Error == "" && m.Error == "" && r.Written > bound && m.Written > 0
	})
	h.stop()
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: "right"})
	defer rc.Close()
	stored := redisReadings(t, rc, "meter")
	took := readingsUntil(h.readings("meter", "count"), stored[len(stored)-1].TimeStamp)
	s := h.sinkStatus("meter", "count", "dbMethod.redis")
	if uint64(len(stored)) != s.Written || s.Written+s.Dropped != uint64(len(took)) {
		t.Errorf("redis holds %d, status %+v, the host took %d: written and dropped must add up", len(stored), s, len(took))
	}
	// What was dropped is the oldest: redis holds the latest ones, with no
	// gap after the first it holds.
	first := stored[0].TimeStamp
	n := 0
	for _, r := range took {
		if r.ms >= first {
			n++
		}
	}
	if n != len(stored) {
		t.Errorf("redis holds %d readings from %d on, the host took %d since: a gap", len(stored), first, n)
	}
}

// TestQueueSurvivesRestart: readings queued while the server is down are
// kept in the state database when the host stops, and written by the next
// host.
func TestQueueSurvivesRestart(t *testing.T) {
	rs := dbtest.Redis(t, "pw")
	h := newHarness(t, sink.Options{})
	h.secret("dbmethod-redis", "password", "pw")
	rs.Stop()
	hosttest.Apply(t, h.mgr, header+device("meter",
		"      dbMethod:\n        redis:\n          redisClientConfig: {addr: \""+rs.Addr+"\"}",
		"      otel: {endpointURL: \"http://127.0.0.1:1/v1/metrics\"}"))
	waitFor(t, "10 readings queued", func() bool { return h.sinkStatus("meter", "count", "dbMethod.redis").Queued >= 10 })
	h.stop()
	queued := h.sinkStatus("meter", "count", "dbMethod.redis").Queued
	if err := h.mgr.DeleteDevice(context.Background(), "manifests", "plant", "meter"); err != nil {
		t.Fatal(err)
	}
	rs.Start()
	log := slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.run(sink.Options{Registerer: prometheus.NewRegistry()}, log)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: "pw"})
	defer rc.Close()
	waitFor(t, "the queued readings in redis", func() bool { return len(redisReadings(t, rc, "meter")) == queued })
}

// TestInfluxDB: readings land in InfluxDB through the v2 write API as
// mapper-framework's influxdb2 dbMethod writes them: the property's
// measurement and tags, its fieldKey holding the value as a string, at the
// reading's time. A refused token shows in the status; the token is read
// again at the next attempt, from the host's secrets before the TOKEN
// environment variable.
func TestInfluxDB(t *testing.T) {
	inf := dbtest.InfluxDB(t, "kubeedge", "admin", "influx-pw")
	h := newHarness(t, sink.Options{Getenv: func(k string) string {
		if k == "TOKEN" {
			return "admin:wrong"
		}
		return ""
	}})
	hosttest.Apply(t, h.mgr, header+device("meter",
		"      dbMethod:\n        influxdb2:\n          influxdb2ClientConfig: {url: \"http://"+inf.Addr+"\", org: kubeedge, bucket: kubeedge}\n"+
			"          influxdb2DataConfig: {measurement: meter_count, tag: {unit: pieces, line: \"2\"}, fieldKey: count}",
		"      http: null"))
	waitFor(t, "the wrong token refused", func() bool {
		return strings.Contains(h.sinkStatus("meter", "count", "dbMethod.influxdb2").Error, "InfluxDB refused the token (HTTP 401")
	})
	h.secret("dbmethod-influxdb2", "token", "admin:influx-pw")
	waitFor(t, "10 points written", func() bool { return h.sinkStatus("meter", "count", "dbMethod.influxdb2").Written >= 10 })
	h.stop()

	body, err := inf.Query("kubeedge", "SELECT * FROM meter_count")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Results []struct {
			Series []struct {
				Name    string
				Columns []string
				Values  [][]any
			}
		}
	}
	if err := json.Unmarshal(body, &res); err != nil || len(res.Results) != 1 || len(res.Results[0].Series) != 1 {
		t.Fatalf("query: %v %s", err, body)
	}
	s := res.Results[0].Series[0]
	if got := strings.Join(s.Columns, ","); got != "time,count,line,unit" {
		t.Fatalf("columns %s, want time, the field count and the tags line and unit", got)
	}
	var last int64
	for _, v := range s.Values {
		last = max(last, int64(v[0].(float64)))
	}
	took := map[int64]string{}
	for _, r := range readingsUntil(h.readings("meter", "count"), last) {
		took[r.ms] = r.value
	}
	st := h.sinkStatus("meter", "count", "dbMethod.influxdb2")
	if uint64(len(s.Values)) != st.Written || st.Written != uint64(len(took)) || st.Dropped != 0 {
		t.Errorf("%d points, status %+v, the host took %d readings", len(s.Values), st, len(took))
	}
	for _, v := range s.Values {
		ms, val := int64(v[0].(float64)), v[1]
		if sv, ok := val.(string); !ok || took[ms] != sv || v[2] != "2" || v[3] != "pieces" {
			t.Fatalf("point %v: want the reading at its time, value as a string field, tags line=2 unit=pieces", v)
		}
	}
}

// TestOTEL: readings reach a real OpenTelemetry Collector over OTLP/HTTP
// as mapper-framework's pushMethod.otel sends them (a gauge per property,
// named after it, in a resource with device.id), each at its reading's
// time; the collector stopped and started again loses none.
func TestOTEL(t *testing.T) {
	col := dbtest.OTELCollector(t)
	h := newHarness(t, sink.Options{})
	hosttest.Apply(t, h.mgr, header+device("meter",
		"      otel: {endpointURL: \""+col.URL+"\"}",
		"      otel: {endpointURL: \"http://"+col.Addr+"\"}"))
	waitFor(t, "5 readings of count exported", func() bool { return h.sinkStatus("meter", "count", "otel").Written >= 5 })
	col.Stop()
	waitFor(t, "count's otel sink down with 10 readings queued", func() bool {
		s := h.sinkStatus("meter", "count", "otel")
		return s.Error != "" && s.Queued >= 10
	})
	col.Start()
	waitFor(t, "the queue written", func() bool {
		s := h.sinkStatus("meter", "count", "otel")
		return s.Error == "" && s.Queued == 0
	})
	h.stop()

	points := map[string]map[int64]float64{} // by property, time
	for _, line := range col.Received() {
		var req colmetrics.ExportMetricsServiceRequest
		if err := protojson.Unmarshal([]byte(line), &req); err != nil {
			t.Fatalf("collector output %q: %v", line, err)
		}
		for _, rm := range req.ResourceMetrics {
			attrs := map[string]string{}
			for _, kv := range rm.Resource.Attributes {
				attrs[kv.Key] = kv.Value.GetStringValue()
			}
			if attrs["device.id"] != "plant/meter" || attrs["service.name"] != "wapper-host" {
				t.Fatalf("resource attributes %v, want device.id plant/meter and service.name wapper-host", attrs)
			}
			for _, sm := range rm.ScopeMetrics {
				if sm.Scope.GetName() != "github.com/kubeedge/Template/data/dbmethod/otel" {
					t.Errorf("scope %q, want mapper-framework's meter name", sm.Scope.GetName())
				}
				for _, m := range sm.Metrics {
					if m.GetGauge() == nil {
						t.Fatalf("metric %s is not a gauge", m.Name)
					}
					if points[m.Name] == nil {
						points[m.Name] = map[int64]float64{}
					}
					for _, dp := range m.GetGauge().DataPoints {
						points[m.Name][int64(dp.TimeUnixNano/1e6)] = dp.GetAsDouble()
					}
				}
			}
		}
	}
	var last int64
	for ms := range points["count"] {
		last = max(last, ms)
	}
	took := readingsUntil(h.readings("meter", "count"), last)
	for _, r := range took {
		v, ok := points["count"][r.ms]
		if want, _ := strconv.ParseFloat(r.value, 64); !ok || v != want {
			t.Fatalf("reading %+v: collector has %v (%v)", r, v, ok)
		}
	}
	if len(points["count"]) != len(took) {
		t.Errorf("collector has %d count points, the host took %d", len(points["count"]), len(took))
	}
	for _, v := range points["level"] {
		if v != 21.5 {
			t.Fatalf("level point %v, want 21.5", v)
		}
	}
	if len(points["level"]) == 0 {
		t.Errorf("no level points: an endpointURL without a path goes to /v1/metrics")
	}
}
