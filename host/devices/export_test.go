package devices

import "time"

// SetClockForTest sets the clock of the rate limit of read-failure
// warnings, so that tests reach its summaries without waiting a minute.
func SetClockForTest(m *Manager, now func() time.Time) { m.clock.Store(&now) }

// SetUpgradeHookForTest sets a function called at steps of hot upgrades:
// "canary" once the canary devices moved, before the upgrade waits for
// their reads (it may block, to hold the upgrade there), and "deferred"
// when a reconciliation leaves a change of the plugin to its upgrade in
// progress.
func SetUpgradeHookForTest(m *Manager, hook func(plugin, step string)) {
	m.upgradeHook.Store(&hook)
}
