// Package mqtt connects wapper-host to MQTT the way KubeEdge's EventBus
// expects: it publishes device twins and state on the $hw/events/device
// topics, takes desired values from twin/update messages carrying
// "expected" values, answers twin/get, and publishes each property that has
// a pushMethod.mqtt to its own topic.
//
// The broker is either embedded ([Serve], mochi-mqtt) or external ([Dial],
// paho). [Bridge] does the KubeEdge part over either [Conn].
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Conn is a connection to a broker.
type Conn interface {
	// Publish sends a message.
	Publish(topic string, qos byte, retain bool, payload []byte) error
	// Subscribe calls fn for every message matching filter. Subscriptions
	// survive reconnections.
	Subscribe(filter string, qos byte, fn func(topic string, payload []byte)) error
	// Close disconnects (or stops the embedded broker).
	Close() error
}

// Broker is the embedded mochi-mqtt broker, reached in-process through its
// inline client (which bypasses authentication and ACLs). Without
// credentials it accepts every client: bind it to a local address then.
type Broker struct {
	srv  *mochi.Server
	tcp  *listeners.TCP
	tls  *listeners.TCP
	subs *localSubs
}

// BrokerOptions configure the embedded broker. At least one of Addr and
// TLSAddr must be set.
type BrokerOptions struct {
	// Addr is the plain MQTT listener (host:port); empty for none.
	Addr string
	// TLSAddr is the MQTT-over-TLS listener (host:port); empty for none.
	// TLS must be set with it.
	TLSAddr string
	// TLS holds the broker's certificate for TLSAddr.
	TLS *tls.Config
	// Username and Password, when Username is set, are the only
	// credentials accepted on every listener: anonymous clients and wrong
	// passwords are refused at CONNECT. Authenticated clients may publish
	// and subscribe to every topic.
	Username, Password string
	Logger             *slog.Logger
}

// DefaultAddr is the address of wapper-host's embedded broker (its
// --mqtt-listen): loopback only, until the operator protects it.
const DefaultAddr = "127.0.0.1:1883"

// Serve starts an embedded broker.
func Serve(o BrokerOptions) (*Broker, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Addr == "" && o.TLSAddr == "" {
		return nil, errors.New("embedded MQTT broker needs an address (--mqtt-listen or --mqtt-tls-listen)")
	}
	if (o.TLSAddr != "") != (o.TLS != nil) {
		return nil, errors.New("embedded MQTT broker: a TLS listener needs both an address and a certificate (--mqtt-tls-listen, --mqtt-tls-cert, --mqtt-tls-key)")
	}
	if o.Username == "" && o.Password != "" {
		return nil, errors.New("embedded MQTT broker: a password needs a user name (--mqtt-listen-username)")
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: o.Logger.With("component", "mqtt-broker")})
	var err error
	if o.Username != "" {
		if o.Password == "" {
			return nil, errors.New("embedded MQTT broker: user name without a password (write it to the file given to --mqtt-listen-password-file)")
		}
		// Only the one user in the ledger is let in; with no ACL rules,
		// it may use every topic.
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Users: auth.Users{
			o.Username: {Username: auth.RString(o.Username), Password: auth.RString(o.Password)},
		}}})
	} else {
		err = srv.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		return nil, err
	}
	b := &Broker{srv: srv, subs: &localSubs{}}
	if err := srv.AddHook(b.subs, nil); err != nil {
		return nil, err
	}
	if o.Addr != "" {
		b.tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: o.Addr})
		if err := srv.AddListener(b.tcp); err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded MQTT broker cannot listen on %s: %w (choose another --mqtt-listen, or use --mqtt-broker)", o.Addr, err)
		}
	}
	if o.TLSAddr != "" {
		b.tls = listeners.NewTCP(listeners.Config{ID: "tls", Address: o.TLSAddr, TLSConfig: o.TLS})
		if err := srv.AddListener(b.tls); err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded MQTT broker cannot listen for TLS on %s: %w (choose another --mqtt-tls-listen)", o.TLSAddr, err)
		}
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("start embedded MQTT broker: %w", err)
	}
	return b, nil
}

// Addr returns the address of the plain listener, or "" if there is none.
func (b *Broker) Addr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// TLSAddr returns the address of the TLS listener, or "" if there is none.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// Publish implements Conn.
func (b *Broker) Publish(topic string, qos byte, retain bool, payload []byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// Subscribe implements Conn. fn gets what the broker's clients publish,
// not what the host publishes itself through Publish (as MQTT 5's No
// Local option would): the host subscribes to topics it publishes on, such
// as twin/update, and would only drop its own messages. fn runs on the
// publishing client's goroutine, after the broker has delivered the
// message to its subscribers; the retained messages matching filter are
// given to fn before Subscribe returns.
func (b *Broker) Subscribe(filter string, qos byte, fn func(topic string, payload []byte)) error {
	if err := validFilter(filter); err != nil {
		return err
	}
	b.subs.add(localSub{filter: filter, fn: fn})
	// As for any subscriber, the retained messages that match it first
	// [MQTT-3.8.4-4].
	for _, pk := range b.srv.Topics.Messages(filter) {
		if pk.Origin != mochi.InlineClientId {
			fn(pk.TopicName, pk.Payload)
		}
	}
	return nil
}

// localSubs are the host's own subscriptions to the embedded broker, met
// by a mochi hook rather than mochi's inline subscriptions, which the
// broker matches and copies on every publish, the host's own included.
type localSubs struct {
	mochi.HookBase
	mu   sync.Mutex // serialises add
	list atomic.Pointer[[]localSub]
}

type localSub struct {
	filter string
	fn     func(topic string, payload []byte)
}

func (h *localSubs) add(s localSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var list []localSub
	if old := h.list.Load(); old != nil {
		list = slices.Clone(*old)
	}
	list = append(list, s)
	h.list.Store(&list)
}

// ID implements mochi.Hook.
func (h *localSubs) ID() string { return "wapper-host-subscriptions" }

// Provides implements mochi.Hook.
func (h *localSubs) Provides(b byte) bool { return b == mochi.OnPublished }

// OnPublished implements mochi.Hook: a message a client published (not
// the inline client, which is the host) goes to the matching
// subscriptions.
func (h *localSubs) OnPublished(cl *mochi.Client, pk packets.Packet) {
	list := h.list.Load()
	if list == nil || cl.Net.Inline || pk.Ignore {
		return
	}
	for _, s := range *list {
		if matchTopic(s.filter, pk.TopicName) {
			s.fn(pk.TopicName, pk.Payload)
		}
	}
}

// validFilter checks an MQTT topic filter: '#' only as the last level,
// wildcards only as whole levels.
func validFilter(filter string) error {
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if (strings.ContainsAny(l, "+#") && len(l) > 1) || (l == "#" && i != len(levels)-1) || filter == "" {
			return fmt.Errorf("invalid MQTT topic filter %q", filter)
		}
	}
	return nil
}

// matchTopic reports whether topic matches the (valid) filter: '+' is one
// level, '#' the rest (the parent level included), and a topic starting
// with '$' is not matched by a wildcard in the first level.
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case fmore && tmore:
			filter, topic = frest, trest
		case fmore:
			return frest == "#" // "a/#" matches "a"
		default:
			return !tmore
		}
	}
}

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// ClientOptions configure a connection to an external broker.
type ClientOptions struct {
	URL      string // tcp://host:1883, ssl://host:8883, ws://...
	ClientID string
	Username string
	Password string
	Logger   *slog.Logger
}

// Client is a connection to an external broker (paho), reconnecting on its
// own and subscribing again after each reconnection.
type Client struct {
	c    paho.Client
	log  *slog.Logger
	mu   sync.Mutex // guards subs
	subs map[string]sub
}

type sub struct {
	qos byte
	fn  paho.MessageHandler
}

// Dial connects to an external broker, waiting at most until ctx ends for
// the first connection.
func Dial(ctx context.Context, o ClientOptions) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cl := &Client{log: o.Logger, subs: map[string]sub{}}
	po := paho.NewClientOptions().AddBroker(o.URL).SetClientID(o.ClientID).
		SetUsername(o.Username).SetPassword(o.Password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).SetCleanSession(true).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			o.Logger.Warn("MQTT broker connection lost; reconnecting", "url", o.URL, "err", err)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			o.Logger.Info("connected to MQTT broker", "url", o.URL)
			cl.mu.Lock()
			defer cl.mu.Unlock()
			for f, s := range cl.subs {
				c.Subscribe(f, s.qos, s.fn)
			}
		})
	cl.c = paho.NewClient(po)
	tok := cl.c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("connect to MQTT broker %s: %w", o.URL, err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("connect to MQTT broker %s: %w (is it running? check --mqtt-broker)", o.URL, ctx.Err())
	}
	return cl, nil
}

// Publish implements Conn. QoS 0 messages are not waited for.
func (c *Client) Publish(topic string, qos byte, retain bool, payload []byte) error {
	tok := c.c.Publish(topic, qos, retain, payload)
	if qos == 0 {
		return nil
	}
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish to %s: no acknowledgement in 10s", topic)
	}
	return tok.Error()
}

// Subscribe implements Conn.
func (c *Client) Subscribe(filter string, qos byte, fn func(topic string, payload []byte)) error {
	h := func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) }
	c.mu.Lock()
	c.subs[filter] = sub{qos, h}
	c.mu.Unlock()
	tok := c.c.Subscribe(filter, qos, h)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("subscribe to %s: no acknowledgement in 10s", filter)
	}
	return tok.Error()
}

// Close disconnects.
func (c *Client) Close() error {
	c.c.Disconnect(250)
	return nil
}

var _ io.Closer = (*Client)(nil)
