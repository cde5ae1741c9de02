package abi

// Major is the ABI major version. A module declares it by exporting the
// marker function named by Marker.
const Major = 1

// Minor is the newest ABI minor version this code speaks. A plugin's marker
// returns the minor it was built against; the host accepts any minor and
// provides every import of every minor up to its own. Minor 1 added the
// optional export ExportReadMany.
const Minor = 1

// ImportModule is the wasm module name of every host function.
const ImportModule = "wapper"

// Names of the functions a plugin exports.
const (
	ExportMarker       = "wapper_abi_v1"        // () -> i32 minor
	ExportAlloc        = "wapper_alloc"         // (size i32) -> i32 ptr
	ExportFree         = "wapper_free"          // (ptr i32)
	ExportInit         = "wapper_init"          // (cfg_ptr, cfg_len i32) -> i64 result
	ExportDeviceAdd    = "wapper_device_add"    // (dev, desc_ptr, desc_len i32) -> i64 result
	ExportDeviceUpdate = "wapper_device_update" // (dev, desc_ptr, desc_len i32) -> i64 result
	ExportDeviceRemove = "wapper_device_remove" // (dev i32) -> i64 result
	ExportRead         = "wapper_read"          // (dev, prop i32) -> i64 result
	ExportWrite        = "wapper_write"         // (dev, prop, val_ptr, val_len i32) -> i64 result
	ExportState        = "wapper_device_state"  // (dev i32) -> i64 result

	// Optional exports.
	ExportReadBatch = "wapper_read_batch"  // (dev, handles_ptr, count i32) -> i64 result
	ExportMethod    = "wapper_call_method" // (dev, req_ptr, req_len i32) -> i64 result
	ExportPoll      = "wapper_poll"        // (dev, budget_ms i32) -> i64 result
	// ExportReadMany reads properties of many devices in one call (minor 1).
	ExportReadMany = "wapper_read_many" // (reqs_ptr, count i32) -> i64 result

	// ExportInitialize is the WASI reactor initialiser. The host calls it
	// once, before anything else, when the module exports it (Go's
	// -buildmode=c-shared does).
	ExportInitialize = "_initialize"
)

// Marker is the name of the ABI version marker export.
const Marker = ExportMarker

// Names of the functions the host provides in module ImportModule.
const (
	ImportLog      = "log"       // (level, ptr, len i32)
	ImportClock    = "clock_ns"  // (clock i32) -> i64
	ImportKVGet    = "kv_get"    // (key_ptr, key_len, dst_ptr, dst_cap i32) -> i32
	ImportKVSet    = "kv_set"    // (key_ptr, key_len, val_ptr, val_len i32) -> i32
	ImportKVDelete = "kv_delete" // (key_ptr, key_len i32) -> i32
	ImportReport   = "report"    // (dev, prop, val_ptr, val_len i32) -> i32

	// ImportSecretGet reads one key of a secret granted to the plugin;
	// ref is "NAME/KEY".
	ImportSecretGet = "secret_get" // (ref_ptr, ref_len, dst_ptr, dst_cap i32) -> i32 n

	// Device I/O. Every call takes a timeout in milliseconds and returns a
	// negated Code on failure; handles are small positive integers private
	// to the instance.
	ImportSockOpen     = "sock_open"      // (kind, addr_ptr, addr_len, timeout_ms i32) -> i32 handle
	ImportSerialOpen   = "serial_open"    // (path_ptr, path_len, baud, data_bits, parity, stop_bits, timeout_ms i32) -> i32 handle
	ImportIORead       = "io_read"        // (handle, dst_ptr, dst_cap, timeout_ms i32) -> i32 n
	ImportIOWrite      = "io_write"       // (handle, src_ptr, src_len, timeout_ms i32) -> i32 n
	ImportIOClose      = "io_close"       // (handle i32) -> i32
	ImportGPIOOpen     = "gpio_open"      // (name_ptr, name_len, mode, timeout_ms i32) -> i32 handle
	ImportGPIORead     = "gpio_read"      // (handle i32) -> i32 level
	ImportGPIOWrite    = "gpio_write"     // (handle, level i32) -> i32
	ImportGPIOWaitEdge = "gpio_wait_edge" // (handle, edge, timeout_ms i32) -> i32 level

	// Datagram sockets: unconnected UDP, for broadcast, multicast and
	// many peers.
	ImportDgramOpen = "dgram_open" // (addr_ptr, addr_len i32) -> i32 handle
	ImportDgramSend = "dgram_send" // (handle, addr_ptr, addr_len, src_ptr, src_len, timeout_ms i32) -> i32 n
	ImportDgramRecv = "dgram_recv" // (handle, dst_ptr, dst_cap, from_ptr, from_cap, timeout_ms i32) -> i32 n
)

// Socket kinds for ImportSockOpen.
const (
	SockTCP = 0
	SockUDP = 1
	// SockTLS is a TLS stream over TCP: the host makes the handshake,
	// checks the server's certificate, and hands the plugin the plaintext.
	SockTLS = 2
)

// Serial parity for ImportSerialOpen.
const (
	ParityNone = 0
	ParityOdd  = 1
	ParityEven = 2
)

// GPIO modes for ImportGPIOOpen.
const (
	GPIOInput         = 0
	GPIOOutput        = 1
	GPIOInputPullUp   = 2
	GPIOInputPullDown = 3
)

// GPIO edges for ImportGPIOWaitEdge.
const (
	EdgeRising  = 1
	EdgeFalling = 2
	EdgeBoth    = 3
)

// MaxHandles bounds the open I/O handles of one instance.
const MaxHandles = 64

// Clock identifiers for ImportClock.
const (
	ClockRealtime  = 0 // nanoseconds since the Unix epoch
	ClockMonotonic = 1 // nanoseconds since an arbitrary point, never going back
)

// Log levels for ImportLog; they match log/slog's levels divided by four.
const (
	LogDebug = -1
	LogInfo  = 0
	LogWarn  = 1
	LogError = 2
)

// Limits of ABI v1. The host enforces them; SDKs respect them.
const (
	// MaxMemoryBytes bounds a plugin's linear memory. Keeping it below 2 GiB
	// keeps every guest pointer below 1<<31, so a packed result is never
	// negative.
	MaxMemoryBytes = 1 << 30
	// MaxMessage bounds every buffer crossing the boundary: a device
	// description, a value, a result, a method request.
	MaxMessage = 4 << 20
	// MaxLogMessage is where the host cuts a log line.
	MaxLogMessage = 8 << 10
	// MaxKVKey and MaxKVValue bound a kv entry; MaxKVBytes bounds a plugin's
	// whole store.
	MaxKVKey   = 512
	MaxKVValue = 1 << 20
	MaxKVBytes = 64 << 20
	// MaxSecret bounds the value of one secret key.
	MaxSecret = 64 << 10
	// MaxAddrText is the room dgram_recv needs for a sender's address:
	// the longest "[IPv6]:PORT" and a zero byte.
	MaxAddrText = 48
	// MaxBatch bounds the handles of one batch read, and the requests of
	// one wapper_read_many call.
	MaxBatch = 4096
)
