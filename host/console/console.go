// Package console is wapper-host's device console: a few pages of plain
// HTML, JavaScript and CSS, embedded in the binary, that the REST port
// serves to a browser, and the small JSON API behind them.
//
//	GET /                                    the console (device list, device, plugins)
//	GET /console/{file}                      its script and style sheet
//	GET /console/api/history/{ns}/{name}     recent numeric readings of a device
//	GET /console/api/events[?device=ns/name] readings as they come, text/event-stream
//	GET /console/api/plugins                 MapperPlugins with their devices, grants, limits, counters and call latency
//
// Everything else the pages show comes from the REST API (package
// host/rest): the device list and statuses, the manifest problems, and
// desired-value writes (PUT /api/v1/device/{ns}/{name}/{property}?wait=).
// The pages hold no device data, so they load without the REST token; the
// console's API sits behind the REST API's token checks (see [Mux]), and
// the pages ask for the token when a request is refused and send it as
// "Authorization: Bearer", on the event stream too (read with fetch, not
// EventSource, which cannot send headers).
//
// The console keeps a bounded [History] of every device's numeric readings
// from the device manager's events, so that a plot starts with the last
// minutes instead of empty, and forgets a device when it is removed.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/internal/webui"
)

//go:embed static
var static embed.FS

// Options configure a Console.
type Options struct {
	Logger *slog.Logger
	// Gatherer gives the plugins page its per-plugin counters (instances,
	// restarts, calls, ...) from the host's metrics; nil shows none.
	Gatherer prometheus.Gatherer
	// History bounds the readings kept for the plots.
	History HistoryOptions
	// Streams is the most event streams open at once (default 64); past
	// it a stream is refused with 503.
	Streams int
	// Keepalive is how often an idle event stream gets a comment line, so
	// that proxies keep it and a closed one is noticed (default 15 s).
	Keepalive time.Duration
}

// Console serves the device console over a device manager.
type Console struct {
	mgr    *devices.Manager
	log    *slog.Logger
	opts   Options
	hist   *History
	hub    *hub
	files  map[string]file
	api    *http.ServeMux
	events <-chan devices.Event
	cancel func()
}

// file is an embedded page.
type file struct {
	body []byte
	typ  string
	etag string
}

// New returns the console over mgr. Its history fills once Run runs.
func New(mgr *devices.Manager, o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Streams <= 0 {
		o.Streams = 64
	}
	if o.Keepalive <= 0 {
		o.Keepalive = 15 * time.Second
	}
	c := &Console{mgr: mgr, log: o.Logger.With("component", "console"), opts: o, hist: NewHistory(o.History),
		hub: newHub(o.Streams), files: map[string]file{}, api: http.NewServeMux()}
	for _, fsys := range []fs.FS{static, webui.Files} {
		if err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			c.files[path.Base(p)] = file{body: b, typ: mime.TypeByExtension(path.Ext(p)), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
			return nil
		}); err != nil {
			panic(err) // the embedded files are part of the binary
		}
	}
	c.api.HandleFunc("GET /console/api/history/{ns}/{name}", c.history)
	c.api.HandleFunc("GET /console/api/events", c.stream)
	c.api.HandleFunc("GET /console/api/plugins", c.plugins)
	c.api.HandleFunc("/console/api/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, fmt.Errorf("no route %s %s", r.Method, r.URL.Path))
	})
	return c
}

// Mux is where [Console.Mount] adds the console: wapper-host's REST
// server (host/rest.Server). Handle serves a pattern behind the API's
// token checks; HandleOpen serves one whose reads need no token.
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandleOpen(pattern string, h http.Handler)
}

// Mount adds the console to m: the pages at / and /console/ with reads
// open, the console's API at /console/api/ behind the token checks.
func (c *Console) Mount(m Mux) {
	pages := http.HandlerFunc(c.page)
	m.HandleOpen("/{$}", pages)
	m.HandleOpen("/console/", pages)
	m.Handle("/console/api/", c.api)
}

// History returns the history the console keeps.
func (c *Console) History() *History { return c.hist }

// Subscribe subscribes to the device events Run reads: Run's first step,
// to call before devices start so that the history misses none; Run
// calls it if it was not.
func (c *Console) Subscribe() {
	if c.events != nil {
		return
	}
	c.events, c.cancel = c.mgr.SubscribeFunc("console", 4096, c.keep)
}

// pruneEvery is how often Run prunes the history.
const pruneEvery = 5 * time.Second

// Run keeps the history and feeds the event streams until ctx ends; then
// it ends every event stream (so that the REST server's shutdown does not
// wait for them) and returns nil.
func (c *Console) Run(ctx context.Context) error {
	c.Subscribe()
	defer c.hub.close()
	defer c.cancel()
	tick := time.NewTicker(pruneEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-c.events:
			if !ok {
				return nil
			}
			c.handle(&ev)
		case now := <-tick.C:
			c.hist.Prune(now)
		}
	}
}

// keep picks the events the console reads: numeric readings and removals
// for the history, and while a stream is open every reading and state
// change.
func (c *Console) keep(ev *devices.Event) bool {
	switch ev.Type {
	case devices.EventDeviceRemoved:
		return true
	case devices.EventState:
		return ev.Changed && c.hub.active()
	case devices.EventReading:
		if c.hub.active() {
			return true
		}
		for i := range ev.Twins {
			if numeric(ev.Twins[i].Type) {
				return true
			}
		}
	}
	return false
}

// Reading is the data of a "reading" event on the stream: one property's
// value as read (KubeEdge twin text), and the error of the read if it
// failed (Value and Time are then those of the last good read).
type Reading struct {
	Device   string    `json:"device"`
	Property string    `json:"property"`
	Type     string    `json:"type"`
	Value    string    `json:"value"`
	Time     time.Time `json:"time,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// StateChange is the data of a "state" event: the device state changed.
type StateChange struct {
	Device string `json:"device"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Removed is the data of a "removed" event: the device is gone.
type Removed struct {
	Device string `json:"device"`
}

func (c *Console) handle(ev *devices.Event) {
	c.hist.Record(ev)
	if !c.hub.active() {
		return
	}
	switch ev.Type {
	case devices.EventReading:
		for _, tw := range ev.Twins {
			c.hub.send(ev.Device, sse("reading", Reading{Device: ev.Device, Property: tw.Property, Type: tw.Type,
				Value: tw.Reported, Time: tw.ReportedTime, Error: tw.Error}))
		}
	case devices.EventState:
		c.hub.send(ev.Device, sse("state", StateChange{Device: ev.Device, State: ev.State.String(), Reason: ev.Reason}))
	case devices.EventDeviceRemoved:
		c.hub.send(ev.Device, sse("removed", Removed{Device: ev.Device}))
	}
}

// sse encodes one server-sent event (JSON has no raw newline, so the
// data is one line).
func sse(event string, data any) []byte {
	b, _ := json.Marshal(data)
	out := make([]byte, 0, len(event)+len(b)+16)
	out = append(out, "event: "...)
	out = append(out, event...)
	out = append(out, "\ndata: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}

// streamWriteTimeout bounds each write to an event stream.
const streamWriteTimeout = 10 * time.Second

// stream serves GET /console/api/events: the readings of one device
// (?device=ns/name), or of every device, as server-sent events.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	device := r.URL.Query().Get("device")
	if device != "" {
		ns, name, ok := strings.Cut(device, "/")
		if !ok {
			fail(w, http.StatusBadRequest, fmt.Errorf("device=%q: want namespace/name", device))
			return
		}
		if _, err := c.mgr.Device(ns, name); err != nil {
			fail(w, statusOf(err), err)
			return
		}
	}
	l := c.hub.add(device)
	if l == nil {
		fail(w, http.StatusServiceUnavailable, fmt.Errorf("too many event streams open (%d), or the host is stopping", c.opts.Streams))
		return
	}
	defer c.hub.remove(l)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte(": wapper-host console events\n\n")) {
		return
	}
	tick := time.NewTicker(c.opts.Keepalive)
	defer tick.Stop()
	for {
		var b []byte
		select {
		case <-r.Context().Done():
			return
		case <-l.done:
			return
		case <-tick.C:
			b = []byte(": keepalive\n\n")
		case msg := <-l.ch:
			b = batch(msg, l.ch)
		}
		if !write(b) {
			return
		}
	}
}

// batch joins first with the messages already waiting on ch, up to 64
// KiB, to send them in one write. The messages are shared between
// streams: they are copied, never appended to.
func batch(first []byte, ch <-chan []byte) []byte {
	var b []byte
	for len(b) < 64<<10 {
		select {
		case m := <-ch:
			if b == nil {
				b = append(make([]byte, 0, 2*(len(first)+len(m))), first...)
			}
			b = append(b, m...)
		default:
			if b == nil {
				return first
			}
			return b
		}
	}
	return b
}

// HistoryResponse answers GET /console/api/history/{ns}/{name}.
type HistoryResponse struct {
	Device string `json:"device"`
	// Points and AgeSeconds are the history's bounds per property.
	Points     int     `json:"points"`
	AgeSeconds float64 `json:"ageSeconds"`
	// Properties are the numeric properties read in that window, each
	// with its points, oldest first.
	Properties map[string][]Point `json:"properties"`
}

func (c *Console) history(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if _, err := c.mgr.Device(ns, name); err != nil {
		fail(w, statusOf(err), err)
		return
	}
	key := ns + "/" + name
	props, _ := c.hist.Device(key)
	o := c.hist.Options()
	reply(w, HistoryResponse{Device: key, Points: o.Points, AgeSeconds: o.Age.Seconds(), Properties: props})
}

// PluginInfo is a MapperPlugin on the plugins page: its status (with
// its grants and limits), the devices that run on it, and its counters
// from the host's metrics, by short name (instances, restarts, calls,
// callErrors, traps, grantDenials, readings, readErrors, readsSkipped).
//
// CallMeanSeconds and CallP99Seconds are its call latency since the host
// started, from wapper_plugin_call_duration_seconds: the mean, and the
// 99th percentile estimated within the histogram's buckets as
// Prometheus's histogram_quantile does. They cover the calls of every
// export but those the host makes for its own ends (wapper_abi_v1,
// wapper_alloc, wapper_free), and are absent before the first call.
type PluginInfo struct {
	devices.PluginStatus
	Devices         int                `json:"devices"`
	Counters        map[string]float64 `json:"counters,omitempty"`
	CallMeanSeconds float64            `json:"callMeanSeconds,omitempty"`
	CallP99Seconds  float64            `json:"callP99Seconds,omitempty"`
}

// PluginsResponse answers GET /console/api/plugins.
type PluginsResponse struct {
	Plugins []PluginInfo `json:"plugins"`
}

// pluginCounters maps the metrics with a "plugin" label to their short
// names; series of one plugin are summed over the other labels.
var pluginCounters = map[string]string{
	"wapper_plugin_instances":           "instances",
	"wapper_plugin_restarts_total":      "restarts",
	"wapper_plugin_calls_total":         "calls",
	"wapper_plugin_call_errors_total":   "callErrors",
	"wapper_plugin_traps_total":         "traps",
	"wapper_plugin_grant_denials_total": "grantDenials",
	"wapper_readings_total":             "readings",
	"wapper_read_errors_total":          "readErrors",
	"wapper_reads_skipped_total":        "readsSkipped",
}

func (c *Console) plugins(w http.ResponseWriter, r *http.Request) {
	ps := c.mgr.Plugins()
	count := map[string]int{}
	for _, d := range c.mgr.Devices() {
		if d.Plugin != "" {
			count[d.Plugin]++
		}
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	stats := c.stats(names)
	out := PluginsResponse{Plugins: make([]PluginInfo, len(ps))}
	for i, p := range ps {
		info := PluginInfo{PluginStatus: p, Devices: count[p.Name]}
		if st := stats[p.Name]; st != nil {
			info.Counters = st.counters
			info.CallMeanSeconds = st.calls.mean()
			info.CallP99Seconds = st.calls.quantile(0.99)
		}
		out.Plugins[i] = info
	}
	reply(w, out)
}

// callDurations is the histogram of the plugins' call times.
const callDurations = "wapper_plugin_call_duration_seconds"

// hostExports are the exports the host calls for its own ends: to check
// an instance (the ABI marker) and to pass buffers (wapper_alloc,
// wapper_free). The call latency on the plugins page leaves them out: they
// do none of the plugin's work, and would pull its figures down.
var hostExports = map[string]bool{abi.ExportMarker: true, abi.ExportAlloc: true, abi.ExportFree: true}

// pluginStats are a plugin's figures from the host's metrics.
type pluginStats struct {
	counters map[string]float64
	calls    histogram
}

// stats reads the counters and call times of plugins from the gatherer;
// nil without one.
func (c *Console) stats(plugins []string) map[string]*pluginStats {
	if c.opts.Gatherer == nil {
		return nil
	}
	mfs, err := c.opts.Gatherer.Gather()
	if err != nil {
		c.log.Debug("metrics for the plugins page gathered with errors", "err", err)
	}
	out := map[string]*pluginStats{}
	for _, p := range plugins {
		st := &pluginStats{counters: map[string]float64{}}
		for _, short := range pluginCounters {
			st.counters[short] = 0 // a counter without a series yet has not counted
		}
		out[p] = st
	}
	for _, mf := range mfs {
		short, ok := pluginCounters[mf.GetName()]
		if !ok && mf.GetName() != callDurations {
			continue
		}
		for _, m := range mf.GetMetric() {
			plugin, export := "", ""
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "plugin":
					plugin = lp.GetValue()
				case "export":
					export = lp.GetValue()
				}
			}
			st := out[plugin]
			switch {
			case st == nil:
				// another plugin, or no plugin label
			case m.Counter != nil:
				st.counters[short] += m.Counter.GetValue()
			case m.Gauge != nil:
				st.counters[short] += m.Gauge.GetValue()
			case m.Histogram != nil && !hostExports[export]:
				st.calls.add(m.Histogram)
			}
		}
	}
	return out
}

// histogram is the sum of series of a Prometheus histogram with the same
// buckets.
type histogram struct {
	count uint64
	sum   float64
	// cumulative counts observations up to each upper bound (+Inf
	// excluded: that is count).
	cumulative map[float64]uint64
}

// add adds a series.
func (h *histogram) add(m *dto.Histogram) {
	h.count += m.GetSampleCount()
	h.sum += m.GetSampleSum()
	if h.cumulative == nil {
		h.cumulative = map[float64]uint64{}
	}
	for _, b := range m.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), +1) {
			h.cumulative[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
}

// mean returns the mean observation, 0 without any.
func (h *histogram) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / float64(h.count)
}

// quantile estimates the q-quantile (0 < q < 1) as Prometheus's
// histogram_quantile does: it finds the bucket the rank falls in and
// interpolates linearly within it, the first bucket starting at 0; in the
// +Inf bucket it answers the highest finite upper bound. 0 without
// observations.
func (h *histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	bounds := slices.Sorted(maps.Keys(h.cumulative))
	rank := q * float64(h.count)
	lower, below := 0.0, 0.0 // the bucket's lower bound, and the observations under it
	for i, upper := range bounds {
		n := float64(h.cumulative[upper])
		if n >= rank { // and below < rank: the bucket holds observations
			if i == 0 && upper <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(n-below)
		}
		lower, below = upper, n
	}
	return lower // in +Inf (0 when there is no finite bucket)
}

// page serves the embedded files: index.html at /, the others at
// /console/{file}.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := "index.html"
	if r.URL.Path != "/" {
		name = strings.TrimPrefix(r.URL.Path, "/console/")
		if name == "" {
			http.Redirect(w, r, "../", http.StatusFound) // the console is at /
			return
		}
	}
	f, ok := c.files[name]
	if !ok || (name == "index.html" && r.URL.Path != "/") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.typ)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a new binary brings new files
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "index.html" {
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Referrer-Policy", "no-referrer")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}

// errorResponse is the REST API's error body (host/rest.ErrorResponse).
type errorResponse struct {
	APIVersion string `json:"apiVersion"`
	StatusCode int    `json:"statusCode"`
	TimeStamp  string `json:"timeStamp"`
	Error      string `json:"error"`
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorResponse{APIVersion: "v1", StatusCode: code, TimeStamp: time.Now().Format(time.RFC3339), Error: err.Error()})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps the manager's errors to HTTP codes, as the REST API does.
func statusOf(err error) int {
	switch {
	case errors.Is(err, devices.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, devices.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, devices.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
