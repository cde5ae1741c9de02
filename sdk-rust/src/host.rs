//! Host functions (ABI §6), imported from wasm module `wapper`.
//!
//! In wasm these call the host. Compiled natively (`cargo test` on your
//! machine) the same functions run in-process so that plugin logic can be
//! unit-tested: logs go to stderr, the kv store is a per-thread map,
//! reports are recorded for [`native::take_reports`], secrets come from
//! [`native::set_secret`] or the folder `WAPPER_SECRETS_DIR`, sockets
//! (datagram sockets included) are real `std::net` sockets without grants,
//! and TLS sockets, serial ports and GPIO lines answer
//! [`Code::UNSUPPORTED`].

use crate::value::Value;
use crate::{Code, Error, Result};

/// The deepest a log line goes; the host cuts longer lines (§6.1).
pub const MAX_LOG_LINE: usize = 8 << 10;

/// A log level (§6.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum Level {
    /// Debug.
    Debug = -1,
    /// Info.
    Info = 0,
    /// Warn.
    Warn = 1,
    /// Error.
    Error = 2,
}

/// Writes a line to the host log, tagged there with the plugin, instance
/// and device of the current call. See also the macros [`info!`](crate::info)
/// and friends.
pub fn log(level: Level, msg: &str) {
    let mut end = msg.len().min(MAX_LOG_LINE);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    sys::log(level as i32, &msg[..end]);
}

/// A clock for [`clock_ns`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum Clock {
    /// Nanoseconds since the Unix epoch.
    Realtime = 0,
    /// Nanoseconds since an arbitrary point, never going back.
    Monotonic = 1,
}

/// Reads a clock, in nanoseconds.
pub fn clock_ns(clock: Clock) -> i64 {
    sys::clock_ns(clock as i32)
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    clock_ns(Clock::Realtime)
}

/// Monotonic milliseconds, for timeouts and ages.
pub fn monotonic_ms() -> i64 {
    clock_ns(Clock::Monotonic) / 1_000_000
}

/// Pushes a reading of property `prop` of device `dev` with the current
/// time (§6.2). Usually called as [`Property::report`](crate::Property::report).
pub fn report(dev: u32, prop: u32, v: &Value) -> Result<()> {
    let r = sys::report(dev, prop, &v.encode());
    if r < 0 {
        return Err(Error::from_host(r as i64, format!("report device {} property {}", dev, prop)));
    }
    Ok(())
}

/// Reads a key from the plugin's persistent store (§6.3); `None` when the
/// key is absent.
pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = sys::kv_get(key.as_bytes(), &mut buf);
        if n == -(Code::NOT_FOUND.0 as i32) {
            return Ok(None);
        }
        if n < 0 {
            return Err(Error::from_host(n as i64, format!("kv_get {:?}", key)));
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(Some(buf));
        }
        buf = vec![0u8; n];
    }
}

/// Stores a key in the plugin's persistent store (§6.3). Keys are at most
/// 512 bytes, values 1 MiB, the store 64 MiB: past that the error is
/// [`Code::TOO_LARGE`].
pub fn kv_set(key: &str, val: &[u8]) -> Result<()> {
    let r = sys::kv_set(key.as_bytes(), val);
    if r < 0 {
        return Err(Error::from_host(r as i64, format!("kv_set {:?} ({} bytes)", key, val.len())));
    }
    Ok(())
}

/// Removes a key from the plugin's persistent store; absent keys are fine.
pub fn kv_delete(key: &str) -> Result<()> {
    let r = sys::kv_delete(key.as_bytes());
    if r < 0 {
        return Err(Error::from_host(r as i64, format!("kv_delete {:?}", key)));
    }
    Ok(())
}

/// The largest value of one secret key (§10); [`secret_get`] fails with
/// [`Code::TOO_LARGE`] above it.
pub const MAX_SECRET: usize = 64 << 10;

/// Reads one key of a secret (§6.6), `reference` being `NAME/KEY` (such as
/// `plc-login/password`): a Kubernetes Secret delivered by wapper-cloud,
/// or a file under the host's `--secrets-dir`. The MapperPlugin's
/// `grants.secrets` must name the secret, or the error has code
/// [`Code::DENIED`]; a secret or key that does not exist is
/// [`Code::NOT_FOUND`], a malformed reference [`Code::INVALID`]. Keep the
/// value in memory only: never log, report or store it.
pub fn secret_get(reference: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = sys::secret_get(reference.as_bytes(), &mut buf);
        if n < 0 {
            return Err(Error::from_host(n as i64, format!("read secret {}", reference)));
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        clear(&mut buf);
        buf = vec![0u8; n];
    }
}

/// Overwrites a buffer that held (part of) a secret before it is dropped.
fn clear(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // A volatile write, so that the compiler keeps it although the
        // buffer is dropped next.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

/// Socket kinds for [`sock_open`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum SockKind {
    /// TCP.
    Tcp = 0,
    /// UDP (each read returns one datagram).
    Udp = 1,
    /// TLS over TCP: the host makes the handshake, checks the server's
    /// certificate, and hands the plugin the plaintext (§6.4).
    Tls = 2,
}

/// Serial parity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum Parity {
    /// None.
    None = 0,
    /// Odd.
    Odd = 1,
    /// Even.
    Even = 2,
}

/// Serial line settings for [`serial_open`]; the default is 9600 8N1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SerialConfig {
    /// Baud rate.
    pub baud: u32,
    /// Data bits, 5–8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1–2.
    pub stop_bits: u8,
}

impl Default for SerialConfig {
    fn default() -> Self {
        SerialConfig {
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }
}

/// GPIO line modes for [`gpio_open`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum GpioMode {
    /// Input.
    Input = 0,
    /// Output.
    Output = 1,
    /// Input with pull-up.
    InputPullUp = 2,
    /// Input with pull-down.
    InputPullDown = 3,
}

/// GPIO edges for [`gpio_wait_edge`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum Edge {
    /// Rising.
    Rising = 1,
    /// Falling.
    Falling = 2,
    /// Both.
    Both = 3,
}

fn io(r: i32, what: impl FnOnce() -> String) -> Result<i32> {
    if r < 0 {
        Err(Error::from_host(r as i64, what()))
    } else {
        Ok(r)
    }
}

/// Opens a socket to `addr` (`host:port`) and returns its handle (§6.4).
/// `timeout_ms` 0 is the host default of 5 s. Prefer [`Conn`], which closes
/// itself.
pub fn sock_open(kind: SockKind, addr: &str, timeout_ms: u32) -> Result<i32> {
    let k = match kind {
        SockKind::Tcp => "tcp",
        SockKind::Udp => "udp",
        SockKind::Tls => "tls",
    };
    io(sys::sock_open(kind as i32, addr.as_bytes(), timeout_ms), || format!("sock_open {} {}", k, addr))
}

/// Opens a serial port and returns its handle (§6.4).
pub fn serial_open(path: &str, cfg: &SerialConfig, timeout_ms: u32) -> Result<i32> {
    io(
        sys::serial_open(path.as_bytes(), cfg.baud, cfg.data_bits as u32, cfg.parity as i32, cfg.stop_bits as u32, timeout_ms),
        || format!("serial_open {}", path),
    )
}

/// Reads at least one byte into `dst` (a UDP read returns one datagram).
/// The end of a stream is [`Code::CLOSED`].
pub fn io_read(handle: i32, dst: &mut [u8], timeout_ms: u32) -> Result<usize> {
    io(sys::io_read(handle, dst, timeout_ms), || format!("io_read handle {}", handle)).map(|n| n as usize)
}

/// Writes all of `src`.
pub fn io_write(handle: i32, src: &[u8], timeout_ms: u32) -> Result<usize> {
    io(sys::io_write(handle, src, timeout_ms), || format!("io_write handle {}", handle)).map(|n| n as usize)
}

/// Closes a socket or serial handle.
pub fn io_close(handle: i32) -> Result<()> {
    io(sys::io_close(handle), || format!("io_close handle {}", handle)).map(|_| ())
}

/// Opens a GPIO line by name (`GPIO17`) and returns its handle.
pub fn gpio_open(name: &str, mode: GpioMode, timeout_ms: u32) -> Result<i32> {
    io(sys::gpio_open(name.as_bytes(), mode as i32, timeout_ms), || format!("gpio_open {}", name))
}

/// Reads a GPIO level.
pub fn gpio_read(handle: i32) -> Result<bool> {
    io(sys::gpio_read(handle), || format!("gpio_read handle {}", handle)).map(|l| l != 0)
}

/// Sets a GPIO level.
pub fn gpio_write(handle: i32, level: bool) -> Result<()> {
    io(sys::gpio_write(handle, level as i32), || format!("gpio_write handle {}", handle)).map(|_| ())
}

/// Waits for an edge and returns the level after it, or `None` when no
/// edge came within `timeout_ms`.
pub fn gpio_wait_edge(handle: i32, edge: Edge, timeout_ms: u32) -> Result<Option<bool>> {
    let r = sys::gpio_wait_edge(handle, edge as i32, timeout_ms);
    if r == -(Code::TIMEOUT.0 as i32) {
        return Ok(None);
    }
    io(r, || format!("gpio_wait_edge handle {}", handle)).map(|l| Some(l != 0))
}

/// The room [`dgram_recv`] needs for a sender's address: `IP:PORT` or
/// `[IPv6]:PORT`, and a zero byte (§6.4).
pub const MAX_ADDR_TEXT: usize = 48;

/// Binds an unconnected UDP socket to the local address `addr` and returns
/// its handle (§6.4): `:0` (an ephemeral port on every address, which
/// needs no grant), a fixed port or address (`:162`, which
/// `grants.listen` must cover, else [`Code::DENIED`]), or a multicast
/// group and port (`239.255.255.250:3702`, which joins the group;
/// `grants.listen` must cover it too). Prefer [`PacketConn`], which closes
/// itself.
pub fn dgram_open(addr: &str) -> Result<i32> {
    io(sys::dgram_open(addr.as_bytes()), || format!("bind udp://{}", addr))
}

/// Sends `src` as one datagram from datagram socket `handle` to `addr`
/// (`host:port`), which the `udp` entries of `grants.network` must cover,
/// else [`Code::DENIED`]; broadcast and multicast addresses may be sent
/// to. Returns the bytes sent.
pub fn dgram_send(handle: i32, addr: &str, src: &[u8], timeout_ms: u32) -> Result<usize> {
    io(sys::dgram_send(handle, addr.as_bytes(), src, timeout_ms), || format!("send to udp://{}", addr)).map(|n| n as usize)
}

/// Receives the next datagram on datagram socket `handle` into `dst` (cut
/// to its length, and to [`MAX_MESSAGE`](crate::MAX_MESSAGE)), waiting at
/// most `timeout_ms` (0: the host default of 5 s), and returns its length
/// and its sender as `IP:PORT` (`[IPv6]:PORT`). The host drops datagrams
/// whose sender the `udp` entries of `grants.network` do not cover; no
/// datagram from a granted sender in time is [`Code::TIMEOUT`].
pub fn dgram_recv(handle: i32, dst: &mut [u8], timeout_ms: u32) -> Result<(usize, String)> {
    recv(handle, dst, timeout_ms, || format!("receive on handle {}", handle))
}

fn recv(handle: i32, dst: &mut [u8], timeout_ms: u32, what: impl FnOnce() -> String) -> Result<(usize, String)> {
    let end = dst.len().min(crate::MAX_MESSAGE);
    let mut from = [0u8; MAX_ADDR_TEXT];
    let n = io(sys::dgram_recv(handle, &mut dst[..end], &mut from, timeout_ms), what)?;
    let len = from.iter().position(|&b| b == 0).unwrap_or(from.len());
    match std::str::from_utf8(&from[..len]) {
        Ok(s) if !s.is_empty() => Ok((n as usize, s.to_string())),
        _ => Err(Error::new(Code::INTERNAL, format!("the host gave a bad sender address {:?}", String::from_utf8_lossy(&from[..len])))),
    }
}

/// A socket or serial handle that closes itself when dropped.
///
/// [`Conn::read_line`] reads text lines through a buffer of the
/// connection's own; [`Conn::read`] returns what that buffer holds before
/// it reads from the host again, so the two can be mixed.
#[derive(Debug)]
pub struct Conn {
    handle: i32,
    /// Bytes read from the host and not yet returned.
    buf: Vec<u8>,
    /// A line longer than `read_line`'s limit is being skipped: drop bytes
    /// up to the next line end.
    skipping: bool,
}

/// How many bytes [`Conn::read_line`] asks the host for at a time.
const LINE_CHUNK: usize = 512;

impl Conn {
    fn new(handle: i32) -> Conn {
        Conn {
            handle,
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// Opens a TCP connection to `host:port`.
    pub fn tcp(addr: &str, timeout_ms: u32) -> Result<Conn> {
        sock_open(SockKind::Tcp, addr, timeout_ms).map(Conn::new)
    }

    /// Opens a UDP socket connected to `host:port`.
    pub fn udp(addr: &str, timeout_ms: u32) -> Result<Conn> {
        sock_open(SockKind::Udp, addr, timeout_ms).map(Conn::new)
    }

    /// Opens a TLS connection to `host:port`: the host makes the TLS
    /// handshake, checks the server's certificate (against the CA of the
    /// MapperPlugin's `grants.tls` entry for the address, or the host's
    /// system CAs), presents the entry's client certificate, and the
    /// `Conn` carries the plaintext; the plugin never sees a key. The
    /// address needs a `tls://` entry in `grants.network` (a `tcp://` one
    /// does not do). A certificate the host does not trust fails with
    /// [`Code::UNAVAILABLE`] and the reason in the host's log and the
    /// device status.
    ///
    /// Natively (not in wasm) the SDK has no TLS: this fails with
    /// [`Code::UNSUPPORTED`].
    pub fn tls(addr: &str, timeout_ms: u32) -> Result<Conn> {
        sock_open(SockKind::Tls, addr, timeout_ms).map(Conn::new)
    }

    /// Opens a serial port.
    pub fn serial(path: &str, cfg: &SerialConfig, timeout_ms: u32) -> Result<Conn> {
        serial_open(path, cfg, timeout_ms).map(Conn::new)
    }

    /// Reads at least one byte into `dst`: first what [`Conn::read_line`]
    /// read ahead, else from the host, waiting at most `timeout_ms` (0:
    /// the host default of 5 s).
    pub fn read(&mut self, dst: &mut [u8], timeout_ms: u32) -> Result<usize> {
        if !self.buf.is_empty() {
            let n = dst.len().min(self.buf.len());
            dst[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            return Ok(n);
        }
        io_read(self.handle, dst, timeout_ms)
    }

    /// Reads one line of text: the bytes up to the next `\n`, without it
    /// and without a `\r` before it. What arrived after the line stays
    /// buffered for the next `read_line` or [`Conn::read`].
    ///
    /// `timeout_ms` bounds the whole line, as it bounds one
    /// [`Conn::read`]; 0 lets each read from the host wait the host default
    /// (5 s). The host ends every read before the deadline of the call in
    /// progress, so a line never holds a call past it.
    ///
    /// Errors:
    ///
    /// - [`Code::TIMEOUT`] when no whole line came in time. The bytes of
    ///   the line so far stay buffered: the next call goes on with them.
    /// - [`Code::TOO_LARGE`] when the line is longer than `max_len` bytes
    ///   (without its line end). The line is dropped, also the part of it
    ///   that has yet to arrive: the next call returns the line after it.
    /// - [`Code::INVALID`] when the line is not UTF-8; it is dropped.
    /// - [`Code::CLOSED`] at the end of the stream, after a last line
    ///   without `\n`, if any, was returned.
    /// - any other error of [`io_read`].
    pub fn read_line(&mut self, max_len: usize, timeout_ms: u32) -> Result<String> {
        let deadline = if timeout_ms == 0 {
            None
        } else {
            Some(monotonic_ms() + timeout_ms as i64)
        };
        let mut scanned = 0; // bytes of buf known to hold no '\n'
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if std::mem::replace(&mut self.skipping, false) {
                    scanned = 0;
                    continue; // the rest of a line that was too long
                }
                let mut line = &line[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > max_len {
                    return Err(Error::new(
                        Code::TOO_LARGE,
                        format!("read_line handle {}: line of {} bytes exceeds {}", self.handle, line.len(), max_len),
                    ));
                }
                return String::from_utf8(line.to_vec()).map_err(|_| {
                    Error::invalid(format!("read_line handle {}: line of {} bytes is not UTF-8", self.handle, line.len()))
                });
            }
            scanned = self.buf.len();
            if self.skipping {
                self.buf.clear();
                scanned = 0;
            } else if self.buf.len() > max_len.saturating_add(1) {
                // Even a "\r\n" next would not make a line of max_len.
                self.buf.clear();
                self.skipping = true;
                return Err(Error::new(
                    Code::TOO_LARGE,
                    format!("read_line handle {}: line exceeds {} bytes", self.handle, max_len),
                ));
            }
            let wait = match deadline {
                None => 0,
                Some(d) => {
                    let left = d - monotonic_ms();
                    if left <= 0 {
                        return Err(Error::new(
                            Code::TIMEOUT,
                            format!("read_line handle {}: no whole line within {} ms", self.handle, timeout_ms),
                        ));
                    }
                    left.min(u32::MAX as i64) as u32
                }
            };
            let old = self.buf.len();
            self.buf.resize(old + LINE_CHUNK, 0);
            let r = io_read(self.handle, &mut self.buf[old..], wait);
            self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(_) => {}
                Err(e) if e.code == Code::CLOSED && !self.buf.is_empty() && !self.skipping => {
                    let mut line = std::mem::take(&mut self.buf);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.len() > max_len {
                        return Err(Error::new(
                            Code::TOO_LARGE,
                            format!("read_line handle {}: last line of {} bytes exceeds {}", self.handle, line.len(), max_len),
                        ));
                    }
                    return String::from_utf8(line).map_err(|e| {
                        Error::invalid(format!("read_line handle {}: last line of {} bytes is not UTF-8", self.handle, e.as_bytes().len()))
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `src`.
    pub fn write(&mut self, src: &[u8], timeout_ms: u32) -> Result<usize> {
        io_write(self.handle, src, timeout_ms)
    }

    /// The raw handle.
    pub fn handle(&self) -> i32 {
        self.handle
    }

    /// Closes the handle now, reporting any error. Buffered bytes are
    /// dropped.
    pub fn close(mut self) -> Result<()> {
        let h = self.handle;
        drop(std::mem::take(&mut self.buf));
        std::mem::forget(self);
        io_close(h)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = sys::io_close(self.handle);
    }
}

/// An unconnected UDP socket through the host (§6.4, the `dgram_*` calls)
/// that closes itself when dropped: it sends datagrams to any address the
/// `udp` entries of the MapperPlugin's `grants.network` cover, broadcast
/// and multicast addresses included, and receives those whose sender they
/// cover (the host drops the others). For discovery protocols and devices
/// that push datagrams, such as SNMP traps.
///
/// Natively (not in wasm) it is a `std::net::UdpSocket` with no grants.
#[derive(Debug)]
pub struct PacketConn {
    handle: i32,
    local: String,
}

impl PacketConn {
    /// Binds a datagram socket to the local address `addr`: `:0` (an
    /// ephemeral port on every address, which needs no grant), a fixed
    /// port or address (`:162`, which `grants.listen` must cover), or a
    /// multicast group and port (`239.255.255.250:3702`, which joins the
    /// group; `grants.listen` must cover it too). An address the grants
    /// do not cover fails with [`Code::DENIED`], a malformed one (a host
    /// name included) with [`Code::INVALID`].
    pub fn open(addr: &str) -> Result<PacketConn> {
        dgram_open(addr).map(|handle| PacketConn {
            handle,
            local: addr.to_string(),
        })
    }

    /// Sends `data` as one datagram to `addr` (`host:port`), waiting at
    /// most `timeout_ms` (0: the host default of 5 s), and returns the
    /// bytes sent. An address the `udp` entries of `grants.network` do not
    /// cover fails with [`Code::DENIED`].
    pub fn send_to(&self, addr: &str, data: &[u8], timeout_ms: u32) -> Result<usize> {
        dgram_send(self.handle, addr, data, timeout_ms)
    }

    /// Receives one datagram into `buf` (cut to its length) and returns
    /// its length and its sender, `IP:PORT` (`[IPv6]:PORT`), waiting at
    /// most `timeout_ms` (0: the host default of 5 s). Datagrams from
    /// senders the grants do not cover never arrive; no datagram in time
    /// is [`Code::TIMEOUT`], which is routine for a datagram socket and
    /// does not become the device's cause in the host.
    pub fn recv_from(&self, buf: &mut [u8], timeout_ms: u32) -> Result<(usize, String)> {
        recv(self.handle, buf, timeout_ms, || format!("receive on udp://{}", self.local))
    }

    /// The address the socket was bound to, as given to [`PacketConn::open`].
    pub fn local_addr(&self) -> &str {
        &self.local
    }

    /// The raw handle.
    pub fn handle(&self) -> i32 {
        self.handle
    }

    /// Closes the socket now, reporting any error.
    pub fn close(self) -> Result<()> {
        let h = self.handle;
        std::mem::forget(self);
        io_close(h)
    }
}

impl Drop for PacketConn {
    fn drop(&mut self) {
        let _ = sys::io_close(self.handle);
    }
}

/// A GPIO line. Host GPIO handles are closed with the instance.
#[derive(Debug)]
pub struct Gpio {
    handle: i32,
}

impl Gpio {
    /// Opens a line by name.
    pub fn open(name: &str, mode: GpioMode, timeout_ms: u32) -> Result<Gpio> {
        gpio_open(name, mode, timeout_ms).map(|handle| Gpio { handle })
    }

    /// Reads the level.
    pub fn read(&self) -> Result<bool> {
        gpio_read(self.handle)
    }

    /// Sets the level.
    pub fn write(&self, level: bool) -> Result<()> {
        gpio_write(self.handle, level)
    }

    /// Waits for an edge; `None` when none came in time.
    pub fn wait_edge(&self, edge: Edge, timeout_ms: u32) -> Result<Option<bool>> {
        gpio_wait_edge(self.handle, edge, timeout_ms)
    }

    /// The raw handle.
    pub fn handle(&self) -> i32 {
        self.handle
    }
}

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "wapper")]
    extern "C" {
        #[link_name = "log"]
        fn wapper_log(level: i32, ptr: *const u8, len: u32);
        #[link_name = "clock_ns"]
        fn wapper_clock_ns(clock: i32) -> i64;
        #[link_name = "report"]
        fn wapper_report(dev: u32, prop: u32, ptr: *const u8, len: u32) -> i32;
        #[link_name = "kv_get"]
        fn wapper_kv_get(kp: *const u8, kl: u32, dp: *mut u8, dcap: u32) -> i32;
        #[link_name = "kv_set"]
        fn wapper_kv_set(kp: *const u8, kl: u32, vp: *const u8, vl: u32) -> i32;
        #[link_name = "kv_delete"]
        fn wapper_kv_delete(kp: *const u8, kl: u32) -> i32;
        #[link_name = "secret_get"]
        fn wapper_secret_get(rp: *const u8, rl: u32, dp: *mut u8, dcap: u32) -> i32;
        #[link_name = "sock_open"]
        fn wapper_sock_open(kind: i32, ap: *const u8, al: u32, timeout_ms: u32) -> i32;
        #[link_name = "serial_open"]
        fn wapper_serial_open(pp: *const u8, pl: u32, baud: u32, data_bits: u32, parity: i32, stop_bits: u32, timeout_ms: u32) -> i32;
        #[link_name = "io_read"]
        fn wapper_io_read(h: i32, dp: *mut u8, dcap: u32, timeout_ms: u32) -> i32;
        #[link_name = "io_write"]
        fn wapper_io_write(h: i32, sp: *const u8, sl: u32, timeout_ms: u32) -> i32;
        #[link_name = "io_close"]
        fn wapper_io_close(h: i32) -> i32;
        #[link_name = "gpio_open"]
        fn wapper_gpio_open(np: *const u8, nl: u32, mode: i32, timeout_ms: u32) -> i32;
        #[link_name = "gpio_read"]
        fn wapper_gpio_read(h: i32) -> i32;
        #[link_name = "gpio_write"]
        fn wapper_gpio_write(h: i32, level: i32) -> i32;
        #[link_name = "gpio_wait_edge"]
        fn wapper_gpio_wait_edge(h: i32, edge: i32, timeout_ms: u32) -> i32;
        #[link_name = "dgram_open"]
        fn wapper_dgram_open(ap: *const u8, al: u32) -> i32;
        #[link_name = "dgram_send"]
        fn wapper_dgram_send(h: i32, ap: *const u8, al: u32, sp: *const u8, sl: u32, timeout_ms: u32) -> i32;
        #[link_name = "dgram_recv"]
        fn wapper_dgram_recv(h: i32, dp: *mut u8, dcap: u32, fp: *mut u8, fcap: u32, timeout_ms: u32) -> i32;
    }

    // Safety: every pointer comes from a live slice whose length is passed
    // alongside; the host writes at most `dcap` bytes into `dst`.
    pub fn log(level: i32, msg: &str) {
        unsafe { wapper_log(level, msg.as_ptr(), msg.len() as u32) }
    }
    pub fn clock_ns(clock: i32) -> i64 {
        unsafe { wapper_clock_ns(clock) }
    }
    pub fn report(dev: u32, prop: u32, v: &[u8]) -> i32 {
        unsafe { wapper_report(dev, prop, v.as_ptr(), v.len() as u32) }
    }
    pub fn kv_get(k: &[u8], dst: &mut [u8]) -> i32 {
        unsafe { wapper_kv_get(k.as_ptr(), k.len() as u32, dst.as_mut_ptr(), dst.len() as u32) }
    }
    pub fn kv_set(k: &[u8], v: &[u8]) -> i32 {
        unsafe { wapper_kv_set(k.as_ptr(), k.len() as u32, v.as_ptr(), v.len() as u32) }
    }
    pub fn kv_delete(k: &[u8]) -> i32 {
        unsafe { wapper_kv_delete(k.as_ptr(), k.len() as u32) }
    }
    pub fn secret_get(r: &[u8], dst: &mut [u8]) -> i32 {
        unsafe { wapper_secret_get(r.as_ptr(), r.len() as u32, dst.as_mut_ptr(), dst.len() as u32) }
    }
    pub fn sock_open(kind: i32, addr: &[u8], timeout_ms: u32) -> i32 {
        unsafe { wapper_sock_open(kind, addr.as_ptr(), addr.len() as u32, timeout_ms) }
    }
    pub fn serial_open(path: &[u8], baud: u32, data_bits: u32, parity: i32, stop_bits: u32, timeout_ms: u32) -> i32 {
        unsafe { wapper_serial_open(path.as_ptr(), path.len() as u32, baud, data_bits, parity, stop_bits, timeout_ms) }
    }
    pub fn io_read(h: i32, dst: &mut [u8], timeout_ms: u32) -> i32 {
        unsafe { wapper_io_read(h, dst.as_mut_ptr(), dst.len() as u32, timeout_ms) }
    }
    pub fn io_write(h: i32, src: &[u8], timeout_ms: u32) -> i32 {
        unsafe { wapper_io_write(h, src.as_ptr(), src.len() as u32, timeout_ms) }
    }
    pub fn io_close(h: i32) -> i32 {
        unsafe { wapper_io_close(h) }
    }
    pub fn gpio_open(name: &[u8], mode: i32, timeout_ms: u32) -> i32 {
        unsafe { wapper_gpio_open(name.as_ptr(), name.len() as u32, mode, timeout_ms) }
    }
    pub fn gpio_read(h: i32) -> i32 {
        unsafe { wapper_gpio_read(h) }
    }
    pub fn gpio_write(h: i32, level: i32) -> i32 {
        unsafe { wapper_gpio_write(h, level) }
    }
    pub fn gpio_wait_edge(h: i32, edge: i32, timeout_ms: u32) -> i32 {
        unsafe { wapper_gpio_wait_edge(h, edge, timeout_ms) }
    }
    pub fn dgram_open(addr: &[u8]) -> i32 {
        unsafe { wapper_dgram_open(addr.as_ptr(), addr.len() as u32) }
    }
    pub fn dgram_send(h: i32, addr: &[u8], src: &[u8], timeout_ms: u32) -> i32 {
        unsafe { wapper_dgram_send(h, addr.as_ptr(), addr.len() as u32, src.as_ptr(), src.len() as u32, timeout_ms) }
    }
    pub fn dgram_recv(h: i32, dst: &mut [u8], from: &mut [u8], timeout_ms: u32) -> i32 {
        unsafe { wapper_dgram_recv(h, dst.as_mut_ptr(), dst.len() as u32, from.as_mut_ptr(), from.len() as u32, timeout_ms) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    use super::native::{with, Io};
    use crate::Code;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    fn neg(c: Code) -> i32 {
        -(c.0 as i32)
    }

    fn timeout(ms: u32) -> Duration {
        Duration::from_millis(if ms == 0 { 5000 } else { ms as u64 })
    }

    fn io_err(e: &std::io::Error) -> i32 {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => neg(Code::TIMEOUT),
            ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::AddrNotAvailable => neg(Code::UNAVAILABLE),
            ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => neg(Code::CLOSED),
            _ => neg(Code::IO),
        }
    }

    pub fn log(level: i32, msg: &str) {
        let l = ["DEBUG", "INFO", "WARN", "ERROR"].get((level + 1) as usize).unwrap_or(&"LOG");
        eprintln!("wapper {}: {}", l, msg);
    }

    pub fn clock_ns(clock: i32) -> i64 {
        thread_local!(static START: Instant = Instant::now());
        match clock {
            0 => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0),
            1 => START.with(|s| s.elapsed().as_nanos() as i64 + 1),
            _ => neg(Code::INVALID) as i64,
        }
    }

    pub fn report(dev: u32, prop: u32, v: &[u8]) -> i32 {
        match crate::Value::decode(v) {
            Ok(v) => with(|n| {
                n.reports.push((dev, prop, v));
                0
            }),
            Err(_) => neg(Code::INVALID),
        }
    }

    pub fn kv_get(k: &[u8], dst: &mut [u8]) -> i32 {
        with(|n| match n.kv.get(k) {
            None => neg(Code::NOT_FOUND),
            Some(v) => {
                if v.len() <= dst.len() {
                    dst[..v.len()].copy_from_slice(v);
                }
                v.len() as i32
            }
        })
    }

    pub fn kv_set(k: &[u8], v: &[u8]) -> i32 {
        if k.len() > 512 || v.len() > 1 << 20 {
            return neg(Code::TOO_LARGE);
        }
        with(|n| {
            n.kv.insert(k.to_vec(), v.to_vec());
            0
        })
    }

    pub fn kv_delete(k: &[u8]) -> i32 {
        with(|n| {
            n.kv.remove(k);
            0
        })
    }

    /// Natively there are no grants: a secret set with
    /// [`native::set_secret`](super::native::set_secret) on this thread, or
    /// else the file NAME/KEY under the folder in the environment variable
    /// `WAPPER_SECRETS_DIR`, the layout of the host's `--secrets-dir`.
    pub fn secret_get(r: &[u8], dst: &mut [u8]) -> i32 {
        let r = match std::str::from_utf8(r) {
            Ok(r) => r,
            Err(_) => return neg(Code::INVALID),
        };
        let (name, key) = match r.split_once('/') {
            Some((n, k)) if !n.is_empty() && !k.is_empty() && !k.contains('/') && n != ".." && k != ".." && n != "." && k != "." => (n, k),
            _ => return neg(Code::INVALID),
        };
        let v = match with(|n| n.secrets.get(r).cloned()) {
            Some(v) => v,
            None => match std::env::var_os("WAPPER_SECRETS_DIR") {
                Some(dir) if !dir.is_empty() => match std::fs::read(std::path::Path::new(&dir).join(name).join(key)) {
                    Ok(v) => v,
                    Err(_) => return neg(Code::NOT_FOUND),
                },
                _ => return neg(Code::NOT_FOUND),
            },
        };
        if v.len() > super::MAX_SECRET {
            return neg(Code::TOO_LARGE);
        }
        if v.len() <= dst.len() {
            dst[..v.len()].copy_from_slice(&v);
        }
        v.len() as i32
    }

    fn add(io: Io) -> i32 {
        with(|n| {
            if n.handles.len() >= 64 {
                return neg(Code::LIMIT);
            }
            n.next += 1;
            n.handles.insert(n.next, io);
            n.next
        })
    }

    pub fn sock_open(kind: i32, addr: &[u8], timeout_ms: u32) -> i32 {
        let addr = match std::str::from_utf8(addr) {
            Ok(a) => a,
            Err(_) => return neg(Code::INVALID),
        };
        let sa = match addr.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(sa)) => sa,
            Ok(None) => return neg(Code::UNAVAILABLE),
            Err(_) => return neg(Code::INVALID),
        };
        match kind {
            0 => match TcpStream::connect_timeout(&sa, timeout(timeout_ms)) {
                Ok(s) => add(Io::Tcp(s)),
                Err(e) => io_err(&e),
            },
            1 => {
                let bind = if sa.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                match UdpSocket::bind(bind).and_then(|u| u.connect(sa).map(|_| u)) {
                    Ok(u) => add(Io::Udp(u)),
                    Err(e) => io_err(&e),
                }
            }
            // No TLS without a TLS library, and the SDK has no dependencies.
            2 => neg(Code::UNSUPPORTED),
            _ => neg(Code::INVALID),
        }
    }

    pub fn serial_open(_: &[u8], _: u32, _: u32, _: i32, _: u32, _: u32) -> i32 {
        neg(Code::UNSUPPORTED)
    }

    pub fn io_read(h: i32, dst: &mut [u8], timeout_ms: u32) -> i32 {
        if dst.is_empty() {
            return neg(Code::INVALID);
        }
        with(|n| match n.handles.get_mut(&h) {
            None => neg(Code::NOT_FOUND),
            Some(Io::Tcp(s)) => match s.set_read_timeout(Some(timeout(timeout_ms))).and_then(|_| s.read(dst)) {
                Ok(0) => neg(Code::CLOSED),
                Ok(k) => k as i32,
                Err(e) => io_err(&e),
            },
            Some(Io::Udp(u)) => match u.set_read_timeout(Some(timeout(timeout_ms))).and_then(|_| u.recv(dst)) {
                Ok(k) => k as i32,
                Err(e) => io_err(&e),
            },
            Some(Io::Dgram(_)) => neg(Code::INVALID),
        })
    }

    pub fn io_write(h: i32, src: &[u8], timeout_ms: u32) -> i32 {
        with(|n| match n.handles.get_mut(&h) {
            None => neg(Code::NOT_FOUND),
            Some(Io::Tcp(s)) => match s.set_write_timeout(Some(timeout(timeout_ms))).and_then(|_| s.write_all(src)) {
                Ok(()) => src.len() as i32,
                Err(e) => io_err(&e),
            },
            Some(Io::Udp(u)) => match u.send(src) {
                Ok(k) => k as i32,
                Err(e) => io_err(&e),
            },
            Some(Io::Dgram(_)) => neg(Code::INVALID),
        })
    }

    pub fn io_close(h: i32) -> i32 {
        with(|n| match n.handles.remove(&h) {
            Some(_) => 0,
            None => neg(Code::NOT_FOUND),
        })
    }

    pub fn gpio_open(_: &[u8], _: i32, _: u32) -> i32 {
        neg(Code::UNSUPPORTED)
    }
    pub fn gpio_read(_: i32) -> i32 {
        neg(Code::NOT_FOUND)
    }
    pub fn gpio_write(_: i32, _: i32) -> i32 {
        neg(Code::NOT_FOUND)
    }
    pub fn gpio_wait_edge(_: i32, _: i32, _: u32) -> i32 {
        neg(Code::NOT_FOUND)
    }

    /// Binds as the host does, without grants: `IP:PORT` or `:PORT` (IPv4
    /// on every address); a multicast IP joins the group on the default
    /// interface.
    pub fn dgram_open(addr: &[u8]) -> i32 {
        let addr = match std::str::from_utf8(addr) {
            Ok(a) => a,
            Err(_) => return neg(Code::INVALID),
        };
        let text = if addr.starts_with(':') { format!("0.0.0.0{}", addr) } else { addr.to_string() };
        let sa: SocketAddr = match text.parse() {
            Ok(sa) => sa,
            Err(_) => return neg(Code::INVALID),
        };
        let u = match UdpSocket::bind(sa) {
            Ok(u) => u,
            Err(e) => return io_err(&e),
        };
        let set = match sa.ip() {
            IpAddr::V4(ip) if ip.is_multicast() => u.join_multicast_v4(&ip, &Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) if ip.is_multicast() => u.join_multicast_v6(&ip, 0),
            _ => Ok(()),
        };
        match set.and_then(|_| if sa.is_ipv4() { u.set_broadcast(true) } else { Ok(()) }) {
            Ok(()) => add(Io::Dgram(u)),
            Err(e) => io_err(&e),
        }
    }

    pub fn dgram_send(h: i32, addr: &[u8], src: &[u8], timeout_ms: u32) -> i32 {
        let addr = match std::str::from_utf8(addr) {
            Ok(a) => a,
            Err(_) => return neg(Code::INVALID),
        };
        with(|n| match n.handles.get(&h) {
            None => neg(Code::NOT_FOUND),
            Some(Io::Dgram(u)) => {
                let v4 = u.local_addr().map(|l| l.is_ipv4()).unwrap_or(true);
                let sa = match addr.to_socket_addrs() {
                    // An address of the socket's family, if the name has one.
                    Ok(a) => {
                        let all: Vec<SocketAddr> = a.collect();
                        match all.iter().find(|a| a.is_ipv4() == v4).or_else(|| all.first()) {
                            Some(sa) => *sa,
                            None => return neg(Code::UNAVAILABLE),
                        }
                    }
                    Err(_) => return neg(Code::INVALID),
                };
                match u.set_write_timeout(Some(timeout(timeout_ms))).and_then(|_| u.send_to(src, sa)) {
                    Ok(k) => k as i32,
                    Err(e) => io_err(&e),
                }
            }
            Some(_) => neg(Code::INVALID),
        })
    }

    pub fn dgram_recv(h: i32, dst: &mut [u8], from: &mut [u8], timeout_ms: u32) -> i32 {
        if dst.is_empty() || from.len() < super::MAX_ADDR_TEXT {
            return neg(Code::INVALID);
        }
        with(|n| match n.handles.get(&h) {
            None => neg(Code::NOT_FOUND),
            Some(Io::Dgram(u)) => match u.set_read_timeout(Some(timeout(timeout_ms))).and_then(|_| u.recv_from(dst)) {
                Ok((k, sender)) => {
                    // An IPv4 sender on an IPv6 socket, as IPv4, like the host.
                    let sender = match sender {
                        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                            Some(ip) => SocketAddr::new(IpAddr::V4(ip), a.port()),
                            None => sender,
                        },
                        v4 => v4,
                    };
                    let text = sender.to_string();
                    let l = text.len().min(from.len() - 1);
                    from[..l].copy_from_slice(&text.as_bytes()[..l]);
                    from[l] = 0;
                    k as i32
                }
                Err(e) => io_err(&e),
            },
            Some(_) => neg(Code::INVALID),
        })
    }
}

/// The in-process stand-in for the host, used when the SDK is compiled
/// natively (unit tests). Each thread has its own store, reports and
/// handles, so tests running in parallel do not see each other.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use crate::Value;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    pub(super) enum Io {
        Tcp(std::net::TcpStream),
        Udp(std::net::UdpSocket),
        Dgram(std::net::UdpSocket),
    }

    #[derive(Default)]
    pub(super) struct Native {
        pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
        pub reports: Vec<(u32, u32, Value)>,
        pub handles: HashMap<i32, Io>,
        pub next: i32,
        pub secrets: HashMap<String, Vec<u8>>,
    }

    thread_local!(static NATIVE: RefCell<Native> = RefCell::new(Native::default()));

    pub(super) fn with<R>(f: impl FnOnce(&mut Native) -> R) -> R {
        NATIVE.with(|n| f(&mut n.borrow_mut()))
    }

    /// Returns and forgets the reports made so far on this thread, as
    /// `(device, property, value)`.
    pub fn take_reports() -> Vec<(u32, u32, Value)> {
        with(|n| std::mem::take(&mut n.reports))
    }

    /// Empties this thread's kv store.
    pub fn clear_kv() {
        with(|n| n.kv.clear())
    }

    /// Sets the value [`secret_get`](super::secret_get) returns for
    /// `reference` (`NAME/KEY`) on this thread, before the files under
    /// `WAPPER_SECRETS_DIR`.
    pub fn set_secret(reference: &str, value: &[u8]) {
        with(|n| {
            n.secrets.insert(reference.to_string(), value.to_vec());
        })
    }

    /// Forgets the secrets set on this thread.
    pub fn clear_secrets() {
        with(|n| n.secrets.clear())
    }

    /// The number of I/O handles open on this thread.
    pub fn open_handles() -> usize {
        with(|n| n.handles.len())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn kv_round_trip() {
        native::clear_kv();
        assert_eq!(kv_get("a").unwrap(), None);
        let big = vec![7u8; 1000];
        kv_set("a", &big).unwrap();
        assert_eq!(kv_get("a").unwrap(), Some(big), "values past the first buffer are fetched again");
        kv_set("a", b"").unwrap();
        assert_eq!(kv_get("a").unwrap(), Some(vec![]));
        kv_delete("a").unwrap();
        kv_delete("a").unwrap();
        assert_eq!(kv_get("a").unwrap(), None);
        assert_eq!(kv_set(&"k".repeat(513), b"").unwrap_err().code, Code::TOO_LARGE);
    }

    #[test]
    fn secrets() {
        native::clear_secrets();
        assert_eq!(secret_get("plc/password").unwrap_err().code, Code::NOT_FOUND);
        native::set_secret("plc/password", b"hunter2");
        assert_eq!(secret_get("plc/password").unwrap(), b"hunter2");
        let big: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        native::set_secret("plc/cert", &big);
        assert_eq!(secret_get("plc/cert").unwrap(), big, "values past the first buffer are fetched again");
        native::set_secret("plc/empty", b"");
        assert_eq!(secret_get("plc/empty").unwrap(), b"");
        for bad in ["plc", "/key", "plc/", "plc/a/b", "../x"] {
            assert_eq!(secret_get(bad).unwrap_err().code, Code::INVALID, "{}", bad);
        }
        native::clear_secrets();
        assert_eq!(secret_get("plc/password").unwrap_err().code, Code::NOT_FOUND);
        assert_eq!(Conn::tls("127.0.0.1:1", 100).unwrap_err().code, Code::UNSUPPORTED);
    }

    #[test]
    fn reports() {
        report(1, 2, &Value::Int(3)).unwrap();
        assert_eq!(native::take_reports(), vec![(1, 2, Value::Int(3))]);
    }

    #[test]
    fn tcp_round_trip() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let mut c = Conn::tcp(&addr, 1000).unwrap();
        c.write(b"ping", 0).unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let mut b = [0u8; 8];
            let n = c.read(&mut b, 1000).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"ping");
        t.join().unwrap();
        let mut b = [0u8; 8];
        assert_eq!(c.read(&mut b, 1000).unwrap_err().code, Code::CLOSED);
        c.close().unwrap();
        assert_eq!(native::open_handles(), 0);
        assert_eq!(io_close(999).unwrap_err().code, Code::NOT_FOUND);
    }

    /// A peer that sends each chunk when the test says so.
    fn stepped_peer() -> (String, std::sync::mpsc::Sender<Vec<u8>>, std::thread::JoinHandle<()>) {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // An empty chunk closes the connection.
            for chunk in rx {
                if chunk.is_empty() {
                    return;
                }
                s.write_all(&chunk).unwrap();
            }
        });
        (addr, tx, t)
    }

    /// Waits until the peer's bytes have arrived, so that the test does not
    /// depend on how the network splits them.
    fn settle() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    #[test]
    fn read_line() {
        let (addr, tx, t) = stepped_peer();
        let mut c = Conn::tcp(&addr, 1000).unwrap();
        tx.send(b"hello\r\nwor".to_vec()).unwrap();
        assert_eq!(c.read_line(100, 1000).unwrap(), "hello", "\\r\\n is a line end");
        // The rest of the line has not come: a timeout, and the part that
        // came stays buffered.
        let start = monotonic_ms();
        let e = c.read_line(100, 100).unwrap_err();
        assert_eq!(e.code, Code::TIMEOUT, "{}", e);
        assert!(monotonic_ms() - start < 1000, "the timeout bounds the whole line");
        tx.send(b"ld\n\nlast".to_vec()).unwrap();
        assert_eq!(c.read_line(100, 1000).unwrap(), "world");
        assert_eq!(c.read_line(100, 1000).unwrap(), "", "an empty line");
        // Lines longer than max_len are dropped whole, also what of them
        // comes later; exactly max_len is fine.
        tx.send(b"xx\n".to_vec()).unwrap();
        assert_eq!(c.read_line(10, 1000).unwrap(), "lastxx");
        tx.send("y".repeat(30).into_bytes()).unwrap();
        settle();
        tx.send(format!("{}\nok\n", "y".repeat(700)).into_bytes()).unwrap();
        assert_eq!(c.read_line(10, 1000).unwrap_err().code, Code::TOO_LARGE);
        assert_eq!(c.read_line(10, 1000).unwrap(), "ok", "the rest of the long line is skipped");
        tx.send(b"0123456789\r\n0123456789x\n".to_vec()).unwrap();
        assert_eq!(c.read_line(10, 1000).unwrap(), "0123456789");
        assert_eq!(c.read_line(10, 1000).unwrap_err().code, Code::TOO_LARGE, "a complete line too long");
        // Not UTF-8: that line is dropped.
        tx.send(b"\xff\xfe\ngood\n".to_vec()).unwrap();
        assert_eq!(c.read_line(10, 1000).unwrap_err().code, Code::INVALID);
        assert_eq!(c.read_line(10, 1000).unwrap(), "good");
        // read returns the buffered bytes first.
        tx.send(b"line\nraw bytes".to_vec()).unwrap();
        settle();
        assert_eq!(c.read_line(10, 1000).unwrap(), "line");
        let mut b = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 9 {
            let n = c.read(&mut b, 1000).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"raw bytes");
        // At the end of the stream, a last line without "\n", then CLOSED.
        tx.send(b"tail\r".to_vec()).unwrap();
        tx.send(vec![]).unwrap();
        t.join().unwrap();
        assert_eq!(c.read_line(10, 1000).unwrap(), "tail");
        assert_eq!(c.read_line(10, 1000).unwrap_err().code, Code::CLOSED);
        c.close().unwrap();
        assert_eq!(native::open_handles(), 0);
    }

    #[test]
    fn read_line_host_default_timeout() {
        // timeout_ms 0: each read waits the host default, so a line that
        // arrives in pieces is read whole.
        let (addr, tx, t) = stepped_peer();
        let mut c = Conn::tcp(&addr, 1000).unwrap();
        tx.send(b"a".to_vec()).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            tx.send(b"b\n".to_vec()).unwrap();
            tx.send(vec![]).unwrap();
        });
        assert_eq!(c.read_line(8, 0).unwrap(), "ab");
        sender.join().unwrap();
        t.join().unwrap();
    }

    #[test]
    fn datagrams() {
        // A peer that echoes one datagram, and a stranger.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_addr = peer.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            let (n, from) = peer.recv_from(&mut b).unwrap();
            peer.send_to(&b[..n], from).unwrap();
            from
        });
        let c = PacketConn::open(":0").unwrap();
        assert_eq!(c.local_addr(), ":0");
        assert_eq!(c.send_to(&peer_addr, b"ping", 1000).unwrap(), 4);
        let mut b = [0u8; 64];
        let (n, from) = c.recv_from(&mut b, 1000).unwrap();
        assert_eq!((&b[..n], from.as_str()), (&b"ping"[..], peer_addr.as_str()));
        let seen = t.join().unwrap();

        // A datagram longer than the buffer is cut.
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(b"0123456789", ("127.0.0.1", seen.port())).unwrap();
        let mut small = [0u8; 4];
        let (n, from) = c.recv_from(&mut small, 1000).unwrap();
        assert_eq!((&small[..n], from), (&b"0123"[..], stranger.local_addr().unwrap().to_string()));

        // Nothing came: a timeout. Stream calls on a datagram socket, and
        // datagram calls on a stream, are INVALID.
        let e = c.recv_from(&mut b, 50).unwrap_err();
        assert_eq!(e.code, Code::TIMEOUT, "{}", e);
        assert!(e.message.contains("receive on udp://:0"), "{}", e);
        assert_eq!(io_read(c.handle(), &mut b, 50).unwrap_err().code, Code::INVALID);
        assert_eq!(io_write(c.handle(), b"x", 50).unwrap_err().code, Code::INVALID);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = Conn::tcp(&l.local_addr().unwrap().to_string(), 1000).unwrap();
        assert_eq!(dgram_send(tcp.handle(), &peer_addr, b"x", 50).unwrap_err().code, Code::INVALID);
        assert_eq!(dgram_recv(tcp.handle(), &mut b, 50).unwrap_err().code, Code::INVALID);
        drop(tcp);
        assert_eq!(dgram_recv(999, &mut b, 50).unwrap_err().code, Code::NOT_FOUND);

        // Bind addresses as the host takes them: IP:PORT or :PORT, no names.
        for bad in ["", "0", "localhost:0", "127.0.0.1", "[::1]", "x:y"] {
            assert_eq!(PacketConn::open(bad).unwrap_err().code, Code::INVALID, "{:?}", bad);
        }
        let fixed = PacketConn::open("127.0.0.1:0").unwrap();
        fixed.close().unwrap();
        c.close().unwrap();
        assert_eq!(native::open_handles(), 0);
        {
            let _dropped = PacketConn::open(":0").unwrap();
            assert_eq!(native::open_handles(), 1);
        }
        assert_eq!(native::open_handles(), 0, "a dropped PacketConn closes its handle");
    }

    #[test]
    fn clocks() {
        let a = clock_ns(Clock::Monotonic);
        assert!(clock_ns(Clock::Monotonic) >= a);
        assert!(now_ns() > 1_600_000_000_000_000_000);
    }
}
