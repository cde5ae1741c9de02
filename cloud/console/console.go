// Package console is wapper-cloud's fleet console: a page of plain HTML,
// JavaScript and CSS, embedded in the binary and served on the port hosts
// connect to, and the JSON behind it.
//
//	GET /                    the console (nodes, a node's devices, plugins and rollouts)
//	GET /console/{file}      its script and style sheet
//	GET /console/api/fleet   every node with its link and sync state, devices and plugins
//
// The page holds no fleet data, so it loads without a credential; the
// fleet API wants a Kubernetes bearer token whose user may list
// MapperPlugins (see [Cluster]). The page asks for the token when the API
// refuses it, and keeps it for the browser tab only.
//
// What it shows is what this wapper-cloud knows: the Devices and
// MapperPlugins of its informers (with the plugin status every replica
// writes), the links of the hosts connected to it, and the latest report
// each of those hosts sent of its devices.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/internal/webui"
)

//go:embed static
var static embed.FS

// Options are the console's sources and its authorizer.
type Options struct {
	// Links returns the hub's links (hub.Hub.Links).
	Links func() []hub.Link
	// Inventory returns the Devices and MapperPlugins
	// (controller.Controller.Inventory).
	Inventory func() ([]controller.BoundDevice, []*mappersv1alpha1.MapperPlugin)
	// Reported returns the devices' latest reports
	// (status.Writer.Reported).
	Reported func(exists func(ns, name string) bool) map[string]status.DeviceState
	// Authorizer decides who may read the fleet; required.
	Authorizer Authorizer
	// Logger receives refusals and failures (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console serves the fleet console.
type Console struct {
	opts  Options
	log   *slog.Logger
	files fs.FS
}

// New returns a Console.
func New(opts Options) *Console {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return &Console{opts: opts, log: opts.Logger, files: sub}
}

// Mount adds the console's routes to mux.
func (c *Console) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.file)
	mux.HandleFunc("GET /console/{file}", c.file)
	mux.HandleFunc("GET /console/api/fleet", c.fleet)
}

// file serves the embedded files: index.html at /, the others (and those
// the consoles share, package internal/webui) under /console/.
func (c *Console) file(w http.ResponseWriter, r *http.Request) {
	fsys, name := c.files, r.PathValue("file")
	switch name {
	case "":
		name = "index.html"
	case "index.html":
		http.NotFound(w, r)
		return
	}
	if _, err := fs.Stat(webui.Files, name); err == nil {
		fsys = webui.Files
	}
	if _, err := fs.Stat(fsys, name); err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache") // revalidate: a new binary brings new files
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, fsys, name)
}

func (c *Console) fleet(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	user, err := c.opts.Authorizer.Authorize(ctx, hub.BearerToken(r))
	switch {
	case errors.Is(err, ErrUnauthenticated):
		writeError(w, http.StatusUnauthorized, err)
		return
	case errors.Is(err, ErrForbidden):
		c.log.Info("console: refused a fleet read", "user", user, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusForbidden, err)
		return
	case err != nil:
		c.log.Warn("console: cannot check a token", "err", err)
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(c.Snapshot()); err != nil {
		c.log.Debug("console: write the fleet", "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Fleet is what GET /console/api/fleet answers.
type Fleet struct {
	Time    time.Time `json:"time"`
	Nodes   []Node    `json:"nodes"`
	Devices []Device  `json:"devices"`
	Plugins []Plugin  `json:"plugins"`
}

// Node is one edge node: its link to this wapper-cloud, how far its host
// is behind its desired set, and what runs on it.
type Node struct {
	Name string `json:"name"`
	// Link is "connected", "disconnected" (its session here ended) or
	// "unseen" (no session here since this wapper-cloud started).
	Link     string    `json:"link"`
	Remote   string    `json:"remote,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
	// InSync is true when the host holds exactly its desired set.
	InSync bool `json:"inSync"`
	// SyncLagSeconds is how long the oldest change not yet acknowledged
	// by the host has been on its way; 0 when none is.
	SyncLagSeconds float64 `json:"syncLagSeconds"`
	// Outstanding counts the objects the host still lacks or must drop.
	Outstanding int `json:"outstanding"`
	InFlight    int `json:"inFlight"`
	Desired     int `json:"desired"`
	// Devices counts the node's Devices; Online those last reported ok
	// or online.
	Devices int `json:"devices"`
	Online  int `json:"online"`
	// Plugins is the node's entry in each MapperPlugin's status.
	Plugins []NodePlugin `json:"plugins"`
}

// NodePlugin is a MapperPlugin's state on one node.
type NodePlugin struct {
	Name string `json:"name"`
	mappersv1alpha1.NodeStatus
}

// Device is a Device, where it runs, and what its node last reported.
type Device struct {
	Namespace      string `json:"namespace"`
	Name           string `json:"name"`
	Node           string `json:"node"`
	Model          string `json:"model,omitempty"`
	Protocol       string `json:"protocol,omitempty"`
	Plugin         string `json:"plugin,omitempty"`
	Problem        string `json:"problem,omitempty"`
	State          string `json:"state,omitempty"`
	LastOnlineTime string `json:"lastOnlineTime,omitempty"`
	// Twins are the reported values, with the desired value the host
	// observed, and the desired values of the spec.
	Twins []devicesv1beta1.Twin `json:"twins"`
	// Desired holds spec.properties[].desired.value by property.
	Desired map[string]string `json:"desired,omitempty"`
}

// Plugin is a MapperPlugin: its module, its rollout and its nodes.
type Plugin struct {
	Name      string                        `json:"name"`
	Protocols []string                      `json:"protocols"`
	Module    mappersv1alpha1.Module        `json:"module"`
	Strategy  string                        `json:"strategy,omitempty"`
	Rollout   mappersv1alpha1.RolloutStatus `json:"rollout"`
	Nodes     []mappersv1alpha1.NodeStatus  `json:"nodes"`
	Devices   int                           `json:"devices"`
}

// Snapshot gathers the fleet as the console shows it.
func (c *Console) Snapshot() Fleet {
	now := c.opts.Now()
	bound, mps := c.opts.Inventory()
	exists := make(map[string]bool, len(bound))
	for _, b := range bound {
		exists[b.Device.Namespace+"/"+b.Device.Name] = true
	}
	reports := c.opts.Reported(func(ns, name string) bool { return exists[ns+"/"+name] })

	f := Fleet{Time: now, Nodes: []Node{}, Devices: make([]Device, 0, len(bound)), Plugins: make([]Plugin, 0, len(mps))}
	nodes := map[string]*Node{}
	node := func(name string) *Node {
		n := nodes[name]
		if n == nil {
			n = &Node{Name: name, Link: "unseen", Plugins: []NodePlugin{}}
			nodes[name] = n
		}
		return n
	}
	for _, l := range c.opts.Links() {
		n := node(l.Node)
		n.Since, n.LastSeen = l.Since, l.LastSeen
		if !l.Connected {
			n.Link = "disconnected"
			continue
		}
		n.Link, n.Remote = "connected", l.Remote
		n.Desired, n.Outstanding, n.InFlight = l.Desired, l.Outstanding, l.InFlight
		n.InSync = l.Known && l.Outstanding == 0 && l.InFlight == 0
		if !l.OldestUnacked.IsZero() {
			n.SyncLagSeconds = max(0, now.Sub(l.OldestUnacked).Seconds())
		}
	}
	perPlugin := map[string]int{}
	for _, b := range bound {
		d := b.Device
		dev := Device{Namespace: d.Namespace, Name: d.Name, Node: d.Spec.NodeName, Protocol: d.Spec.Protocol.ProtocolName,
			Plugin: b.Plugin, Problem: b.Problem, Twins: []devicesv1beta1.Twin{}}
		if d.Spec.DeviceModelRef != nil {
			dev.Model = d.Spec.DeviceModelRef.Name
		}
		for _, p := range d.Spec.Properties {
			if p.Desired.Value != "" {
				if dev.Desired == nil {
					dev.Desired = map[string]string{}
				}
				dev.Desired[p.Name] = p.Desired.Value
			}
		}
		if st, ok := reports[d.Namespace+"/"+d.Name]; ok && st.Node == d.Spec.NodeName {
			dev.State, dev.LastOnlineTime = st.Report.State, st.Report.LastOnlineTime
			dev.Twins = append(dev.Twins, st.Report.Twins...)
		}
		if dev.Node != "" {
			n := node(dev.Node)
			n.Devices++
			if dev.State == "ok" || dev.State == "online" {
				n.Online++
			}
		}
		if b.Plugin != "" {
			perPlugin[b.Plugin]++
		}
		f.Devices = append(f.Devices, dev)
	}
	for _, p := range mps {
		f.Plugins = append(f.Plugins, Plugin{Name: p.Name, Protocols: p.Spec.Protocols, Module: p.Spec.Module,
			Strategy: string(p.Spec.Upgrade.Strategy), Rollout: p.Status.Rollout, Nodes: p.Status.Nodes, Devices: perPlugin[p.Name]})
		for _, ns := range p.Status.Nodes {
			n := node(ns.Node)
			n.Plugins = append(n.Plugins, NodePlugin{Name: p.Name, NodeStatus: ns})
		}
	}
	for _, n := range nodes {
		sort.Slice(n.Plugins, func(i, j int) bool { return n.Plugins[i].Name < n.Plugins[j].Name })
		f.Nodes = append(f.Nodes, *n)
	}
	sort.Slice(f.Nodes, func(i, j int) bool { return f.Nodes[i].Name < f.Nodes[j].Name })
	sort.Slice(f.Devices, func(i, j int) bool {
		a, b := f.Devices[i], f.Devices[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	sort.Slice(f.Plugins, func(i, j int) bool { return f.Plugins[i].Name < f.Plugins[j].Name })
	return f
}
