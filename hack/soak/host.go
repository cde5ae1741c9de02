package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// hostConfig is how every run of wapper-host is started.
type hostConfig struct {
	bin, stateDir, manifests, pluginDir string
	httpAddr, mqttAddr                  string
	logDir                              string
}

// run is one wapper-host process, from start to kill -9 (or stop).
type run struct {
	n       int
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	start   time.Time
	upAt    atomic.Int64 // when /api/v1/ping first answered (Unix ns); 0 if never
	end     time.Time
	done    chan struct{}
	killed  bool   // we sent SIGKILL
	stopped bool   // we sent SIGINT
	exit    string // how it ended
	final   bool

	mu      sync.Mutex // guards the samples below
	rssPeak int64      // KiB
	rssLast int64
	cpu     time.Duration // user+system CPU at the last sample
}

// rssSample is one VmRSS reading.
type rssSample struct {
	at  time.Duration // since the soak started
	run int
	kib int64
}

func startHost(c hostConfig, n int) (*run, error) {
	r := &run{n: n, logPath: filepath.Join(c.logDir, fmt.Sprintf("run%03d.log", n)), done: make(chan struct{})}
	f, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	r.logFile = f
	r.cmd = exec.Command(c.bin,
		"--state-dir", c.stateDir, "--manifests", c.manifests, "--plugin-dir", c.pluginDir,
		"--http-listen", c.httpAddr, "--mqtt-listen", c.mqttAddr, "--log-format", "json")
	// The host writes its log straight into the file: what it wrote before
	// a kill -9 is all there, with no pipe in between.
	r.cmd.Stdout, r.cmd.Stderr = f, f
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", c.bin, err)
	}
	go func() {
		err := r.cmd.Wait()
		r.end = time.Now()
		r.exit = "exit 0"
		if err != nil {
			r.exit = err.Error()
		}
		f.Close()
		close(r.done)
	}()
	return r, nil
}

// upAfter is how long the run took to answer ping; false if it never did.
func (r *run) upAfter() (time.Duration, bool) {
	ns := r.upAt.Load()
	if ns == 0 {
		return 0, false
	}
	return time.Unix(0, ns).Sub(r.start), true
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (r *run) kill9() {
	if !r.exited() {
		r.killed = true
		r.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-r.done
}

// stop asks the host to stop (SIGINT) and waits up to limit, then kills it.
// It reports whether the host stopped by itself in time.
func (r *run) stop(limit time.Duration) bool {
	if r.exited() {
		return false
	}
	r.stopped = true
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
		return true
	case <-time.After(limit):
		r.kill9()
		return false
	}
}

// waitUp polls /api/v1/ping until it answers, the process exits, or limit.
func (r *run) waitUp(ctx context.Context, httpAddr string, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if r.exited() {
			return fmt.Errorf("wapper-host exited before answering: %s", r.exit)
		}
		resp, err := client.Get("http://" + httpAddr + "/api/v1/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				r.upAt.Store(time.Now().UnixNano())
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("wapper-host did not answer /api/v1/ping within %v", limit)
}

// vmRSS reads VmRSS (KiB) from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuTime reads user+system CPU time from /proc/PID/stat (at the usual
// 100 ticks a second).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc/PID/stat")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// sample records the run's RSS now; false if the process is gone.
func (r *run) sample() (int64, bool) {
	if r.exited() {
		return 0, false
	}
	kib, err := vmRSS(r.cmd.Process.Pid)
	if err != nil || kib == 0 {
		return 0, false
	}
	cpu, cerr := cpuTime(r.cmd.Process.Pid)
	r.mu.Lock()
	r.rssLast = kib
	r.rssPeak = max(r.rssPeak, kib)
	if cerr == nil {
		r.cpu = cpu
	}
	r.mu.Unlock()
	return kib, true
}

// logRecord is what the soak reads from one JSON log line.
type logRecord struct {
	Msg      string `json:"msg"`
	Level    string `json:"level"`
	Device   string `json:"device"`
	Property string `json:"property"`
	Value    any    `json:"value"`
	Seq      uint64 `json:"seq"`
	Err      any    `json:"err"`
}

// runLog is what one run's log says.
type runLog struct {
	applied  []logRecord    // "desired value applied", in log order
	levels   map[string]int // records by level
	messages map[string]int // warn and error records by message
	nonJSON  []string       // lines that are not JSON records (panics, fatal errors)
	partial  bool           // the last line was cut (the kill landed mid-write)
}

func parseLog(path string) (*runLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &runLog{levels: map[string]int{}, messages: map[string]int{}}
	rd := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			complete := strings.HasSuffix(line, "\n")
			line = strings.TrimSpace(line)
			var rec logRecord
			if jerr := json.Unmarshal([]byte(line), &rec); jerr != nil || rec.Msg == "" && rec.Level == "" {
				if !complete {
					out.partial = true
				} else if line != "" {
					out.nonJSON = append(out.nonJSON, line)
				}
			} else {
				out.levels[rec.Level]++
				if rec.Level == "WARN" || rec.Level == "ERROR" {
					out.messages[rec.Level+" "+rec.Msg]++
				}
				if rec.Msg == "desired value applied" {
					out.applied = append(out.applied, rec)
				}
			}
		}
		if err != nil {
			break
		}
	}
	return out, nil
}
