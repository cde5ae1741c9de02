// Package hub is the websocket server that wapper-hosts connect to. It
// authenticates each host as one node, sends the node its desired objects
// as versioned, acknowledged batches (see package linkproto), and passes
// the host's upstream reports on, acknowledging them once they are written.
//
// The hub keeps no state of its own beyond the connected sessions: the
// desired set comes from the controller (SetDesired) and the host's
// inventory from the host's hello, so a restarted hub resumes exactly where
// each host left off.
package hub

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/linkproto"
)

// Authenticator checks a node's bearer token.
type Authenticator interface {
	// Authenticate reports whether token is the credential of node.
	Authenticate(node, token string) bool
}

// Upstream takes the reports hosts send.
type Upstream interface {
	// Submit queues reports from node; it calls done with the Seqs of the
	// reports once they are written (possibly in several calls). Submit
	// must not block for long: it is called from the session's reader.
	Submit(node string, reports []linkproto.Report, done func(seqs []uint64))
}

// Owner decides which wapper-cloud replica serves a node (see package
// cloud/replicas).
type Owner interface {
	// Claim makes this replica node's server for one session, which
	// calls release once when it ends. An error refuses the session; when
	// the error has a RetryAfter() time.Duration method (another replica
	// holds the node) the host is told, with 409 Conflict and
	// Retry-After, when to try again.
	Claim(ctx context.Context, node string) (release func(), err error)
}

// Options configure a Hub.
type Options struct {
	// Auth checks credentials; required.
	Auth Authenticator
	// Owner, when set, is asked before each session whether this replica
	// may serve the node; nil serves every node (one replica).
	Owner Owner
	// Upstream receives reports; nil acknowledges them unwritten.
	Upstream Upstream
	// OnConnect is called (in its own goroutine) when a node connects, so
	// the controller can compute its desired set.
	OnConnect func(node string)
	// OnDisconnect is called when a node's last session ends.
	OnDisconnect func(node string)
	// Window is how many apply batches may wait unacknowledged per node
	// (default 4). A slow host gets nothing more until it acknowledges;
	// changes meanwhile coalesce into the newest version of each object.
	Window int
	// BatchSize is the most items in one apply batch (default 256).
	BatchSize int
	// PingInterval is how often the hub pings each host (default 20s); a
	// host silent for three intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds each websocket write (default 30s).
	WriteTimeout time.Duration
	// Logger receives session logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives the hub's metrics; nil for none.
	Metrics *Metrics
	// Compression offers websocket permessage-deflate (RFC 7692, without
	// context takeover) in the handshake. It is used only with a host
	// that asks for it too (cloudlink.Options.Compression); with any
	// other host the link is as without it. Off by default
	// (wapper-cloud --link-compression).
	Compression bool
}

// Hub serves linkproto.LinkPath.
type Hub struct {
	opts     Options
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu    sync.Mutex // guards nodes, left and every nodeState in nodes
	nodes map[string]*nodeState
	left  map[string]time.Time // nodes whose last session here ended, and when
}

type nodeState struct {
	desired map[string]linkproto.Item // nil until the controller has set it
	sess    *session
}

// Defaults of Options (wapper-cloud's --window and --batch flags).
const (
	// DefaultWindow is the unacknowledged batches per node.
	DefaultWindow = 4
	// DefaultBatchSize is the most items in one batch.
	DefaultBatchSize = 256
)

// New returns a Hub.
func New(opts Options) *Hub {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 20 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Hub{opts: opts, log: opts.Logger, nodes: map[string]*nodeState{}, left: map[string]time.Time{}}
	h.upgrader = websocket.Upgrader{
		Subprotocols:    []string{linkproto.Subprotocol},
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// Negotiated per connection: only when the host asks for it too.
		EnableCompression: opts.Compression,
		// Hosts are not browsers; the bearer token, not the origin, is
		// what authorises them.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	if opts.Metrics != nil {
		opts.Metrics.bind(h)
	}
	return h
}

// Close ends every session (hijacked websocket connections outlive
// http.Server.Shutdown).
func (h *Hub) Close() {
	h.mu.Lock()
	var ss []*session
	for _, ns := range h.nodes {
		if ns.sess != nil {
			ss = append(ss, ns.sess)
		}
	}
	h.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	const prefix = "bearer "
	a := r.Header.Get("Authorization")
	if len(a) > len(prefix) && strings.EqualFold(a[:len(prefix)], prefix) {
		return strings.TrimSpace(a[len(prefix):])
	}
	return ""
}

// Authenticate returns the node a request is authorised as, or writes a 401
// and returns "".
func (h *Hub) Authenticate(w http.ResponseWriter, r *http.Request) string {
	node := r.Header.Get(linkproto.NodeHeader)
	tok := BearerToken(r)
	if node == "" || tok == "" || !h.opts.Auth.Authenticate(node, tok) {
		if h.opts.Metrics != nil {
			h.opts.Metrics.authFailures.Inc()
		}
		h.log.Warn("hub: refused a request with a missing or wrong credential", "node", node, "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "wapper-cloud: missing or wrong node credential: send "+linkproto.NodeHeader+" and the node's token as Authorization: Bearer", http.StatusUnauthorized)
		return ""
	}
	return node
}

// SetDesired replaces the set of objects node should hold, keyed by
// linkproto.Key. Until it is first called for a node, the hub sends that
// node nothing (and, in particular, removes nothing).
func (h *Hub) SetDesired(node string, items map[string]linkproto.Item) {
	h.mu.Lock()
	ns := h.nodes[node]
	if ns == nil {
		// Not connected here: nothing to send to.
		h.mu.Unlock()
		return
	}
	if items == nil {
		items = map[string]linkproto.Item{}
	}
	ns.desired = items
	s := ns.sess
	h.mu.Unlock()
	if s != nil {
		s.wakeUp()
	}
}

// Desired returns the item of key in node's desired set, if the node is
// connected here and the item is in it.
func (h *Hub) Desired(node, key string) (linkproto.Item, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ns := h.nodes[node]
	if ns == nil {
		return linkproto.Item{}, false
	}
	it, ok := ns.desired[key]
	return it, ok
}

// Connected returns the nodes with a session on this hub.
func (h *Hub) Connected() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.nodes))
	for n, ns := range h.nodes {
		if ns.sess != nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// InSync reports whether node is connected and has acknowledged exactly its
// desired set.
func (h *Hub) InSync(node string) bool {
	h.mu.Lock()
	ns := h.nodes[node]
	if ns == nil || ns.sess == nil || ns.desired == nil {
		h.mu.Unlock()
		return false
	}
	desired, s := ns.desired, ns.sess
	h.mu.Unlock()
	return s.inSync(desired)
}

// InFlight returns how many apply batches node has not acknowledged.
func (h *Hub) InFlight(node string) int {
	h.mu.Lock()
	var s *session
	if ns := h.nodes[node]; ns != nil {
		s = ns.sess // read under h.mu: attach swaps it
	}
	h.mu.Unlock()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

func (h *Hub) desired(node string) map[string]linkproto.Item {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ns := h.nodes[node]; ns != nil {
		return ns.desired
	}
	return nil
}

// ServeHTTP upgrades an authenticated request to a link session.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	node := h.Authenticate(w, r)
	if node == "" {
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "wapper-cloud: "+linkproto.LinkPath+" is a websocket endpoint", http.StatusBadRequest)
		return
	}
	if h.opts.Owner != nil {
		release, err := h.opts.Owner.Claim(r.Context(), node)
		if err != nil {
			h.refuse(w, node, err)
			return
		}
		defer release()
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.log.Warn("hub: websocket upgrade failed", "node", node, "err", err)
		return
	}
	if conn.Subprotocol() != linkproto.Subprotocol {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError, "want subprotocol "+linkproto.Subprotocol), time.Now().Add(time.Second))
		h.closeConn(conn, node)
		return
	}
	if h.opts.Compression {
		// Compress what the hub sends when the handshake negotiated
		// permessage-deflate (a no-op otherwise).
		conn.EnableWriteCompression(true)
	}
	conn.SetReadLimit(64 << 20)
	_ = conn.SetReadDeadline(time.Now().Add(3 * h.opts.PingInterval))
	var hello linkproto.Message
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != linkproto.TypeHello {
		h.log.Warn("hub: host did not start with hello", "node", node, "err", err, "type", hello.Type)
		h.closeConn(conn, node)
		return
	}
	s := newSession(h, node, conn, hello.Inventory)
	s.remote = r.RemoteAddr
	h.attach(s)
	h.log.Info("hub: node connected", "node", node, "remote", r.RemoteAddr, "inventory", len(hello.Inventory))
	if h.opts.OnConnect != nil {
		go h.opts.OnConnect(node)
	}
	s.run()
	h.detach(s)
	h.log.Info("hub: node disconnected", "node", node)
}

// refuse answers a hello this replica may not serve: 409 Conflict with
// Retry-After when another replica holds the node, 503 when ownership
// could not be decided.
func (h *Hub) refuse(w http.ResponseWriter, node string, err error) {
	code, retry := http.StatusServiceUnavailable, time.Second
	var held interface{ RetryAfter() time.Duration }
	if errors.As(err, &held) {
		code, retry = http.StatusConflict, held.RetryAfter()
		h.log.Info("hub: node is served by another replica; refusing it here", "node", node, "err", err)
	} else {
		h.log.Warn("hub: cannot tell whether this replica may serve the node; refusing it for now", "node", node, "err", err)
	}
	if m := h.opts.Metrics; m != nil {
		m.refusedHellos.Inc()
	}
	w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	http.Error(w, "wapper-cloud: "+err.Error(), code)
}

// Drop ends node's session here, if it has one: another replica serves
// the node now (see Owner). The host reconnects.
func (h *Hub) Drop(node string) {
	h.mu.Lock()
	var s *session
	if ns := h.nodes[node]; ns != nil {
		s = ns.sess
	}
	h.mu.Unlock()
	if s != nil {
		h.log.Warn("hub: closing the session of a node this replica no longer serves", "node", node)
		_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "another wapper-cloud replica serves this node now"), time.Now().Add(time.Second))
		s.close()
	}
}

// Serves reports whether node has a session on this hub: only then does
// this replica compute the node's desired set.
func (h *Hub) Serves(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ns := h.nodes[node]
	return ns != nil && ns.sess != nil
}

func (h *Hub) attach(s *session) {
	h.mu.Lock()
	ns := h.nodes[s.node]
	if ns == nil {
		ns = &nodeState{}
		h.nodes[s.node] = ns
	}
	old := ns.sess
	ns.sess = s
	delete(h.left, s.node)
	h.mu.Unlock()
	if old != nil {
		h.log.Info("hub: node reconnected; closing its older session", "node", s.node)
		old.close()
	}
}

func (h *Hub) detach(s *session) {
	h.mu.Lock()
	ns := h.nodes[s.node]
	last := ns != nil && ns.sess == s
	if last {
		delete(h.nodes, s.node)
		h.left[s.node] = time.Now()
	}
	h.mu.Unlock()
	if last && h.opts.OnDisconnect != nil {
		h.opts.OnDisconnect(s.node)
	}
}

// session is one host connection.
type session struct {
	h    *Hub
	node string
	conn *websocket.Conn
	log  *slog.Logger

	wake chan struct{}
	done chan struct{}
	once sync.Once

	remote    string       // the host's address, as the server saw it
	connected time.Time    // when the session started
	lastSeen  atomic.Int64 // Unix nanoseconds of the last message or pong from the host

	// fwd serialises forward (the read loop's reports, the write loop's
	// stash), so that stashed reports go upstream before later ones,
	// which the status writer merges over them.
	fwd sync.Mutex

	mu       sync.Mutex                   // guards the fields below
	host     map[string]string            // what the host holds: key → version
	inflight map[uint64]map[string]string // seq → key → version ("" removes)
	sentAt   map[uint64]time.Time         // seq → when the batch was sent
	pending  map[string]string            // key → version in flight
	seq      uint64
	acks     []uint64           // report seqs to acknowledge
	stash    []linkproto.Report // reports received before the desired set was known
}

func newSession(h *Hub, node string, conn *websocket.Conn, inv map[string]string) *session {
	if inv == nil {
		inv = map[string]string{}
	}
	s := &session{
		h: h, node: node, conn: conn, log: h.log.With("node", node), connected: time.Now(),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		host: inv, inflight: map[uint64]map[string]string{}, sentAt: map[uint64]time.Time{}, pending: map[string]string{},
	}
	s.seen()
	return s
}

// seen records that the host was heard from just now.
func (s *session) seen() { s.lastSeen.Store(time.Now().UnixNano()) }

// closeConn closes a host's connection, logging a failure: the socket is
// gone either way, and the host reconnects.
func (h *Hub) closeConn(conn *websocket.Conn, node string) {
	if err := conn.Close(); err != nil {
		h.log.Debug("hub: close connection", "node", node, "err", err)
	}
}

func (s *session) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) close() {
	s.once.Do(func() {
		close(s.done)
		s.h.closeConn(s.conn, s.node)
	})
}

func (s *session) inSync(desired map[string]linkproto.Item) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inflight) > 0 || len(s.host) != len(desired) {
		return false
	}
	for k, it := range desired {
		if s.host[k] != it.Version {
			return false
		}
	}
	return true
}

func (s *session) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer s.close()
		if err := s.readLoop(ctx); err != nil && !errors.Is(err, errClosed) {
			s.log.Info("hub: session read ended", "err", err)
		}
	}()
	if err := s.writeLoop(); err != nil {
		s.log.Info("hub: session write ended", "err", err)
	}
	s.close()
}

var errClosed = errors.New("session closed")

func (s *session) readLoop(ctx context.Context) error {
	s.conn.SetPongHandler(func(string) error {
		s.seen()
		return s.conn.SetReadDeadline(time.Now().Add(3 * s.h.opts.PingInterval))
	})
	// A host's keepalive pings count as hearing from it too.
	s.conn.SetPingHandler(func(data string) error {
		s.seen()
		_ = s.conn.SetReadDeadline(time.Now().Add(3 * s.h.opts.PingInterval))
		err := s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(s.h.opts.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		var m linkproto.Message
		if err := s.conn.ReadJSON(&m); err != nil {
			select {
			case <-s.done:
				return errClosed
			default:
			}
			return err
		}
		s.seen()
		_ = s.conn.SetReadDeadline(time.Now().Add(3 * s.h.opts.PingInterval))
		switch m.Type {
		case linkproto.TypeAck:
			if err := s.ack(m.Seq); err != nil {
				return err
			}
		case linkproto.TypeReport:
			s.report(m.Reports)
		default:
			s.log.Warn("hub: ignoring an unknown message type from a host", "type", m.Type)
		}
	}
}

func (s *session) ack(seq uint64) error {
	s.mu.Lock()
	batch, ok := s.inflight[seq]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("host acknowledged batch %d, which is not in flight", seq)
	}
	delete(s.inflight, seq)
	delete(s.sentAt, seq)
	for k, v := range batch {
		if v == "" {
			delete(s.host, k)
		} else {
			s.host[k] = v
		}
		if s.pending[k] == v {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
	if m := s.h.opts.Metrics; m != nil {
		m.acks.Inc()
	}
	s.wakeUp()
	return nil
}

// report passes the host's reports on. A node may report only on the
// devices and plugins of its own desired set: anything else is dropped
// (and acknowledged, so the host forgets it). Reports that arrive before
// the controller has computed the node wait for it.
func (s *session) report(rs []linkproto.Report) {
	if len(rs) == 0 {
		return
	}
	if m := s.h.opts.Metrics; m != nil {
		m.reports.Add(float64(len(rs)))
	}
	s.forward(rs)
}

// forward passes reports on upstream once the node's desired set is
// known, after any stashed before it; until then it stashes them.
func (s *session) forward(rs []linkproto.Report) {
	s.fwd.Lock()
	defer s.fwd.Unlock()
	desired := s.h.desired(s.node)
	s.mu.Lock()
	if desired == nil {
		s.stash = append(s.stash, rs...)
		s.mu.Unlock()
		return
	}
	if len(s.stash) > 0 {
		rs = append(s.stash, rs...)
		s.stash = nil
	}
	s.mu.Unlock()
	if len(rs) == 0 {
		return
	}
	done := func(seqs []uint64) {
		s.mu.Lock()
		s.acks = append(s.acks, seqs...)
		s.mu.Unlock()
		s.wakeUp()
	}
	ok := rs[:0:0]
	var refused []uint64
	for _, r := range rs {
		var key string
		switch {
		case r.Device != nil:
			key = linkproto.Key(linkproto.KindDevice, r.Device.Namespace, r.Device.Name)
		case r.Plugin != nil:
			key = linkproto.Key(linkproto.KindMapperPlugin, "", r.Plugin.Name)
		}
		if _, mine := desired[key]; !mine {
			refused = append(refused, r.Seq)
			continue
		}
		ok = append(ok, r)
	}
	if len(refused) > 0 {
		s.log.Warn("hub: dropping reports on objects outside the node's desired set", "count", len(refused))
		if m := s.h.opts.Metrics; m != nil {
			m.refusedReports.Add(float64(len(refused)))
		}
		done(refused)
	}
	if len(ok) == 0 {
		return
	}
	if s.h.opts.Upstream == nil {
		seqs := make([]uint64, len(ok))
		for i, r := range ok {
			seqs[i] = r.Seq
		}
		done(seqs)
		return
	}
	s.h.opts.Upstream.Submit(s.node, ok, done)
}

func (s *session) writeLoop() error {
	ping := time.NewTicker(s.h.opts.PingInterval)
	defer ping.Stop()
	s.wakeUp()
	for {
		select {
		case <-s.done:
			return nil
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.h.opts.WriteTimeout)); err != nil {
				return err
			}
			continue
		case <-s.wake:
		}
		s.mu.Lock()
		acks := s.acks
		s.acks = nil
		stashed := len(s.stash) > 0
		s.mu.Unlock()
		if stashed && s.h.desired(s.node) != nil {
			s.forward(nil) // the stash, now that the desired set is known
		}
		if len(acks) > 0 {
			if err := s.write(linkproto.Message{Type: linkproto.TypeReportAck, Acked: acks}); err != nil {
				return err
			}
		}
		for _, m := range s.nextBatches() {
			if err := s.write(m); err != nil {
				return err
			}
		}
	}
}

func (s *session) write(m linkproto.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.h.opts.WriteTimeout))
	return s.conn.WriteMessage(websocket.TextMessage, b)
}

// nextBatches computes what the host lacks and returns as many batches as
// the window allows, recording them in flight.
func (s *session) nextBatches() []linkproto.Message {
	desired := s.h.desired(s.node)
	if desired == nil {
		return nil // the controller has not computed this node yet
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	room := s.h.opts.Window - len(s.inflight)
	if room <= 0 {
		return nil
	}
	cur := func(k string) string {
		if v, ok := s.pending[k]; ok {
			return v
		}
		return s.host[k]
	}
	var items []linkproto.Item
	for k, it := range desired {
		if cur(k) != it.Version {
			items = append(items, it)
		}
	}
	var dels []string
	for k := range s.host {
		if _, ok := desired[k]; !ok && cur(k) != "" {
			dels = append(dels, k)
		}
	}
	for k, v := range s.pending {
		if _, ok := desired[k]; !ok && v != "" {
			if _, held := s.host[k]; !held {
				dels = append(dels, k)
			}
		}
	}
	if len(items) == 0 && len(dels) == 0 {
		return nil
	}
	sortItems(items)
	sort.Slice(dels, func(i, j int) bool {
		ki, _, _ := linkproto.SplitKey(dels[i])
		kj, _, _ := linkproto.SplitKey(dels[j])
		if a, b := linkproto.KindOrder(ki), linkproto.KindOrder(kj); a != b {
			return a > b
		}
		return dels[i] < dels[j]
	})
	for _, k := range dels {
		items = append(items, linkproto.Item{Key: k})
	}
	var out []linkproto.Message
	for len(items) > 0 && room > 0 {
		n := min(len(items), s.h.opts.BatchSize)
		batch := items[:n]
		items = items[n:]
		s.seq++
		rec := make(map[string]string, n)
		for _, it := range batch {
			rec[it.Key] = it.Version
			s.pending[it.Key] = it.Version
		}
		s.inflight[s.seq] = rec
		s.sentAt[s.seq] = time.Now()
		out = append(out, linkproto.Message{Type: linkproto.TypeApply, Seq: s.seq, Items: batch})
		room--
		if m := s.h.opts.Metrics; m != nil {
			m.batches.Inc()
			m.items.Add(float64(n))
		}
	}
	return out
}

func sortItems(items []linkproto.Item) {
	sort.Slice(items, func(i, j int) bool {
		ki, _, _ := linkproto.SplitKey(items[i].Key)
		kj, _, _ := linkproto.SplitKey(items[j].Key)
		if a, b := linkproto.KindOrder(ki), linkproto.KindOrder(kj); a != b {
			return a < b
		}
		return items[i].Key < items[j].Key
	})
}

// Tokens is an Authenticator over a fixed map of node → token, for tests
// and for operators without a Kubernetes Secret per node.
type Tokens map[string]string

// Authenticate implements Authenticator in constant time per token.
func (t Tokens) Authenticate(node, token string) bool {
	want, ok := t[node]
	return ok && want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1
}
