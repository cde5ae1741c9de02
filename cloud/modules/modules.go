// Package modules is wapper-cloud's pull-through module endpoint, for hosts
// that cannot reach the registry themselves. A host asks for a
// MapperPlugin's module by name with its node credential; the endpoint
// serves it only when that plugin is in the node's desired set, pulls the
// module the node was sent (during a staged rollout, perhaps the previous
// one) from the registry pinned by its digest (registry/fetch), caches
// it by digest, and sends the module's own digest in a header for the host
// to check.
package modules

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/fetch"
)

// Authorizer authenticates a request as a node and tells which plugins
// the node may fetch.
type Authorizer interface {
	// Authenticate returns the request's node, or writes a 401 and
	// returns "".
	Authenticate(w http.ResponseWriter, r *http.Request) string
	// Desired reports whether key is in node's desired set.
	Desired(node, key string) (linkproto.Item, bool)
}

// Options configure a Handler.
type Options struct {
	// Auth authenticates and authorises nodes.
	Auth Authorizer
	// Plugin finds a MapperPlugin by name.
	Plugin func(name string) (*mappersv1alpha1.MapperPlugin, bool)
	// CacheDir is the module cache (registry/fetch layout).
	CacheDir string
	// Fetch configures registry access.
	Fetch fetch.Options
	// Timeout bounds one pull from the registry (default 2m).
	Timeout time.Duration
	// Logger receives request logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the endpoint's metrics; nil for none.
	Registerer prometheus.Registerer
}

// Handler serves linkproto.ModulesPath.
type Handler struct {
	opts     Options
	log      *slog.Logger
	requests *prometheus.CounterVec
}

// New returns a Handler.
func New(opts Options) *Handler {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{opts: opts, log: opts.Logger, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wapper_cloud_module_requests_total", Help: "Pull-through module requests, by result."}, []string{"result"})}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.requests)
	}
	return h
}

// ServeHTTP serves GET /v1/modules/{plugin}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	node := h.opts.Auth.Authenticate(w, r)
	if node == "" {
		h.requests.WithLabelValues("unauthenticated").Inc()
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "wapper-cloud: modules are read with GET", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, linkproto.ModulesPath)
	it, ok := h.opts.Auth.Desired(node, linkproto.Key(linkproto.KindMapperPlugin, "", name))
	if !ok {
		h.requests.WithLabelValues("forbidden").Inc()
		h.log.Warn("modules: node asked for a plugin outside its desired set", "node", node, "plugin", name)
		http.Error(w, "wapper-cloud: MapperPlugin "+strconv.Quote(name)+" is not used by node "+node+" (a node fetches only its own plugins, and only while connected)", http.StatusForbidden)
		return
	}
	p, ok := h.plugin(name, it)
	if !ok || p.Spec.Module.Image == "" {
		h.requests.WithLabelValues("notfound").Inc()
		http.Error(w, "wapper-cloud: MapperPlugin "+strconv.Quote(name)+" has no module image to pull", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	opts := h.opts.Fetch
	opts.Logger = h.log
	b, err := fetch.Module(ctx, p.Spec.Module.Image, digest.Digest(p.Spec.Module.Digest), h.opts.CacheDir, opts)
	if errors.Is(err, fetch.ErrMismatch) {
		// The registry answered, and what it holds is not what the plugin
		// pins: the same request would get the same answer until the
		// MapperPlugin or the image changes.
		h.requests.WithLabelValues("mismatch").Inc()
		h.log.Warn("modules: module refused: it does not match its pin", "node", node, "plugin", name, "image", p.Spec.Module.Image, "err", err)
		http.Error(w, "wapper-cloud: MapperPlugin "+name+": "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	if err != nil {
		h.requests.WithLabelValues("error").Inc()
		h.log.Warn("modules: pull failed", "node", node, "plugin", name, "image", p.Spec.Module.Image, "err", err)
		http.Error(w, "wapper-cloud: pull "+p.Spec.Module.Image+": "+err.Error(), http.StatusBadGateway)
		return
	}
	h.requests.WithLabelValues("ok").Inc()
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set(linkproto.ModuleDigestHeader, digest.FromBytes(b).String())
	w.Header().Set(linkproto.ModulePinHeader, p.Spec.Module.Digest)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
}

// plugin returns the MapperPlugin as the node was sent it (during a
// staged rollout a node may be sent the previous module), or, when the
// item carries no object, as the cluster has it.
func (h *Handler) plugin(name string, it linkproto.Item) (*mappersv1alpha1.MapperPlugin, bool) {
	if len(it.Object) == 0 {
		return h.opts.Plugin(name)
	}
	p := &mappersv1alpha1.MapperPlugin{}
	if err := json.Unmarshal(it.Object, p); err != nil {
		h.log.Warn("modules: cannot decode the MapperPlugin sent to the node; using the cluster's", "plugin", name, "err", err)
		return h.opts.Plugin(name)
	}
	return p, true
}
