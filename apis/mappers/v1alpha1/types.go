package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"wapper.dev/wapper/abi/grant"
)

// PluginAnnotation, set on a DeviceModel, pins the MapperPlugin (by name)
// that serves it, instead of the one chosen by the model's spec.protocol.
const PluginAnnotation = "mappers.wapper.dev/plugin"

// MapperPlugin is a WebAssembly device mapper: the module to run, the
// protocols it serves (matched against DeviceModel spec.protocol), what it
// may touch, its resource limits and its config. It is cluster-scoped.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mp,categories=wapper
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Protocols",type=string,JSONPath=`.spec.protocols`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.module.image`
// +kubebuilder:printcolumn:name="File",type=string,JSONPath=`.spec.module.file`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.status.rollout.phase`
// +kubebuilder:printcolumn:name="Updated",type=integer,JSONPath=`.status.rollout.updatedNodes`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.rollout.totalNodes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MapperPlugin struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is what the operator asks for.
	Spec MapperPluginSpec `json:"spec"`
	// Status reports, per edge node, whether the plugin loaded there.
	// +optional
	Status MapperPluginStatus `json:"status,omitzero"`
}

// MapperPluginSpec is the desired state of a MapperPlugin.
type MapperPluginSpec struct {
	// Protocols lists the DeviceModel spec.protocol values this plugin
	// serves, such as "modbus" or "virtual".
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`
	// +listType=set
	Protocols []string `json:"protocols"`
	// Module says where the .wasm comes from.
	Module Module `json:"module"`
	// Grants lists what the plugin may touch. Everything else is refused.
	// +optional
	Grants Grants `json:"grants,omitzero"`
	// Limits bounds the plugin's memory, call time and instances.
	// +optional
	Limits Limits `json:"limits,omitzero"`
	// Config is an arbitrary JSON object handed to the plugin's init export.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Config *runtime.RawExtension `json:"config,omitempty"`
	// Rollout says how a change of Module reaches the edge nodes: in
	// waves, each waiting until every node of the one before runs the
	// new module. Other changes of the spec reach every node at once.
	// +optional
	Rollout Rollout `json:"rollout,omitzero"`
	// Upgrade says how a host moves the plugin's devices to a new module
	// (a new digest, new file content, or an image tag that now resolves
	// to another digest) when nothing else of the spec changed.
	// +optional
	Upgrade Upgrade `json:"upgrade,omitzero"`
}

// UpgradeStrategy is how a host replaces a plugin's module.
// +kubebuilder:validation:Enum=Hot;Restart
type UpgradeStrategy string

// The upgrade strategies.
const (
	// UpgradeHot loads the new module beside the old one, probes it, and
	// moves the devices over between two collect cycles, canary devices
	// first; it goes back to the old module when the new one fails.
	UpgradeHot UpgradeStrategy = "Hot"
	// UpgradeRestart stops the plugin's devices, loads the new module and
	// starts them again on it, as any other change of the spec does.
	UpgradeRestart UpgradeStrategy = "Restart"
)

// Upgrade is a host's policy for a change of the plugin's module. A
// change of anything else in the spec (grants, limits, protocols, config)
// always restarts the plugin's devices.
type Upgrade struct {
	// Strategy is Hot (the default: no collect cycle missed, and a
	// rollback to the old module when the new one fails its probe or
	// traps on its first calls) or Restart (stop the devices, load the
	// new module, start them again).
	// +optional
	// +kubebuilder:default=Hot
	Strategy UpgradeStrategy `json:"strategy,omitempty"`
	// CanaryPercent is, with strategy Hot, the share of a host's devices
	// of the plugin moved to the new module first (0 to 100, default 10,
	// rounded up, at least one device); the others follow only once each
	// canary device has read successfully on the new module.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	CanaryPercent *int32 `json:"canaryPercent,omitempty"`
}

// Rollout is how a new module reaches the edge nodes that run the plugin.
// The nodes not yet in a wave keep the previous module, pinned by its
// digest. To roll back, set spec.module back to the previous module.
type Rollout struct {
	// MaxUnavailable is the size of a wave: how many nodes move to the
	// new module at once, as a count (2) or a percentage of the
	// nodes that run the plugin ("25%", rounded up). Default 1.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')",message="maxUnavailable is a count of at least 1 or a percentage from 1% to 100%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	// CanaryNodeSelector picks the nodes of the first wave (whatever
	// their number). Without it, or when it matches none of the nodes,
	// the first wave is MaxUnavailable nodes like the others. Every node
	// has the label kubernetes.io/hostname set to its name; a node with a
	// Kubernetes Node object has that Node's labels too.
	// +optional
	CanaryNodeSelector *metav1.LabelSelector `json:"canaryNodeSelector,omitempty"`
	// Paused, while true, starts no new wave: the nodes already moved
	// keep the new module, the others the previous one. Set it back to
	// false to resume.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// ProgressDeadlineSeconds is how long a wave may take, in seconds
	// (default 600): a node of the current wave that has not reported
	// the new module loaded this long after the wave started fails the
	// rollout, as a node that failed the module does. Pausing does not
	// stop it.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProgressDeadlineSeconds int32 `json:"progressDeadlineSeconds,omitempty"`
}

// Module names the plugin's WebAssembly module: exactly one of File and
// Image. Digest pins its content.
//
// +kubebuilder:validation:XValidation:rule="has(self.file) != has(self.image)",message="set exactly one of file and image"
// +kubebuilder:validation:XValidation:rule="!has(self.image) || has(self.digest)",message="digest is required with image"
type Module struct {
	// File is a path relative to the host's --plugin-dir, such as
	// "virtual.wasm". It may not be absolute or leave that folder.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//')",message="file must be a clean path relative to the host's --plugin-dir"
	File string `json:"file,omitempty"`
	// Image is an OCI reference, REGISTRY/REPOSITORY[:TAG][@DIGEST].
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image,omitempty"`
	// Digest is the module's content digest, "sha256:" and 64 lowercase hex
	// digits (or "sha512:" and 128). It is required with Image and, when
	// given with File, checked against the file.
	// +optional
	// +kubebuilder:validation:Pattern=`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`
	Digest string `json:"digest,omitempty"`
}

// Grants lists the resources a plugin may reach. Every host call is checked
// against them; see package wapper.dev/wapper/abi/grant for the syntax.
type Grants struct {
	// Network lists SCHEME://HOST:PORT patterns, such as
	// "tcp://127.0.0.1:5502", "udp://10.0.0.0/8:*", "tcp://*.plant.local:502-503"
	// or "tls://broker.plant.local:8883" (a TLS stream the host makes; see TLS).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^(tcp|udp|tls)://[^\s]+:(\*|[0-9]+(-[0-9]+)?)$`
	Network []string `json:"network,omitempty"`
	// Listen lists the local addresses (udp://IP:PORT patterns, IP an
	// address, a prefix or *) a datagram socket may bind, such as
	// "udp://0.0.0.0:162" for SNMP traps or "udp://239.255.255.250:3702"
	// to join a multicast group. Binding an ephemeral port on every address
	// needs no entry: such a socket only hears senders Network covers.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^udp://[^\s]+:(\*|[0-9]+(-[0-9]+)?)$`
	Listen []string `json:"listen,omitempty"`
	// Serial lists absolute device path patterns (shell globs), such as
	// "/dev/ttyUSB*".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^/[^\s]*$`
	Serial []string `json:"serial,omitempty"`
	// GPIO lists GPIO line name patterns (shell globs), such as "GPIO17" or
	// "gpiochip0:*".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_.:/*?!^\[\]-]+$`
	GPIO []string `json:"gpio,omitempty"`
	// Secrets lists the names (shell globs) of the secrets the plugin may
	// read with secret_get, such as "plc-login" or "cam-*". In cloud mode
	// they are Kubernetes Secrets of the plugin's namespace; otherwise
	// directories under the host's --secrets-dir.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9.*?!^\[\]-]+$`
	Secrets []string `json:"secrets,omitempty"`
	// TLS sets how the host makes the plugin's TLS connections (network
	// grants with scheme tls): the first entry whose endpoint covers the
	// address applies; with none, the server is checked against the
	// host's system CAs under the name the plugin dialled.
	// +optional
	// +listType=atomic
	TLS []TLSGrant `json:"tls,omitempty"`
}

// TLSGrant is the TLS setting of some endpoints. The secrets it names are
// used by the host only; the plugin never sees them.
type TLSGrant struct {
	// Endpoint is a tls://HOST:PORT pattern, in the syntax of Network.
	// +kubebuilder:validation:Pattern=`^tls://[^\s]+:(\*|[0-9]+(-[0-9]+)?)$`
	Endpoint string `json:"endpoint"`
	// CASecret names a secret whose key ca.crt holds the PEM certificates
	// the server's certificate must chain to; empty: the system's CAs.
	// +optional
	CASecret string `json:"caSecret,omitempty"`
	// ClientSecret names a secret of type kubernetes.io/tls (keys tls.crt
	// and tls.key) whose certificate the host presents to the server.
	// +optional
	ClientSecret string `json:"clientSecret,omitempty"`
	// ServerName is the name the server's certificate must carry and the
	// SNI sent; empty: the host part of the address the plugin dialled.
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// Limits bounds what one plugin may use. Zero fields take their defaults
// (see Default).
type Limits struct {
	// MemoryMiB is the most linear memory one instance may have, in MiB
	// (1 to 1024, default 64). Go plugins need at least a few MiB.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	MemoryMiB int32 `json:"memoryMiB,omitempty"`
	// CallTimeout is the deadline of one export call (above zero, at most
	// 5m, default 5s), written like "2s" or "1m30s".
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('5m')",message="callTimeout must be above 0s and at most 5m"
	CallTimeout metav1.Duration `json:"callTimeout,omitzero"`
	// Instances is the size of the plugin's instance pool (1 to 64,
	// default 2).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Instances int32 `json:"instances,omitempty"`
}

// MapperPluginStatus is what the edge nodes report about a MapperPlugin.
type MapperPluginStatus struct {
	// Nodes holds one entry per edge node that was asked to run the plugin.
	// +optional
	// +listType=map
	// +listMapKey=node
	Nodes []NodeStatus `json:"nodes,omitempty"`
	// Rollout is where the rollout of the module stands across the nodes.
	// +optional
	Rollout RolloutStatus `json:"rollout,omitzero"`
}

// RolloutPhase is where a rollout stands.
// +kubebuilder:validation:Enum=Progressing;Paused;Complete;Failed
type RolloutPhase string

// The phases of a rollout.
const (
	// RolloutProgressing means a wave is under way, or about to start.
	RolloutProgressing RolloutPhase = "Progressing"
	// RolloutPaused means spec.rollout.paused holds the next wave.
	RolloutPaused RolloutPhase = "Paused"
	// RolloutComplete means every node runs the target module.
	RolloutComplete RolloutPhase = "Complete"
	// RolloutFailed means a node failed the target module: no further
	// wave starts until spec.module changes (a rollback, or a fix).
	RolloutFailed RolloutPhase = "Failed"
)

// RolloutStatus is where the rollout of a MapperPlugin's module stands.
// wapper-cloud keeps all of its rollout state here, so that a restarted
// cloud carries on where the last one stopped.
type RolloutStatus struct {
	// TargetDigest is the content digest (sha256 of the .wasm) of the
	// module the rollout moves nodes to; empty when unknown (a file
	// module without spec.module.digest), in which case the module goes
	// to every node at once.
	// +optional
	TargetDigest string `json:"targetDigest,omitempty"`
	// TargetModule is spec.module as it was when the rollout started.
	// +optional
	TargetModule Module `json:"targetModule,omitzero"`
	// PreviousDigest is the content digest of the module the nodes ran
	// before; nodes not yet in a wave keep it. After a rollback, the
	// digest rolled back from (no node is sent it any more).
	// +optional
	PreviousDigest string `json:"previousDigest,omitempty"`
	// PreviousModule is the module the nodes not yet in a wave are sent,
	// pinned by digest; empty when every node is sent spec.module (no
	// previous module, a rollback, or a module without a known digest).
	// +optional
	PreviousModule Module `json:"previousModule,omitzero"`
	// Phase is Progressing, Paused, Complete or Failed.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`
	// StartTime is when the rollout of the target module started. What
	// the nodes reported before does not count against it.
	// +optional
	StartTime metav1.Time `json:"startTime,omitzero"`
	// UpdatedNodes counts the nodes that report the target module loaded.
	// +optional
	UpdatedNodes int32 `json:"updatedNodes,omitempty"`
	// TotalNodes counts the nodes that run the plugin.
	// +optional
	TotalNodes int32 `json:"totalNodes,omitempty"`
	// FailedNodes lists the nodes that failed the target module, and why.
	// +optional
	// +listType=map
	// +listMapKey=node
	FailedNodes []FailedNode `json:"failedNodes,omitempty"`
	// CurrentWave numbers the latest wave, from 1; 0 before the first.
	// +optional
	CurrentWave int32 `json:"currentWave,omitempty"`
	// CurrentWaveNodes are the nodes of the latest wave.
	// +optional
	// +listType=set
	CurrentWaveNodes []string `json:"currentWaveNodes,omitempty"`
	// CurrentWaveStartTime is when the latest wave started: when its
	// nodes were first sent the target module. What they reported before
	// does not count against the rollout, and spec.rollout's
	// progressDeadlineSeconds runs from it.
	// +optional
	CurrentWaveStartTime metav1.Time `json:"currentWaveStartTime,omitzero"`
	// MovedNodes are the nodes sent the target module so far, in every
	// wave, while the rollout is under way; empty once it is Complete.
	// +optional
	// +listType=set
	MovedNodes []string `json:"movedNodes,omitempty"`
	// Message says what the rollout waits for, or why it stopped.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedGeneration is the metadata.generation this status was
	// computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// FailedNode is a node that failed the target module of a rollout.
type FailedNode struct {
	// Node is the edge node's name.
	Node string `json:"node"`
	// Reason is what the node reported.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// PluginPhase is where a plugin stands on one node.
// +kubebuilder:validation:Enum=Pending;Loaded;Failed
type PluginPhase string

// The phases of a plugin on a node.
const (
	// PhasePending means the node was sent the plugin and has not reported yet.
	PhasePending PluginPhase = "Pending"
	// PhaseLoaded means the module was fetched, digest-checked and instantiated.
	PhaseLoaded PluginPhase = "Loaded"
	// PhaseFailed means the node could not load the plugin; Message says why.
	PhaseFailed PluginPhase = "Failed"
)

// NodeStatus is the state of a plugin on one edge node.
type NodeStatus struct {
	// Node is the edge node's name.
	Node string `json:"node"`
	// Phase is Pending, Loaded or Failed.
	Phase PluginPhase `json:"phase"`
	// Digest is the digest of the module the node runs (or tried to).
	// +optional
	Digest string `json:"digest,omitempty"`
	// Message says why the plugin failed, or other detail; after a
	// rejected upgrade, why the new module was rejected.
	// +optional
	Message string `json:"message,omitempty"`
	// RejectedDigest is the digest of the last module the node tried to
	// upgrade the plugin to and rolled back from, while it kept running
	// Digest; empty when the last upgrade, if any, took, and once the
	// node is sent the module it runs again (a rollback).
	// +optional
	RejectedDigest string `json:"rejectedDigest,omitempty"`
	// LastTransitionTime is when Phase, Digest or RejectedDigest last
	// changed.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitzero"`
}

// MapperPluginList is a list of MapperPlugin objects.
//
// +kubebuilder:object:root=true
type MapperPluginList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the MapperPlugin objects.
	Items []MapperPlugin `json:"items"`
}

// Set returns the grants in the form the host's sandbox parses.
func (g Grants) Set() grant.Set {
	set := grant.Set{Network: g.Network, Listen: g.Listen, Serial: g.Serial, GPIO: g.GPIO, Secrets: g.Secrets}
	for _, t := range g.TLS {
		set.TLS = append(set.TLS, t.set())
	}
	return set
}

// List returns the grants one string each, in the form `wapper plugin run
// --grant` takes: network entries as they are (tcp://, udp://, tls://),
// serial paths as they are, then "gpio:LINE", "listen:udp://IP:PORT" and
// "secret:NAME". TLS settings are not grants of their own and are left
// out.
func (g Grants) List() []string {
	out := append([]string(nil), g.Network...)
	out = append(out, g.Serial...)
	for _, s := range g.GPIO {
		out = append(out, "gpio:"+s)
	}
	for _, s := range g.Listen {
		out = append(out, "listen:"+s)
	}
	for _, s := range g.Secrets {
		out = append(out, "secret:"+s)
	}
	return out
}

func (t TLSGrant) set() grant.TLS {
	return grant.TLS{Endpoint: t.Endpoint, CASecret: t.CASecret, ClientSecret: t.ClientSecret, ServerName: t.ServerName}
}
