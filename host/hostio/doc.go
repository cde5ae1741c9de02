// Package hostio is the device I/O behind the plugin ABI's host functions
// (abi/SPEC.md §6.4 to §6.6): TCP, UDP and TLS sockets, serial ports, GPIO
// lines and secrets, each opened only when the plugin's MapperPlugin grants
// allow it.
//
// A [Table] holds the open handles of one plugin instance. It is not safe
// for concurrent use: an instance makes one host call at a time. Every
// operation takes a timeout, which [Timeout] derives from the guest's
// timeout_ms and the deadline of the export call in progress, and every
// failure is an *abi.Error whose code the host function returns negated.
// A refusal by the grants has code abi.ErrDenied and is a [*DeniedError].
//
// GPIO lines come from periph's gpioreg registry. Real chips are found by
// periph's gpioioctl driver the first time a line is opened; tests register
// gpiotest pins in gpioreg instead.
package hostio
