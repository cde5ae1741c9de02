// Package backoff is the cloud link's reconnect policy: how long a
// wapper-host waits before each attempt to reach wapper-cloud again.
//
// host/cloudlink reconnects with it, and so do the simulated hosts of
// cloud/internal/cloudbench (make bench-reconnect), which may not import
// host packages (cloud never imports host; see internal/layering): the
// reconnect curve the bench measures is the one real hosts produce.
package backoff

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of Backoff (wapper-host's --cloud-max-backoff, and the delay it
// starts from).
const (
	DefaultMin = 500 * time.Millisecond
	DefaultMax = 10 * time.Second
)

// Backoff draws the waits of one link. The delay doubles after each
// failed attempt, from Min to Max, and starts again from Min after a
// session that lasted (more than 10 Min); each wait is drawn between half
// the delay and the whole of it, so that hosts cut off together do not
// return together.
//
// With Spread set, a session that lasted and that the cloud ended (see
// Next) is followed by a wait drawn uniformly in [Min/2, Spread] instead.
// A wapper-cloud replica that stops closes all of its links in the same
// millisecond; with another replica up (a rolling update) or the cloud
// back within a second, the doubling delay alone would bring all those
// hosts back within [Min/2, Min], 250 ms by default.
//
// The zero value is not usable: set Min and Max (Max ≥ Min > 0).
type Backoff struct {
	// Min and Max bound the delay.
	Min, Max time.Duration
	// Spread is the end of the window of the first wait after the cloud
	// ended a session that lasted; 0 (or at most Min/2) draws that wait
	// from the delay like any other.
	Spread time.Duration

	delay time.Duration // the current delay; 0 before the first wait
}

// Next returns how long to wait before the next attempt, after a session
// (or a failed attempt) that lasted lasted. cloudEnded tells that the
// cloud ended the session: it closed the connection (with a close frame
// or without), as opposed to a connect that failed, a link that went
// silent, or the host's own error.
func (b *Backoff) Next(lasted time.Duration, cloudEnded bool) time.Duration {
	lastedLong := lasted > 10*b.Min
	if b.delay == 0 || lastedLong {
		b.delay = b.Min
	}
	wait := b.delay/2 + rand.N(b.delay/2+1)
	if cloudEnded && lastedLong && b.Spread > b.Min/2 {
		wait = b.Min/2 + rand.N(b.Spread-b.Min/2+1)
	}
	b.delay = min(2*b.delay, b.Max)
	return wait
}

// CloudEnded reports whether err, what ended a link session, says that
// the cloud closed the connection: a websocket close frame (any code), or
// the connection closed or reset under the reader without one. A silent
// link (a read deadline), a failed connect or the host's own error is not.
func CloudEnded(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// After returns how long to wait when the cloud said to come back after d
// (see [RetryAfter]): d plus a share drawn in [0, Spread] (in [0, Min]
// without Spread), so that the hosts a replica refused together, while it
// hands their nodes over, do not return together.
func (b *Backoff) After(d time.Duration) time.Duration {
	return d + rand.N(max(b.Spread, b.Min)+1)
}

// RetryAfter reads a wapper-cloud replica's answer to the link handshake
// that says to come back later: 409 Conflict (another replica serves the
// node) or 503 (one may). It returns the answer's Retry-After (whole
// seconds; a second when absent or malformed; at most maxWait), and
// whether resp is such an answer.
func RetryAfter(resp *http.Response, maxWait time.Duration) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	d := time.Second
	if secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	}
	return min(d, maxWait), true
}
