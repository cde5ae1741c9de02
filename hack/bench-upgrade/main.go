// Command bench-upgrade measures the longest gap between readings across a
// hot upgrade of a plugin's module, next to the gap when wapper-host is
// restarted instead (`make bench-upgrade`, part of `make bench`).
//
// It runs the real bin/wapper-host on a generated manifests folder: the
// virtual plugin from a module file (spec.module.file) and -devices
// devices (100 by default) with one counter property read and reported
// every -cycle (100 ms). A subscriber on the embedded MQTT broker records,
// for each device, the time of each reading (the actual value's
// timestamp in its twin/update messages). Then:
//
//   - hot upgrade: the module file is replaced by the same module with a
//     custom section appended (another digest, the same code), and the
//     manifests are written again, so that the host checks the file, loads
//     the new module beside the old one and moves the devices over;
//   - restart: the host is stopped (SIGTERM), the module file replaced by
//     yet another digest of the same code, and the host started again on
//     the same state folder, as an upgrade by restart does.
//
// Both compile their new module cold (the compile cache does not have it),
// so both gaps include what the compile takes from the devices; the
// steady-state gap before any upgrade is printed for reference.
//
// For each it prints the longest gap between two readings of any device
// across the window, and the hot-upgrade gap as a share of the restart
// gap. It ends within two minutes: every wait is bounded.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"wapper.dev/wapper/internal/testenv"
)

var (
	nDevices = flag.Int("devices", 100, "devices")
	cycle    = flag.Duration("cycle", 100*time.Millisecond, "collect and report cycle of every device")
	settle   = flag.Duration("settle", 3*time.Second, "time of steady readings before and after each event")
	timeout  = flag.Duration("timeout", 100*time.Second, "bound of the whole run")
	hostBin  = flag.String("host", "", "wapper-host binary (default bin/wapper-host)")
)

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench-upgrade:", err)
		os.Exit(1)
	}
}

// host is one wapper-host process.
type host struct {
	cmd  *exec.Cmd
	done chan error
}

// paths of one run.
type paths struct {
	bin, manifests, plugins, state, module string
	mqtt, http                             string
}

func run(ctx context.Context) error {
	root := testenv.Root()
	bin := *hostBin
	if bin == "" {
		bin = filepath.Join(root, "bin", "wapper-host")
	}
	virtual, err := os.ReadFile(filepath.Join(root, "bin", "plugins", "virtual.wasm"))
	if err != nil {
		return fmt.Errorf("%w (run `make build plugins` first)", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "bench-upgrade-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := paths{bin: bin, manifests: filepath.Join(dir, "manifests"), plugins: filepath.Join(dir, "plugins"),
		state: filepath.Join(dir, "state")}
	p.module = filepath.Join(p.plugins, "virtual.wasm")
	for _, d := range []string{p.manifests, p.plugins, p.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if p.mqtt, err = freeAddr(); err != nil {
		return err
	}
	if p.http, err = freeAddr(); err != nil {
		return err
	}
	if err := replace(p.module, virtual); err != nil {
		return err
	}
	if err := writeManifests(p.manifests, *nDevices, *cycle); err != nil {
		return err
	}
	rec := newRecorder()
	h, err := startHost(p)
	if err != nil {
		return err
	}
	defer func() { h.stop() }()
	client, err := subscribe(ctx, p.mqtt, rec)
	if err != nil {
		return err
	}
	defer client.Disconnect(250)
	if err := rec.waitAll(ctx, *nDevices); err != nil {
		return fmt.Errorf("devices reading: %w", err)
	}
	from := time.Now()
	wait(ctx, *settle)
	steady, steadyDev := rec.longestGap(from, time.Now())

	// Hot upgrade.
	from = time.Now()
	if err := replace(p.module, withCustomSection(virtual, "bench-upgrade", "2")); err != nil {
		return err
	}
	if err := writeManifests(p.manifests, *nDevices, *cycle); err != nil { // the watcher applies them again
		return err
	}
	if err := waitUpgraded(ctx, p.http); err != nil {
		return err
	}
	took := time.Since(from)
	wait(ctx, *settle)
	hot, hotDev := rec.longestGap(from, time.Now())
	if os.Getenv("BENCH_UPGRADE_DEBUG") != "" {
		rec.dump(from, time.Now(), 2**cycle)
	}

	// Upgrade by restart: stop the host, put the next module in place
	// (compiled cold at start, as the hot upgrade's was), start it again.
	from = time.Now()
	if err := h.stop(); err != nil {
		return fmt.Errorf("stop the host: %w", err)
	}
	if err := replace(p.module, withCustomSection(virtual, "bench-upgrade", "3")); err != nil {
		return err
	}
	if h, err = startHost(p); err != nil {
		return err
	}
	if err := rec.waitAfter(ctx, *nDevices, time.Now()); err != nil {
		return fmt.Errorf("devices reading after the restart: %w", err)
	}
	wait(ctx, *settle)
	restart, restartDev := rec.longestGap(from, time.Now())
	if ctx.Err() != nil {
		return fmt.Errorf("timed out: %w", ctx.Err())
	}

	fmt.Printf("upgrade of the virtual plugin, %d devices at a %s cycle\n", *nDevices, *cycle)
	fmt.Printf("%-12s %14s %s\n", "how", "longest gap", "device")
	fmt.Printf("%-12s %14s %s\n", "steady", steady.Round(time.Millisecond), steadyDev)
	fmt.Printf("%-12s %14s %s (upgrade took %s, compile included)\n", "hot upgrade", hot.Round(time.Millisecond), hotDev, took.Round(time.Millisecond))
	fmt.Printf("%-12s %14s %s\n", "restart", restart.Round(time.Millisecond), restartDev)
	if restart > 0 {
		fmt.Printf("hot/restart gap ratio: %.3f (%.1fx shorter)\n", float64(hot)/float64(restart), float64(restart)/float64(max(hot, time.Millisecond)))
	}
	return nil
}

// waitUpgraded waits until the host's metrics count one hot upgrade of
// the virtual plugin, and fails when it was rolled back.
func waitUpgraded(ctx context.Context, httpAddr string) error {
	for {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			if cerr := resp.Body.Close(); rerr == nil {
				rerr = cerr
			}
			text := string(b)
			switch {
			case rerr != nil:
			case strings.Contains(text, `wapper_plugin_upgrades_total{plugin="virtual",result="ok"} 1`):
				return nil
			case strings.Contains(text, `wapper_plugin_upgrades_total{plugin="virtual",result="rolled_back"} 1`):
				return errors.New("the hot upgrade was rolled back (see the host's log)")
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("waiting for the hot upgrade: %w", ctx.Err())
		}
	}
}

// wait sleeps d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// replace writes a file by a rename, as a deployment would.
func replace(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// withCustomSection returns the module with a custom section appended:
// the same code, another digest.
func withCustomSection(wasm []byte, name, payload string) []byte {
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := append(slices.Clone(wasm), 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// writeManifests writes the plugin, the model and n devices, each with one
// counter read and reported every cycle.
func writeManifests(dir string, n int, cycle time.Duration) error {
	ms := cycle.Milliseconds()
	var b strings.Builder
	b.WriteString(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
  limits: {instances: 2}
  upgrade: {strategy: Hot, canaryPercent: 10}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: counter, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: count, type: INT, accessMode: ReadOnly}
`)
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d%03d, namespace: default}
spec:
  deviceModelRef: {name: counter}
  protocol: {protocolName: virtual}
  properties:
  - name: count
    collectCycle: %d
    reportCycle: %d
    visitors: {protocolName: virtual, configData: {kind: counter}}
`, i, ms, ms)
	}
	return replace(filepath.Join(dir, "bench.yaml"), []byte(b.String()))
}

func startHost(p paths) (*host, error) {
	cmd := exec.Command(p.bin, "--manifests", p.manifests, "--plugin-dir", p.plugins, "--state-dir", p.state,
		"--mqtt-listen", p.mqtt, "--http-listen", p.http, "--log-level", hostLog())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.bin, err)
	}
	h := &host{cmd: cmd, done: make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	return h, nil
}

// stop ends the host with SIGTERM (SIGKILL after 20 s); stopping a
// stopped host does nothing.
func (h *host) stop() error {
	if h.cmd.ProcessState != nil || h.done == nil {
		return nil
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	var err error
	select {
	case err = <-h.done:
	case <-t.C:
		_ = h.cmd.Process.Kill()
		err = <-h.done
	}
	h.done = nil
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return nil // stopped by the signal
	}
	return err
}

// recorder keeps the reading times of each device.
type recorder struct {
	mu    sync.Mutex
	times map[string][]time.Time // device -> distinct reading times, in order
	kick  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{times: map[string][]time.Time{}, kick: make(chan struct{}, 1)}
}

// twinUpdate is the part of a KubeEdge twin/update message read here.
type twinUpdate struct {
	Twin map[string]struct {
		Actual *struct {
			Metadata *struct {
				Timestamp int64 `json:"timestamp"`
			} `json:"metadata"`
		} `json:"actual"`
	} `json:"twin"`
}

func (r *recorder) add(device string, at time.Time) {
	r.mu.Lock()
	ts := r.times[device]
	if n := len(ts); n == 0 || at.After(ts[n-1]) {
		r.times[device] = append(ts, at)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// waitAll waits until n devices have read.
func (r *recorder) waitAll(ctx context.Context, n int) error {
	return r.waitAfter(ctx, n, time.Time{})
}

// waitAfter waits until n devices have read after from.
func (r *recorder) waitAfter(ctx context.Context, n int, from time.Time) error {
	for {
		r.mu.Lock()
		got := 0
		for _, ts := range r.times {
			if len(ts) > 0 && ts[len(ts)-1].After(from) {
				got++
			}
		}
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-r.kick:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d devices read: %w", got, n, ctx.Err())
		}
	}
}

// longestGap returns the longest time between two readings of a device
// that spans part of [from, to], and that device.
func (r *recorder) longestGap(from, to time.Time) (time.Duration, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var worst time.Duration
	var dev string
	for d, ts := range r.times {
		for i := 1; i < len(ts); i++ {
			if ts[i].Before(from) || ts[i-1].After(to) {
				continue
			}
			if g := ts[i].Sub(ts[i-1]); g > worst {
				worst, dev = g, d
			}
		}
	}
	return worst, dev
}

// subscribe connects to the host's broker, retrying until it listens, and
// records the readings of every twin/update.
func subscribe(ctx context.Context, addr string, rec *recorder) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("bench-upgrade").
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetResumeSubs(true).SetCleanSession(false)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe("$hw/events/device/+/+/twin/update", 0, func(_ paho.Client, msg paho.Message) {
			var u twinUpdate
			if json.Unmarshal(msg.Payload(), &u) != nil {
				return
			}
			parts := strings.Split(msg.Topic(), "/")
			if len(parts) < 6 {
				return
			}
			device := parts[3] + "/" + parts[4]
			if t, ok := u.Twin["count"]; ok && t.Actual != nil && t.Actual.Metadata != nil && t.Actual.Metadata.Timestamp > 0 {
				rec.add(device, time.UnixMilli(t.Actual.Metadata.Timestamp))
			}
		})
	})
	c := paho.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to the host's MQTT broker: %w", err)
	}
	return c, nil
}

// dump prints the gaps longer than min in [from, to], for debugging.
func (r *recorder) dump(from, to time.Time, min time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for d, ts := range r.times {
		for i := 1; i < len(ts); i++ {
			if ts[i].Before(from) || ts[i-1].After(to) {
				continue
			}
			if g := ts[i].Sub(ts[i-1]); g > min {
				fmt.Fprintf(os.Stderr, "gap %s %s at +%s\n", d, g.Round(time.Millisecond), ts[i-1].Sub(from).Round(time.Millisecond))
			}
		}
	}
}

func hostLog() string {
	if os.Getenv("BENCH_UPGRADE_DEBUG") != "" {
		return "info"
	}
	return "warn"
}
