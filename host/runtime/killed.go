package runtime

// KilledInstance reports whether err, from a call of a plugin, threw the
// plugin instance that ran it away: a trap, a deadline, an exit, a Go
// runtime panic or a malformed result. Such an instance is restarted in
// the background; Plugin.Restarts counts it only once it has been.
func KilledInstance(err error) bool { return err != nil && killedInstance(err) }
