package e2e

// Data sinks through the standalone host (bin/wapper-host): the Device of
// examples/sinks, written for mapper-framework, stores readings in
// Debian's redis-server and MariaDB with the password from the PASSWORD
// environment variable, as mapper-framework reads it. Redis goes down,
// the host is killed with SIGKILL while readings wait for it, and the
// next host writes them: none of those the first host had queued is
// lost.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"wapper.dev/wapper/internal/dbtest"
	"wapper.dev/wapper/internal/testenv"
)

// saSink is a device's sink status as the REST API shows it.
type saSink struct {
	Property string `json:"property"`
	Method   string `json:"method"`
	Target   string `json:"target"`
	Written  uint64 `json:"written"`
	Queued   int    `json:"queued"`
	Dropped  uint64 `json:"dropped"`
	Error    string `json:"error"`
}

// sinks returns the sink statuses of a device, by property and method.
func (h *saHost) sinks(key string) map[string]saSink {
	var resp struct {
		Device struct {
			Sinks []saSink `json:"sinks"`
		} `json:"device"`
	}
	out := map[string]saSink{}
	if _, err := h.get("/api/v1/device/"+key, &resp); err != nil {
		return out
	}
	for _, s := range resp.Device.Sinks {
		out[s.Property+" "+s.Method] = s
	}
	return out
}

func TestSinksThroughHost(t *testing.T) {
	const pw = "e2e-sink-pw"
	rs := dbtest.Redis(t, pw)
	my := dbtest.MariaDB(t, "kubeedge", "mapper", pw)
	t.Setenv("PASSWORD", pw) // wapper-host inherits it
	example, err := os.ReadFile(filepath.Join(testenv.Root(), "examples/sinks/meter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.NewReplacer("127.0.0.1:6379", rs.Addr, "127.0.0.1:3306", my.Addr).Replace(string(example))
	dir := saManifests(t, map[string]string{"meter.yaml": dev})
	state := t.TempDir()
	h := saStart(t, state, "--manifests", dir)

	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: pw})
	defer rc.Close()
	db, err := sql.Open("mysql", "mapper:"+pw+"@tcp("+my.Addr+")/kubeedge")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	saEventually(t, "ticks in redis and temperature in mysql", 2*time.Minute, func() error {
		n, err := rc.ZCard(context.Background(), "meter").Result()
		if err != nil || n < 5 {
			return fmt.Errorf("redis holds %d readings (%v)", n, err)
		}
		var rows int
		if err := db.QueryRow("SELECT COUNT(*) FROM `default/meter/temperature`").Scan(&rows); err != nil || rows < 2 {
			return fmt.Errorf("mysql holds %d rows (%v)", rows, err)
		}
		return nil
	})

	rs.Stop()
	saEventually(t, "ticks queued while redis is down, shown over REST", 2*time.Minute, func() error {
		s := h.sinks("default/meter")["ticks dbMethod.redis"]
		if s.Error == "" || s.Queued < 10 || !strings.Contains(s.Target, rs.Addr) {
			return fmt.Errorf("ticks sink %+v", s)
		}
		return nil
	})
	before := h.sinks("default/meter")["ticks dbMethod.redis"]
	killed := time.Now().UnixMilli()
	h.kill9()
	rs.Start()
	h = saStart(t, state, "--manifests", dir)
	saEventually(t, "the queue written by the next host", 2*time.Minute, func() error {
		s := h.sinks("default/meter")["ticks dbMethod.redis"]
		if s.Error != "" || s.Queued != 0 || s.Written == 0 {
			return fmt.Errorf("ticks sink %+v", s)
		}
		return nil
	})

	// Every reading the first host had written or queued when it was
	// killed is in redis.
	zs, err := rc.ZRangeWithScores(context.Background(), "meter", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	first := 0
	for _, z := range zs {
		var m struct {
			DeviceName, PropertyName, Namespace, Value string
			TimeStamp                                  int64
		}
		if err := json.Unmarshal([]byte(z.Member.(string)), &m); err != nil {
			t.Fatal(err)
		}
		if _, err := strconv.Atoi(m.Value); err != nil || m.DeviceName != "meter" || m.Namespace != "default" || m.PropertyName != "ticks" {
			t.Fatalf("member %+v", m)
		}
		if m.TimeStamp < killed {
			first++
		}
	}
	if want := int(before.Written) + before.Queued; first < want {
		t.Errorf("redis holds %d ticks of the first host; it had written %d and queued %d", first, before.Written, before.Queued)
	}
	t.Logf("first host: %d ticks in redis, %d of them queued across a SIGKILL", first, before.Queued)
}
