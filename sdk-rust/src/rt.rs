//! The machinery behind the exports: buffers, the device table, result
//! encoding and panic guards. [`export_plugin!`](crate::export_plugin)
//! generates thin `extern "C"` functions that call into this module.
//!
//! [`Runtime`] is public so that a plugin can be driven natively in unit
//! tests exactly as the host drives it, with byte buffers in and result
//! buffers out; see [`Runtime::read`].

use crate::device::{Description, Device, Property};
use crate::driver::{Driver, State};
use crate::json::Json;
use crate::value::{Value, MAX_MESSAGE};
use crate::{Code, Error, Result};
use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// The largest batch read (§3.2), and the most requests of one
/// `wapper_read_many` call (§3.3).
pub const MAX_BATCH: u32 = 4096;

/// The message of a `wapper_read_many` entry that would take the result
/// past [`MAX_MESSAGE`]; room for one is kept for every entry to come
/// (§3.3).
const FULL_MESSAGE: &str = "result full: the readings before this one filled the wapper_read_many result";

/// The encoded size of an entry holding [`FULL_MESSAGE`].
const FULL_ENTRY: usize = 5 + FULL_MESSAGE.len();

thread_local! {
    /// Every live buffer handed out by `wapper_alloc`: address → size.
    static ALLOCS: RefCell<BTreeMap<usize, usize>> = RefCell::new(BTreeMap::new());
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.max(1), 8).ok()
}

/// `wapper_alloc`: a buffer of `size` bytes for the host to write into, or
/// 0 when it is larger than the 4 MiB boundary limit or memory is out.
pub fn alloc_buf(size: u32) -> usize {
    if size as usize > MAX_MESSAGE {
        return 0;
    }
    let l = match layout(size as usize) {
        Some(l) => l,
        None => return 0,
    };
    // Safety: the layout has a non-zero size.
    let p = unsafe { alloc(l) } as usize;
    if p != 0 {
        ALLOCS.with(|a| a.borrow_mut().insert(p, size as usize));
    }
    p
}

/// `wapper_free`: releases a buffer from [`alloc_buf`]; any other pointer
/// is ignored.
pub fn free_buf(ptr: usize) {
    if let Some(size) = ALLOCS.with(|a| a.borrow_mut().remove(&ptr)) {
        if let Some(l) = layout(size) {
            // Safety: ptr came from alloc with this very layout.
            unsafe { dealloc(ptr as *mut u8, l) }
        }
    }
}

/// The `len` bytes at `ptr`, which must lie in a buffer from
/// [`alloc_buf`]; anything else is refused rather than read.
fn arg<'a>(ptr: usize, len: u32) -> Result<&'a [u8]> {
    let ok = ALLOCS.with(|a| match a.borrow().get(&ptr) {
        Some(&size) => len as usize <= size,
        None => false,
    });
    if !ok {
        return Err(Error::invalid(format!("buffer {:#x}+{} was not allocated with wapper_alloc", ptr, len)));
    }
    // Safety: the range lies inside a live allocation the host wrote into;
    // it stays allocated until wapper_free, after the export returns.
    Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) })
}

/// Packs a result buffer into the i64 an export returns (§3.1): 0 for an
/// empty buffer, else `ptr << 32 | len`.
pub fn pack(buf: &[u8]) -> u64 {
    if buf.is_empty() {
        0
    } else {
        (buf.as_ptr() as usize as u64) << 32 | buf.len() as u64
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "non-string panic payload".to_string(),
        },
    }
}

/// Runs `f`, turning a panic into a [`Code::PANIC`] error. In wasm, Rust
/// panics abort (there is no unwinding on wasm32 with Rust 1.63), so a
/// panic traps instead; the panic hook logs its message to the host first.
fn guard<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::new(Code::PANIC, format!("panic: {}", panic_message(p)))),
    }
}

fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::host::log(crate::host::Level::Error, &format!("plugin panic (the instance traps): {}", info));
            }))
        });
    }
}

/// One plugin instance's state: the driver, its devices and the result
/// buffer of the last call.
pub struct Runtime<D: Driver> {
    driver: D,
    devices: BTreeMap<u32, Device<D::Data>>,
    result: Vec<u8>,
    /// The properties of one device's run of `wapper_read_many`
    /// requests, reused from call to call.
    props: Vec<Rc<Property>>,
}

fn lookup<T>(devices: &mut BTreeMap<u32, Device<T>>, id: u32) -> Result<&mut Device<T>> {
    devices
        .get_mut(&id)
        .ok_or_else(|| Error::not_found(format!("device handle {} is not added", id)))
}

fn describe(id: u32, b: &[u8]) -> Result<Description> {
    let d = Description::parse(b)?;
    if d.id != id {
        return Err(Error::invalid(format!("device description id {} does not match handle {}", d.id, id)));
    }
    Ok(d)
}

impl<D: Driver> Runtime<D> {
    /// A runtime around a driver.
    pub fn new(driver: D) -> Self {
        install_panic_hook();
        Runtime {
            driver,
            devices: BTreeMap::new(),
            result: Vec::new(),
            props: Vec::new(),
        }
    }

    /// The driver.
    pub fn driver(&mut self) -> &mut D {
        &mut self.driver
    }

    /// An added device.
    pub fn device(&mut self, id: u32) -> Option<&mut Device<D::Data>> {
        self.devices.get_mut(&id)
    }

    /// Stores `r` as the result buffer and returns it; empty means "0".
    fn finish(&mut self, r: Result<Vec<u8>>) -> &[u8] {
        self.result.clear();
        match r {
            Ok(p) if p.is_empty() => {}
            Ok(p) => {
                self.result.push(Code::OK.0);
                self.result.extend_from_slice(&p);
            }
            Err(e) => {
                // A success code would make the message a payload; never
                // let a driver produce that by mistake.
                let code = if e.code == Code::OK { Code::INTERNAL } else { e.code };
                let mut end = e.message.len().min(MAX_MESSAGE - 1);
                while !e.message.is_char_boundary(end) {
                    end -= 1;
                }
                self.result.push(code.0);
                self.result.extend_from_slice(&e.message.as_bytes()[..end]);
            }
        }
        &self.result
    }

    /// A result buffer for an error, for failures before the call reaches
    /// the driver.
    pub fn fail(&mut self, e: Error) -> &[u8] {
        self.finish(Err(e))
    }

    /// `wapper_init` with the plugin config.
    pub fn init(&mut self, cfg: &[u8]) -> &[u8] {
        let d = &mut self.driver;
        let r = guard(|| {
            let cfg = if cfg.is_empty() {
                Json::Object(vec![])
            } else {
                Json::parse_bytes(cfg).map_err(|e| Error::invalid(format!("plugin config: {}", e)))?
            };
            d.init(&cfg).map(|_| vec![])
        });
        self.finish(r)
    }

    /// `wapper_device_add`. Adding a known handle again is an update, so
    /// that a host that lost track of an instance can re-add.
    pub fn device_add(&mut self, id: u32, desc: &[u8]) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let desc = describe(id, desc)?;
            if let Some(dev) = devs.get_mut(&id) {
                dev.desc = desc;
                return drv.update_device(dev).map(|_| vec![]);
            }
            let mut dev = Device {
                desc,
                data: D::Data::default(),
            };
            drv.add_device(&mut dev)?;
            devs.insert(id, dev);
            Ok(vec![])
        });
        self.finish(r)
    }

    /// `wapper_device_update`; an unknown handle is added.
    pub fn device_update(&mut self, id: u32, desc: &[u8]) -> &[u8] {
        self.device_add(id, desc)
    }

    /// `wapper_device_remove`; an unknown handle is fine.
    pub fn device_remove(&mut self, id: u32) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| match devs.remove(&id) {
            Some(mut dev) => drv.remove_device(&mut dev).map(|_| vec![]),
            None => Ok(vec![]),
        });
        self.finish(r)
    }

    /// `wapper_read`: on success the payload is one encoded value.
    pub fn read(&mut self, id: u32, prop: u32) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let dev = lookup(devs, id)?;
            let p = match dev.property(prop) {
                Some(p) => p.clone(),
                None => return Err(Error::not_found(format!("device {} has no property handle {}", dev.full_name(), prop))),
            };
            drv.read(dev, &p).map(|v| v.encode())
        });
        self.finish(r)
    }

    /// `wapper_write` with one encoded value.
    pub fn write(&mut self, id: u32, prop: u32, val: &[u8]) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let dev = lookup(devs, id)?;
            let p = match dev.property(prop) {
                Some(p) => p.clone(),
                None => return Err(Error::not_found(format!("device {} has no property handle {}", dev.full_name(), prop))),
            };
            let v = Value::decode(val).map_err(|e| e.context(format!("value for {:?}", p.name)))?;
            if !p.writable() {
                return Err(Error::new(Code::READ_ONLY, format!("property {:?} is {}", p.name, p.access_mode)));
            }
            drv.write(dev, &p, v).map(|_| vec![])
        });
        self.finish(r)
    }

    /// `wapper_device_state`: a state byte, then an optional reason. A
    /// failing state call (or an unknown device) is reported as unhealthy
    /// with the error message as the reason.
    pub fn device_state(&mut self, id: u32) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let dev = lookup(devs, id)?;
            drv.state(dev)
        });
        let payload = match r {
            Ok(s) => vec![s as u8],
            Err(e) if e.code == Code::PANIC => return self.fail(e),
            Err(e) => {
                let mut p = vec![State::Unhealthy as u8];
                p.extend_from_slice(e.message.as_bytes());
                p
            }
        };
        self.finish(Ok(payload))
    }

    /// `wapper_read_batch` with `handles` holding little-endian `u32`
    /// property handles. An unknown handle fails the whole call.
    pub fn read_batch(&mut self, id: u32, handles: &[u8]) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            if handles.len() % 4 != 0 {
                return Err(Error::invalid(format!("handle list of {} bytes is not a multiple of 4", handles.len())));
            }
            if handles.len() / 4 > MAX_BATCH as usize {
                return Err(Error::new(Code::TOO_LARGE, format!("batch of {} handles exceeds {}", handles.len() / 4, MAX_BATCH)));
            }
            let dev = lookup(devs, id)?;
            let mut props = Vec::with_capacity(handles.len() / 4);
            for c in handles.chunks(4) {
                let h = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                match dev.property(h) {
                    Some(p) => props.push(p.clone()),
                    None => return Err(Error::not_found(format!("device {} has no property handle {}", dev.full_name(), h))),
                }
            }
            let vals = drv.read_batch(dev, &props);
            if vals.len() != props.len() {
                return Err(Error::internal(format!(
                    "read_batch returned {} results for {} properties",
                    vals.len(),
                    props.len()
                )));
            }
            let mut out = Vec::new();
            for r in vals {
                let (code, data) = match r {
                    Ok(v) => (Code::OK, v.encode()),
                    Err(e) => (if e.code == Code::OK { Code::INTERNAL } else { e.code }, e.message.into_bytes()),
                };
                out.push(code.0);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(&data);
            }
            // The success byte must come first even for an empty batch.
            Ok(out)
        });
        match r {
            Ok(out) => {
                self.result.clear();
                self.result.push(Code::OK.0);
                self.result.extend_from_slice(&out);
                &self.result
            }
            Err(e) => self.fail(e),
        }
    }

    /// `wapper_read_many` (ABI minor 1, §3.3) with `reqs` holding
    /// `(device u32, property u32)` pairs, little-endian. Each run of
    /// adjacent requests for one device is read with one
    /// [`Driver::read_batch`]; an unknown device or property fails its own
    /// entries only. The result buffer is reused from call to call.
    pub fn read_many(&mut self, reqs: &[u8]) -> &[u8] {
        if reqs.len() % 8 != 0 {
            return self.fail(Error::invalid(format!("read request list of {} bytes is not a multiple of 8", reqs.len())));
        }
        if reqs.len() / 8 > MAX_BATCH as usize {
            return self.fail(Error::new(Code::TOO_LARGE, format!("read_many of {} requests exceeds {}", reqs.len() / 8, MAX_BATCH)));
        }
        let (drv, devs, props) = (&mut self.driver, &mut self.devices, &mut self.props);
        let mut out = std::mem::take(&mut self.result);
        out.clear();
        out.push(Code::OK.0);
        let r = guard(|| {
            let n = reqs.len() / 8;
            let req = |i: usize| {
                let c = &reqs[i * 8..i * 8 + 8];
                (u32::from_le_bytes([c[0], c[1], c[2], c[3]]), u32::from_le_bytes([c[4], c[5], c[6], c[7]]))
            };
            let mut start = 0;
            while start < n {
                let id = req(start).0;
                let mut end = start + 1;
                while end < n && req(end).0 == id {
                    end += 1;
                }
                let left = n - end; // entries after this run
                let dev = match lookup(devs, id) {
                    Ok(d) => d,
                    Err(e) => {
                        for i in start..end {
                            push_err(&mut out, &e, left + end - 1 - i);
                        }
                        start = end;
                        continue;
                    }
                };
                props.clear();
                for i in start..end {
                    if let Some(p) = dev.property(req(i).1) {
                        props.push(p.clone());
                    }
                }
                let vals = if props.is_empty() { Vec::new() } else { drv.read_batch(dev, props) };
                if vals.len() != props.len() {
                    let e = Error::internal(format!("read_batch returned {} results for {} properties", vals.len(), props.len()));
                    for i in start..end {
                        push_err(&mut out, &e, left + end - 1 - i);
                    }
                    start = end;
                    continue;
                }
                let mut vals = vals.into_iter();
                for i in start..end {
                    let after = left + end - 1 - i;
                    let h = req(i).1;
                    if dev.property(h).is_none() {
                        let e = Error::not_found(format!("device {} has no property handle {}", dev.full_name(), h));
                        push_err(&mut out, &e, after);
                        continue;
                    }
                    match vals.next() {
                        Some(Ok(v)) => push_value(&mut out, &v, after),
                        Some(Err(e)) => push_err(&mut out, &e, after),
                        None => push_err(&mut out, &Error::internal("read_batch returned too few results"), after),
                    }
                }
                props.clear();
                start = end;
            }
            Ok(())
        });
        self.result = out;
        match r {
            Ok(()) => &self.result,
            Err(e) => self.fail(e),
        }
    }

    /// `wapper_call_method` with `{"method": NAME, "args": {...}}`.
    pub fn call_method(&mut self, id: u32, req: &[u8]) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let dev = lookup(devs, id)?;
            let req = Json::parse_bytes(req).map_err(|e| Error::invalid(format!("method request: {}", e)))?;
            let method = match req.get("method") {
                Some(Json::String(m)) => m.clone(),
                _ => return Err(Error::invalid("method request has no string \"method\"")),
            };
            drv.call_method(dev, &method, req.at("args")).map(String::into_bytes)
        });
        self.finish(r)
    }

    /// `wapper_poll`: empty, or the delay before the next poll as `u32`.
    pub fn poll(&mut self, id: u32, budget_ms: u32) -> &[u8] {
        let (drv, devs) = (&mut self.driver, &mut self.devices);
        let r = guard(|| {
            let dev = lookup(devs, id)?;
            let next = drv.poll(dev, budget_ms)?;
            Ok(if next == 0 { vec![] } else { next.to_le_bytes().to_vec() })
        });
        self.finish(r)
    }
}

/// Whether an entry of `n` bytes fits in the `wapper_read_many` result
/// `out` with room left for `after` more "result full" entries.
fn fits(out: &[u8], n: usize, after: usize) -> bool {
    out.len() + n + after * FULL_ENTRY <= MAX_MESSAGE
}

fn push_entry(out: &mut Vec<u8>, code: Code, data: &[u8]) {
    out.push(code.0);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Appends a failed `wapper_read_many` entry, or a "result full" one when
/// its message does not fit.
fn push_err(out: &mut Vec<u8>, e: &Error, after: usize) {
    let code = if e.code == Code::OK { Code::INTERNAL } else { e.code };
    if fits(out, 5 + e.message.len(), after) {
        push_entry(out, code, e.message.as_bytes());
    } else {
        push_entry(out, Code::TOO_LARGE, FULL_MESSAGE.as_bytes());
    }
}

/// Appends a `wapper_read_many` value entry in place (no temporary
/// buffer), or a "result full" entry when the value does not fit.
fn push_value(out: &mut Vec<u8>, v: &Value, after: usize) {
    let at = out.len();
    out.extend_from_slice(&[0; 5]);
    v.encode_into(out);
    let n = out.len() - at - 5;
    if !fits(&out[..at], 5 + n, after) {
        out.truncate(at);
        push_entry(out, Code::TOO_LARGE, FULL_MESSAGE.as_bytes());
        return;
    }
    out[at + 1..at + 5].copy_from_slice(&(n as u32).to_le_bytes());
}

// Entry points for the generated exports: raw pointers in, packed results
// out. Pointers are wasm32 addresses; these are only meaningful in wasm.

/// Runs `f` on the host-written argument at `ptr`, or fails the call when
/// the buffer did not come from `wapper_alloc`.
fn with_arg<D: Driver>(rt: &mut Runtime<D>, ptr: u32, len: u32, f: impl FnOnce(&mut Runtime<D>, &[u8]) -> u64) -> u64 {
    match arg(ptr as usize, len) {
        Ok(b) => f(rt, b),
        Err(e) => pack(rt.fail(e)),
    }
}

#[doc(hidden)]
pub fn export_init<D: Driver>(rt: &mut Runtime<D>, ptr: u32, len: u32) -> u64 {
    with_arg(rt, ptr, len, |rt, b| pack(rt.init(b)))
}

#[doc(hidden)]
pub fn export_device_add<D: Driver>(rt: &mut Runtime<D>, dev: u32, ptr: u32, len: u32) -> u64 {
    with_arg(rt, ptr, len, |rt, b| pack(rt.device_add(dev, b)))
}

#[doc(hidden)]
pub fn export_device_update<D: Driver>(rt: &mut Runtime<D>, dev: u32, ptr: u32, len: u32) -> u64 {
    with_arg(rt, ptr, len, |rt, b| pack(rt.device_update(dev, b)))
}

#[doc(hidden)]
pub fn export_write<D: Driver>(rt: &mut Runtime<D>, dev: u32, prop: u32, ptr: u32, len: u32) -> u64 {
    with_arg(rt, ptr, len, |rt, b| pack(rt.write(dev, prop, b)))
}

#[doc(hidden)]
pub fn export_read_batch<D: Driver>(rt: &mut Runtime<D>, dev: u32, ptr: u32, count: u32) -> u64 {
    if count > MAX_BATCH {
        return pack(rt.fail(Error::new(Code::TOO_LARGE, format!("batch of {} handles exceeds {}", count, MAX_BATCH))));
    }
    with_arg(rt, ptr, count * 4, |rt, b| pack(rt.read_batch(dev, b)))
}

#[doc(hidden)]
pub fn export_read_many<D: Driver>(rt: &mut Runtime<D>, ptr: u32, count: u32) -> u64 {
    if count > MAX_BATCH {
        return pack(rt.fail(Error::new(Code::TOO_LARGE, format!("read_many of {} requests exceeds {}", count, MAX_BATCH))));
    }
    with_arg(rt, ptr, count * 8, |rt, b| pack(rt.read_many(b)))
}

#[doc(hidden)]
pub fn export_call_method<D: Driver>(rt: &mut Runtime<D>, dev: u32, ptr: u32, len: u32) -> u64 {
    with_arg(rt, ptr, len, |rt, b| pack(rt.call_method(dev, b)))
}

/// Helpers to read result buffers in native tests of a plugin.
pub mod testing {
    use crate::driver::State;
    use crate::value::Value;
    use crate::{Code, Error, Result};

    /// Splits a result buffer: `Ok(payload)` (empty for "0"), or the error.
    pub fn payload(buf: &[u8]) -> Result<Vec<u8>> {
        match buf.split_first() {
            None => Ok(vec![]),
            Some((&0, p)) => Ok(p.to_vec()),
            Some((&c, m)) => Err(Error::new(Code(c), String::from_utf8_lossy(m).into_owned())),
        }
    }

    /// Decodes a `wapper_read` result.
    pub fn value(buf: &[u8]) -> Result<Value> {
        Value::decode(&payload(buf)?)
    }

    /// Decodes a `wapper_device_state` result.
    pub fn state(buf: &[u8]) -> Result<(State, String)> {
        let p = payload(buf)?;
        let s = match p.first() {
            Some(0) => State::Unknown,
            Some(1) => State::Ok,
            Some(2) => State::Online,
            Some(3) => State::Offline,
            Some(4) => State::Unhealthy,
            _ => return Err(Error::internal("malformed state payload")),
        };
        Ok((s, String::from_utf8_lossy(&p[1..]).into_owned()))
    }

    /// Decodes a `wapper_poll` result: the next poll delay.
    pub fn poll_next(buf: &[u8]) -> Result<u32> {
        let p = payload(buf)?;
        match p.len() {
            0 => Ok(0),
            4 => Ok(u32::from_le_bytes([p[0], p[1], p[2], p[3]])),
            n => Err(Error::internal(format!("poll payload of {} bytes", n))),
        }
    }

    /// Decodes a `wapper_read_batch` result into one result per handle.
    pub fn batch(buf: &[u8]) -> Result<Vec<Result<Value>>> {
        let mut p = &payload(buf)?[..];
        let mut out = Vec::new();
        while !p.is_empty() {
            if p.len() < 5 {
                return Err(Error::internal("truncated batch entry"));
            }
            let n = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
            if p.len() < 5 + n {
                return Err(Error::internal("truncated batch entry data"));
            }
            let data = &p[5..5 + n];
            out.push(if p[0] == 0 {
                Value::decode(data)
            } else {
                Err(Error::new(Code(p[0]), String::from_utf8_lossy(data).into_owned()))
            });
            p = &p[5 + n..];
        }
        Ok(out)
    }

    /// Encodes `(device, property)` requests for
    /// [`Runtime::read_many`](super::Runtime::read_many).
    pub fn requests(rs: &[(u32, u32)]) -> Vec<u8> {
        rs.iter().flat_map(|(d, p)| d.to_le_bytes().into_iter().chain(p.to_le_bytes())).collect()
    }

    /// Encodes property handles for [`Runtime::read_batch`](super::Runtime::read_batch).
    pub fn handles(hs: &[u32]) -> Vec<u8> {
        hs.iter().flat_map(|h| h.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;


    #[derive(Default)]
    struct T {
        inits: u32,
    }

    impl Driver for T {
        type Data = Option<Value>;
        fn init(&mut self, cfg: &Json) -> Result<()> {
            self.inits += 1;
            match cfg.at("fail").as_str() {
                Some(m) => Err(Error::new(Code(70), m)),
                None => Ok(()),
            }
        }
        fn read(&mut self, dev: &mut Device<Option<Value>>, p: &Property) -> Result<Value> {
            match p.name.as_str() {
                "boom" => panic!("kaboom {}", 1),
                "err" => Err(Error::new(Code::DEVICE, "device said no")),
                _ => Ok(dev.data.clone().unwrap_or(Value::Int(0))),
            }
        }
        fn write(&mut self, dev: &mut Device<Option<Value>>, _: &Property, v: Value) -> Result<()> {
            dev.data = Some(v);
            Ok(())
        }
        fn state(&mut self, dev: &mut Device<Option<Value>>) -> Result<State> {
            match dev.data {
                Some(Value::Boolean(false)) => Err(Error::new(Code::UNAVAILABLE, "switched off")),
                _ => Ok(State::Online),
            }
        }
        fn poll(&mut self, dev: &mut Device<Option<Value>>, budget: u32) -> Result<u32> {
            dev.property(0).unwrap().report(&Value::Int(budget as i64))?;
            Ok(250)
        }
    }

    const DESC: &[u8] = br#"{"id":3,"namespace":"ns","name":"d","properties":[
        {"handle":0,"name":"v","type":"INT","accessMode":"ReadWrite"},
        {"handle":1,"name":"err","type":"INT","accessMode":"ReadOnly"},
        {"handle":2,"name":"boom","type":"INT","accessMode":"ReadOnly"}]}"#;

    fn rt() -> Runtime<T> {
        let mut rt = Runtime::new(T::default());
        assert_eq!(rt.init(b"{}"), b"");
        assert_eq!(rt.device_add(3, DESC), b"");
        rt
    }

    #[test]
    fn init() {
        let mut rt = Runtime::new(T::default());
        assert_eq!(payload(rt.init(br#"{"fail":"no way"}"#)).unwrap_err(), Error::new(Code(70), "no way"));
        assert_eq!(payload(rt.init(b"{")).unwrap_err().code, Code::INVALID);
        assert_eq!(rt.init(b""), b"", "an empty config is {{}}");
    }

    #[test]
    fn add_errors() {
        let mut rt = Runtime::new(T::default());
        assert_eq!(payload(rt.device_add(4, DESC)).unwrap_err().code, Code::INVALID, "id mismatch");
        assert_eq!(payload(rt.device_add(3, b"nope")).unwrap_err().code, Code::INVALID);
        assert_eq!(payload(rt.read(3, 0)).unwrap_err().code, Code::NOT_FOUND);
    }

    #[test]
    fn read_write() {
        let mut rt = rt();
        assert_eq!(value(rt.read(3, 0)).unwrap(), Value::Int(0));
        assert_eq!(rt.write(3, 0, &Value::Int(42).encode()), b"");
        assert_eq!(value(rt.read(3, 0)).unwrap(), Value::Int(42));
        assert_eq!(rt.read(3, 0), &[0, 1, 42, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(payload(rt.write(3, 1, &Value::Int(1).encode())).unwrap_err().code, Code::READ_ONLY);
        assert_eq!(payload(rt.write(3, 0, &[5, 2])).unwrap_err().code, Code::INVALID);
        assert_eq!(payload(rt.read(3, 9)).unwrap_err().code, Code::NOT_FOUND);
        let e = payload(rt.read(3, 1)).unwrap_err();
        assert_eq!(e, Error::new(Code::DEVICE, "device said no"), "the message travels without the code name");
        // Re-adding keeps the data (an update).
        assert_eq!(rt.device_update(3, DESC), b"");
        assert_eq!(value(rt.read(3, 0)).unwrap(), Value::Int(42));
        assert_eq!(rt.device_remove(3), b"");
        assert_eq!(rt.device_remove(3), b"");
        assert_eq!(payload(rt.read(3, 0)).unwrap_err().code, Code::NOT_FOUND);
    }

    #[test]
    fn panics_become_code_13() {
        let mut rt = rt();
        let e = payload(rt.read(3, 2)).unwrap_err();
        assert_eq!(e.code, Code::PANIC);
        assert!(e.message.contains("kaboom 1"), "{}", e.message);
        // The instance still answers (the host would throw it away anyway).
        assert_eq!(value(rt.read(3, 0)).unwrap(), Value::Int(0));
    }

    #[test]
    fn state() {
        let mut rt = rt();
        assert_eq!(super::testing::state(rt.device_state(3)).unwrap(), (State::Online, String::new()));
        rt.write(3, 0, &Value::Boolean(false).encode());
        assert_eq!(
            super::testing::state(rt.device_state(3)).unwrap(),
            (State::Unhealthy, "switched off".to_string())
        );
        assert_eq!(super::testing::state(rt.device_state(8)).unwrap().0, State::Unhealthy);
    }

    #[test]
    fn batch() {
        let mut rt = rt();
        rt.write(3, 0, &Value::Int(5).encode());
        let got = super::testing::batch(rt.read_batch(3, &handles(&[1, 0, 0]))).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap_err().code, Code::DEVICE);
        assert_eq!(got[1].as_ref().unwrap(), &Value::Int(5));
        assert_eq!(got[2].as_ref().unwrap(), &Value::Int(5));
        let e = payload(rt.read_batch(3, &handles(&[0, 2]))).unwrap_err();
        assert_eq!(e.code, Code::PANIC, "a panic fails the whole batch");
        assert_eq!(rt.read_batch(3, &[]), &[0][..], "an empty batch is a success byte alone");
        assert_eq!(payload(rt.read_batch(3, &handles(&[0, 7]))).unwrap_err().code, Code::NOT_FOUND);
        assert_eq!(payload(rt.read_batch(3, &[1, 2])).unwrap_err().code, Code::INVALID);
    }

    #[test]
    fn read_many() {
        let mut rt = rt();
        rt.write(3, 0, &Value::Int(5).encode());
        let reqs = requests(&[(3, 0), (9, 0), (3, 1), (3, 7), (3, 0)]);
        let got = super::testing::batch(rt.read_many(&reqs)).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].as_ref().unwrap(), &Value::Int(5));
        assert_eq!(got[1].as_ref().unwrap_err().code, Code::NOT_FOUND, "unknown device");
        assert_eq!(got[2].as_ref().unwrap_err().code, Code::DEVICE);
        assert_eq!(got[3].as_ref().unwrap_err().code, Code::NOT_FOUND, "unknown property");
        assert_eq!(got[4].as_ref().unwrap(), &Value::Int(5));
        assert_eq!(rt.read_many(&[]), &[0][..], "no requests: a success byte alone");
        assert_eq!(payload(rt.read_many(&[1, 2, 3])).unwrap_err().code, Code::INVALID);
        let big = vec![0u8; (MAX_BATCH as usize + 1) * 8];
        assert_eq!(payload(rt.read_many(&big)).unwrap_err().code, Code::TOO_LARGE);
        let e = payload(rt.read_many(&requests(&[(3, 0), (3, 2)]))).unwrap_err();
        assert_eq!(e.code, Code::PANIC, "a panic fails the whole call");
    }

    #[test]
    fn read_many_full() {
        let mut out = vec![0u8];
        out.resize(MAX_MESSAGE - 2 * FULL_ENTRY - 20, 0);
        push_value(&mut out, &Value::String("x".repeat(100)), 1);
        assert_eq!(out[out.len() - FULL_ENTRY], Code::TOO_LARGE.0, "a value that leaves no room is replaced");
        push_value(&mut out, &Value::Int(1), 0);
        assert!(out.len() <= MAX_MESSAGE);
        assert_eq!(out[out.len() - 14], Code::OK.0);
    }

    #[test]
    fn method_and_poll() {
        let mut rt = rt();
        let e = payload(rt.call_method(3, br#"{"method":"m","args":{}}"#)).unwrap_err();
        assert_eq!(e.code, Code::UNSUPPORTED);
        assert_eq!(payload(rt.call_method(3, b"{}")).unwrap_err().code, Code::INVALID);
        crate::host::native::take_reports();
        assert_eq!(poll_next(rt.poll(3, 40)).unwrap(), 250);
        assert_eq!(crate::host::native::take_reports(), vec![(3, 0, Value::Int(40))]);
    }

    #[test]
    fn alloc_and_args() {
        let p = alloc_buf(16);
        assert_ne!(p, 0);
        assert!(arg(p, 16).is_ok());
        assert!(arg(p, 17).is_err());
        assert!(arg(p + 1, 1).is_err());
        free_buf(p);
        assert!(arg(p, 1).is_err());
        free_buf(p); // a second free is ignored
        let z = alloc_buf(0);
        assert_ne!(z, 0, "size 0 still has an address");
        assert!(arg(z, 0).is_ok());
        free_buf(z);
        assert_eq!(alloc_buf(5 << 20), 0);
    }
}
