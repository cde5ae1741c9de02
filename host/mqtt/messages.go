package mqtt

// KubeEdge EventBus message shapes (edge/pkg/devicetwin/dttype in KubeEdge),
// reproduced field for field so existing applications parse them unchanged.

// BaseMessage starts every message.
type BaseMessage struct {
	EventID   string `json:"event_id"`
	Timestamp int64  `json:"timestamp"`
}

// TwinValue is an expected or actual value.
type TwinValue struct {
	Value    *string        `json:"value,omitempty"`
	Metadata *ValueMetadata `json:"metadata,omitempty"`
}

// ValueMetadata carries the time of a value (ms since the epoch).
type ValueMetadata struct {
	Timestamp int64 `json:"timestamp,omitempty"`
}

// TypeMetadata carries the type of a twin.
type TypeMetadata struct {
	Type string `json:"type,omitempty"`
}

// TwinVersion is KubeEdge's twin version pair.
type TwinVersion struct {
	CloudVersion int64 `json:"cloud"`
	EdgeVersion  int64 `json:"edge"`
}

// MsgTwin is one twin.
type MsgTwin struct {
	Expected        *TwinValue    `json:"expected,omitempty"`
	Actual          *TwinValue    `json:"actual,omitempty"`
	Optional        *bool         `json:"optional,omitempty"`
	Metadata        *TypeMetadata `json:"metadata,omitempty"`
	ExpectedVersion *TwinVersion  `json:"expected_version,omitempty"`
	ActualVersion   *TwinVersion  `json:"actual_version,omitempty"`
}

// DeviceTwinUpdate is published on .../twin/update (actual values), and
// read from it (expected values become desired).
type DeviceTwinUpdate struct {
	BaseMessage
	Twin map[string]*MsgTwin `json:"twin"`
}

// DeviceTwinDelta is published on .../twin/update/delta.
type DeviceTwinDelta struct {
	BaseMessage
	Twin  map[string]*MsgTwin `json:"twin"`
	Delta map[string]string   `json:"delta"`
}

// TwinDoc is the last and current state of one twin.
type TwinDoc struct {
	LastState    *MsgTwin `json:"last"`
	CurrentState *MsgTwin `json:"current"`
}

// DeviceTwinDocument is published on .../twin/update/document.
type DeviceTwinDocument struct {
	BaseMessage
	Twin map[string]*TwinDoc `json:"twin"`
}

// DeviceTwinResult answers .../twin/get on .../twin/get/result.
type DeviceTwinResult struct {
	BaseMessage
	Twin map[string]*MsgTwin `json:"twin"`
}

// Result is an error answer.
type Result struct {
	BaseMessage
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// DeviceStateUpdate is published on .../state/update.
type DeviceStateUpdate struct {
	BaseMessage
	State string `json:"state,omitempty"`
}

// Topics of a device ("namespace/name").
const topicPrefix = "$hw/events/device/"

// TwinUpdateTopic and the others return the EventBus topics of a device.
func TwinUpdateTopic(device string) string   { return topicPrefix + device + "/twin/update" }
func TwinDeltaTopic(device string) string    { return topicPrefix + device + "/twin/update/delta" }
func TwinDocumentTopic(device string) string { return topicPrefix + device + "/twin/update/document" }
func TwinGetTopic(device string) string      { return topicPrefix + device + "/twin/get" }
func TwinGetResultTopic(device string) string {
	return topicPrefix + device + "/twin/get/result"
}
func StateUpdateTopic(device string) string { return topicPrefix + device + "/state/update" }
