package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/internal/backoff"
)

func within(t *testing.T, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s: wait %s, want within [%s, %s]", what, got, lo, hi)
	}
}

// TestNext follows the delay through failures, a session that lasted,
// and a session the cloud ended.
func TestNext(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	for range 200 {
		b := backoff.Backoff{Min: lo, Max: hi, Spread: hi}
		within(t, "first failure", b.Next(0, false), lo/2, lo)
		within(t, "second failure", b.Next(0, false), lo, 2*lo)
		within(t, "third failure", b.Next(0, false), 2*lo, 4*lo)
		for range 5 {
			b.Next(0, false)
		}
		within(t, "at the cap", b.Next(0, false), hi/2, hi)
		within(t, "a session that lasted", b.Next(10*lo+1, false), lo/2, lo)
		within(t, "the cloud ended a short session", b.Next(lo, true), lo, 2*lo)
		within(t, "the cloud ended a session that lasted", b.Next(10*lo+1, true), lo/2, hi)
		within(t, "then a failure", b.Next(0, false), lo, 2*lo)

		nb := backoff.Backoff{Min: lo, Max: hi}
		within(t, "no spread: the cloud ended a session that lasted", nb.Next(10*lo+1, true), lo/2, lo)
	}
}

// TestSpread checks that the waits after the cloud ended sessions cover
// their window, not only its start.
func TestSpread(t *testing.T) {
	b := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second, Spread: 10 * time.Second}
	var late int
	for range 1000 {
		if b.Next(time.Minute, true) > 5*time.Second {
			late++
		}
	}
	if late < 300 || late > 700 {
		t.Errorf("%d of 1000 waits past 5 s, want about half", late)
	}
}

func TestCloudEnded(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&websocket.CloseError{Code: websocket.CloseGoingAway}, true},
		{&websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}, true},
		{fmt.Errorf("read: %w", io.EOF), true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("connect: %w", syscall.ECONNREFUSED), false},
		{context.DeadlineExceeded, false},
		{errors.New("the host's own error"), false},
	} {
		if got := backoff.CloudEnded(c.err); got != c.want {
			t.Errorf("CloudEnded(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		status int
		header string
		want   time.Duration
		ok     bool
	}{
		{http.StatusConflict, "7", 7 * time.Second, true},
		{http.StatusServiceUnavailable, "", time.Second, true},
		{http.StatusConflict, "soon", time.Second, true},
		{http.StatusConflict, "3600", time.Minute, true}, // capped
		{http.StatusUnauthorized, "7", 0, false},
		{http.StatusBadGateway, "7", 0, false},
	} {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}}
		if c.header != "" {
			resp.Header.Set("Retry-After", c.header)
		}
		if got, ok := backoff.RetryAfter(resp, time.Minute); got != c.want || ok != c.ok {
			t.Errorf("%d Retry-After %q: %v, %v; want %v, %v", c.status, c.header, got, ok, c.want, c.ok)
		}
	}
	if _, ok := backoff.RetryAfter(nil, time.Minute); ok {
		t.Error("no response read as a refusal")
	}
}

// TestAfterSpreads checks that hosts refused together with the same
// Retry-After come back no sooner and not together.
func TestAfterSpreads(t *testing.T) {
	b := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second, Spread: 10 * time.Second}
	seen := map[time.Duration]bool{}
	for range 1000 {
		w := b.After(3 * time.Second)
		if w < 3*time.Second || w > 13*time.Second {
			t.Fatalf("wait %v outside [3s, 13s]", w)
		}
		seen[w.Truncate(time.Second)] = true
	}
	if len(seen) < 8 {
		t.Errorf("1,000 waits fell into %d one-second buckets of 10; want them spread", len(seen))
	}
}
