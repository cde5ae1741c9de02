package sink

// Throughput of the data sinks: readings per second into Redis and into
// MySQL (MariaDB) through the host's path, from a reading event to the
// server (routing, the bbolt queue, batched writes by the target's
// writer), against the same readings written by a native Go client to the
// same servers in the same run. `make bench` runs TestSinkThroughput with
// WAPPER_BENCH=1 (mk/sinks.mk) and prints readings/s and the ratios.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/dbtest"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

// The readings of the benchmark: benchDevices devices, each with one
// FLOAT property, N readings in all (WAPPER_BENCH_SINK_N, default
// 20000), interleaved across the devices as the host reads them.
const (
	benchDevices  = 100
	benchN        = 20000
	benchNS       = "bench"
	benchProperty = "temperature"
	// benchBatch is what the native batched client writes at once: the
	// sinks' default Batch.
	benchBatch = 2000
	// benchRounds: each measurement runs this many times, interleaved,
	// each one's best kept, so that a busy moment of the machine does not
	// decide a ratio.
	benchRounds = 3
	// benchTimeout only keeps a broken path from hanging the run; no
	// check depends on speed.
	benchTimeout = 5 * time.Minute
)

const (
	benchRedisPassword = "bench-redis-pw"
	benchMySQLPassword = "bench-mysql-pw"
	benchDatabase      = "kubeedge"
	benchUser          = "mapper"
)

// benchReading is one reading of a device's property.
type benchReading struct {
	device, value string
	ms            int64
}

func (r *benchReading) table() string { return benchNS + "/" + r.device + "/" + benchProperty }

// benchReadings returns devs×per readings of devices named after phase,
// in the order the host takes them: a reading of every device, then the
// next of every device, 100 ms apart.
func benchReadings(phase string, devs, per int) []benchReading {
	base := time.Now().Truncate(time.Second).UnixMilli()
	names := make([]string, devs)
	for d := range names {
		names[d] = fmt.Sprintf("%s-%03d", phase, d)
	}
	out := make([]benchReading, 0, devs*per)
	for i := range per {
		for d := range devs {
			out = append(out, benchReading{device: names[d], value: strconv.FormatFloat(20+float64(i%200)/10, 'f', 1, 64), ms: base + int64(i)*100})
		}
	}
	return out
}

// benchDeviceNames returns the devices of rs, in their first order.
func benchDeviceNames(rs []benchReading) []string {
	seen := map[string]bool{}
	var out []string
	for i := range rs {
		if !seen[rs[i].device] {
			seen[rs[i].device] = true
			out = append(out, rs[i].device)
		}
	}
	return out
}

// benchCPU is the CPU time the process has used so far (user and system).
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchResult is one measurement: readings/s and process CPU per reading.
type benchResult struct {
	rate float64
	cpu  time.Duration // per reading
}

func (r *benchResult) best(o benchResult) {
	if o.rate > r.rate {
		*r = o
	}
}

// measure runs fn, which writes n readings, and returns its rate and CPU.
func measure(n int, fn func()) benchResult {
	goruntime.GC()
	start, cpu := time.Now(), benchCPU()
	fn()
	el, c := time.Since(start), benchCPU()-cpu
	return benchResult{rate: float64(n) / el.Seconds(), cpu: c / time.Duration(n)}
}

// sinkBench is the servers and clients of the benchmark.
type sinkBench struct {
	t       *testing.T
	mgr     *devices.Manager
	log     *slog.Logger
	secrets hostio.SecretDir
	redis   *dbtest.Server
	mysql   *dbtest.Server
	rc      *redis.Client // for checks and cleanup
	db      *sql.DB
}

// host writes rs through the sinks, every reading with pushMethod push,
// and returns when the sinks have written them all. The sinks are new,
// on a state database of their own, with the host's defaults, the
// queue's bound raised to len(rs) if it is more, so that none is dropped.
func (b *sinkBench) host(kind string, push *v1beta1.PushMethod, rs []benchReading) benchResult {
	t := b.t
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(b.mgr, Options{DB: st.DB(), Path: st.Path(), Logger: b.log, Buffer: max(100000, len(rs)), Secrets: b.secrets,
		Getenv: func(string) string { return "" }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false // Run has returned
	defer func() {
		cancel()
		if stopped {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("sinks: %v", err)
		}
	}()
	// handle starts a target's writer once Run has started.
	for {
		s.mu.Lock()
		running := s.ctx != nil
		s.mu.Unlock()
		if running {
			break
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("sinks: Run returned at start: %v", err)
		case <-time.After(time.Millisecond):
		}
	}

	// The reading events, as the device manager emits them: one per
	// device read, its twin carrying the property's pushMethod.
	evs := make([]devices.Event, len(rs))
	for i := range rs {
		r := &rs[i]
		at := time.UnixMilli(r.ms)
		evs[i] = devices.Event{Type: devices.EventReading, Device: benchNS + "/" + r.device, Namespace: benchNS, Name: r.device, Time: at,
			Twins: []devices.TwinStatus{{Property: benchProperty, Type: "FLOAT", AccessMode: "ReadOnly", Reported: r.value, ReportedTime: at, Push: push}}}
	}
	written := s.met.written.WithLabelValues(kind)
	res := measure(len(rs), func() {
		// In batches of up to 1024 events, as Run takes them.
		for i := 0; i < len(evs); i += 1024 {
			s.handle(evs[i:min(i+1024, len(evs))])
		}
		deadline := time.Now().Add(benchTimeout)
		for testutil.ToFloat64(written) < float64(len(rs)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v of %d readings written after %v (not a speed check: the path is broken); status of %s: %+v",
					kind, testutil.ToFloat64(written), len(rs), benchTimeout, evs[0].Device, s.SinkStatus(evs[0].Device))
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	// Every reading written once, none dropped or refused.
	var w, d uint64
	for _, dev := range benchDeviceNames(rs) {
		for _, ss := range s.SinkStatus(benchNS + "/" + dev) {
			w, d = w+ss.Written, d+ss.Dropped
		}
	}
	if w != uint64(len(rs)) || d != 0 {
		t.Fatalf("%s: the sinks' status counts %d written and %d dropped, want %d and 0", kind, w, d, len(rs))
	}
	return res
}

// nativeDataModel is mapper-framework's common.DataModel, the member a
// mapper adds to Redis.
type nativeDataModel struct {
	DeviceName   string
	PropertyName string
	Namespace    string
	Value        string
	Type         string
	TimeStamp    int64
}

func (r *benchReading) member() []byte {
	m, _ := json.Marshal(nativeDataModel{DeviceName: r.device, PropertyName: benchProperty, Namespace: benchNS, Value: r.value, Type: "FLOAT", TimeStamp: r.ms})
	return m
}

// byDevice splits rs by device, keeping their order.
func byDevice(rs []benchReading) [][]benchReading {
	idx := map[string]int{}
	var out [][]benchReading
	for _, r := range rs {
		i, ok := idx[r.device]
		if !ok {
			i = len(out)
			idx[r.device] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

// redisEach writes rs as a mapper-framework mapper does: a goroutine per
// device property, one ZADD per reading (sorted set named after the
// device, the DataModel's JSON as member, its time in ms as score), a
// connection per device.
func (b *sinkBench) redisEach(rs []benchReading) benchResult {
	c := redis.NewClient(&redis.Options{Addr: b.redis.Addr, Password: benchRedisPassword, PoolSize: benchDevices, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	return b.perDevice("native redis ZADD", rs, func(dr []benchReading) error {
		for i := range dr {
			if err := c.ZAdd(ctx, dr[i].device, redis.Z{Score: float64(dr[i].ms), Member: dr[i].member()}).Err(); err != nil {
				return err
			}
		}
		return nil
	})
}

// perDevice measures write run on each device's readings at once, a
// goroutine per device, as mapper-framework's mappers write.
func (b *sinkBench) perDevice(what string, rs []benchReading, write func([]benchReading) error) benchResult {
	devs := byDevice(rs)
	return measure(len(rs), func() {
		var wg sync.WaitGroup
		errs := make(chan error, len(devs))
		for _, dr := range devs {
			wg.Go(func() {
				if err := write(dr); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.t.Fatalf("%s: %v", what, err)
		}
	})
}

// redisBatched writes rs in arrival order, benchBatch ZADDs per pipeline, from
// one goroutine: the host's writer without the queue.
func (b *sinkBench) redisBatched(rs []benchReading) benchResult {
	c := redis.NewClient(&redis.Options{Addr: b.redis.Addr, Password: benchRedisPassword, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	return measure(len(rs), func() {
		for i := 0; i < len(rs); i += benchBatch {
			chunk := rs[i:min(i+benchBatch, len(rs))]
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for j := range chunk {
					p.ZAdd(ctx, chunk[j].device, redis.Z{Score: float64(chunk[j].ms), Member: chunk[j].member()})
				}
				return nil
			})
			if err != nil {
				b.t.Fatalf("native redis pipeline: %v", err)
			}
		}
	})
}

// checkRedis checks that the sorted sets of rs's devices hold len(rs)
// members, each a DataModel scored with its time, then removes them.
func (b *sinkBench) checkRedis(what string, rs []benchReading) {
	t := b.t
	t.Helper()
	ctx := context.Background()
	var n int64
	for _, dev := range benchDeviceNames(rs) {
		c, err := b.rc.ZCard(ctx, dev).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	if n != int64(len(rs)) {
		t.Fatalf("%s: redis holds %d readings, want %d", what, n, len(rs))
	}
	last := rs[len(rs)-1]
	zs, err := b.rc.ZRangeWithScores(ctx, last.device, -1, -1).Result()
	if err != nil || len(zs) != 1 || zs[0].Score != float64(last.ms) || zs[0].Member.(string) != string(last.member()) {
		t.Fatalf("%s: newest member of %s %+v (%v), want %s scored %d", what, last.device, zs, err, last.member(), last.ms)
	}
	if err := b.rc.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// mysqlDB opens the database as a native client, with a connection per
// device kept open.
func (b *sinkBench) mysqlDB(conns int) *sql.DB {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = benchUser, benchMySQLPassword, "tcp", b.mysql.Addr, benchDatabase
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db
}

const benchCreate = " (id INT AUTO_INCREMENT PRIMARY KEY, ts  DATETIME NOT NULL,field TEXT)"

func benchTS(ms int64) string { return time.Unix(ms/1e3, 0).Format(time.DateTime) }

// mysqlEach writes rs as a mapper-framework mapper would at best: a
// goroutine per device property, CREATE TABLE IF NOT EXISTS once per
// table, then one INSERT per reading (autocommit) with a prepared
// statement, a connection per device.
func (b *sinkBench) mysqlEach(rs []benchReading) benchResult {
	db := b.mysqlDB(benchDevices)
	defer db.Close()
	return b.perDevice("native mysql", rs, func(dr []benchReading) error {
		table := quoteIdent(dr[0].table())
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS " + table + benchCreate); err != nil {
			return err
		}
		stmt, err := db.Prepare("INSERT INTO " + table + " (ts,field) VALUES (?,?)")
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range dr {
			if _, err := stmt.Exec(benchTS(dr[i].ms), dr[i].value); err != nil {
				return err
			}
		}
		return nil
	})
}

// mysqlBatched writes rs in arrival order, benchBatch readings per transaction,
// one multi-row INSERT per table in it, from one goroutine: the host's
// writer without the queue.
func (b *sinkBench) mysqlBatched(rs []benchReading) benchResult {
	db := b.mysqlDB(1)
	defer db.Close()
	created := map[string]bool{}
	return measure(len(rs), func() {
		for i := 0; i < len(rs); i += benchBatch {
			chunk := rs[i:min(i+benchBatch, len(rs))]
			var order []string
			rows := map[string][]any{}
			for j := range chunk {
				tb := chunk[j].table()
				if _, ok := rows[tb]; !ok {
					order = append(order, tb)
				}
				rows[tb] = append(rows[tb], benchTS(chunk[j].ms), chunk[j].value)
			}
			for _, tb := range order {
				if !created[tb] {
					if _, err := db.Exec("CREATE TABLE IF NOT EXISTS " + quoteIdent(tb) + benchCreate); err != nil {
						b.t.Fatalf("native mysql: %v", err)
					}
					created[tb] = true
				}
			}
			tx, err := db.Begin()
			if err != nil {
				b.t.Fatalf("native mysql: %v", err)
			}
			for _, tb := range order {
				args := rows[tb]
				q := "INSERT INTO " + quoteIdent(tb) + " (ts,field) VALUES " + strings.TrimSuffix(strings.Repeat("(?,?),", len(args)/2), ",")
				if _, err := tx.Exec(q, args...); err != nil {
					tx.Rollback()
					b.t.Fatalf("native mysql: %v", err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.t.Fatalf("native mysql: %v", err)
			}
		}
	})
}

// checkMySQL checks that the tables of rs's devices hold len(rs) rows and
// the newest row of the last device is its newest reading, then drops
// them.
func (b *sinkBench) checkMySQL(what string, rs []benchReading) {
	t := b.t
	t.Helper()
	var n int
	var tables []string
	for _, dev := range benchDeviceNames(rs) {
		tb := quoteIdent(benchNS + "/" + dev + "/" + benchProperty)
		tables = append(tables, tb)
		var c int
		if err := b.db.QueryRow("SELECT COUNT(*) FROM " + tb).Scan(&c); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		n += c
	}
	if n != len(rs) {
		t.Fatalf("%s: mysql holds %d readings, want %d", what, n, len(rs))
	}
	last := rs[len(rs)-1]
	var ts, field string
	if err := b.db.QueryRow("SELECT ts, field FROM "+quoteIdent(last.table())+" ORDER BY id DESC LIMIT 1").Scan(&ts, &field); err != nil ||
		ts != benchTS(last.ms) || field != last.value {
		t.Fatalf("%s: newest row of %s: %q %q (%v), want %q %q", what, last.table(), ts, field, err, benchTS(last.ms), last.value)
	}
	if _, err := b.db.Exec("DROP TABLE " + strings.Join(tables, ", ")); err != nil {
		t.Fatal(err)
	}
}

// TestSinkThroughput prints, for make bench, readings/s into Redis and
// into MySQL through the host's sinks against a native Go client writing
// the same readings to the same servers: per reading, as a
// mapper-framework mapper does, and batched, the best a native client
// does.
func TestSinkThroughput(t *testing.T) {
	testenv.Opt(t, "WAPPER_BENCH", "a benchmark that prints readings/s into Redis and MySQL through the host's sinks and by native Go clients for make bench (mk/sinks.mk)")
	n := benchN
	if v := os.Getenv("WAPPER_BENCH_SINK_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < benchDevices {
			t.Fatalf("WAPPER_BENCH_SINK_N=%q: want a number of readings, %d or more", v, benchDevices)
		}
	}
	per := n / benchDevices
	n = per * benchDevices

	b := &sinkBench{t: t, redis: dbtest.Redis(t, benchRedisPassword), mysql: dbtest.MariaDB(t, benchDatabase, benchUser, benchMySQLPassword)}
	b.log = slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.mgr = hosttest.Manager(t, b.log, t.TempDir(), devices.Options{})
	dir := t.TempDir()
	for name, pw := range map[string]string{"dbmethod-redis": benchRedisPassword, "dbmethod-mysql": benchMySQLPassword} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "password"), []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b.secrets = hostio.SecretDir(dir)
	b.rc = redis.NewClient(&redis.Options{Addr: b.redis.Addr, Password: benchRedisPassword})
	defer b.rc.Close()
	b.db = b.mysqlDB(2)
	defer b.db.Close()

	redisPush := &v1beta1.PushMethod{DBMethod: &v1beta1.DBMethodConfig{Redis: &v1beta1.DBMethodRedis{
		RedisClientConfig: &v1beta1.RedisClientConfig{Addr: b.redis.Addr, DB: 0, Poolsize: 4, MinIdleConns: 1}}}}
	mysqlPush := &v1beta1.PushMethod{DBMethod: &v1beta1.DBMethodConfig{Mysql: &v1beta1.DBMethodMySQL{
		MySQLClientConfig: &v1beta1.MySQLClientConfig{Addr: b.mysql.Addr, Database: benchDatabase, UserName: benchUser}}}}

	type row struct{ host, each, batched benchResult }
	var rd, my row
	for round := range benchRounds {
		phase := func(what string) []benchReading {
			return benchReadings(fmt.Sprintf("%s%d", what, round), benchDevices, per)
		}
		rs := phase("host")
		rd.host.best(b.host(KindRedis, redisPush, rs))
		b.checkRedis("host", rs)
		rs = phase("each")
		rd.each.best(b.redisEach(rs))
		b.checkRedis("native per reading", rs)
		rs = phase("batch")
		rd.batched.best(b.redisBatched(rs))
		b.checkRedis("native batched", rs)

		rs = phase("host")
		my.host.best(b.host(KindMySQL, mysqlPush, rs))
		b.checkMySQL("host", rs)
		rs = phase("each")
		my.each.best(b.mysqlEach(rs))
		b.checkMySQL("native per reading", rs)
		rs = phase("batch")
		my.batched.best(b.mysqlBatched(rs))
		b.checkMySQL("native batched", rs)
	}

	fmt.Printf("\nData sinks: %d readings (%d devices x %d, one FLOAT property) into the same local redis-server (appendfsync always) and MariaDB, best of %d\n",
		n, benchDevices, per, benchRounds)
	fmt.Printf("  host: reading events through the sinks (routing, bbolt queue, one writer per target, batches of %d)\n", benchBatch)
	fmt.Printf("  native per reading: go-redis ZADD / prepared INSERT per reading, a goroutine and a connection per device\n")
	fmt.Printf("  native batched: one goroutine, %d readings per go-redis pipeline / per transaction of multi-row INSERTs\n\n", benchBatch)
	fmt.Printf("%-8s %14s %14s %14s %12s %12s\n", "", "host", "native each", "native batch", "host/each", "host/batch")
	for _, r := range []struct {
		name string
		row
	}{{"redis", rd}, {"mysql", my}} {
		fmt.Printf("%-8s %10.0f r/s %10.0f r/s %10.0f r/s %11.0f%% %11.0f%%\n", r.name, r.host.rate, r.each.rate, r.batched.rate,
			100*r.host.rate/r.each.rate, 100*r.host.rate/r.batched.rate)
	}
	fmt.Printf("\nCPU time of this process per reading (the servers' not counted)\n")
	fmt.Printf("%-8s %14s %14s %14s\n", "", "host", "native each", "native batch")
	for _, r := range []struct {
		name string
		row
	}{{"redis", rd}, {"mysql", my}} {
		fmt.Printf("%-8s %11.1f µs %11.1f µs %11.1f µs\n", r.name, benchUS(r.host.cpu), benchUS(r.each.cpu), benchUS(r.batched.cpu))
	}
}

func benchUS(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
