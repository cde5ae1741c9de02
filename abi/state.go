package abi

// State is a device state as KubeEdge names them.
type State uint8

// Device states, returned in the first payload byte of wapper_device_state.
const (
	StateUnknown   State = 0
	StateOK        State = 1
	StateOnline    State = 2
	StateOffline   State = 3
	StateUnhealthy State = 4
)

var stateNames = [...]string{"unknown", "ok", "online", "offline", "unhealthy"}

// String returns KubeEdge's spelling of the state.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// ParseState maps KubeEdge's spelling back to a State; unknown words give
// StateUnknown and false.
func ParseState(s string) (State, bool) {
	for i, n := range stateNames {
		if n == s {
			return State(i), true
		}
	}
	return StateUnknown, false
}
