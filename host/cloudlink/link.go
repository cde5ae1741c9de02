// Package cloudlink is wapper-host's side of the link to wapper-cloud: one
// websocket (TLS, the node's bearer token) that brings the node's Devices,
// DeviceModels and MapperPlugins down and takes reported twins, device
// states and plugin states up.
//
// Everything the cloud sends but Secrets is stored in bbolt before it is
// acknowledged, and handed to a Sink (the device manager) as one full Set, so a host
// that restarts with the cloud unreachable runs its devices from its
// store. Reports wait in a bbolt outbox, one entry per device or plugin
// holding its latest full state, until the cloud acknowledges that it has
// written them; while the link is down they accumulate there and flush in
// batches on reconnect. Secrets are kept in memory only (see
// [Link.Secret]). See package linkproto for the protocol.
//
// cloudlink never links client-go: it imports only apimachinery, KubeEdge's
// device types and wapper's MapperPlugin types.
package cloudlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/backoff"
	"wapper.dev/wapper/linkproto"
)

// Source is the source name the link's objects carry in the device manager.
const Source = "cloud"

// Set is every object the cloud has given this node.
type Set struct {
	Devices []*devicesv1beta1.Device
	Models  []*devicesv1beta1.DeviceModel
	Plugins []*mappersv1alpha1.MapperPlugin
}

func (s *Set) add(key string, raw json.RawMessage) error {
	kind, _, _ := linkproto.SplitKey(key)
	var err error
	switch kind {
	case linkproto.KindDevice:
		d := &devicesv1beta1.Device{}
		if err = json.Unmarshal(raw, d); err == nil {
			s.Devices = append(s.Devices, d)
		}
	case linkproto.KindDeviceModel:
		m := &devicesv1beta1.DeviceModel{}
		if err = json.Unmarshal(raw, m); err == nil {
			s.Models = append(s.Models, m)
		}
	case linkproto.KindMapperPlugin:
		p := &mappersv1alpha1.MapperPlugin{}
		if err = json.Unmarshal(raw, p); err == nil {
			s.Plugins = append(s.Plugins, p)
		}
	default:
		return nil // a newer cloud's kind: kept, not used
	}
	if err != nil {
		return fmt.Errorf("cloudlink: decode %s: %w", key, err)
	}
	return nil
}

// Sink receives the cloud's objects: the device manager, which replaces
// everything of source Source with the Set.
type Sink interface {
	Sync(ctx context.Context, s Set) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, s Set) error

// Sync implements Sink.
func (f SinkFunc) Sync(ctx context.Context, s Set) error { return f(ctx, s) }

// Options configure a Link.
type Options struct {
	// URL is wapper-cloud's address: https://host:port (or wss://). It
	// may list several, separated by commas (the replicas of one
	// wapper-cloud, when no Service spreads hosts among them): each
	// connection attempt after the first goes to the next, from a random
	// one at start.
	URL string
	// Node is this host's node name; Token its bearer token.
	Node, Token string
	// TLS configures the connection (see LoadCA); nil uses the system
	// roots.
	TLS *tls.Config
	// DB is the host's bbolt database; the link keeps its buckets there.
	DB *bolt.DB
	// Sink receives the objects; required.
	Sink Sink
	// Direct fetches modules from their registry; when it fails the
	// link asks the cloud. Nil always asks the cloud.
	Direct ModuleResolver
	// ModuleDir is the module cache, in registry/fetch's layout (required
	// for Module). Modules fetched through the cloud are saved there with
	// fetch.Save, so that when it is also the cache of Direct (as in
	// wapper-host: <state-dir>/modules) a host restarted with the cloud
	// unreachable loads them before the link is up.
	ModuleDir string
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults
	// DefaultMinBackoff and DefaultMaxBackoff). The delay doubles after
	// each failed attempt, from MinBackoff to MaxBackoff, and starts again
	// from MinBackoff after a session that lasted; each wait is drawn
	// between half the delay and the whole of it, so that hosts cut off
	// together do not return together. After a session that lasted and
	// that the cloud closed (a replica stopping closes all of its links at
	// once), the wait is drawn in [MinBackoff/2, MaxBackoff] instead; see
	// package internal/backoff.
	MinBackoff, MaxBackoff time.Duration
	// Keepalive is how often the host pings the cloud (default
	// DefaultKeepalive); Timeout is how long it waits without hearing
	// anything from the cloud (a message, a ping or a pong) before it
	// takes the link for dead, drops it and reconnects (default
	// DefaultTimeout; at least twice Keepalive). They bound how long a
	// half-open link (packets silently dropped) goes unnoticed.
	Keepalive, Timeout time.Duration
	// HandshakeTimeout bounds connecting: TCP, TLS and the websocket
	// upgrade (default DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// ReportBatch is the most reports in one message (default 256);
	// MaxInFlight the most reports awaiting acknowledgement (default 1024).
	ReportBatch, MaxInFlight int
	// Logger receives link logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the link's metrics; nil for none.
	Registerer prometheus.Registerer
	// Compression asks the cloud for websocket permessage-deflate (RFC
	// 7692, without context takeover) in the handshake. It is used only
	// when the cloud offers it too (hub.Options.Compression, wapper-cloud
	// --link-compression); otherwise the link is as without it. Off by
	// default (wapper-host --cloud-compression).
	Compression bool
}

// LoadCA returns a TLS config trusting the PEM certificates in file (the
// cloud's --ca-out, or the tls.crt of its TLS Secret).
func LoadCA(file string) (*tls.Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read --ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Link is the host's cloud link.
type Link struct {
	opts Options
	log  *slog.Logger
	met  *metrics
	http *http.Client

	wake      chan struct{}
	connected chan struct{} // closed while a session runs; replaced on disconnect

	urls []string     // Options.URL, split
	cur  atomic.Int64 // index in urls of the URL in use

	mu    sync.Mutex // guards state
	state bool

	secrets secrets
}

// New opens the link's buckets; Run connects.
func New(opts Options) (*Link, error) {
	if opts.URL == "" || opts.Node == "" || opts.Token == "" {
		return nil, errors.New("cloudlink: a cloud URL, a node name and a token are all required (--cloud, --node, --token-file)")
	}
	if opts.DB == nil || opts.Sink == nil {
		return nil, errors.New("cloudlink: Options.DB and Options.Sink are required")
	}
	if err := CheckURL(opts.URL); err != nil {
		return nil, err
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Keepalive <= 0 {
		opts.Keepalive = DefaultKeepalive
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 2*opts.Keepalive {
		return nil, fmt.Errorf("cloudlink: a timeout of %s with pings every %s would drop a healthy link: make the timeout at least twice the keepalive", opts.Timeout, opts.Keepalive)
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.ReportBatch <= 0 {
		opts.ReportBatch = 256
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := initBuckets(opts.DB); err != nil {
		return nil, err
	}
	l := &Link{opts: opts, log: opts.Logger.With("node", opts.Node), wake: make(chan struct{}, 1), urls: splitURLs(opts.URL)}
	l.cur.Store(int64(rand.N(len(l.urls))))
	l.met = newMetrics(opts.Registerer, l)
	l.http = &http.Client{Transport: &http.Transport{TLSClientConfig: opts.TLS, Proxy: http.ProxyFromEnvironment}, Timeout: 5 * time.Minute}
	return l, nil
}

// Objects returns every object the cloud has given this node, from the
// store.
func (l *Link) Objects() (Set, error) { return loadObjects(l.opts.DB) }

// Connected reports whether a session with the cloud is up.
func (l *Link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Pending returns how many objects have reports not yet acknowledged.
func (l *Link) Pending() int { return outboxLen(l.opts.DB) }

// ReportDevice queues a device's twins and state for the cloud. Twins are
// merged by property with what was reported before, so a report may hold
// only the properties that changed.
func (l *Link) ReportDevice(r linkproto.DeviceReport) error {
	return l.report(linkproto.Report{Device: &r})
}

// ReportPlugin queues a MapperPlugin's state on this node for the cloud.
func (l *Link) ReportPlugin(r linkproto.PluginReport) error {
	return l.report(linkproto.Report{Plugin: &r})
}

func (l *Link) report(r linkproto.Report) error {
	if reportKey(r) == "" {
		return errors.New("cloudlink: a report needs a device or plugin name")
	}
	if err := l.opts.DB.Batch(func(tx *bolt.Tx) error { return putReport(tx, r) }); err != nil {
		return fmt.Errorf("cloudlink: save report in the outbox: %w", err)
	}
	l.wakeUp()
	return nil
}

func (l *Link) wakeUp() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Defaults of Options (wapper-host's --cloud-* flags).
const (
	DefaultMinBackoff       = backoff.DefaultMin
	DefaultMaxBackoff       = backoff.DefaultMax
	DefaultKeepalive        = 10 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultHandshakeTimeout = 15 * time.Second
)

// Run hands the stored objects to the Sink, then keeps a session with the
// cloud, reconnecting with backoff, until ctx ends.
func (l *Link) Run(ctx context.Context) error {
	set, err := l.Objects()
	if err != nil {
		return err
	}
	if n := len(set.Devices) + len(set.Models) + len(set.Plugins); n > 0 {
		l.log.Info("cloudlink: running the objects stored from the cloud", "devices", len(set.Devices), "models", len(set.Models), "plugins", len(set.Plugins))
		if err := l.opts.Sink.Sync(ctx, set); err != nil {
			l.log.Warn("cloudlink: some stored objects were refused", "err", err)
		}
	}
	b := backoff.Backoff{Min: l.opts.MinBackoff, Max: l.opts.MaxBackoff, Spread: l.opts.MaxBackoff}
	for {
		start := time.Now()
		err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := b.Next(time.Since(start), backoff.CloudEnded(err))
		var moved *elsewhereError
		if errors.As(err, &moved) {
			// The cloud said when to come back (the node's lease runs
			// out by then, or its holder has released it): no sooner,
			// and spread like a return after the cloud closed the link.
			wait = b.After(moved.retry)
			l.log.Info("cloudlink: this wapper-cloud replica does not serve the node now; trying again", "cloud", l.url(), "reason", moved.reason, "in", wait.Round(time.Millisecond), "outbox", l.Pending())
		} else {
			l.log.Warn("cloudlink: link down; reconnecting", "cloud", l.url(), "err", err, "in", wait.Round(time.Millisecond), "outbox", l.Pending())
		}
		l.nextURL()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// splitURLs splits a comma-separated list of URLs, dropping empty ones.
func splitURLs(raw string) []string {
	var out []string
	for u := range strings.SplitSeq(raw, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// url returns the cloud URL in use.
func (l *Link) url() string { return l.urls[int(l.cur.Load())%len(l.urls)] }

// nextURL moves on to the next cloud URL, when there are several.
func (l *Link) nextURL() {
	if len(l.urls) > 1 {
		l.cur.Add(1)
	}
}

// elsewhereError is a hello the cloud replica refused because another
// replica serves the node (409 Conflict), or may (503): try again after
// retry.
type elsewhereError struct {
	status int
	reason string
	retry  time.Duration
}

func (e *elsewhereError) Error() string {
	return fmt.Sprintf("wapper-cloud answered %d: %s", e.status, e.reason)
}

// elsewhere reads a 409 or 503 answer to the websocket handshake: the
// reason in its body, and when to come back ([backoff.RetryAfter]), or
// returns nil for another answer.
func elsewhere(resp *http.Response, maxWait time.Duration) *elsewhereError {
	retry, ok := backoff.RetryAfter(resp, maxWait)
	if !ok {
		return nil
	}
	e := &elsewhereError{status: resp.StatusCode, retry: retry}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		e.reason = strings.TrimSpace(string(b))
	}
	if e.reason == "" {
		e.reason = resp.Status
	}
	return e
}

// CheckURL refuses a cloud URL the link cannot use: one that does not
// parse, has no host, or is not https:// (or wss://), since the link
// carries the node's token and is always TLS. A comma-separated list is
// checked URL by URL.
func CheckURL(raw string) error {
	if strings.Contains(raw, ",") {
		urls := splitURLs(raw)
		if len(urls) == 0 {
			return fmt.Errorf("--cloud %q: no URL", raw)
		}
		for _, u := range urls {
			if err := CheckURL(u); err != nil {
				return err
			}
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("--cloud %q: %w", raw, err)
	}
	switch u.Scheme {
	case "https", "wss":
	default:
		return fmt.Errorf("--cloud %q: want an https:// (or wss://) URL: the link carries the node's token and is always TLS", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("--cloud %q: no host; want https://HOST:PORT", raw)
	}
	return nil
}

func (l *Link) endpoint(path string) (string, error) {
	raw := l.url()
	if err := CheckURL(raw); err != nil {
		return "", err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--cloud %q: %w", raw, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String(), nil
}

func (l *Link) header() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+l.opts.Token)
	h.Set(linkproto.NodeHeader, l.opts.Node)
	return h
}

// errRefused marks a credential the cloud refused.
var errRefused = errors.New("the cloud refused this node's credential (check --node and --token-file)")

func (l *Link) session(ctx context.Context) error {
	ep, err := l.endpoint(linkproto.LinkPath)
	if err != nil {
		return err
	}
	ep = "wss" + strings.TrimPrefix(strings.TrimPrefix(ep, "https"), "wss")
	d := websocket.Dialer{TLSClientConfig: l.opts.TLS, Subprotocols: []string{linkproto.Subprotocol}, HandshakeTimeout: l.opts.HandshakeTimeout, Proxy: http.ProxyFromEnvironment,
		EnableCompression: l.opts.Compression}
	conn, resp, err := d.DialContext(ctx, ep, l.header())
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			l.met.refused.Inc()
			l.met.drop("refused")
			return errRefused
		}
		if e := elsewhere(resp, l.opts.MaxBackoff+l.opts.Timeout); e != nil {
			l.met.drop("elsewhere")
			return e
		}
		if dropReason(err) == "timeout" {
			l.met.drop("timeout")
		} else {
			l.met.drop("connect")
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if l.opts.Compression {
		// Compress what the host sends when the handshake negotiated
		// permessage-deflate (a no-op otherwise).
		conn.EnableWriteCompression(true)
	}
	conn.SetReadLimit(256 << 20)
	inv, err := inventory(l.opts.DB)
	if err != nil {
		return err
	}
	l.secrets.addInventory(inv)
	if err := conn.WriteJSON(linkproto.Message{Type: linkproto.TypeHello, Inventory: inv}); err != nil {
		return err
	}
	l.setConnected(true)
	defer l.setConnected(false)
	l.log.Info("cloudlink: connected", "cloud", l.url(), "inventory", len(inv), "outbox", l.Pending())
	l.met.connects.Inc()

	s := &linkSession{l: l, conn: conn, inflight: map[uint64]string{}}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	errc := make(chan error, 3)
	go func() { errc <- s.readLoop(ctx) }()
	go func() { errc <- s.writeLoop(ctx) }()
	go func() { errc <- s.keepalive(ctx) }()
	err = <-errc
	cancel()
	if parent.Err() == nil { // not the host stopping
		l.met.drop(dropReason(err))
	}
	return err
}

// errSilent marks a link on which nothing came from the cloud for
// Options.Timeout: likely half-open.
var errSilent = errors.New("nothing heard from wapper-cloud")

// dropReason names why a session ended, for
// wapper_cloudlink_disconnects_total.
func dropReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errSilent), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
		return "closed"
	}
	return "error"
}

func (l *Link) setConnected(v bool) {
	l.mu.Lock()
	l.state = v
	l.mu.Unlock()
}

type linkSession struct {
	l    *Link
	conn *websocket.Conn
	wmu  sync.Mutex // serialises writes to conn

	mu       sync.Mutex        // guards inflight
	inflight map[uint64]string // report seq → report key
}

func (s *linkSession) write(m linkproto.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return s.conn.WriteMessage(websocket.TextMessage, b)
}

// heard pushes the read deadline Options.Timeout ahead: the cloud was
// heard from just now.
func (s *linkSession) heard() {
	s.l.met.heard.SetToCurrentTime()
	_ = s.conn.SetReadDeadline(time.Now().Add(s.l.opts.Timeout))
}

// awaitNext gives the next read a whole Options.Timeout, without counting
// the cloud as heard: used after the host itself kept the read loop busy.
func (s *linkSession) awaitNext() {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.l.opts.Timeout))
}

// keepalive pings the cloud every Options.Keepalive, so that a link
// that drops packets runs into the read deadline even while the cloud
// has nothing to send.
func (s *linkSession) keepalive(ctx context.Context) error {
	t := time.NewTicker(s.l.opts.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.wmu.Lock()
		err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.l.opts.Timeout))
		s.wmu.Unlock()
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}
}

func (s *linkSession) readLoop(ctx context.Context) error {
	s.conn.SetPingHandler(func(data string) error {
		s.heard()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		return s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	s.conn.SetPongHandler(func(string) error {
		s.heard()
		return nil
	})
	s.heard()
	for {
		var m linkproto.Message
		if err := s.conn.ReadJSON(&m); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w in %s (keepalive every %s): dropping a link that looks half-open", errSilent, s.l.opts.Timeout, s.l.opts.Keepalive)
			}
			return err
		}
		s.heard()
		switch m.Type {
		case linkproto.TypeApply:
			if err := s.apply(ctx, m); err != nil {
				return err
			}
			// The time spent applying (a plugin compiling can take longer
			// than Timeout on a slow or busy host) is not the cloud's
			// silence: nothing was read meanwhile, and the pongs and
			// messages that came are waiting in the socket. Without this,
			// the next read fails at once on the expired deadline and a
			// healthy link is dropped after every slow batch.
			s.awaitNext()
		case linkproto.TypeReportAck:
			if err := s.acked(m.Acked); err != nil {
				return err
			}
		default:
			s.l.log.Warn("cloudlink: ignoring an unknown message type", "type", m.Type)
		}
	}
}

// apply stores a batch, hands the full set to the Sink when anything
// changed, and acknowledges the batch.
func (s *linkSession) apply(ctx context.Context, m linkproto.Message) error {
	l := s.l
	items, err := l.secrets.split(m.Items)
	if err != nil {
		return fmt.Errorf("batch %d: %w", m.Seq, err)
	}
	changed, err := applyItems(l.opts.DB, items)
	if err != nil {
		return fmt.Errorf("store batch %d: %w", m.Seq, err)
	}
	l.met.items.Add(float64(len(m.Items)))
	if changed > 0 {
		set, err := l.Objects()
		if err != nil {
			return err
		}
		if err := l.opts.Sink.Sync(ctx, set); err != nil {
			l.log.Warn("cloudlink: some objects from the cloud were refused", "err", err)
		}
		l.log.Debug("cloudlink: applied", "seq", m.Seq, "items", len(m.Items), "changed", changed)
	}
	return s.write(linkproto.Message{Type: linkproto.TypeAck, Seq: m.Seq})
}

func (s *linkSession) acked(seqs []uint64) error {
	s.mu.Lock()
	keys := make(map[uint64]string, len(seqs))
	for _, q := range seqs {
		if k, ok := s.inflight[q]; ok {
			keys[q] = k
		}
	}
	s.mu.Unlock()
	if err := ackReports(s.l.opts.DB, keys, seqs); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	// Out of flight only once the outbox no longer holds them: a writer
	// looking in between would send them again.
	s.mu.Lock()
	for q := range keys {
		delete(s.inflight, q)
	}
	s.mu.Unlock()
	s.l.met.acked.Add(float64(len(keys)))
	s.l.wakeUp()
	return nil
}

func (s *linkSession) writeLoop(ctx context.Context) error {
	l := s.l
	l.wakeUp()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.wake:
		}
		for {
			s.mu.Lock()
			room := l.opts.MaxInFlight - len(s.inflight)
			skip := make(map[uint64]bool, len(s.inflight))
			for q := range s.inflight {
				skip[q] = true
			}
			s.mu.Unlock()
			if room <= 0 {
				break
			}
			rs, err := pendingReports(l.opts.DB, skip, min(room, l.opts.ReportBatch))
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				break
			}
			sort.Slice(rs, func(i, j int) bool { return rs[i].Seq < rs[j].Seq })
			s.mu.Lock()
			for _, r := range rs {
				s.inflight[r.Seq] = reportKey(r)
			}
			s.mu.Unlock()
			if err := s.write(linkproto.Message{Type: linkproto.TypeReport, Reports: rs}); err != nil {
				return err
			}
			l.met.sent.Add(float64(len(rs)))
		}
	}
}
