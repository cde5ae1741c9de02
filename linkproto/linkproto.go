// Package linkproto is the wire protocol between wapper-cloud and
// wapper-host: JSON messages over one websocket per node, plus the module
// pull-through endpoint. Both sides import it, so it depends only on
// apimachinery and KubeEdge's device types, never on client-go.
//
// Downstream, the cloud sends the node's desired objects (Devices,
// DeviceModels, MapperPlugins, and the Secrets those plugins are granted)
// as Items, each with a Version: a hash of the
// delivered object, the same on every cloud replica. A host applies a batch,
// stores it, and acknowledges the batch's Seq. On every (re)connect the
// host's Hello carries its inventory (the version of every object it holds),
// and the cloud sends exactly the difference between the desired set and
// that inventory. Because versions come from the objects themselves and the
// inventory from the host's store, a restarted or different cloud replica
// resumes where the host left off: nothing is lost and an object the host
// already holds is never sent again.
//
// Upstream, the host sends Reports (device twins and state, plugin state),
// each with its own Seq, and keeps them in its outbox until the cloud
// acknowledges their Seq in a ReportAck, which it does only after the
// status is written to the API server.
package linkproto

import (
	"encoding/json"
	"strings"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
)

// Paths and headers the cloud serves.
const (
	// LinkPath is the websocket endpoint.
	LinkPath = "/v1/link"
	// ModulesPath is the pull-through module endpoint; the MapperPlugin
	// name follows it: /v1/modules/{plugin}.
	ModulesPath = "/v1/modules/"
	// Subprotocol is the websocket subprotocol both sides require.
	Subprotocol = "wapper.link.v1"
	// NodeHeader names the node the bearer token is for.
	NodeHeader = "Wapper-Node"
	// ModuleDigestHeader carries the digest of a module served by
	// ModulesPath (sha256 of the body), checked by the host.
	ModuleDigestHeader = "Wapper-Module-Digest"
	// ModulePinHeader carries the spec.module.digest the cloud checked the
	// module against (a manifest or module digest), for the host to
	// compare with its own copy of the MapperPlugin.
	ModulePinHeader = "Wapper-Module-Pin"
)

// Message types.
const (
	// TypeHello is the host's first message: its inventory.
	TypeHello = "hello"
	// TypeApply is a downstream batch of Items.
	TypeApply = "apply"
	// TypeAck acknowledges the downstream batch with Seq.
	TypeAck = "ack"
	// TypeReport is an upstream batch of Reports.
	TypeReport = "report"
	// TypeReportAck lists upstream report Seqs now written to the cluster.
	TypeReportAck = "reportAck"
)

// Kinds of downstream objects.
const (
	KindMapperPlugin = "MapperPlugin"
	KindDeviceModel  = "DeviceModel"
	KindDevice       = "Device"
	// KindSecret is a Secret a delivered MapperPlugin is granted (its
	// grants.secrets and grants.tls), as a SecretObject. Its Version is the
	// Secret's resource version, never a hash of its data, and a host keeps
	// it in memory only: it is not in the host's store, so a restarted host
	// leaves it out of its inventory and is sent it again.
	KindSecret = "Secret"
)

// SecretObject is a Secret as a host receives it: its name and data.
type SecretObject struct {
	Name string            `json:"name"`
	Data map[string][]byte `json:"data"`
}

// Message is one websocket text frame.
type Message struct {
	// Type is one of the Type constants.
	Type string `json:"type"`
	// Seq numbers an apply batch (and names it in an ack).
	Seq uint64 `json:"seq,omitempty"`
	// Inventory, in a hello, maps every Key the host holds to its Version.
	Inventory map[string]string `json:"inventory,omitempty"`
	// Items, in an apply, are objects to store (Object set) or remove.
	Items []Item `json:"items,omitempty"`
	// Reports, in a report, are upstream states.
	Reports []Report `json:"reports,omitempty"`
	// Acked, in a reportAck, are the Seqs of written Reports.
	Acked []uint64 `json:"acked,omitempty"`
}

// Item is one downstream object, or its removal when Object is empty.
type Item struct {
	// Key is Kind/namespace/name (Kind/name for cluster-scoped kinds).
	Key string `json:"key"`
	// Version is the cloud's hash of Object; empty on removal.
	Version string `json:"version,omitempty"`
	// Object is the object's JSON (status and managed fields removed).
	Object json.RawMessage `json:"object,omitempty"`
}

// Deleted reports whether the item removes its Key.
func (i Item) Deleted() bool { return len(i.Object) == 0 }

// Report is one upstream state: exactly one of Device and Plugin is set.
type Report struct {
	// Seq identifies the report for its acknowledgement.
	Seq uint64 `json:"seq"`
	// Device is a device's reported twins and state.
	Device *DeviceReport `json:"device,omitempty"`
	// Plugin is a MapperPlugin's state on the reporting node.
	Plugin *PluginReport `json:"plugin,omitempty"`
}

// DeviceReport is what a host knows of one device.
type DeviceReport struct {
	// Namespace and Name name the Device.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Twins are the reported (and observed desired) property values.
	Twins []devicesv1beta1.Twin `json:"twins,omitempty"`
	// State is KubeEdge's device state spelling (ok, online, offline, ...).
	State string `json:"state,omitempty"`
	// LastOnlineTime is RFC 3339, as KubeEdge writes it.
	LastOnlineTime string `json:"lastOnlineTime,omitempty"`
}

// PluginReport is a MapperPlugin's state on the node.
type PluginReport struct {
	// Name is the MapperPlugin's name.
	Name string `json:"name"`
	// Phase is Pending, Loaded or Failed.
	Phase string `json:"phase"`
	// Digest is the digest of the module the node runs (Loaded) or tried
	// to run (Failed): the sha256 of the bytes it compiled, written
	// "sha256:<hex>" as OCI digests are; empty when it has no module.
	Digest string `json:"digest,omitempty"`
	// Message says why the plugin failed, or what it is waiting for; after
	// a rejected upgrade, why the new module was rejected.
	Message string `json:"message,omitempty"`
	// RejectedDigest is the digest of the last module the node tried to
	// upgrade the plugin to and rolled back from (its probe failed, or it
	// trapped on its first calls), while it kept running Digest; empty
	// when the last upgrade, if any, took.
	RejectedDigest string `json:"rejectedDigest,omitempty"`
}

// Key returns the Key of an object: Kind/namespace/name, or Kind/name when
// namespace is empty.
func Key(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// SplitKey is the inverse of Key.
func SplitKey(key string) (kind, namespace, name string) {
	parts := strings.SplitN(key, "/", 3)
	switch len(parts) {
	case 3:
		return parts[0], parts[1], parts[2]
	case 2:
		return parts[0], "", parts[1]
	}
	return "", "", key
}

// KindOrder gives the order in which kinds are applied: secrets, plugins,
// then models, then devices (and the reverse for removals).
func KindOrder(kind string) int {
	switch kind {
	case KindSecret:
		return -1
	case KindMapperPlugin:
		return 0
	case KindDeviceModel:
		return 1
	case KindDevice:
		return 2
	}
	return 3
}

// Merge lays a newer report of the same device over an older one, twin by
// twin (a property in cur replaces the same property in old), keeping
// old's state and time where cur has none.
func (old DeviceReport) Merge(cur DeviceReport) DeviceReport {
	if old.Name == "" {
		return cur
	}
	out := old
	out.Twins = append(out.Twins[:0:0], old.Twins...)
	idx := make(map[string]int, len(out.Twins))
	for i, t := range out.Twins {
		idx[t.PropertyName] = i
	}
	for _, t := range cur.Twins {
		if i, ok := idx[t.PropertyName]; ok {
			out.Twins[i] = t
		} else {
			idx[t.PropertyName] = len(out.Twins)
			out.Twins = append(out.Twins, t)
		}
	}
	if cur.State != "" {
		out.State = cur.State
	}
	if cur.LastOnlineTime != "" {
		out.LastOnlineTime = cur.LastOnlineTime
	}
	return out
}
