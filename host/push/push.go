// Package push sends readings of properties that have a pushMethod: over
// HTTP here ([HTTP]: a POST to hostName:port/requestPath within the
// property's timeout, in milliseconds), and over MQTT through the host's
// MQTT bridge, which takes its payload from [Format.MQTTPayload]. By
// default the payloads are mapper-framework's ([MapperFramework]), so that
// consumers written for KubeEdge's generated mappers work unchanged;
// [JSON] sends the whole reading instead. Package host/sink stores the
// readings of dbMethod and otel; anomalyDetection is not supported yet:
// [Unsupported] warns about it.
package push

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
)

// Reading is a pushed reading: mapper-framework's common.DataModel, which
// is also the [JSON] payload (its JSON keys are its Go field names, in its
// order). TimeStamp is in milliseconds since the epoch.
type Reading struct {
	DeviceName   string
	PropertyName string
	Namespace    string
	Value        string
	Type         string
	TimeStamp    int64
}

// Options configure an HTTP pusher.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Workers is the number of concurrent POSTs (default 8); Queue the
	// number of readings waiting (default 4096; more are dropped and
	// counted as failures).
	Workers int
	Queue   int
	// Format is the body sent (default [MapperFramework]).
	Format Format
}

// HTTP pushes readings over HTTP.
type HTTP struct {
	mgr    *devices.Manager
	log    *slog.Logger
	opts   Options
	client *http.Client
	sent   prometheus.Counter
	failed *prometheus.CounterVec
	queue  chan job
	events <-chan devices.Event // from Subscribe
	cancel func()               // ends the subscription
	wg     sync.WaitGroup
}

type job struct {
	url         string
	timeout     time.Duration
	body        []byte
	contentType string
}

// NewHTTP returns a pusher; call Subscribe, then Run.
func NewHTTP(mgr *devices.Manager, o Options) *HTTP {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	h := &HTTP{mgr: mgr, log: o.Logger, opts: o, client: &http.Client{},
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_http_push_total", Help: "Readings POSTed to pushMethod.http endpoints."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_http_push_failures_total",
			Help: "Readings that could not be POSTed, by reason (connect, status, queue_full)."}, []string{"reason"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(h.sent, h.failed)
	}
	return h
}

// URL returns the endpoint of a pushMethod.http. For the configurations
// mapper-framework accepts (hostName with its scheme, a port, requestPath
// starting with "/") it is mapper-framework's hostName:port+requestPath;
// beyond that it adds "http://" to a bare host name, leaves out a zero port
// and puts a "/" before a requestPath that lacks it.
func URL(p *v1beta1.PushMethodHTTP) string {
	host := p.HostName
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	host = strings.TrimRight(host, "/")
	if p.Port > 0 {
		host = fmt.Sprintf("%s:%d", host, p.Port)
	}
	path := p.RequestPath
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return host + path
}

// Subscribe subscribes to the readings Run posts: Run's synchronous first
// step, to call before devices start so that Run misses no reading; Run
// calls it if it was not.
func (h *HTTP) Subscribe() {
	if h.events != nil {
		return
	}
	h.events, h.cancel = h.mgr.SubscribeFunc("http-push", 1<<14, func(ev *devices.Event) bool {
		return ev.Type == devices.EventReading && ev.PushesHTTP()
	})
}

// Run posts readings until ctx ends, then ends the subscription, waits
// for the POSTs under way (each bounded by its pushMethod's timeout) and
// returns nil.
func (h *HTTP) Run(ctx context.Context) error {
	h.Subscribe()
	events := h.events
	h.queue = make(chan job, h.opts.Queue)
	for range h.opts.Workers {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for j := range h.queue {
				h.post(j)
			}
		}()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(h.queue)
		for ev := range events {
			if ev.Type != devices.EventReading {
				continue
			}
			for _, t := range ev.Twins {
				if t.Push == nil || t.Push.HTTP == nil {
					continue
				}
				body, ctype := h.opts.Format.HTTPBody(Reading{DeviceName: ev.Name, Namespace: ev.Namespace, PropertyName: t.Property,
					Value: t.Reported, Type: t.Type, TimeStamp: t.ReportedTime.UnixMilli()})
				timeout := time.Duration(t.Push.HTTP.Timeout) * time.Millisecond
				if timeout <= 0 {
					timeout = 5 * time.Second
				}
				select {
				case h.queue <- job{url: URL(t.Push.HTTP), timeout: timeout, body: body, contentType: ctype}:
				default:
					h.failed.WithLabelValues("queue_full").Inc()
				}
			}
		}
	}()
	<-ctx.Done()
	h.cancel()
	h.wg.Wait()
	return nil
}

func (h *HTTP) post(j job) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		h.failed.WithLabelValues("connect").Inc()
		h.log.Warn("bad pushMethod.http endpoint", "url", j.url, "err", err)
		return
	}
	req.Header.Set("Content-Type", j.contentType)
	resp, err := h.client.Do(req)
	if err != nil {
		h.failed.WithLabelValues("connect").Inc()
		h.log.Debug("HTTP push failed", "url", j.url, "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		h.failed.WithLabelValues("status").Inc()
		h.log.Debug("HTTP push refused", "url", j.url, "status", resp.Status)
		return
	}
	h.sent.Inc()
}
