package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

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
	// "tcp://127.0.0.1:5502", "udp://10.0.0.0/8:*" or "tcp://*.plant.local:502-503".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^(tcp|udp)://[^\s]+:(\*|[0-9]+(-[0-9]+)?)$`
	Network []string `json:"network,omitempty"`
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
	// Digest; empty when the last upgrade, if any, took.
	// +optional
	RejectedDigest string `json:"rejectedDigest,omitempty"`
	// LastTransitionTime is when Phase last changed.
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
	return grant.Set{Network: g.Network, Serial: g.Serial, GPIO: g.GPIO}
}
