package devices

import (
	"fmt"
	"time"
)

// every calls fn every period until the manager closes, then closes done.
func (m *Manager) every(period time.Duration, done chan struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// flush saves the reported values read since the last save, and returns
// how many it saved.
func (m *Manager) flush() (int, error) {
	m.mu.RLock()
	devs := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.mu.RUnlock()
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	batch := m.flushBuf[:0]
	for _, d := range devs {
		batch = d.twins.takeDirty(d.key, batch)
	}
	defer func() {
		clear(batch) // drops the strings until the next flush
		m.flushBuf = batch[:0]
	}()
	if err := m.opts.Store.SaveReported(batch); err != nil {
		m.log.Error("save reported values", "count", len(batch), "err", err)
		return 0, fmt.Errorf("save %d reported values: %w", len(batch), err)
	}
	return len(batch), nil
}
