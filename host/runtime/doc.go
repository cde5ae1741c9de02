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
// devices run on different instances of the pool. Each device has a home
// instance that holds its description, so a plugin keeps one copy of each
// device; its calls queue for that instance, and move the device to
// another only when it stays busy (a slow device) or restarts. The pool
// starts with one instance and adds more, up to limits.instances, when
// calls queue. Every guest call runs under the plugin's call timeout with
// WithCloseOnContextDone, so a guest that loops is stopped. After a trap,
// a timeout, a proc_exit, a panic reported by the SDK or a malformed
// result, the instance is thrown away; a new one is made after an
// exponential backoff and given the devices it served, while the other
// instances keep serving. See [Plugin] for the parts and the lock order.
//
// Linear memory lives outside the Go heap on Linux (linmem_linux.go): it
// is reserved once and grows in place, so memory.grow copies nothing and
// the host pays only for the pages a guest touches.
package runtime
