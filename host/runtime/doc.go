// Package runtime runs wapper mapper plugins in wazero under the sandbox
// rules of DESIGN.md §5 and the ABI of abi/SPEC.md.
//
// An [Engine] owns the on-disk compilation cache shared by every plugin.
// [Check] validates a module without running a device: marker, exports and
// their signatures, imports the host can satisfy, and a trial
// instantiation. [Engine.Load] turns a module into a [Plugin]: a pool of
// instances, each created from the cached compiled module with minimal
// WASI and the host functions of module "wapper".
//
// Concurrency: calls for one device are serialised; calls for different
// devices run on different instances of the pool. A device prefers the
// instance that served it last. Every guest call runs under the plugin's
// call timeout with WithCloseOnContextDone, so a guest that loops is
// stopped. After a trap, a timeout, a proc_exit, a panic reported by the
// SDK or a malformed result, the instance is thrown away; a supervisor makes
// a new one after an exponential backoff and re-adds the devices it served,
// while the other instances keep serving.
package runtime
