package runtime

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the per-plugin log rate limit (SPEC.md §10). A line costs its
// length plus logLineOverhead bytes, so the limit bounds both many short
// lines and few long ones.
const (
	DefaultLogBytesPerSecond = 16 << 10
	logBurstBytes            = 64 << 10
	logLineOverhead          = 128
	logSummaryEvery          = 10 * time.Second
)

// logLimiter bounds what one plugin writes to the host log, through the
// log host function and its stdout and stderr together. Lines over the
// limit are dropped, counted in wapper_plugin_log_lines_dropped_total,
// and summed up in one warning per logSummaryEvery.
type logLimiter struct {
	p *Plugin
	// mu guards the limiter, the drop count and the summary time.
	mu          sync.Mutex
	lim         *rate.Limiter
	dropped     int64
	lastSummary time.Time
}

func newLogLimiter(p *Plugin, bytesPerSecond int) *logLimiter {
	if bytesPerSecond <= 0 {
		bytesPerSecond = DefaultLogBytesPerSecond
	}
	burst := max(logBurstBytes, bytesPerSecond)
	return &logLimiter{p: p, lim: rate.NewLimiter(rate.Limit(bytesPerSecond), burst), lastSummary: time.Now()}
}

// log writes one plugin line unless the plugin is over its rate.
func (l *logLimiter) log(in *instance, level slog.Level, msg string, args ...any) {
	if !l.p.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	ok := l.lim.AllowN(now, len(msg)+logLineOverhead)
	if !ok {
		l.dropped++
		l.p.m.logDrops.Inc()
	}
	dropped := l.summary(now)
	l.mu.Unlock()
	if dropped > 0 {
		l.warn(dropped)
	}
	if ok {
		in.logger().Log(context.Background(), level, msg, args...)
	}
}

// summary returns the lines dropped since the last summary once an
// interval has passed, and starts a new interval. l.mu is held.
func (l *logLimiter) summary(now time.Time) int64 {
	if l.dropped == 0 || now.Sub(l.lastSummary) < logSummaryEvery {
		return 0
	}
	n := l.dropped
	l.dropped, l.lastSummary = 0, now
	return n
}

func (l *logLimiter) warn(n int64) {
	l.p.log.Warn("plugin log lines dropped: the plugin logs faster than its limit", "dropped", n, "bytesPerSecond", int(l.lim.Limit()))
}

// flush writes the summary of lines dropped since the last one, if any.
func (l *logLimiter) flush() {
	l.mu.Lock()
	n := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	if n > 0 {
		l.warn(n)
	}
}
