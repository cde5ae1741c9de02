package runtime

import "time"

// SetFailuresForTest sets what decides the plugin's next restart delay:
// the failures in a row so far and the time of the last one. Tests use it
// to reach the backoff's cap and its reset without waiting for them.
func SetFailuresForTest(p *Plugin, failures int, last time.Time) {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	p.pool.failures, p.pool.lastFail = failures, last
}

// SetDenialClockForTest sets the clock of the rate limit of the plugin's
// grant-refusal warnings, so that tests reach its summaries without
// waiting a minute.
func SetDenialClockForTest(p *Plugin, now func() time.Time) {
	p.denials.mu.Lock()
	defer p.denials.mu.Unlock()
	p.denials.now = now
}
