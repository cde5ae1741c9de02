package hub

import (
	"sort"
	"time"

	"wapper.dev/wapper/linkproto"
)

// Link is where one node's link to this hub stands: connected with a
// session, or gone (its last session here ended at Left).
type Link struct {
	// Node is the edge node's name.
	Node string
	// Connected is true while the node has a session here.
	Connected bool
	// Remote is the host's address as the server saw it (connected only).
	Remote string
	// Since is when the session started (connected), or when the last
	// one ended (gone).
	Since time.Time
	// LastSeen is when the host was last heard from: a message or a pong.
	LastSeen time.Time
	// Known is false until the controller has computed the node's
	// desired set; Desired and Outstanding are meaningful only then.
	Known bool
	// Desired counts the objects of the node's desired set.
	Desired int
	// Outstanding counts what the host still lacks: desired objects it
	// does not hold at their version, and objects it holds that are no
	// longer desired.
	Outstanding int
	// InFlight counts the apply batches the host has not acknowledged.
	InFlight int
	// OldestUnacked is when the oldest of those was sent; zero when none.
	OldestUnacked time.Time
}

// Links returns every node connected to this hub, and every node whose
// last session here has ended, sorted by name.
func (h *Hub) Links() []Link {
	type conn struct {
		s       *session
		desired map[string]linkproto.Item
	}
	h.mu.Lock()
	var conns []conn
	out := make([]Link, 0, len(h.nodes)+len(h.left))
	for _, ns := range h.nodes {
		if ns.sess != nil {
			conns = append(conns, conn{ns.sess, ns.desired})
		}
	}
	for node, at := range h.left {
		out = append(out, Link{Node: node, Since: at, LastSeen: at})
	}
	h.mu.Unlock()
	for _, c := range conns {
		out = append(out, c.s.link(c.desired))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// link reports the session's state against the node's desired set (nil
// before the controller computed it).
func (s *session) link(desired map[string]linkproto.Item) Link {
	l := Link{Node: s.node, Connected: true, Remote: s.remote, Since: s.connected,
		LastSeen: time.Unix(0, s.lastSeen.Load()), Known: desired != nil, Desired: len(desired)}
	s.mu.Lock()
	defer s.mu.Unlock()
	l.InFlight = len(s.inflight)
	for _, at := range s.sentAt {
		if l.OldestUnacked.IsZero() || at.Before(l.OldestUnacked) {
			l.OldestUnacked = at
		}
	}
	if desired == nil {
		return l
	}
	for k, it := range desired {
		if s.host[k] != it.Version {
			l.Outstanding++
		}
	}
	for k := range s.host {
		if _, ok := desired[k]; !ok {
			l.Outstanding++
		}
	}
	return l
}
