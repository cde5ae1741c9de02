package sink

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	influxapi "github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
	"github.com/redis/go-redis/v9"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	otlpmetrics "go.opentelemetry.io/proto/otlp/metrics/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"wapper.dev/wapper/host/push"
)

// driver writes batches of readings to one target.
type driver interface {
	// write stores recs, in order. An error means none is stored and the
	// batch is tried again later, unless it is a *rejected: then the
	// batch is settled, the readings it lists refused by the server for
	// good.
	write(ctx context.Context, recs []Record) error
	close() error
}

// rejected is a batch the server took, refusing some readings (idx, all
// when nil) for a reason retrying cannot fix, such as a value that is not
// a number for an OTLP gauge.
type rejected struct {
	idx []int
	err error
}

func (r *rejected) Error() string { return r.err.Error() }
func (r *rejected) Unwrap() error { return r.err }

// count is the number of readings of a batch of n that r refuses.
func (r *rejected) count(n int) int {
	if r.idx == nil {
		return n
	}
	return len(r.idx)
}

// credentials look up a target's secret: key of secret "dbmethod-KIND"
// in the host's secrets, else environment variable env, as
// mapper-framework reads it.
type credentials func(kind, key, env string) string

// open returns the driver of t. It does not connect: the first write does.
func open(t Target, cred credentials) (driver, error) {
	switch t.Kind {
	case KindRedis:
		return &redisDriver{c: redis.NewClient(&redis.Options{Addr: t.Addr, DB: t.DB, PoolSize: t.PoolSize, MinIdleConns: t.MinIdleConns,
			Password: cred(KindRedis, "password", "PASSWORD"), DialTimeout: 5 * time.Second, MaxRetries: -1})}, nil
	case KindMySQL:
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = t.UserName, cred(KindMySQL, "password", "PASSWORD"), "tcp", t.Addr, t.Database
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 30*time.Second, 30*time.Second
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(2)
		return &mysqlDriver{db: db, created: map[string]bool{}}, nil
	case KindInflux:
		c := influxdb2.NewClientWithOptions(t.URL, cred(KindInflux, "token", "TOKEN"), influxdb2.DefaultOptions().SetHTTPRequestTimeout(30))
		return &influxDriver{c: c, w: c.WriteAPIBlocking(t.Org, t.Bucket)}, nil
	case KindOTEL:
		u, err := url.Parse(t.URL)
		if err != nil {
			return nil, err
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/metrics"
		}
		return &otelDriver{url: u.String(), client: &http.Client{Timeout: 30 * time.Second}}, nil
	}
	return nil, fmt.Errorf("sink kind %q: %w", t.Kind, errUnsupported)
}

// redisLogger sends go-redis's own log lines (dial retries and the
// like, which the status and the sinks' log already tell) to slog at
// debug level.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

func init() { redis.SetLogger(redisLogger{}) }

// redisDriver adds each reading, as mapper-framework's redis dbMethod
// does, to the sorted set named after the device (its name only), with
// the reading's JSON (common.DataModel) as member and its time in
// milliseconds as score.
type redisDriver struct{ c *redis.Client }

func (d *redisDriver) write(ctx context.Context, recs []Record) error {
	cmds, err := d.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range recs {
			r := &recs[i]
			m, _ := json.Marshal(dataModel(r))
			p.ZAdd(ctx, r.Device, redis.Z{Score: float64(r.Time), Member: m})
		}
		return nil
	})
	if err == nil {
		return nil
	}
	// A key that holds another type refuses its readings for good; any
	// other error is the server's or the link's.
	var rej rejected
	for i, c := range cmds {
		if e := c.Err(); e != nil {
			if !strings.HasPrefix(e.Error(), "WRONGTYPE") {
				return err
			}
			rej.idx, rej.err = append(rej.idx, i), fmt.Errorf("redis key %q: %w", recs[i].Device, e)
		}
	}
	if rej.idx == nil {
		return err
	}
	return &rej
}

func (d *redisDriver) close() error { return d.c.Close() }

// dataModel is r as mapper-framework's common.DataModel.
func dataModel(r *Record) push.Reading {
	return push.Reading{DeviceName: r.Device, PropertyName: r.Property, Namespace: r.Namespace, Value: r.Value, Type: r.Type, TimeStamp: r.Time}
}

// mysqlDriver inserts each reading, as mapper-framework's mysql dbMethod
// does, into the table `NAMESPACE/DEVICE/PROPERTY` (created when missing
// with columns id, ts DATETIME and field TEXT): ts is the reading's time
// to the second in the host's time zone, field its value. A batch is one
// transaction.
type mysqlDriver struct {
	db      *sql.DB
	created map[string]bool // tables known to exist
}

// mysqlChunk bounds the rows of one INSERT.
const mysqlChunk = 500

func (d *mysqlDriver) write(ctx context.Context, recs []Record) error {
	var order []string
	byTable := map[string][]int{}
	for i := range recs {
		t := recs[i].Namespace + "/" + recs[i].Device + "/" + recs[i].Property
		if _, ok := byTable[t]; !ok {
			order = append(order, t)
		}
		byTable[t] = append(byTable[t], i)
	}
	var rej rejected
	for _, t := range order {
		if d.created[t] {
			continue
		}
		q := "CREATE TABLE IF NOT EXISTS " + quoteIdent(t) + " (id INT AUTO_INCREMENT PRIMARY KEY, ts  DATETIME NOT NULL,field TEXT)"
		if _, err := d.db.ExecContext(ctx, q); err != nil {
			if !badName(err) {
				return fmt.Errorf("create table %s: %w", quoteIdent(t), err)
			}
			rej.idx, rej.err = append(rej.idx, byTable[t]...), fmt.Errorf("table %s: %w", quoteIdent(t), err)
			delete(byTable, t)
			continue
		}
		d.created[t] = true
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range order {
		idx := byTable[t]
		for len(idx) > 0 {
			n := min(len(idx), mysqlChunk)
			q := "INSERT INTO " + quoteIdent(t) + " (ts,field) VALUES " + strings.TrimSuffix(strings.Repeat("(?,?),", n), ",")
			args := make([]any, 0, 2*n)
			for _, i := range idx[:n] {
				args = append(args, time.Unix(recs[i].Time/1e3, 0).Format(time.DateTime), recs[i].Value)
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				if noTable(err) {
					clear(d.created) // dropped behind our back: create again next time
				}
				return fmt.Errorf("insert into %s: %w", quoteIdent(t), err)
			}
			idx = idx[n:]
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if rej.idx != nil {
		return &rej
	}
	return nil
}

func (d *mysqlDriver) close() error { return d.db.Close() }

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// badName reports a MySQL error about the table's name (too long,
// invalid), which no retry fixes.
func badName(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1059 || me.Number == 1103)
}

// noTable reports MySQL's "table doesn't exist".
func noTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// influxDriver writes each reading, as mapper-framework's influxdb2
// dbMethod does, as a point of the property's measurement with its tags
// and one field, fieldKey, holding the value as a string; its time is the
// reading's (mapper-framework uses the time of the write, the same while
// the server is up).
type influxDriver struct {
	c influxdb2.Client
	w influxapi.WriteAPIBlocking
}

func (d *influxDriver) write(ctx context.Context, recs []Record) error {
	pts := make([]*write.Point, len(recs))
	for i := range recs {
		r := &recs[i]
		pts[i] = influxdb2.NewPoint(r.Measurement, r.Tags, map[string]any{r.FieldKey: r.Value}, time.UnixMilli(r.Time))
	}
	err := d.w.WritePoint(ctx, pts...)
	var he *influxhttp.Error
	if errors.As(err, &he) && (he.StatusCode == 401 || he.StatusCode == 403) {
		return fmt.Errorf("InfluxDB refused the token (HTTP %d; set key token of secret dbmethod-influxdb2, or TOKEN): %w", he.StatusCode, err)
	}
	if errors.As(err, &he) && he.StatusCode >= 400 && he.StatusCode < 500 && he.StatusCode != 401 && he.StatusCode != 403 && he.StatusCode != 404 && he.StatusCode != 408 && he.StatusCode != 429 {
		return &rejected{err: err}
	}
	return err
}

func (d *influxDriver) close() error { d.c.Close(); return nil }

// otelScope is the instrumentation scope of the metrics, mapper-framework's
// meter name.
const otelScope = "github.com/kubeedge/Template/data/dbmethod/otel"

// otelDriver sends readings as OTLP/HTTP (protobuf) gauges, as
// mapper-framework's pushMethod.otel does: one metric per property, named
// after it, in a resource with device.id "NAMESPACE/DEVICE". Each reading
// is a data point at its own time, so readings kept while the endpoint
// was down keep theirs. A value that is not a number (or true/false, sent
// as 1/0) is refused.
type otelDriver struct {
	url    string
	client *http.Client
}

func (d *otelDriver) write(ctx context.Context, recs []Record) error {
	var rej rejected
	type key struct{ dev, prop string }
	res := map[string]*otlpmetrics.ResourceMetrics{}
	mets := map[key]*otlpmetrics.Metric{}
	req := &colmetrics.ExportMetricsServiceRequest{}
	for i := range recs {
		r := &recs[i]
		v, err := number(r.Value)
		if err != nil {
			rej.idx, rej.err = append(rej.idx, i), fmt.Errorf("%s property %s: %w", r.deviceKey(), r.Property, err)
			continue
		}
		rm := res[r.deviceKey()]
		if rm == nil {
			rm = &otlpmetrics.ResourceMetrics{
				Resource: &resource.Resource{Attributes: []*common.KeyValue{
					strAttr("service.name", "wapper-host"), strAttr("device.id", r.deviceKey())}},
				ScopeMetrics: []*otlpmetrics.ScopeMetrics{{Scope: &common.InstrumentationScope{Name: otelScope}}},
			}
			res[r.deviceKey()] = rm
			req.ResourceMetrics = append(req.ResourceMetrics, rm)
		}
		m := mets[key{r.deviceKey(), r.Property}]
		if m == nil {
			m = &otlpmetrics.Metric{Name: r.Property, Data: &otlpmetrics.Metric_Gauge{Gauge: &otlpmetrics.Gauge{}}}
			mets[key{r.deviceKey(), r.Property}] = m
			rm.ScopeMetrics[0].Metrics = append(rm.ScopeMetrics[0].Metrics, m)
		}
		g := m.GetGauge()
		g.DataPoints = append(g.DataPoints, &otlpmetrics.NumberDataPoint{TimeUnixNano: uint64(r.Time) * 1e6, Value: &otlpmetrics.NumberDataPoint_AsDouble{AsDouble: v}})
	}
	if len(req.ResourceMetrics) > 0 {
		if err := d.post(ctx, req); err != nil {
			return err
		}
	}
	if rej.idx != nil {
		return &rej
	}
	return nil
}

func (d *otelDriver) post(ctx context.Context, req *colmetrics.ExportMetricsServiceRequest) error {
	body, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := d.client.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == 400:
		return &rejected{err: fmt.Errorf("POST %s: %s: %s", d.url, resp.Status, bytes.TrimSpace(msg))}
	}
	return fmt.Errorf("POST %s: %s", d.url, resp.Status)
}

func (d *otelDriver) close() error { d.client.CloseIdleConnections(); return nil }

func strAttr(k, v string) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

// number is a twin value as a gauge's number.
func number(s string) (float64, error) {
	switch s {
	case "true":
		return 1, nil
	case "false":
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number, and OTLP gauges carry numbers", s)
	}
	return v, nil
}
