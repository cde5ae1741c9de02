package devices

import "time"

// SetClockForTest sets the clock of the rate limit of read-failure
// warnings, so that tests reach its summaries without waiting a minute.
func SetClockForTest(m *Manager, now func() time.Time) { m.clock.Store(&now) }
