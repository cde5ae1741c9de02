package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Outcomes of a desired write.
const (
	accepted  = "accepted"  // 202, or 200 with ?wait, or an error that says the value was saved
	refused   = "refused"   // any other status: not saved
	notSent   = "not sent"  // connection refused: the host was down
	uncertain = "uncertain" // no answer: the host died with the request in flight
)

// write is one desired write the soak sent.
type write struct {
	dev      *device
	run      int // the host run current when it was sent
	value    int64
	wait     bool
	sent     time.Time
	answered time.Time
	code     int
	seq      uint64 // the desired seq the host gave it (accepted only)
	outcome  string
	err      string
}

// writer sends desired writes to the virtual devices' setpoints, each
// device's writes one after another (so each device's values increase in
// the order the host received them), with a value unique in the soak.
type writer struct {
	httpAddr string
	devs     []*device
	rate     float64
	waitPct  int
	curRun   func() int

	next   atomic.Int64
	client *http.Client

	mu     sync.Mutex // guards writes and byDev
	writes []*write
	byDev  map[int][]*write
}

func newWriter(httpAddr string, devs []*device, rate float64, waitPct int, curRun func() int) *writer {
	return &writer{
		httpAddr: httpAddr, devs: devs, rate: rate, waitPct: waitPct, curRun: curRun,
		// No keep-alive: an error other than "connection refused" then
		// means this very request may have reached the host.
		client: &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		byDev:  map[int][]*write{},
	}
}

// run sends writes until ctx ends, with workers goroutines; each owns the
// devices whose index modulo workers is its number.
func (w *writer) run(ctx context.Context, workers int, seed uint64) {
	w.next.Store(1000)
	tokens := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Duration(float64(time.Second) / w.rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				close(tokens)
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				default: // every worker busy (waiting writes): skip
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range workers {
		var mine []*device
		for _, d := range w.devs {
			if d.idx%workers == i {
				mine = append(mine, d)
			}
		}
		if len(mine) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range tokens {
				d := mine[rng.IntN(len(mine))]
				wr := w.send(d, rng.IntN(100) < w.waitPct)
				if wr.outcome == notSent {
					// The host is down: no point hammering it.
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
}

var savedSeq = regexp.MustCompile(`saved \(seq (\d+)\)`)

// send sends one write. The request does not follow ctx: a write that has
// started is always finished (or ended by the host's death), so that its
// outcome is known.
func (w *writer) send(d *device, wait bool) *write {
	wr := &write{dev: d, run: w.curRun(), value: w.next.Add(1), wait: wait, sent: time.Now()}
	path := fmt.Sprintf("http://%s/api/v1/device/default/%s/setpoint", w.httpAddr, d.name)
	if wait {
		path += "?wait=20s"
	}
	w.record(wr)
	req, _ := http.NewRequest("PUT", path, strings.NewReader(fmt.Sprintf(`{"value": %d}`, wr.value)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	w.mu.Lock()
	defer w.mu.Unlock()
	wr.answered = time.Now()
	if err != nil {
		wr.err = err.Error()
		if errors.Is(err, syscall.ECONNREFUSED) {
			wr.outcome = notSent
		} else {
			wr.outcome = uncertain
		}
		return wr
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	wr.code = resp.StatusCode
	var tw struct {
		Twin struct {
			Desired    string `json:"desired"`
			DesiredSeq uint64 `json:"desiredSeq"`
		} `json:"twin"`
		Error string `json:"error"`
	}
	jerr := json.Unmarshal(body, &tw)
	switch {
	case rerr != nil:
		// Status known, body cut by the kill: a 2xx was accepted.
		wr.err = rerr.Error()
		if resp.StatusCode/100 == 2 {
			wr.outcome = accepted
		} else {
			wr.outcome = uncertain
		}
	case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
		wr.outcome = accepted
		wr.seq = tw.Twin.DesiredSeq
		if jerr != nil || tw.Twin.Desired != strconv.FormatInt(wr.value, 10) {
			wr.err = fmt.Sprintf("2xx answer with desired %q, want %d: %s", tw.Twin.Desired, wr.value, body)
		}
	default:
		wr.outcome = refused
		wr.err = tw.Error
		if jerr != nil {
			wr.err = string(body)
		}
		// ?wait that timed out: saved, with its seq, just not applied yet.
		if m := savedSeq.FindStringSubmatch(tw.Error); m != nil {
			wr.outcome = accepted
			wr.seq, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	return wr
}

func (w *writer) record(wr *write) {
	w.mu.Lock()
	w.writes = append(w.writes, wr)
	w.byDev[wr.dev.idx] = append(w.byDev[wr.dev.idx], wr)
	w.mu.Unlock()
}

// dump writes every write as a tab-separated line, for reading after a
// failed soak.
func (w *writer) dump(path string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	b.WriteString("device\trun\tvalue\twait\tsent\tanswered\tcode\tseq\toutcome\terror\n")
	for _, wr := range w.writes {
		fmt.Fprintf(&b, "%s\t%d\t%d\t%v\t%s\t%s\t%d\t%d\t%s\t%s\n", wr.dev.key(), wr.run, wr.value, wr.wait,
			wr.sent.Format("15:04:05.000"), wr.answered.Format("15:04:05.000"), wr.code, wr.seq, wr.outcome, wr.err)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
