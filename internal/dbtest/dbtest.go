// Package dbtest runs the database servers tests store readings in as
// processes of the test: Debian's redis-server and MariaDB, and InfluxDB
// 1.8 built from InfluxData's source by hack/influxdb/ensure-influxd.sh
// (its /api/v2/write is InfluxDB v2's write API), each on a port of its
// own with its data in the test's temporary directory. A
// server can be stopped and started again on the same port and data, as
// a database that goes down and comes back. Under CI=true a missing
// server fails the test.
package dbtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// Server is a database server run by a test.
type Server struct {
	// Addr is its host:port.
	Addr string

	t    testing.TB
	name string
	args []string
	log  string
	// user and password are InfluxDB's admin user.
	user, password string
	cmd            *exec.Cmd
	done           chan struct{}
}

// Redis starts redis-server with password on a free port, persisting
// every write (appendonly, fsync always) so that a restart keeps what it
// had stored.
func Redis(t testing.TB, password string) *Server {
	t.Helper()
	bin := testenv.Bin(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, name: bin, log: filepath.Join(dir, "redis.log"),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes",
			"--appendfsync", "always", "--requirepass", password, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}}
	s.Start()
	return s
}

// MariaDB starts a MariaDB server on a free port with database db and
// user user (password password) allowed everything on it.
func MariaDB(t testing.TB, db, user, password string) *Server {
	t.Helper()
	bin := testenv.Bin(t, "mariadbd")
	install := testenv.Bin(t, "mariadb-install-db")
	client := testenv.Bin(t, "mariadb")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(install, "--no-defaults", "--datadir="+data, "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput(); err != nil {
		t.Fatalf("dbtest: mariadb-install-db: %v\n%s", err, out)
	}
	port := freePort(t)
	sock := filepath.Join(dir, "sock")
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, name: bin, log: filepath.Join(dir, "err.log"),
		args: []string{"--no-defaults", "--datadir=" + data, "--user=root", "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
			"--socket=" + sock, "--skip-name-resolve", "--log-error=" + filepath.Join(dir, "err.log"), "--innodb-buffer-pool-size=32M",
			"--skip-log-bin", "--pid-file=" + filepath.Join(dir, "pid")}}
	s.Start()
	q := fmt.Sprintf("CREATE DATABASE `%s`; CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON `%s`.* TO '%s'@'%%';", db, user, password, db, user)
	if out, err := exec.Command(client, "--no-defaults", "-S", sock, "-uroot", "-e", q).CombinedOutput(); err != nil {
		t.Fatalf("dbtest: create database and user: %v\n%s", err, out)
	}
	return s
}

// InfluxDB starts influxd with authentication on, an admin user (whose
// v2 API token is "user:password") and database db, which the v2 write
// API takes as its bucket. Query runs InfluxQL on it.
func InfluxDB(t testing.TB, db, user, password string) *Server {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.Root(), "hack/influxdb/ensure-influxd.sh"), "--no-install").Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		testenv.Missing(t, "influxd", "run hack/influxdb/ensure-influxd.sh (make test runs it)")
	}
	bin := lines[len(lines)-1]
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:0"
[meta]
  dir = %[1]q
[data]
  dir = %[2]q
  wal-dir = %[3]q
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:%[4]d"
  auth-enabled = true
  log-enabled = false
  flux-enabled = false
[continuous_queries]
  enabled = false
`, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), port)
	cfg := filepath.Join(dir, "influxd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, name: bin, log: filepath.Join(dir, "influxd.log"),
		args: []string{"run", "-config", cfg}, user: user, password: password}
	s.Start()
	// The first user may be created without credentials.
	if _, err := s.query("", fmt.Sprintf("CREATE USER %q WITH PASSWORD '%s' WITH ALL PRIVILEGES", user, password)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Query("", fmt.Sprintf("CREATE DATABASE %q", db)); err != nil {
		t.Fatal(err)
	}
	return s
}

// Query runs an InfluxQL query on an InfluxDB server as its admin user,
// in database db, with times in milliseconds, and returns the response's
// JSON.
func (s *Server) Query(db, q string) ([]byte, error) { return s.query(db, q, s.user, s.password) }

func (s *Server) query(db, q string, auth ...string) ([]byte, error) {
	form := url.Values{"q": {q}, "db": {db}, "epoch": {"ms"}}
	req, err := http.NewRequest(http.MethodPost, "http://"+s.Addr+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return nil, fmt.Errorf("dbtest: influxdb query %q: %s: %s", q, resp.Status, body)
	}
	return body, nil
}

// Collector is an OpenTelemetry Collector (hack/otelcol) receiving
// OTLP/HTTP and writing what it receives to a file.
type Collector struct {
	*Server
	// URL is its OTLP/HTTP metrics endpoint.
	URL string
	out string
}

// OTELCollector starts the collector built by hack/otelcol/ensure-otelcol.sh.
func OTELCollector(t testing.TB) *Collector {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.Root(), "hack/otelcol/ensure-otelcol.sh"), "--no-build").Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		testenv.Missing(t, "otelcol", "run hack/otelcol/ensure-otelcol.sh (make test runs it)")
	}
	dir := t.TempDir()
	port := freePort(t)
	c := &Collector{out: filepath.Join(dir, "out.jsonl")}
	conf := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file:
    path: %q
    format: json
    append: true
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
`, port, c.out)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Server = &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, name: lines[len(lines)-1], log: filepath.Join(dir, "otelcol.log"),
		args: []string{"--config=" + cfg}}
	c.URL = "http://" + c.Addr + "/v1/metrics"
	c.Start()
	return c
}

// Received returns what the collector has written so far: one
// ExportMetricsServiceRequest in OTLP/JSON per line.
func (c *Collector) Received() []string {
	b, err := os.ReadFile(c.out)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func freePort(t testing.TB) int {
	t.Helper()
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// Start starts the server and waits until it accepts connections (at
// most a minute). The test's cleanup stops it.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.name, s.args...)
	s.done = make(chan struct{})
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("dbtest: start %s: %v", s.name, err)
	}
	cmd, done := s.cmd, s.done
	go func() { cmd.Wait(); close(done) }()
	s.t.Cleanup(func() { s.stop(cmd, done) })
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(s.log)
			s.t.Fatalf("dbtest: %s exited at start:\n%s", s.name, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("dbtest: %s not accepting connections on %s within a minute", s.name, s.Addr)
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 30 s) and waits for
// it to exit.
func (s *Server) Stop() {
	s.stop(s.cmd, s.done)
}

func (s *Server) stop(cmd *exec.Cmd, done chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(os.Interrupt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
	}
}
