package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/console"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/rest"
	"wapper.dev/wapper/internal/hosttest"
	"wapper.dev/wapper/internal/testenv"
)

const token = "s3cret"

// grantsYAML gives the virtual plugin grants (it uses none), so that the
// plugins page has some to show.
const grantsYAML = `  grants:
    network: ["tcp://127.0.0.1:1502", "tls://broker.local:8883"]
    serial: ["/dev/ttyUSB*"]
    secrets: [plc-login]
    tls: [{endpoint: "tls://broker.local:8883", serverName: broker}]
`

// standalone returns examples/standalone's manifests: the virtual plugin,
// with the grants of grantsYAML, and the thermostat.
func standalone(t *testing.T) (plugin, thermostat string) {
	t.Helper()
	dir := filepath.Join(testenv.Root(), "examples/standalone")
	p, err := os.ReadFile(filepath.Join(dir, "virtual-plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.ReadFile(filepath.Join(dir, "thermostat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(p), "\n") + "\n" + grantsYAML, string(d)
}

// host is a device manager running examples/standalone and its console,
// mounted on two REST servers served by httptest: srv asks for the token
// on reads too (rest.Options.AuthReads), open on writes only.
type host struct {
	mgr       *devices.Manager
	con       *console.Console
	srv, open *httptest.Server
	stop      context.CancelFunc
	done      chan error
}

func newHost(t *testing.T) *host {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	mgr := hosttest.Manager(t, log, filepath.Dir(testenv.Plugin(t, "virtual")), devices.Options{Registerer: reg})
	plugin, thermostat := standalone(t)
	hosttest.Apply(t, mgr, plugin+"\n---\n"+thermostat)
	h := &host{mgr: mgr, con: console.New(mgr, console.Options{Logger: log, Gatherer: reg, Keepalive: 200 * time.Millisecond}), done: make(chan error, 1)}
	serve := func(o rest.Options) *httptest.Server {
		o.Logger, o.Gatherer = log, reg
		api := rest.New(mgr, o)
		h.con.Mount(api)
		return httptest.NewServer(api.Handler())
	}
	h.srv = serve(rest.Options{Token: token, AuthReads: true})
	h.open = serve(rest.Options{Token: token})
	var ctx context.Context
	ctx, h.stop = context.WithCancel(context.Background())
	go func() { h.done <- h.con.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		<-h.done
		h.srv.Close()
		h.open.Close()
	})
	return h
}

// get returns the status, header and body of a GET on srv.
func (h *host) get(t *testing.T, path, auth string) (int, http.Header, string) {
	t.Helper()
	return do(t, h.srv, http.MethodGet, path, auth)
}

func do(t *testing.T, srv *httptest.Server, method, path, auth string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func eventually(t *testing.T, what string, within time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// sseEvent is one event read from a stream.
type sseEvent struct {
	typ  string
	data string
}

// openStream opens an event stream and returns its events as they come;
// the channel closes when the stream ends.
func (h *host) openStream(t *testing.T, query, auth string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/console/api/events"+query, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.typ != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case strings.HasPrefix(line, ":"):
				ch <- sseEvent{typ: "comment", data: line}
			}
		}
	}()
	return resp, ch
}

// next returns the next event of type typ within d.
func next(t *testing.T, ch <-chan sseEvent, typ string, d time.Duration) (sseEvent, bool) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return sseEvent{}, false
			}
			if ev.typ == typ {
				return ev, true
			}
		case <-timeout:
			t.Fatalf("no %q event within %s", typ, d)
		}
	}
}

// TestConsole: the pages, the history of the plot, the event stream and
// the plugins, with the REST API's token required for reads: the pages
// load without it, the console's API and stream do not. With a token
// for writes only, the console's API reads without it, as the REST API
// does.
func TestConsole(t *testing.T) {
	h := newHost(t)
	bearer := "Bearer " + token

	if code, _, body := do(t, h.open, "GET", "/console/api/plugins", ""); code != 200 || !strings.Contains(body, `"virtual"`) {
		t.Errorf("plugins without a token, reads open: %d %s", code, body)
	}
	if code, _, _ := do(t, h.open, "POST", "/console/api/plugins", ""); code != 401 {
		t.Errorf("POST without a token, reads open: %d, want 401", code)
	}

	// The pages need no token and say what they are.
	code, hdr, body := h.get(t, "/", "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(body, `src="console/console.js"`) {
		t.Errorf("GET /: %d %s\n%s", code, hdr.Get("Content-Type"), body)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}
	for path, typ := range map[string]string{"/console/console.js": "text/javascript", "/console/console.css": "text/css"} {
		if code, hdr, body := h.get(t, path, ""); code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), typ) || len(body) < 100 || hdr.Get("ETag") == "" {
			t.Errorf("GET %s: %d %q, ETag %q, %d bytes", path, code, hdr.Get("Content-Type"), hdr.Get("ETag"), len(body))
		}
	}
	for path, want := range map[string]int{"/console/nosuch.js": 404, "/console/index.html": 404, "/console/../api/v1/devices": 401} {
		if code, _, _ := h.get(t, path, ""); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	// The REST API is unchanged beside it.
	if code, _, _ := h.get(t, "/api/v1/devices", ""); code != 401 {
		t.Errorf("GET /api/v1/devices without the token: %d, want 401", code)
	}
	if code, _, body := h.get(t, "/api/v1/devices", bearer); code != 200 || !strings.Contains(body, `"thermostat"`) {
		t.Errorf("GET /api/v1/devices: %d %s", code, body)
	}

	// The console's API needs the token.
	for _, path := range []string{"/console/api/plugins", "/console/api/history/default/thermostat", "/console/api/events?device=default/thermostat", "/console/api/nosuch"} {
		code, hdr, body := h.get(t, path, "")
		var e struct {
			StatusCode int    `json:"statusCode"`
			Error      string `json:"error"`
		}
		if code != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || json.Unmarshal([]byte(body), &e) != nil || e.StatusCode != 401 {
			t.Errorf("GET %s without the token: %d %q %s", path, code, hdr.Get("WWW-Authenticate"), body)
		}
		if code, _, _ := h.get(t, path, "Bearer wrong"); code != 401 {
			t.Errorf("GET %s with a wrong token: %d", path, code)
		}
	}

	// The stream of the thermostat: a reading of each property as read.
	resp, events := h.openStream(t, "?device=default/thermostat", bearer)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	seen := map[string]console.Reading{}
	for len(seen) < 5 {
		ev, ok := next(t, events, "reading", 30*time.Second)
		if !ok {
			t.Fatal("stream ended")
		}
		var r console.Reading
		if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
			t.Fatalf("reading %s: %v", ev.data, err)
		}
		if r.Device != "default/thermostat" || r.Value == "" || r.Time.IsZero() || r.Type == "" {
			t.Errorf("reading %s", ev.data)
		}
		seen[r.Property] = r
	}
	if seen["heating"].Type != "BOOLEAN" || seen["temperature"].Type != "DOUBLE" {
		t.Errorf("readings %+v", seen)
	}
	// An idle stream still gets its keepalive comments.
	if _, ok := next(t, events, "comment", 5*time.Second); !ok {
		t.Error("no keepalive")
	}

	// The history grows with the readings, numeric properties only.
	var hist console.HistoryResponse
	eventually(t, "two temperature points in the history", 30*time.Second, func() error {
		code, _, body := h.get(t, "/console/api/history/default/thermostat", bearer)
		if code != 200 {
			return errString(body)
		}
		hist = console.HistoryResponse{}
		if err := json.Unmarshal([]byte(body), &hist); err != nil {
			return err
		}
		if len(hist.Properties["temperature"]) < 2 {
			return errString(body)
		}
		return nil
	})
	if hist.Device != "default/thermostat" || hist.Points != 300 || hist.AgeSeconds != 600 {
		t.Errorf("history %+v", hist)
	}
	if _, ok := hist.Properties["heating"]; ok {
		t.Errorf("history of a BOOLEAN: %+v", hist.Properties)
	}
	if pts := hist.Properties["temperature"]; pts[0].T >= pts[len(pts)-1].T || pts[0].V < 17 || pts[0].V > 25 {
		t.Errorf("temperature points %+v", pts)
	}
	for path, want := range map[string]int{
		"/console/api/history/default/nosuch":  404,
		"/console/api/events?device=nosuch":    400,
		"/console/api/events?device=default/x": 404,
	} {
		if code, _, body := h.get(t, path, bearer); code != want {
			t.Errorf("GET %s: %d, want %d: %s", path, code, want, body)
		}
	}

	// The plugins, with their devices, grants, limits, counters and call
	// latency: the thermostat has been read by now.
	code, _, body = h.get(t, "/console/api/plugins", bearer)
	var plugins console.PluginsResponse
	if err := json.Unmarshal([]byte(body), &plugins); code != 200 || err != nil || len(plugins.Plugins) != 1 {
		t.Fatalf("plugins: %d %v %s", code, err, body)
	}
	if p := plugins.Plugins[0]; p.Name != "virtual" || !p.Loaded || !strings.HasPrefix(p.Digest, "sha256:") || p.Devices != 1 {
		t.Errorf("plugin %+v", p)
	} else {
		if _, ok := p.Counters["restarts"]; !ok || p.Counters["calls"] == 0 || p.Counters["readings"] == 0 || p.Counters["instances"] == 0 {
			t.Errorf("plugin counters %v, want calls, readings and instances counted", p.Counters)
		}
		if p.CallMeanSeconds <= 0 || p.CallP99Seconds <= 0 || p.CallP99Seconds > 30 {
			t.Errorf("call latency: mean %v s, p99 %v s; want both above 0, p99 within the histogram's buckets", p.CallMeanSeconds, p.CallP99Seconds)
		}
		if want := []string{"tcp://127.0.0.1:1502", "tls://broker.local:8883", "/dev/ttyUSB*", "secret:plc-login"}; !slices.Equal(p.Grants, want) {
			t.Errorf("grants %q, want %q", p.Grants, want)
		}
		if len(p.TLSGrants) != 1 || p.TLSGrants[0].Endpoint != "tls://broker.local:8883" || p.TLSGrants[0].ServerName != "broker" {
			t.Errorf("TLS grants %+v", p.TLSGrants)
		}
		if l := p.Limits; l.MemoryMiB != 64 || l.CallTimeout.Duration != 2*time.Second || l.Instances != 2 {
			t.Errorf("limits %+v, want examples/standalone's 64 MiB, 2s and 2 instances", l)
		}
	}
	for _, key := range []string{`"callMeanSeconds":`, `"callP99Seconds":`, `"grants":["tcp://`, `"tlsGrants":[{"endpoint":`, `"limits":{"memoryMiB":64,"callTimeout":"2s","instances":2}`} {
		if !strings.Contains(body, key) {
			t.Errorf("plugins body lacks %s: %s", key, body)
		}
	}

	// A removed device: its stream says so, its history is gone.
	plugin, _ := standalone(t)
	hosttest.Apply(t, h.mgr, plugin)
	if ev, ok := next(t, events, "removed", 30*time.Second); !ok || !strings.Contains(ev.data, `"default/thermostat"`) {
		t.Errorf("removed event %+v %v", ev, ok)
	}
	eventually(t, "the history of the removed device to go", 10*time.Second, func() error {
		if _, ok := h.con.History().Device("default/thermostat"); ok {
			return errString("still there")
		}
		return nil
	})

	// Once the console stops, its streams end (so that the REST server's
	// shutdown does not wait for them), and new ones are refused.
	h.stop()
	if err := <-h.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	h.done <- nil // for the cleanup
	for {
		if _, ok := <-events; !ok {
			break
		}
	}
	if code, _, _ := h.get(t, "/console/api/events", bearer); code != 503 {
		t.Errorf("events after the console stopped: %d, want 503", code)
	}
}
