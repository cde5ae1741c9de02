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
// # Starting devices, failures and recovery
//
// Devices are added to their plugins concurrently, [Options.AddConcurrency]
// at a time; Apply and the Upsert methods return once each changed device
// has had its first attempt (or after [Options.AddTimeout] at most), so a
// refusal is known at once. A failure that
// may pass by itself (every instance busy or restarting, a timeout, an
// unreachable device: any ABI code but invalid, not found, unsupported,
// denied, read-only and too large) is retried with exponential backoff and
// jitter between [Options.RetryMin] and [Options.RetryMax]; meanwhile the
// device is [PhasePending] with the reason, [DeviceStatus.Attempts] and
// [DeviceStatus.NextAttempt], and wapper_device_add_retries_total counts
// the failures. A plugin that failed to load is loaded again on the same
// backoff, so fixing its module file or bringing its registry back starts
// its devices without a restart; a device refused by its plugin runs once
// its Device or DeviceModel changes.
//
// Twins live as long as the device does: a restarted host restores every
// device, with its twins, from the store (Restore), and re-applying the
// same objects keeps them; a device its source deletes loses its twins, so
// one added again later under the same name starts afresh.
//
// # Upgrading a plugin's module
//
// When a loaded MapperPlugin changes only in its module (a new digest, an
// image tag that resolves to another digest, or new content of its module
// file, read again whenever the plugin is applied again) and its
// spec.upgrade.strategy is Hot (the default), the new module is loaded
// beside the old one, probed, and the devices are moved to it between two
// of their jobs, the canary share (spec.upgrade.canaryPercent) first; the
// kv store is the same for both. A failed probe or canary rolls back: the
// old module keeps every device, and [Manager.Plugin] and
// [Manager.Problems] tell which module was rejected and why. An upgrade
// does not hold up changes of other plugins and their devices; changes of
// the plugin being upgraded and of its devices are made once it ends.
// Strategy Restart, and any other change of the spec, stop the plugin's
// devices and start them on the new plugin. See upgrade.go.
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
// A desired value in a Device's spec.properties is set the same way when it
// changes; on a property that is not ReadWrite it is ignored (logged once),
// as KubeEdge's mapper-framework does, while SetDesired on such a property
// is refused with [ErrReadOnly]. A spec desired value that is not valid for
// its property's type is not written either (logged once, and shown in the
// twin's Error); the device runs and the property is still read, while
// SetDesired refuses such a value with [ErrInvalid].
// [Manager.Devices], [Manager.Device], [Manager.Read], [Manager.CallMethod]
// and [Manager.Model] serve REST and DMI.
//
// # Timing
//
// collectCycle and reportCycle are in milliseconds, as in KubeEdge's
// mapper-framework; zero takes the defaults in [Options]. Devices have no
// goroutine of their own: one scheduler per Manager keeps every running
// device's next due times and, at each step (at most every 10 ms), reads
// all the properties due then with one wapper_read_many call per plugin
// (split into as many parallel calls as the plugin has instances; a
// plugin without wapper_read_many reads device by device, with one batch
// call or one call per property, whichever has been faster per property
// for that plugin). Each device keeps its own cycles: a device's
// properties that share a collect cycle are read together, its first
// reads are spread over the cycle, and its state is asked and its twins
// reported in the same steps as its reads. A read waits for a free plugin
// instance at most [Options.ReadWait] to twice that; when the pool stays
// busy longer, or the device's previous read still runs when the next is
// due, the reading is skipped (wapper_reads_skipped_total), not queued,
// so a saturated plugin slows its readings down instead of piling up
// work. Plugins that poll (wapper_poll asks to be called again) are also
// polled, and the readings they push are handled like collected ones.
// Handing a reading to the twins and to subscribers that filter it out
// allocates nothing.
package devices
