// Package devices is wapper-host's device manager: it turns KubeEdge Device
// and DeviceModel objects and wapper MapperPlugin objects into running
// devices on sandboxed plugins, polls their properties, keeps their twins
// and tracks their state.
//
// # Sources
//
// Objects come from sources, each named by a short string: "manifests" (the
// --manifests folder), "dmi" (KubeEdge edgecore over DMI), "cloud"
// (wapper-cloud). A source either replaces everything it provides at once
// with [Manager.Apply], or changes one object at a time with
// [Manager.UpsertDevice], [Manager.DeleteDevice], [Manager.UpsertModel],
// [Manager.DeleteModel], [Manager.UpsertPlugin] and [Manager.DeletePlugin].
// Each object name (Device and DeviceModel by namespace/name, MapperPlugin
// by name) belongs to the first source that provided it. Another source
// offering the same name is refused with an error wrapping [ErrConflict]
// (and listed in [Manager.Problems]); objects are never merged. When the
// owner deletes the object the name is free again. What each source last
// applied is saved in the store and restored by [Manager.Restore] before
// anything else, so a restarted host serves its devices before it re-reads
// manifests or reconnects.
//
// A DeviceModel is found in the Device's namespace from any source. A
// model's plugin is the MapperPlugin named by the model annotation
// mappers.wapper.dev/plugin, else the MapperPlugin (by name order) whose
// spec.protocols holds the model's spec.protocol. A device whose model or
// plugin is missing, whose plugin failed to load (bad digest, refused
// module) or that its plugin refused is in phase [PhaseError] with a reason;
// the other devices are not affected.
//
// # Observing and driving devices
//
// [Manager.Subscribe] returns a channel of [Event]: a reading at each
// collect cycle (with the property's pushMethod), a report of every twin at
// each report cycle, desired-value changes, state changes (and the periodic
// state report) and devices added or removed. Delivery never blocks the
// devices: a subscriber that falls behind loses events, counted in the
// wapper_device_events_dropped_total metric.
//
// [Manager.SetDesired] sets a desired value (KubeEdge twin text). It is saved
// durably with a sequence number before it returns, then written through
// the plugin by the device's own loop; after a successful write the journal
// records the sequence as applied and the property is read back, so the
// reported value follows. After a crash, desired values not yet applied are
// applied once on restart, and those already applied are not applied again.
// [Manager.Devices], [Manager.Device], [Manager.Read], [Manager.CallMethod]
// and [Manager.Model] serve REST and DMI.
//
// # Timing
//
// collectCycle and reportCycle are in milliseconds, as in KubeEdge's
// mapper-framework; zero takes the defaults in [Options]. Each device has one
// goroutine; a device's properties that share a collect cycle are read with
// one batch call. Plugins exporting wapper_poll are also polled, and the
// readings they push are handled like collected ones.
package devices
