// Package dmi makes wapper-host a KubeEdge mapper: it bridges KubeEdge's
// Device Management Interface (DMI, github.com/kubeedge/api apis/dmi/v1beta1)
// to the host's device manager.
//
// A [Bridge] does three jobs:
//
//   - It serves DeviceMapperService on a unix socket. Edgecore calls it to
//     create, update and remove devices and models, and to read a device's
//     live twins. Each call is converted to KubeEdge's devices/v1beta1 types
//     (configData decoded from google.protobuf.Any wrappers into the same
//     JSON values the YAML path gives) and applied to the manager under the
//     source name [Source].
//   - It registers with edgecore's DeviceManagerService (MapperRegister,
//     withData) once for every protocol the loaded plugins provide, naming
//     its own socket, applies the devices and models that come back, and
//     registers again whenever the connection to edgecore is re-established
//     or a new protocol appears.
//   - It reports twins (ReportDeviceStatus, at each property's
//     collectCycle) and states (ReportDeviceStates, at the device's
//     stateReport cycle), 1 s when zero: mapper-framework's cadence, so a
//     Device written for it behaves alike. Unlike mapper-framework, the
//     twins of a device go in one call rather than one per property, and
//     carry the value the device manager last read rather than a read of
//     their own.
//     Reports go through an outbox that keeps only the newest report per
//     device and kind, is saved to bbolt, survives edgecore outages and
//     host restarts, and is drained at a pace edgecore's rate limiter
//     accepts (one call a second, bursts of 100, for every mapper of the
//     node together). It spends those calls by need: state changes first,
//     then twin values that differ from what edgecore last accepted, then
//     steady re-reports stalest device first, with one call in ten for
//     the stalest device whatever its class so that nothing starves.
package dmi
