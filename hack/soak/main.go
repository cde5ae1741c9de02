// Command soak is wapper-host's soak test (`make soak`, not part of `make
// test`): many devices, a mix of healthy and faulty plugins, desired writes
// all along, and kill -9 of the host at random points, for a set time.
//
// It writes manifests (most devices on the virtual plugin with a ReadWrite
// setpoint, the rest on the faulty test plugin across its fault kinds,
// under a MapperPlugin with a short callTimeout), starts bin/wapper-host on
// a fresh state folder, and sends desired writes over REST with a value
// unique in the whole soak, remembering each one (device, value, time, HTTP
// code, desired seq). Every 1–20 s it kills the host with SIGKILL, looks
// at the state database, and starts it again on the same state folder.
//
// At the end it stops writing, restarts the host one last time and waits
// for every device's last accepted value to be desired, written and read
// back. It reports:
//
//   - lost writes: a device whose last accepted value never shows up;
//   - doubled writes: a desired seq that the logs ("desired value applied")
//     show applied twice, in one run or in two;
//   - writes repeated by the documented kill window (see [windowWrite]),
//     apart, since the log cannot show them;
//   - applied values that differ from what was written, or that go back to
//     an older seq;
//   - restarts, unexpected host exits, the host's RSS (VmRSS) over time and
//     CPU, and whether healthy devices still read at the end.
//
// It exits 1 on any lost, doubled, mismatched or out-of-order write, an
// unexpected host exit, or a healthy device that stopped reading.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	duration     time.Duration
	devices      int
	faultyShare  float64
	rate         float64
	waitPct      int
	workers      int
	killMin      time.Duration
	killMax      time.Duration
	finalWait    time.Duration
	healthWindow time.Duration
	seed         uint64
	keep         bool
	strict       bool
	bin          string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "time", 10*time.Minute, "how long to write and kill")
	flag.IntVar(&o.devices, "devices", 200, "number of devices")
	flag.Float64Var(&o.faultyShare, "faulty", 0.2, "share of devices on the faulty plugin")
	flag.Float64Var(&o.rate, "rate", 20, "desired writes per second (at most)")
	flag.IntVar(&o.waitPct, "wait-percent", 10, "percent of writes sent with ?wait=20s")
	flag.IntVar(&o.workers, "writers", 8, "concurrent writers (each owns a share of the devices)")
	flag.DurationVar(&o.killMin, "kill-min", time.Second, "shortest run before a kill -9")
	flag.DurationVar(&o.killMax, "kill-max", 20*time.Second, "longest run before a kill -9")
	flag.DurationVar(&o.finalWait, "final-wait", 3*time.Minute, "how long the final run may take to apply every last write")
	flag.DurationVar(&o.healthWindow, "health-window", 10*time.Second, "at the end, every healthy device must read at least once within this")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, state) even when the soak passes")
	flag.BoolVar(&o.strict, "strict", false, "count writes repeated by the documented kill window as doubled")
	flag.StringVar(&o.bin, "bin", "", "wapper-host binary (default bin/wapper-host in the repository)")
	flag.Parse()
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	os.Exit(soak(o))
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func soak(o options) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "soak: "+format+"\n", a...)
		return 2
	}
	root, err := findRoot()
	if err != nil {
		return fail("%v", err)
	}
	if o.bin == "" {
		o.bin = filepath.Join(root, "bin/wapper-host")
	}
	work, err := os.MkdirTemp("", "wapper-soak-")
	if err != nil {
		return fail("%v", err)
	}
	rng := rand.New(rand.NewPCG(o.seed, 1))
	devs := makeDevices(o.devices, o.faultyShare, rng)
	var virtual, faulty []*device
	for _, d := range devs {
		if d.virtual {
			virtual = append(virtual, d)
		} else {
			faulty = append(faulty, d)
		}
	}
	cfg := hostConfig{
		bin: o.bin, stateDir: filepath.Join(work, "state"), manifests: filepath.Join(work, "manifests"),
		pluginDir: filepath.Join(work, "plugins"), logDir: filepath.Join(work, "logs"),
	}
	for _, dir := range []string{cfg.pluginDir, cfg.logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail("%v", err)
		}
	}
	if err := writeManifests(cfg.manifests, devs); err != nil {
		return fail("write manifests: %v", err)
	}
	for src, dst := range map[string]string{"bin/plugins/virtual.wasm": "virtual.wasm", "bin/testplugins/faulty.wasm": "faulty.wasm"} {
		if err := copyFile(filepath.Join(root, src), filepath.Join(cfg.pluginDir, dst)); err != nil {
			return fail("%v", err)
		}
	}
	if cfg.httpAddr, err = freeAddr(); err != nil {
		return fail("%v", err)
	}
	if cfg.mqttAddr, err = freeAddr(); err != nil {
		return fail("%v", err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	kinds := map[string]int{}
	for _, d := range faulty {
		kinds[d.fault]++
	}
	fmt.Printf("soak: %v, %d devices (%d virtual, %d faulty %s), up to %.0f writes/s, kill -9 every %v–%v, seed %d\n",
		o.duration, len(devs), len(virtual), len(faulty), fmtCounts(kinds), o.rate, o.killMin, o.killMax, o.seed)
	fmt.Printf("soak: work folder %s\n", work)

	s := &soaker{o: o, cfg: cfg, devs: devs, virtual: virtual, faulty: faulty, began: time.Now()}
	code := s.run(ctx, rng)
	if code != 0 || o.keep {
		fmt.Printf("soak: logs and state kept in %s\n", work)
	} else {
		os.RemoveAll(work)
	}
	return code
}

// soaker holds one soak's state.
type soaker struct {
	o       options
	cfg     hostConfig
	devs    []*device
	virtual []*device
	faulty  []*device
	began   time.Time

	runs       []*run
	cur        atomic.Pointer[run]
	rssMu      sync.Mutex // guards rss
	rss        []rssSample
	window     []windowWrite
	inspectErr []string
	startFails int
	unexpected []*run
	finalStop  string
}

func (s *soaker) since() time.Duration { return time.Since(s.began).Round(time.Second) }

// sampleRSS samples the current run's VmRSS every second until ctx ends.
func (s *soaker) sampleRSS(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r := s.cur.Load(); r != nil {
				if kib, ok := r.sample(); ok {
					s.rssMu.Lock()
					s.rss = append(s.rss, rssSample{at: time.Since(s.began), run: r.n, kib: kib})
					s.rssMu.Unlock()
				}
			}
		}
	}
}

func (s *soaker) start() (*run, error) {
	r, err := startHost(s.cfg, len(s.runs)+1)
	if err != nil {
		return nil, err
	}
	s.runs = append(s.runs, r)
	s.cur.Store(r)
	return r, nil
}

// afterKill inspects the state database of the dead host.
func (s *soaker) afterKill(r *run) {
	ws, err := inspectState(s.cfg.stateDir, s.devs, r.n)
	if err != nil {
		s.inspectErr = append(s.inspectErr, fmt.Sprintf("after run %d: %v", r.n, err))
	}
	s.window = append(s.window, ws...)
}

func (s *soaker) run(ctx context.Context, rng *rand.Rand) int {
	sampCtx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	go s.sampleRSS(sampCtx)

	w := newWriter(s.cfg.httpAddr, s.virtual, s.o.rate, s.o.waitPct, func() int {
		if r := s.cur.Load(); r != nil {
			return r.n
		}
		return 0
	})
	writeCtx, stopWriting := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() { w.run(writeCtx, s.o.workers, s.o.seed); close(writerDone) }()

	soakEnd := time.After(s.o.duration)
	ended := false
	for !ended {
		r, err := s.start()
		if err != nil {
			stopWriting()
			<-writerDone
			return s.abort(err.Error())
		}
		life := s.o.killMin + time.Duration(rng.Int64N(int64(s.o.killMax-s.o.killMin)+1))
		upErr := make(chan error, 1)
		go func() { upErr <- r.waitUp(ctx, s.cfg.httpAddr, 90*time.Second) }()
		killAt := time.After(life)
		for waiting := true; waiting; {
			select {
			case err := <-upErr:
				if err != nil && !r.exited() && ctx.Err() == nil {
					s.startFails++
					fmt.Printf("soak %6v run %d: %v\n", s.since(), r.n, err)
				}
			case <-killAt:
				waiting = false
			case <-soakEnd:
				waiting, ended = false, true
			case <-ctx.Done():
				r.kill9()
				stopWriting()
				<-writerDone
				return s.abort("interrupted")
			case <-r.done:
				waiting = false
			}
		}
		if r.exited() && !r.killed {
			s.unexpected = append(s.unexpected, r)
			fmt.Printf("soak %6v run %d: wapper-host exited by itself after %v: %s\n", s.since(), r.n, r.end.Sub(r.start).Round(time.Millisecond), r.exit)
			if s.startFails >= 5 || len(s.unexpected) >= 5 {
				stopWriting()
				<-writerDone
				return s.abort("wapper-host keeps failing")
			}
		} else if ended {
			// Stop writing with the host alive, so every write gets its
			// answer; then the last kill.
			stopWriting()
			<-writerDone
			r.kill9()
		} else {
			r.kill9()
		}
		s.afterKill(r)
		up := "never answered"
		if d, ok := r.upAfter(); ok {
			up = "up after " + d.Round(time.Millisecond).String()
		}
		how := "killed"
		if !r.killed {
			how = "exited"
		}
		r.mu.Lock()
		peak := r.rssPeak
		r.mu.Unlock()
		fmt.Printf("soak %6v run %d: %s after %v (%s), peak RSS %s, writes accepted so far %d\n",
			s.since(), r.n, how, r.end.Sub(r.start).Round(time.Millisecond), up, mib(peak), countOutcome(w, accepted))
	}
	stopWriting()
	<-writerDone

	// The final run: every last accepted write must be applied.
	r, err := s.start()
	if err != nil {
		return s.abort(err.Error())
	}
	r.final = true
	if err := r.waitUp(ctx, s.cfg.httpAddr, 2*time.Minute); err != nil {
		r.kill9()
		return s.abort("final run: " + err.Error())
	}
	fin := s.converge(ctx, w, r)
	healthy := s.healthyReading(ctx, s.o.healthWindow)
	if r.stop(30 * time.Second) {
		s.finalStop = "stopped cleanly on SIGINT (" + r.exit + ")"
	} else {
		s.finalStop = "did not stop within 30s of SIGINT: killed"
	}
	stopSampling()
	return s.report(w, fin, healthy)
}

func (s *soaker) abort(why string) int {
	fmt.Printf("soak: ABORTED: %s\n", why)
	for _, r := range s.runs {
		if !r.exited() {
			r.kill9()
		}
	}
	if len(s.runs) > 0 {
		last := s.runs[len(s.runs)-1]
		fmt.Printf("soak: last log lines of run %d (%s):\n%s\n", last.n, last.logPath, tail(last.logPath, 20))
	}
	return 2
}

// apiTwin and apiDevice are the REST shapes the soak reads.
type apiTwin struct {
	Property     string    `json:"property"`
	Desired      string    `json:"desired"`
	DesiredSeq   uint64    `json:"desiredSeq"`
	AppliedSeq   uint64    `json:"appliedSeq"`
	Reported     string    `json:"reported"`
	ReportedTime time.Time `json:"reportedTime"`
	Error        string    `json:"error"`
}

type apiDevice struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Phase     string    `json:"phase"`
	Reason    string    `json:"reason"`
	Twins     []apiTwin `json:"twins"`
}

func (d apiDevice) twin(p string) apiTwin {
	for _, t := range d.Twins {
		if t.Property == p {
			return t
		}
	}
	return apiTwin{}
}

func (s *soaker) devicesNow() (map[string]apiDevice, error) {
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + s.cfg.httpAddr + "/api/v1/devices")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Devices []apiDevice `json:"devices"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /api/v1/devices: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string]apiDevice{}
	for _, d := range body.Devices {
		out[d.Namespace+"/"+d.Name] = d
	}
	return out, nil
}

// expectation is what one device's setpoint must end as.
type expectation struct {
	dev       *device
	last      *write   // last accepted write; nil if none
	allowed   []string // values the desired may end as: last, or an uncertain write after it
	uncertain int
}

func expectations(w *writer, devs []*device) []expectation {
	var out []expectation
	for _, d := range devs {
		e := expectation{dev: d}
		for _, wr := range w.byDev[d.idx] {
			switch wr.outcome {
			case accepted:
				e.last, e.allowed, e.uncertain = wr, []string{strconv.FormatInt(wr.value, 10)}, 0
			case uncertain:
				e.allowed = append(e.allowed, strconv.FormatInt(wr.value, 10))
				e.uncertain++
			}
		}
		if e.last != nil || e.uncertain > 0 {
			out = append(out, e)
		}
	}
	return out
}

// finalResult is the final run's verdict on every device's last write.
type finalResult struct {
	took      time.Duration
	converged bool
	checked   int
	lost      []string // device: why
	endedOn   map[string]int
}

func (e expectation) check(d apiDevice, ok bool) (done bool, why string) {
	if !ok {
		return false, "device missing from /api/v1/devices"
	}
	t := d.twin("setpoint")
	allowed := slices.Contains(e.allowed, t.Desired)
	if e.last == nil && t.Desired == "" {
		allowed = true // only uncertain writes, none of which was saved
	}
	if !allowed {
		want := "none"
		if e.last != nil {
			want = strconv.FormatInt(e.last.value, 10)
		}
		return false, fmt.Sprintf("desired is %q (seq %d), last accepted value %s (seq %d, %d at %s), %d uncertain after it",
			t.Desired, t.DesiredSeq, want, seqOf(e.last), codeOf(e.last), timeOf(e.last), e.uncertain)
	}
	if t.Desired == "" {
		return true, ""
	}
	if t.Reported != t.Desired || t.AppliedSeq != t.DesiredSeq {
		return false, fmt.Sprintf("desired %q seq %d not applied: reported %q, applied seq %d, phase %s %s, twin error %q",
			t.Desired, t.DesiredSeq, t.Reported, t.AppliedSeq, d.Phase, d.Reason, t.Error)
	}
	return true, ""
}

func seqOf(w *write) uint64 {
	if w == nil {
		return 0
	}
	return w.seq
}

func codeOf(w *write) int {
	if w == nil {
		return 0
	}
	return w.code
}

func timeOf(w *write) string {
	if w == nil {
		return "-"
	}
	return w.answered.Format("15:04:05.000")
}

// converge waits for every device's last accepted value to be applied.
func (s *soaker) converge(ctx context.Context, w *writer, r *run) finalResult {
	exps := expectations(w, s.virtual)
	res := finalResult{checked: len(exps), endedOn: map[string]int{}}
	start := time.Now()
	deadline := start.Add(s.o.finalWait)
	var whys []string
	for {
		ds, err := s.devicesNow()
		whys = whys[:0]
		if err != nil {
			whys = append(whys, "all: "+err.Error())
		} else {
			for _, e := range exps {
				d, ok := ds[e.dev.key()]
				if done, why := e.check(d, ok); !done {
					whys = append(whys, e.dev.key()+": "+why)
				}
			}
		}
		if len(whys) == 0 {
			res.took, res.converged = time.Since(start), true
			for _, e := range exps {
				t := ds[e.dev.key()].twin("setpoint")
				switch {
				case e.last != nil && t.Desired == strconv.FormatInt(e.last.value, 10):
					res.endedOn["last accepted"]++
				case t.Desired == "":
					res.endedOn["no value"]++
				default:
					res.endedOn["an uncertain write after it"]++
				}
			}
			return res
		}
		if time.Now().After(deadline) || ctx.Err() != nil || r.exited() {
			res.took, res.lost = time.Since(start), slices.Clone(whys)
			if r.exited() {
				res.lost = append(res.lost, "final run exited: "+r.exit)
			}
			return res
		}
		time.Sleep(time.Second)
	}
}

// healthResult says which devices still read at the end.
type healthResult struct {
	window                time.Duration
	virtualOK, virtualAll int
	stopped               []string
	worstGap              time.Duration // longest wait for a new reading seen on a virtual device
	worstDev              string
	faultFreeOK           int
	faultFreeAll          int
	faultyPhases          map[string]int
	skipped               string // wapper_reads_skipped_total at the end
	err                   string
}

// healthyReading polls the devices once a second for the window: every
// virtual device's counter must move at least once. It also notes the
// longest wait for a new reading (at the polling's one-second grain).
func (s *soaker) healthyReading(ctx context.Context, window time.Duration) healthResult {
	h := healthResult{window: window, faultyPhases: map[string]int{}}
	type seen struct {
		first, cur apiTwin
		since      time.Time // when cur was first seen
		moved      int
		gap        time.Duration
	}
	virt, ff := map[string]*seen{}, map[string]*seen{}
	var last map[string]apiDevice
	end := time.Now().Add(window)
	for polls := 0; ; polls++ {
		ds, err := s.devicesNow()
		if err != nil {
			h.err = err.Error()
			return h
		}
		last = ds
		now := time.Now()
		note := func(m map[string]*seen, key string, t apiTwin) {
			x := m[key]
			switch {
			case x == nil:
				m[key] = &seen{first: t, cur: t, since: now}
			case t.ReportedTime.After(x.cur.ReportedTime) && t.Reported != x.cur.Reported:
				x.gap = max(x.gap, now.Sub(x.since))
				x.cur, x.since = t, now
				x.moved++
			}
		}
		for _, d := range s.virtual {
			note(virt, d.key(), ds[d.key()].twin("count"))
		}
		for _, d := range s.faulty {
			if d.fault == "none" {
				note(ff, d.key(), ds[d.key()].twin("r"))
			}
		}
		if now.After(end) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	now := time.Now()
	for _, d := range s.virtual {
		h.virtualAll++
		x := virt[d.key()]
		gap := max(x.gap, now.Sub(x.since))
		if gap > h.worstGap {
			h.worstGap, h.worstDev = gap, d.key()
		}
		if x.moved > 0 {
			h.virtualOK++
			continue
		}
		b := last[d.key()]
		h.stopped = append(h.stopped, fmt.Sprintf("%s (cycle %d ms): count %q at %s, no new reading in %v, phase %s %s, error %q",
			d.key(), d.cycleMS, x.cur.Reported, x.cur.ReportedTime.Format("15:04:05.000"), window, b.Phase, b.Reason, x.cur.Error))
	}
	for _, d := range s.faulty {
		h.faultyPhases[d.fault+":"+last[d.key()].Phase]++
		if d.fault == "none" {
			h.faultFreeAll++
			if ff[d.key()].moved > 0 {
				h.faultFreeOK++
			}
		}
	}
	h.skipped = s.metric("wapper_reads_skipped_total")
	return h
}

// metric returns the lines of one metric from /metrics, joined.
func (s *soaker) metric(name string) string {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + s.cfg.httpAddr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			out = append(out, strings.TrimPrefix(l, name))
		}
	}
	return strings.Join(out, ", ")
}

func countOutcome(w *writer, outcome string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, wr := range w.writes {
		if wr.outcome == outcome {
			n++
		}
	}
	return n
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
