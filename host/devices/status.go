package devices

import (
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// Phase says whether a device runs.
type Phase string

// Device phases.
const (
	// PhasePending: being added to its plugin, or waiting to retry after a
	// transient failure (Reason and DeviceStatus.Attempts say so).
	PhasePending Phase = "Pending"
	// PhaseRunning: added to its plugin and polled.
	PhaseRunning Phase = "Running"
	// PhaseError: cannot run until its objects change or its plugin
	// loads; Reason says why.
	PhaseError Phase = "Error"
)

// TwinStatus is the twin of one property.
type TwinStatus struct {
	Property   string `json:"property"`
	Type       string `json:"type"`
	AccessMode string `json:"accessMode"`
	// Desired is the desired value (KubeEdge twin text), DesiredSeq its
	// host-wide sequence number and AppliedSeq the last one written to the
	// device; Desired is pending while DesiredSeq > AppliedSeq.
	Desired     string    `json:"desired,omitempty"`
	DesiredSeq  uint64    `json:"desiredSeq,omitempty"`
	DesiredTime time.Time `json:"desiredTime,omitzero"`
	DesiredBy   string    `json:"desiredBy,omitempty"`
	AppliedSeq  uint64    `json:"appliedSeq,omitempty"`
	AppliedTime time.Time `json:"appliedTime,omitzero"`
	// Reported is the last value read, at ReportedTime.
	Reported     string    `json:"reported,omitempty"`
	ReportedTime time.Time `json:"reportedTime,omitzero"`
	// Error is the last read or write error, cleared by a success. When
	// the Device spec's desired value is not written because it is not
	// valid for the property's type, Error says so (after the read or
	// write error, if any) until the spec changes.
	Error string `json:"error,omitempty"`
	// Push is the property's pushMethod from the Device spec. A reading
	// event carries it at most once per the property's reportCycle (as
	// mapper-framework pushes every reportCycle); the others have nil.
	Push *v1beta1.PushMethod `json:"-"`
}

// DeviceStatus is a device with its state and twins.
type DeviceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Source    string `json:"source"`
	Model     string `json:"model,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	Plugin    string `json:"plugin,omitempty"`
	Phase     Phase  `json:"phase"`
	Reason    string `json:"reason,omitempty"`
	// Attempts counts the failed attempts in a row to add the device to
	// its plugin; NextAttempt is when it is tried again (phase Pending).
	Attempts    int          `json:"attempts,omitempty"`
	NextAttempt time.Time    `json:"nextAttempt,omitzero"`
	State       string       `json:"state"`
	StateReason string       `json:"stateReason,omitempty"`
	StateTime   time.Time    `json:"stateTime,omitzero"`
	Twins       []TwinStatus `json:"twins"`
	Methods     []abi.Method `json:"methods,omitempty"`
	// Sinks are the data sinks of its properties (pushMethod.dbMethod and
	// pushMethod.otel), from the reporter set with [Manager.SetSinkReporter].
	Sinks []SinkStatus `json:"sinks,omitempty"`
}

// SinkStatus is where one data sink of a property stands: a database of
// its pushMethod.dbMethod or its pushMethod.otel endpoint.
type SinkStatus struct {
	Property string `json:"property"`
	// Method is "dbMethod.redis", "dbMethod.mysql", "dbMethod.influxdb2",
	// "dbMethod.TDEngine" or "otel"; Target names the server.
	Method string `json:"method"`
	Target string `json:"target,omitempty"`
	// Written counts this property's readings stored there; Queued is
	// the number of readings (of every device) waiting for the target;
	// Dropped counts this property's readings lost: past the queue's
	// bound, or refused by the server or by the host.
	Written uint64 `json:"written"`
	Queued  int    `json:"queued"`
	Dropped uint64 `json:"dropped"`
	// Error is why readings are not stored now (the target is down,
	// refuses the credentials, or the sink is not usable), or "".
	Error     string    `json:"error,omitempty"`
	ErrorTime time.Time `json:"errorTime,omitzero"`
}

// SinkReporter gives the sink statuses of a device, "namespace/name".
type SinkReporter interface {
	SinkStatus(device string) []SinkStatus
}

// status returns the device with its state and twins.
func (d *device) status() DeviceStatus {
	d.mu.Lock()
	s := DeviceStatus{Namespace: d.ns, Name: d.name, Source: d.source, Phase: d.phase, Reason: d.reason, Attempts: d.attempts, NextAttempt: d.nextAttempt,
		State: d.state.String(), StateReason: d.stReason, StateTime: d.stTime, Twins: []TwinStatus{}}
	c := d.cfg
	d.mu.Unlock()
	if c != nil {
		if c.model != nil {
			s.Model, s.Protocol = c.model.Name, c.model.Spec.Protocol
		}
		if c.plugin != nil {
			s.Plugin = c.plugin.name
		}
		s.Methods = c.desc.Methods
		s.Twins = d.twins.appendStatus(make([]TwinStatus, 0, len(c.props)), c.props, "")
	}
	return s
}

// PluginStatus is where a MapperPlugin stands on this host.
type PluginStatus struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	// Loaded is set when the plugin runs; Error says why it does not.
	Loaded bool   `json:"loaded"`
	Error  string `json:"error,omitempty"`
	// Digest is the digest of the module the plugin runs, "sha256:<hex>"
	// of its bytes.
	Digest string `json:"digest,omitempty"`
	// RejectedDigest is the digest of the last module a hot upgrade
	// rolled back from, while the plugin kept running Digest, and
	// Rejected says why; both are empty when the last upgrade, if any,
	// took.
	RejectedDigest string `json:"rejectedDigest,omitempty"`
	Rejected       string `json:"rejected,omitempty"`
	// Grants are the resources the plugin may reach (spec.grants), one
	// string each in the form `wapper plugin run --grant` takes (see
	// [v1alpha1.Grants.List]); TLSGrants are the settings of its TLS
	// connections (spec.grants.tls).
	Grants    []string            `json:"grants,omitempty"`
	TLSGrants []v1alpha1.TLSGrant `json:"tlsGrants,omitempty"`
	// Limits are the plugin's limits (spec.limits), defaults filled in.
	Limits v1alpha1.Limits `json:"limits,omitzero"`
}
