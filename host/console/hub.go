package console

import (
	"sync"
	"sync/atomic"
)

// hub hands the messages of device events to the event streams open now.
// A stream that falls behind by more than its buffer is ended (its page
// connects again and reloads the history) rather than waited for.
type hub struct {
	mu     sync.Mutex
	subs   map[*listener]struct{}
	closed bool
	max    int
	n      atomic.Int32 // len(subs), read without the lock by the event filter
}

// listener is one event stream: the messages of one device ("" for every
// device).
type listener struct {
	device string
	ch     chan []byte
	done   chan struct{} // closed when the hub ends the stream
}

const listenerBuffer = 256

func newHub(max int) *hub { return &hub{subs: map[*listener]struct{}{}, max: max} }

// add opens a stream, or returns nil when the hub is closed or full.
func (h *hub) add(device string) *listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.subs) >= h.max {
		return nil
	}
	l := &listener{device: device, ch: make(chan []byte, listenerBuffer), done: make(chan struct{})}
	h.subs[l] = struct{}{}
	h.n.Store(int32(len(h.subs)))
	return l
}

// remove closes a stream; removing one twice does nothing.
func (h *hub) remove(l *listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(l)
}

func (h *hub) removeLocked(l *listener) {
	if _, ok := h.subs[l]; ok {
		delete(h.subs, l)
		close(l.done)
		h.n.Store(int32(len(h.subs)))
	}
}

// active reports whether any stream is open.
func (h *hub) active() bool { return h.n.Load() > 0 }

// send hands msg to the streams of device and to those of every device.
func (h *hub) send(device string, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.subs {
		if l.device != "" && l.device != device {
			continue
		}
		select {
		case l.ch <- msg:
		default:
			h.removeLocked(l) // too slow: ended, it reconnects
		}
	}
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for l := range h.subs {
		h.removeLocked(l)
	}
}
