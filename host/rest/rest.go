// Package rest serves wapper-host's HTTP API: KubeEdge mapper-framework's
// routes (ping, property read, device methods, model metadata) with their
// response shapes, plus a device list, desired-value writes with PUT, the
// manifest problems and Prometheus metrics.
//
//	GET  /api/v1/ping
//	GET  /api/v1/devices                                  every device, state and twins
//	GET  /api/v1/device/{ns}/{name}                       one device
//	GET  /api/v1/device/{ns}/{name}/{property}            read now (mapper-framework)
//	PUT  /api/v1/device/{ns}/{name}/{property}            {"value": ...} sets the desired value
//	                                                      (?wait=5s waits until it is written)
//	GET  /api/v1/devicemethod/{ns}/{name}                 the device's methods
//	GET|PUT /api/v1/devicemethod/{ns}/{name}/{method}/{property}/{data}
//	                                                      write through a method (mapper-framework)
//	POST /api/v1/devicemethod/{ns}/{name}/{method}        call a plugin method with a JSON body
//	GET  /api/v1/meta/model/{ns}/{name}                   the DeviceModel of a device (mapper-framework shape)
//	GET  /api/v1/manifests/errors                         bad manifests and refused objects
//	GET  /metrics                                         Prometheus
//	GET  /debug/pprof/...                                 Go profiles (Options.Pprof, wapper-host --pprof)
//
// Every error is JSON: {"apiVersion","statusCode","timeStamp","error"} with
// 400 (bad value), 401 (token missing or wrong), 403 (read-only property,
// or a read the MapperPlugin's grants refused: spec.grants must change), 404 (no such device, property, method or route), 405 (wrong method), 409
// (conflict), 503 (device not running or failing) or 504 (timed out).
//
// With [Options.Token] set, every write needs "Authorization: Bearer
// TOKEN": every request whose method is not GET or HEAD, and the
// mapper-framework method write, which sets values on GET too. Reads stay
// open unless [Options.AuthReads] is set, which guards everything but
// /api/v1/ping (kept open for health checks), including /metrics and
// /debug/pprof. A missing or wrong token is answered 401 with
// "WWW-Authenticate: Bearer". [Options.TLS] serves HTTPS, and mutual TLS
// when it verifies client certificates.
//
// Other handlers join the API on its port with [Server.Handle], behind the
// same token checks, and [Server.HandleOpen] for pages that hold no
// device data: wapper-host mounts its device console (package
// host/console) at / and /console/ that way.
package rest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
)

// DefaultAddr is the address wapper-host serves the API on (its
// --http-listen): loopback only, until the operator protects it.
const DefaultAddr = "127.0.0.1:7777"

// APIVersion is the apiVersion of every response.
const APIVersion = "v1"

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// Gatherer serves /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Problems holds the manifest problems; nil lists none.
	Problems *Problems
	// WriteTimeout bounds the device-method write route (default 10 s).
	WriteTimeout time.Duration
	// Pprof serves Go's profiles under /debug/pprof/ (for operators
	// measuring the host; keep the API on a private address then).
	Pprof bool
	// Token, when set, is the bearer token every write must carry.
	Token string
	// AuthReads asks for Token on reads as well (all but /api/v1/ping);
	// it does nothing without Token.
	AuthReads bool
	// TLS, when set, makes Listen serve HTTPS with it; set its ClientCAs
	// and ClientAuth for mutual TLS.
	TLS *tls.Config
}

// Server is the HTTP API.
type Server struct {
	mgr  *devices.Manager
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux
	h    http.Handler
	ln   net.Listener // from Listen
	// open holds the patterns of HandleOpen, read open with AuthReads.
	open map[string]bool
}

// New returns the API over mgr.
func New(mgr *devices.Manager, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	s := &Server{mgr: mgr, log: o.Logger, opts: o, mux: http.NewServeMux()}
	s.route(pingPath, s.ping, http.MethodGet)
	s.route("/api/v1/devices", s.list, http.MethodGet)
	s.route("/api/v1/device/{ns}/{name}", s.device, http.MethodGet)
	s.route("/api/v1/device/{ns}/{name}/{property}", s.property, http.MethodGet, http.MethodPut)
	s.route("/api/v1/devicemethod/{ns}/{name}", s.methods, http.MethodGet)
	s.route("/api/v1/devicemethod/{ns}/{name}/{method}", s.callMethod, http.MethodPost)
	s.route("/api/v1/devicemethod/{ns}/{name}/{method}/{property}/{data}", s.writes(s.methodWrite), http.MethodGet, http.MethodPut, http.MethodPost)
	s.route("/api/v1/meta/model/{ns}/{name}", s.model, http.MethodGet)
	s.route("/api/v1/manifests/errors", s.problems, http.MethodGet)
	if o.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if o.Gatherer != nil {
		s.mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, http.StatusNotFound, fmt.Errorf("no route %s %s; see /api/v1/devices", r.Method, r.URL.Path))
	})
	s.h = s.guard(s.mux)
	return s
}

// Handler returns the API's handler, token checks included.
func (s *Server) Handler() http.Handler { return s.h }

// Handle serves h for pattern (an [http.ServeMux] pattern that must not
// conflict with the API's) beside the API, behind the same token checks:
// writes need the token, and reads too with [Options.AuthReads]. Call it
// before Run.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleOpen is [Server.Handle] for pages that hold no device data, such
// as the device console's HTML and scripts: reads of pattern stay open
// with [Options.AuthReads] (a browser loads them before it can send the
// token), writes still need the token.
func (s *Server) HandleOpen(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	if s.open == nil {
		s.open = map[string]bool{}
	}
	s.open[pattern] = true
}

// Listen binds addr (HTTPS with Options.TLS) and returns the bound
// address: Run's synchronous first step, so that an address in use is
// reported before anything starts. Connections wait until Run serves.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("REST API cannot listen on %s: %w (choose another --http-listen)", addr, err)
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.ln = ln
	return ln.Addr().String(), nil
}

// ShutdownGrace is how long Run lets requests under way finish once its
// context has ended.
const ShutdownGrace = 5 * time.Second

// Run serves on the listener of Listen until ctx ends, then stops taking
// requests, lets those under way finish for ShutdownGrace, and returns:
// nil, or why serving stopped by itself.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("REST API: Run before Listen")
	}
	// TLS handshake failures and the like go to the debug log.
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("REST API stopped: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("REST API shutdown: %w", err)
	}
	return nil
}

func (s *Server) route(pattern string, h http.HandlerFunc, methods ...string) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
				h(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		s.fail(w, http.StatusMethodNotAllowed, fmt.Errorf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(methods, " or ")))
	})
}

// BaseResponse starts every response, as in mapper-framework.
type BaseResponse struct {
	APIVersion string `json:"apiVersion"`
	StatusCode int    `json:"statusCode"`
	TimeStamp  string `json:"timeStamp"`
}

func newBase(code int) *BaseResponse {
	return &BaseResponse{APIVersion: APIVersion, StatusCode: code, TimeStamp: time.Now().Format(time.RFC3339)}
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	*BaseResponse
	Error string `json:"error"`
}

// PingResponse answers /api/v1/ping.
type PingResponse struct {
	*BaseResponse
	Message string
}

// DataModel is a property value, mapper-framework's common.DataModel (no
// JSON tags there either, so the keys are the field names, in its order).
type DataModel struct {
	DeviceName   string
	PropertyName string
	Namespace    string
	Value        string
	Type         string
	TimeStamp    int64
}

// DeviceReadResponse answers a property read.
type DeviceReadResponse struct {
	*BaseResponse
	Data *DataModel
}

// DeviceWriteResponse answers a method write.
type DeviceWriteResponse struct {
	*BaseResponse
	Message string
}

// Parameter, Method and DataMethod list a device's methods.
type Parameter struct {
	PropertyName string
	ValueType    string
}

// Method is one device method and the route that writes through it.
type Method struct {
	Name       string
	Path       string
	Parameters []Parameter
}

// DataMethod lists methods.
type DataMethod struct {
	Methods []Method
}

// DeviceMethodReadResponse answers the method list.
type DeviceMethodReadResponse struct {
	*BaseResponse
	Data *DataMethod
}

// MetaGetModelResponse answers the model route: mapper-framework's
// common.DeviceModel inline after the base fields.
type MetaGetModelResponse struct {
	*BaseResponse
	*DeviceModel
}

// DeviceModel is mapper-framework's common.DeviceModel: a DeviceModel as
// mappers see it. ID is "namespace/name".
type DeviceModel struct {
	ID          string          `json:"id,omitempty"`
	Name        string          `json:"name,omitempty"`
	Namespace   string          `json:"namespace,omitempty"`
	Description string          `json:"description,omitempty"`
	Properties  []ModelProperty `json:"properties,omitempty"`
}

// ModelProperty is mapper-framework's common.ModelProperty.
type ModelProperty struct {
	Name        string `json:"name,omitempty"`
	DataType    string `json:"dataType,omitempty"`
	Description string `json:"description,omitempty"`
	AccessMode  string `json:"accessMode,omitempty"`
	Minimum     string `json:"minimum,omitempty"`
	Maximum     string `json:"maximum,omitempty"`
	Unit        string `json:"unit,omitempty"`
}

// modelOf converts a KubeEdge DeviceModel as mapper-framework does.
func modelOf(m *v1beta1.DeviceModel) *DeviceModel {
	out := &DeviceModel{ID: m.Namespace + "/" + m.Name, Name: m.Name, Namespace: m.Namespace}
	for _, p := range m.Spec.Properties {
		out.Properties = append(out.Properties, ModelProperty{Name: p.Name, DataType: string(p.Type), Description: p.Description,
			AccessMode: string(p.AccessMode), Minimum: p.Minimum, Maximum: p.Maximum, Unit: p.Unit})
	}
	return out
}

// DevicesResponse answers /api/v1/devices.
type DevicesResponse struct {
	*BaseResponse
	Devices []devices.DeviceStatus `json:"devices"`
}

// DeviceResponse answers /api/v1/device/{ns}/{name}.
type DeviceResponse struct {
	*BaseResponse
	Device devices.DeviceStatus `json:"device"`
}

// TwinResponse answers a desired-value write.
type TwinResponse struct {
	*BaseResponse
	Twin devices.TwinStatus `json:"twin"`
}

// ProblemsResponse answers /api/v1/manifests/errors.
type ProblemsResponse struct {
	*BaseResponse
	// Manifests are documents that could not be loaded.
	Manifests []manifest.Problem `json:"manifests"`
	// Devices are objects refused (conflicts) and plugins and devices in
	// error.
	Devices []devices.Problem `json:"devices"`
}

// MethodResponse answers a plugin method call.
type MethodResponse struct {
	*BaseResponse
	Data json.RawMessage `json:"data"`
}

func (s *Server) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, err error) {
	s.reply(w, code, ErrorResponse{BaseResponse: newBase(code), Error: err.Error()})
}

// statusOf maps manager errors to HTTP codes. A device I/O call the
// MapperPlugin's grants refused (ABI code "denied by grants") is 403, not
// the 503 of a device that cannot be reached: retrying will not help,
// changing spec.grants will.
func statusOf(err error) int {
	var ae *abi.Error
	switch {
	case errors.As(err, &ae) && ae.Code == abi.ErrDenied:
		return http.StatusForbidden
	case errors.Is(err, devices.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, devices.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, devices.ErrReadOnly):
		return http.StatusForbidden
	case errors.Is(err, devices.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, devices.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	s.reply(w, http.StatusOK, PingResponse{BaseResponse: newBase(http.StatusOK), Message: "This is v1 API, the server is running normally."})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.reply(w, http.StatusOK, DevicesResponse{BaseResponse: newBase(http.StatusOK), Devices: s.mgr.Devices()})
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	d, err := s.mgr.Device(r.PathValue("ns"), r.PathValue("name"))
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	s.reply(w, http.StatusOK, DeviceResponse{BaseResponse: newBase(http.StatusOK), Device: d})
}

func (s *Server) property(w http.ResponseWriter, r *http.Request) {
	ns, name, prop := r.PathValue("ns"), r.PathValue("name"), r.PathValue("property")
	if r.Method == http.MethodPut {
		s.setDesired(w, r, ns, name, prop)
		return
	}
	t, err := s.mgr.Read(r.Context(), ns, name, prop)
	if err != nil {
		code := statusOf(err)
		if code == http.StatusForbidden {
			// Refused by the grants, not unavailable: drop the manager's
			// "unavailable: " so the text does not contradict the 403.
			err = errors.New(strings.TrimPrefix(err.Error(), devices.ErrUnavailable.Error()+": "))
		}
		s.fail(w, code, err)
		return
	}
	s.reply(w, http.StatusOK, DeviceReadResponse{BaseResponse: newBase(http.StatusOK), Data: &DataModel{
		DeviceName: name, Namespace: ns, PropertyName: prop, Value: t.Reported, Type: t.Type, TimeStamp: t.ReportedTime.UnixMilli()}})
}

// valueText turns a JSON value into KubeEdge twin text.
func valueText(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return string(raw), nil
	case nil:
		return "", errors.New(`"value" is missing or null`)
	}
	return "", errors.New(`"value" must be a string, number or boolean`)
}

func (s *Server) setDesired(w http.ResponseWriter, r *http.Request, ns, name, prop string) {
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf(`request body must be JSON {"value": ...}: %v`, err))
		return
	}
	if body.Value == nil {
		s.fail(w, http.StatusBadRequest, errors.New(`request body must be JSON {"value": ...}: "value" is missing`))
		return
	}
	text, err := valueText(body.Value)
	if err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		if wait, err = time.ParseDuration(q); err != nil || wait < 0 {
			s.fail(w, http.StatusBadRequest, fmt.Errorf("wait=%q: want a duration such as 5s", q))
			return
		}
	}
	t, err := s.mgr.SetDesired(r.Context(), ns, name, prop, text, "rest")
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	if wait == 0 {
		s.reply(w, http.StatusAccepted, TwinResponse{BaseResponse: newBase(http.StatusAccepted), Twin: t})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	if err := s.mgr.WaitApplied(ctx, ns, name, prop, t.DesiredSeq); err != nil {
		s.fail(w, statusOf(err), fmt.Errorf("desired value %q saved (seq %d) but not yet applied: %w", text, t.DesiredSeq, err))
		return
	}
	d, err := s.mgr.Device(ns, name)
	if err == nil {
		for _, tw := range d.Twins {
			if tw.Property == prop {
				t = tw
			}
		}
	}
	s.reply(w, http.StatusOK, TwinResponse{BaseResponse: newBase(http.StatusOK), Twin: t})
}

func (s *Server) methods(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	d, err := s.mgr.Device(ns, name)
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	types := map[string]string{}
	for _, t := range d.Twins {
		types[t.Property] = t.Type
	}
	out := &DataMethod{Methods: []Method{}}
	for _, m := range d.Methods {
		mt := Method{Name: m.Name, Path: fmt.Sprintf("/api/v1/devicemethod/%s/%s/%s/{propertyName}/{data}", ns, name, m.Name)}
		for _, p := range m.PropertyNames {
			mt.Parameters = append(mt.Parameters, Parameter{PropertyName: p, ValueType: types[p]})
		}
		out.Methods = append(out.Methods, mt)
	}
	s.reply(w, http.StatusOK, DeviceMethodReadResponse{BaseResponse: newBase(http.StatusOK), Data: out})
}

func (s *Server) methodWrite(w http.ResponseWriter, r *http.Request) {
	ns, name, method, prop, data := r.PathValue("ns"), r.PathValue("name"), r.PathValue("method"), r.PathValue("property"), r.PathValue("data")
	d, err := s.mgr.Device(ns, name)
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	found, listed := false, false
	for _, m := range d.Methods {
		if m.Name == method {
			found = true
			for _, p := range m.PropertyNames {
				listed = listed || p == prop
			}
		}
	}
	if !found {
		s.fail(w, http.StatusNotFound, fmt.Errorf("device %s/%s has no method %q in spec.methods", ns, name, method))
		return
	}
	if !listed {
		s.fail(w, http.StatusNotFound, fmt.Errorf("method %q of %s/%s does not list property %q in propertyNames", method, ns, name, prop))
		return
	}
	t, err := s.mgr.SetDesired(r.Context(), ns, name, prop, data, "rest")
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.WriteTimeout)
	defer cancel()
	if err := s.mgr.WaitApplied(ctx, ns, name, prop, t.DesiredSeq); err != nil {
		s.fail(w, statusOf(err), fmt.Errorf("write %s=%s: %w", prop, data, err))
		return
	}
	s.reply(w, http.StatusOK, DeviceWriteResponse{BaseResponse: newBase(http.StatusOK),
		Message: fmt.Sprintf("Write data %s to device %s/%s property %s successfully", data, ns, name, prop)})
}

func (s *Server) callMethod(w http.ResponseWriter, r *http.Request) {
	args, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	if len(strings.TrimSpace(string(args))) > 0 && !json.Valid(args) {
		s.fail(w, http.StatusBadRequest, errors.New("method arguments must be JSON"))
		return
	}
	out, err := s.mgr.CallMethod(r.Context(), r.PathValue("ns"), r.PathValue("name"), r.PathValue("method"), args)
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	data := json.RawMessage(out)
	if !json.Valid(out) {
		data, _ = json.Marshal(string(out))
	}
	s.reply(w, http.StatusOK, MethodResponse{BaseResponse: newBase(http.StatusOK), Data: data})
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	m, err := s.mgr.Model(r.PathValue("ns"), r.PathValue("name"))
	if err != nil {
		s.fail(w, statusOf(err), err)
		return
	}
	s.reply(w, http.StatusOK, MetaGetModelResponse{BaseResponse: newBase(http.StatusOK), DeviceModel: modelOf(m)})
}

func (s *Server) problems(w http.ResponseWriter, r *http.Request) {
	var mp []manifest.Problem
	if s.opts.Problems != nil {
		mp = s.opts.Problems.List()
	}
	if mp == nil {
		mp = []manifest.Problem{}
	}
	dp := s.mgr.Problems()
	if dp == nil {
		dp = []devices.Problem{}
	}
	s.reply(w, http.StatusOK, ProblemsResponse{BaseResponse: newBase(http.StatusOK), Manifests: mp, Devices: dp})
}

// Problems holds the current manifest problems for REST and metrics.
type Problems struct {
	mu    sync.Mutex // guards list
	list  []manifest.Problem
	count prometheus.Gauge
	info  *prometheus.GaugeVec
}

// NewProblems returns an empty holder whose metrics (wapper_manifest_problems
// and wapper_manifest_problem_info{file,kind,name,field}) go to reg.
func NewProblems(reg prometheus.Registerer) *Problems {
	p := &Problems{
		count: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wapper_manifest_problems", Help: "Manifest documents that could not be loaded."}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wapper_manifest_problem_info",
			Help: "One series per bad manifest document; see GET /api/v1/manifests/errors for the reason."}, []string{"file", "kind", "name", "field"}),
	}
	if reg != nil {
		reg.MustRegister(p.count, p.info)
	}
	return p
}

// Set replaces the problems.
func (p *Problems) Set(list []manifest.Problem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append([]manifest.Problem(nil), list...)
	p.count.Set(float64(len(list)))
	p.info.Reset()
	for _, pr := range list {
		p.info.WithLabelValues(pr.File, pr.Kind, pr.Name, pr.Field).Set(1)
	}
}

// List returns the problems.
func (p *Problems) List() []manifest.Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]manifest.Problem(nil), p.list...)
}
