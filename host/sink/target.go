package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/kubeedge/api/apis/devices/v1beta1"
)

// The kinds of sink: KubeEdge's dbMethod databases and pushMethod.otel.
const (
	KindRedis    = "redis"
	KindMySQL    = "mysql"
	KindInflux   = "influxdb2"
	KindTDengine = "TDEngine"
	KindOTEL     = "otel"
)

// Target is one destination of readings: a kind and the settings that
// identify its server. Readings of every property that names the same
// target share its queue and its connection. Credentials are not part of
// it: they come from the host's secrets or environment (see [Options]).
type Target struct {
	Kind string `json:"kind"`
	// Addr is host:port (redis, mysql).
	Addr string `json:"addr,omitempty"`
	// DB is the Redis database number; PoolSize and MinIdleConns size
	// its connection pool.
	DB           int `json:"db,omitempty"`
	PoolSize     int `json:"poolSize,omitempty"`
	MinIdleConns int `json:"minIdleConns,omitempty"`
	// Database and UserName are MySQL's.
	Database string `json:"database,omitempty"`
	UserName string `json:"userName,omitempty"`
	// URL, Org and Bucket are InfluxDB's; URL is the OTLP/HTTP metrics
	// endpoint of an otel target.
	URL    string `json:"url,omitempty"`
	Org    string `json:"org,omitempty"`
	Bucket string `json:"bucket,omitempty"`
}

// key identifies t in the queue: its JSON, whose field order is fixed.
func (t Target) key() string {
	b, _ := json.Marshal(t)
	return string(b)
}

// String names t for logs and statuses, without credentials.
func (t Target) String() string {
	switch t.Kind {
	case KindRedis:
		return fmt.Sprintf("redis %s db %d", t.Addr, t.DB)
	case KindMySQL:
		return fmt.Sprintf("mysql %s/%s as %q", t.Addr, t.Database, t.UserName)
	case KindInflux:
		return fmt.Sprintf("influxdb2 %s org %q bucket %q", t.URL, t.Org, t.Bucket)
	case KindOTEL:
		return "otel " + t.URL
	}
	return t.Kind
}

// Record is one reading to store: mapper-framework's common.DataModel
// (Time in milliseconds since the epoch) and, for InfluxDB, the point's
// shape from the property's influxdb2DataConfig.
type Record struct {
	Namespace   string            `json:"ns"`
	Device      string            `json:"device"`
	Property    string            `json:"property"`
	Value       string            `json:"value"`
	Type        string            `json:"type,omitempty"`
	Time        int64             `json:"time"`
	Measurement string            `json:"measurement,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	FieldKey    string            `json:"fieldKey,omitempty"`
}

// deviceKey is "namespace/name" of the record's device.
func (r *Record) deviceKey() string { return r.Namespace + "/" + r.Device }

// route is where a property's pushMethod sends a reading: its target, or
// the reason it cannot (Err) for a method that names one that is not
// usable.
type route struct {
	Method string // "dbMethod.redis", "otel", ...
	Target Target
	Err    error
}

// errUnsupported marks a sink wapper-host does not provide.
var errUnsupported = errors.New("not supported by wapper-host")

// routes returns the sinks p names, in a fixed order. A method that is
// set but not usable (a required field missing, TDEngine) comes back with
// Err set, so that it is refused aloud rather than ignored.
func routes(p *v1beta1.PushMethod) []route {
	if p == nil {
		return nil
	}
	var out []route
	if db := p.DBMethod; db != nil {
		n := len(out)
		if c := db.Redis; c != nil {
			out = append(out, redisRoute(c))
		}
		if c := db.Mysql; c != nil {
			out = append(out, mysqlRoute(c))
		}
		if c := db.Influxdb2; c != nil {
			out = append(out, influxRoute(c))
		}
		if db.TDEngine != nil {
			out = append(out, route{Method: "dbMethod." + KindTDengine, Target: Target{Kind: KindTDengine},
				Err: fmt.Errorf("pushMethod.dbMethod.TDEngine is %w: no TDengine server can be had to test it; use redis, mysql, influxdb2 or pushMethod.otel", errUnsupported)})
		}
		if len(out) == n {
			out = append(out, route{Method: "dbMethod", Err: errors.New("pushMethod.dbMethod names no database: set one of redis, mysql, influxdb2")})
		}
	}
	if o := p.OTEL; o != nil {
		out = append(out, otelRoute(o))
	}
	return out
}

// required returns an error naming the empty fields among pairs of
// field path and value.
func required(pairs ...string) error {
	var missing []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			missing = append(missing, pairs[i])
		}
	}
	if len(missing) == 0 {
		return nil
	}
	verb := "are"
	if len(missing) == 1 {
		verb = "is"
	}
	return fmt.Errorf("%s %s required", strings.Join(missing, ", "), verb)
}

func redisRoute(c *v1beta1.DBMethodRedis) route {
	r := route{Method: "dbMethod." + KindRedis, Target: Target{Kind: KindRedis}}
	cc := c.RedisClientConfig
	if cc == nil {
		r.Err = required("pushMethod.dbMethod.redis.redisClientConfig", "")
		return r
	}
	r.Target.Addr, r.Target.DB, r.Target.PoolSize, r.Target.MinIdleConns = cc.Addr, cc.DB, cc.Poolsize, cc.MinIdleConns
	r.Err = required("pushMethod.dbMethod.redis.redisClientConfig.addr", cc.Addr)
	return r
}

func mysqlRoute(c *v1beta1.DBMethodMySQL) route {
	r := route{Method: "dbMethod." + KindMySQL, Target: Target{Kind: KindMySQL}}
	cc := c.MySQLClientConfig
	if cc == nil {
		r.Err = required("pushMethod.dbMethod.mysql.mysqlClientConfig", "")
		return r
	}
	r.Target.Addr, r.Target.Database, r.Target.UserName = cc.Addr, cc.Database, cc.UserName
	r.Err = required("pushMethod.dbMethod.mysql.mysqlClientConfig.addr", cc.Addr,
		"pushMethod.dbMethod.mysql.mysqlClientConfig.database", cc.Database,
		"pushMethod.dbMethod.mysql.mysqlClientConfig.userName", cc.UserName)
	return r
}

func influxRoute(c *v1beta1.DBMethodInfluxdb2) route {
	r := route{Method: "dbMethod." + KindInflux, Target: Target{Kind: KindInflux}}
	cc, dc := c.Influxdb2ClientConfig, c.Influxdb2DataConfig
	if cc == nil {
		cc = &v1beta1.Influxdb2ClientConfig{}
	}
	if dc == nil {
		dc = &v1beta1.Influxdb2DataConfig{}
	}
	r.Target.URL, r.Target.Org, r.Target.Bucket = strings.TrimRight(cc.URL, "/"), cc.Org, cc.Bucket
	r.Err = required("pushMethod.dbMethod.influxdb2.influxdb2ClientConfig.url", cc.URL,
		"pushMethod.dbMethod.influxdb2.influxdb2ClientConfig.org", cc.Org,
		"pushMethod.dbMethod.influxdb2.influxdb2ClientConfig.bucket", cc.Bucket,
		"pushMethod.dbMethod.influxdb2.influxdb2DataConfig.measurement", dc.Measurement,
		"pushMethod.dbMethod.influxdb2.influxdb2DataConfig.fieldKey", dc.FieldKey)
	if r.Err == nil {
		r.Err = httpURL("pushMethod.dbMethod.influxdb2.influxdb2ClientConfig.url", cc.URL)
	}
	return r
}

func otelRoute(o *v1beta1.PushMethodOTEL) route {
	r := route{Method: KindOTEL, Target: Target{Kind: KindOTEL, URL: o.EndpointURL}}
	r.Err = required("pushMethod.otel.endpointURL", o.EndpointURL)
	if r.Err == nil {
		r.Err = httpURL("pushMethod.otel.endpointURL", o.EndpointURL)
	}
	return r
}

// httpURL checks that s is an http or https URL with a host.
func httpURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q is not an http:// or https:// URL with a host", field, s)
	}
	return nil
}

// record returns the reading as r stores it for the property's pushMethod
// p (the InfluxDB shape is that of the property's influxdb2DataConfig).
func (r route) record(ns, name, prop, value, typ string, ms int64, p *v1beta1.PushMethod) Record {
	rec := Record{Namespace: ns, Device: name, Property: prop, Value: value, Type: typ, Time: ms}
	if r.Target.Kind == KindInflux {
		if dc := p.DBMethod.Influxdb2.Influxdb2DataConfig; dc != nil {
			rec.Measurement, rec.Tags, rec.FieldKey = dc.Measurement, dc.Tag, dc.FieldKey
		}
	}
	return rec
}
