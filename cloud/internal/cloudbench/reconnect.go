package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/internal/backoff"
	"wapper.dev/wapper/internal/benchutil"
	"wapper.dev/wapper/linkproto"
)

// handshakeTimeout bounds each simulated host's connect, as wapper-host's
// default --cloud-handshake-timeout (cloudlink.DefaultHandshakeTimeout)
// does; the bench may not import host packages.
const handshakeTimeout = 15 * time.Second

// linkTimeout is wapper-host's default --cloud-timeout
// (cloudlink.DefaultTimeout), which with --cloud-max-backoff bounds how
// long a host honours a Retry-After.
const linkTimeout = 30 * time.Second

// fleet is the link-client simulator's reconnecting hosts: each keeps its
// link up as wapper-host does, drawing its waits from internal/backoff
// (host/cloudlink's policy), and the fleet records, per disruption (a
// phase), when each host came back.
type fleet struct {
	tls    *tls.Config
	policy backoff.Backoff // template: Min, Max and Spread
	target atomic.Value    // string: the cloud's address now (the Service)
	phase  atomic.Pointer[phase]
	hosts  []*relinkHost
}

// relinkHost is one simulated host.
type relinkHost struct{ node, token string }

// phase records one disruption: every time from its start.
type phase struct {
	start time.Time
	n     int // hosts expected back
	back  chan struct{}

	mu       sync.Mutex
	drops    []time.Duration // when each host saw its link end
	planned  []time.Duration // when each returning host meant to try: its link's end plus the waits it drew
	arrivals []time.Duration // when each host's hello went through
	refused  map[int]int     // attempts the cloud answered with an HTTP error (401, 409, 503, ...), by status
	failed   map[string]int  // other failed attempts, by cause
}

func newFleet(tlsCfg *tls.Config, policy backoff.Backoff, target string, nodes, tokens []string) *fleet {
	f := &fleet{tls: tlsCfg, policy: policy}
	f.target.Store(target)
	for i := range nodes {
		f.hosts = append(f.hosts, &relinkHost{node: nodes[i], token: tokens[i]})
	}
	f.begin()
	return f
}

// connect connects every host (64 at a time) and starts keeping its link
// up until ctx ends.
func (f *fleet) connect(ctx context.Context) error {
	return benchutil.Parallel(64, len(f.hosts), func(i int) error {
		h := f.hosts[i]
		conn, _, err := dialLink(ctx, f.target.Load().(string), f.tls, h.node, h.token, handshakeTimeout)
		if err != nil {
			return fmt.Errorf("%s: %w", h.node, err)
		}
		go f.keep(ctx, h, conn)
		return nil
	})
}

// begin starts recording a disruption that every host comes back from.
func (f *fleet) begin() *phase {
	p := &phase{start: time.Now(), n: len(f.hosts), back: make(chan struct{}), failed: map[string]int{}, refused: map[int]int{}}
	f.phase.Store(p)
	return p
}

// keep serves h's session on conn, then reconnects as wapper-host does
// (host/cloudlink.Link.Run), and so on until ctx ends.
func (f *fleet) keep(ctx context.Context, h *relinkHost, conn *websocket.Conn) {
	b := f.policy
	start := time.Now()
	for {
		err := serveLink(conn)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		ended := time.Now()
		p := f.phase.Load()
		p.dropped(ended)
		wait := b.Next(ended.Sub(start), backoff.CloudEnded(err))
		planned := ended.Add(wait)
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			start = time.Now()
			var resp *http.Response
			conn, resp, err = dialLink(ctx, f.target.Load().(string), f.tls, h.node, h.token, handshakeTimeout)
			if err == nil {
				p.arrived(time.Now(), planned)
				break
			}
			if ctx.Err() != nil {
				return
			}
			p.failedAttempt(resp, err)
			wait = b.Next(time.Since(start), false)
			if d, ok := backoff.RetryAfter(resp, b.Max+linkTimeout); ok {
				wait = b.After(d)
			}
			planned = time.Now().Add(wait)
		}
	}
}

// serveLink acknowledges every batch the cloud sends (pings are answered
// by the websocket library) until the session ends, and returns why.
func serveLink(conn *websocket.Conn) error {
	for {
		var m linkproto.Message
		if err := conn.ReadJSON(&m); err != nil {
			return err
		}
		if m.Type == linkproto.TypeApply {
			if err := conn.WriteJSON(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq}); err != nil {
				return err
			}
		}
	}
}

func (p *phase) dropped(at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drops = append(p.drops, at.Sub(p.start))
}

func (p *phase) arrived(at, planned time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.arrivals = append(p.arrivals, at.Sub(p.start))
	p.planned = append(p.planned, planned.Sub(p.start))
	if len(p.arrivals) == p.n {
		close(p.back)
	}
}

func (p *phase) failedAttempt(resp *http.Response, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if resp != nil {
		p.refused[resp.StatusCode]++
		return
	}
	cause := "other"
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		cause = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		cause = "reset during handshake"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "timeout"):
		cause = "handshake timeout"
	}
	p.failed[cause]++
}

// wait waits until every host is back, or ctx ends.
func (p *phase) wait(ctx context.Context) error {
	select {
	case <-p.back:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Errorf("%d of %d hosts back: %w", len(p.arrivals), p.n, ctx.Err())
	}
}

// curve is a phase's result.
type curve struct {
	name      string
	n         int
	firstDrop time.Duration
	arrivals  []time.Duration // sorted
	planned   []time.Duration // sorted
	refused   map[int]int
	failedN   int
	failed    map[string]int
	cloudCPU  float64 // seconds of CPU the serving replica used in the phase
}

func (p *phase) curve(name string) curve {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := curve{name: name, n: p.n, arrivals: slices.Clone(p.arrivals), planned: slices.Clone(p.planned), refused: maps.Clone(p.refused), failed: map[string]int{}}
	slices.Sort(c.arrivals)
	slices.Sort(c.planned)
	if len(p.drops) > 0 {
		c.firstDrop = slices.Min(p.drops)
	}
	for k, v := range p.failed {
		c.failed[k] = v
		c.failedN += v
	}
	return c
}

// quantile returns the time by which share q of the hosts were back.
func (c curve) quantile(q float64) time.Duration {
	if len(c.arrivals) == 0 {
		return 0
	}
	i := int(q*float64(len(c.arrivals))+0.999999) - 1
	return c.arrivals[min(max(i, 0), len(c.arrivals)-1)]
}

// peak returns the most of the sorted times ts in any window of width w
// (a sliding window, not fixed buckets).
func peak(ts []time.Duration, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i]-ts[j] >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// buckets counts the sorted times ts in buckets of width w from 0, up to
// the last.
func buckets(ts []time.Duration, w time.Duration) []int {
	if len(ts) == 0 {
		return nil
	}
	out := make([]int, int(ts[len(ts)-1]/w)+1)
	for _, t := range ts {
		out[max(int(t/w), 0)]++
	}
	return out
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }

// printCurves prints the curves as text: a summary line each, then the
// arrivals per bucket side by side; times are from the event from names.
func printCurves(w io.Writer, cs []curve, bucket time.Duration, from string) {
	fmt.Fprintf(w, "  %-34s %7s %7s %7s %7s %7s %9s %11s %10s %8s %s\n", "hosts back, s after "+from, "drop", "50%", "90%", "99%", "100%", "peak/s", "peak/100ms", "cloud CPU", "refused", "failed attempts (by cause)")
	for _, c := range cs {
		var fs []string
		for _, k := range slices.Sorted(maps.Keys(c.failed)) {
			fs = append(fs, fmt.Sprintf("%s %d", k, c.failed[k]))
		}
		failed := strconv.Itoa(c.failedN)
		if len(fs) > 0 {
			failed += " (" + strings.Join(fs, ", ") + ")"
		}
		fmt.Fprintf(w, "  %-34s %7s %7s %7s %7s %7s %9d %11d %8.1f s %8s %s\n", c.name, seconds(c.firstDrop),
			seconds(c.quantile(0.5)), seconds(c.quantile(0.9)), seconds(c.quantile(0.99)), seconds(c.quantile(1)),
			peak(c.arrivals, time.Second), peak(c.arrivals, 100*time.Millisecond), c.cloudCPU, refusedText(c.refused), failed)
	}
	for _, c := range cs { // at most 80 rows: wider buckets for a long tail
		for len(c.arrivals) > 0 && c.arrivals[len(c.arrivals)-1]/bucket >= 80 {
			bucket *= 2
		}
	}
	fmt.Fprintf(w, "\n  arrivals per %s (s after %s)\n", bucket, from)
	fmt.Fprintf(w, "  %-13s", "from - to")
	bs := make([][]int, len(cs))
	rows := 0
	for i, c := range cs {
		fmt.Fprintf(w, " %34s", c.name)
		bs[i] = buckets(c.arrivals, bucket)
		rows = max(rows, len(bs[i]))
	}
	fmt.Fprintln(w)
	for r := range rows {
		fmt.Fprintf(w, "  %5.1f - %5.1f", (time.Duration(r) * bucket).Seconds(), (time.Duration(r+1) * bucket).Seconds())
		for i := range cs {
			n := 0
			if r < len(bs[i]) {
				n = bs[i][r]
			}
			fmt.Fprintf(w, " %34d", n)
		}
		fmt.Fprintln(w)
	}
}

// runReconnect is the -reconnect mode (make bench-reconnect): nHosts
// simulated hosts on a real wapper-cloud, which is stopped twice.
//
//  1. Rolling update: a second replica is up (as with the Deployment's
//     maxUnavailable 0); the first one gets SIGTERM and closes all of
//     its links, and the hosts come back to the second (the simulated
//     Service now points there).
//  2. Restart: that replica gets SIGTERM too and is started again on the
//     same address once it has exited, so the hosts find no cloud until
//     it is ready.
//
// For each it prints when the links dropped, when 50/90/99/100% of the
// hosts were back, the peak arrivals in any 1 s and 100 ms, the attempts
// refused or failed, and the arrivals per bucket.
func runReconnect(nHosts, statusQPS int, policy backoff.Backoff, bucket time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	env, tokens, err := startEnv(ctx, ns, nHosts)
	if err != nil {
		return err
	}
	defer env.Stop()
	dir, err := os.MkdirTemp("", "cloudbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var addrs []string
	for range 2 {
		port, err := freePort()
		if err != nil {
			return err
		}
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	var procs []*cloudProc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	var tlsCfg *tls.Config
	var ready []string
	for i, a := range addrs { // one after the other: the first creates the certificate's Secret
		start := time.Now()
		cmd, cfg, err := startCloud(ctx, env.Kubeconfig, ns, a, dir, "wapper-cloud-"+strconv.Itoa(i), statusQPS)
		if err != nil {
			return err
		}
		procs, tlsCfg = append(procs, watch(cmd)), cfg
		ready = append(ready, fmt.Sprintf("%.1f s", time.Since(start).Seconds()))
	}
	fmt.Printf("wapper link: two wapper-cloud replicas ready after %s\n", strings.Join(ready, " and "))

	nodes := make([]string, nHosts)
	for i := range nodes {
		nodes[i] = node(i)
	}
	f := newFleet(tlsCfg, policy, addrs[0], nodes, tokens)
	connectStart := time.Now()
	if err := f.connect(ctx); err != nil {
		return err
	}
	fmt.Printf("wapper link: %d simulated hosts connected in %.1f s\n", nHosts, time.Since(connectStart).Seconds())
	// Past 10 Min connected, as for a session that lasted.
	time.Sleep(max(10*policy.Min+time.Second, 2*time.Second))

	// 1. Rolling update.
	f.target.Store(addrs[1])
	cpu0, _ := procCPU(procs[1].cmd.Process.Pid)
	p := f.begin()
	if err := procs[0].stop(); err != nil {
		return err
	}
	procs = procs[1:]
	rollingStopped := time.Since(p.start)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer rcancel()
	err = p.wait(rctx)
	rolling := p.curve("rolling update (replica up)")
	cpu1, _ := procCPU(procs[0].cmd.Process.Pid)
	rolling.cloudCPU = cpu1 - cpu0
	if err != nil {
		printReconnect(nHosts, policy, fmt.Sprintf("  rolling update: SIGTERM to the replica the hosts are on (exited after %.2f s), another replica up; NOT ALL BACK\n", rollingStopped.Seconds()), []curve{rolling}, bucket)
		return fmt.Errorf("rolling update: %w", err)
	}
	fmt.Printf("wapper link: rolling update: all %d back after %.2f s\n", nHosts, rolling.quantile(1).Seconds())
	time.Sleep(max(10*policy.Min+time.Second, 2*time.Second))

	// 2. Restart. The new process is not waited for: the hosts find out
	// when it serves.
	p = f.begin()
	if err := procs[0].stop(); err != nil {
		return err
	}
	stopped := time.Since(p.start)
	procs = procs[:0]
	cmd, err := launchCloud(ctx, env.Kubeconfig, ns, addrs[1], dir, "wapper-cloud-1", statusQPS)
	if err != nil {
		return err
	}
	cp := watch(cmd)
	procs = append(procs, cp)
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer pcancel()
	go func() {
		select {
		case <-cp.exited:
			pcancel()
		case <-pctx.Done():
		}
	}()
	err = p.wait(pctx)
	restart := p.curve("restart (no replica up)")
	restart.cloudCPU, _ = procCPU(cp.cmd.Process.Pid)
	header := fmt.Sprintf("  rolling update: SIGTERM to the replica the hosts are on (exited after %.2f s), another replica up;\n"+
		"  restart: SIGTERM to that one (exited after %.2f s), started again at once (the first host back after %.2f s); times from the SIGTERM\n",
		rollingStopped.Seconds(), stopped.Seconds(), restart.quantile(0).Seconds())
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloudbench: restart: %v; wapper-cloud's log ends with:\n%s\n", err, tail(filepath.Join(dir, "wapper-cloud-1.log"), 20))
		printReconnect(nHosts, policy, header, []curve{rolling}, bucket)
		return fmt.Errorf("restart: %w", err)
	}
	printReconnect(nHosts, policy, header, []curve{rolling, restart}, bucket)
	return nil
}

// cloudProc is a wapper-cloud process being waited for.
type cloudProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
}

func watch(cmd *exec.Cmd) *cloudProc {
	p := &cloudProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// stop sends SIGTERM, as Kubernetes does, and waits until it has exited.
func (p *cloudProc) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	<-p.exited
	return nil
}

func (p *cloudProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// refusedText is the count of refused attempts, with their statuses.
func refusedText(by map[int]int) string {
	n, parts := 0, []string{}
	for _, code := range slices.Sorted(maps.Keys(by)) {
		n += by[code]
		parts = append(parts, fmt.Sprintf("%d: %d", code, by[code]))
	}
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

// printReconnect prints the -reconnect results.
func printReconnect(nHosts int, policy backoff.Backoff, header string, cs []curve, bucket time.Duration) {
	fmt.Printf("\nwapper link, reconnect curve: %d simulated hosts (link clients in one process), real wapper-cloud + kube-apiserver + etcd, %d cores\n", nHosts, benchutil.NumCPU())
	fmt.Printf("  policy (internal/backoff, as wapper-host): delay %s doubling to %s, each wait drawn in [1/2, 1] of it", policy.Min, policy.Max)
	if policy.Spread > policy.Min/2 {
		fmt.Printf("; after the cloud closed a session that lasted, in [%s, %s]\n", policy.Min/2, policy.Spread)
	} else {
		fmt.Printf("; no spread window after the cloud closed a session (-no-spread)\n")
	}
	fmt.Print(header)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("  machine load average at the end (1, 5, 15 min): %s\n", strings.Join(strings.Fields(string(b))[:3], ", "))
	}
	fmt.Println("  drop: the first host to see its link end; peak: the most arrivals in any 1 s and 100 ms (sliding); cloud CPU: the serving replica's, over the phase")
	printCurves(os.Stdout, cs, bucket, "the SIGTERM")
}

// tail returns the last n lines of file.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
