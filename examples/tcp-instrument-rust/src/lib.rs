//! tcp-instrument-rust is a wapper mapper plugin for protocol "tcp-instrument":
//! instruments that take one text command per line over TCP and answer
//! with one line, as SCPI bench instruments do on port 5025 (`TEMP?` →
//! `21.50`).
//!
//! Device `spec.protocol.configData`:
//!
//! - `ip`: the instrument's address
//! - `port`: its TCP port (a number or a numeric string)
//! - `timeout`: milliseconds for one command and its answer (default 1000)
//!
//! Property `visitors.configData`:
//!
//! - `command`: the query a read sends (default: the property name in upper
//!   case with `?`, such as `TEMPERATURE?`)
//! - `setCommand`: for a writable property, the command a write sends
//!   followed by the value (`SETP` sends `SETP 22.5`); the instrument
//!   answers `OK`
//!
//! An answer starting with `ERR` fails the call with the device's words.

use wapper::host::{self, Conn};
use wapper::{Code, Device, Driver, Error, Property, Result, State, Type, Value};

/// The longest answer kept, so that a device that never sends a newline
/// cannot fill the plugin's memory.
const MAX_LINE: usize = 1024;

/// The driver. It keeps nothing itself: each device's connection lives in
/// its `Device::data`, because the host may run several instances and
/// replace any of them (re-adding the devices).
#[derive(Default)]
pub struct Instrument;

/// One device: where it is and the open connection, if any.
#[derive(Default)]
pub struct Session {
    addr: String,
    timeout_ms: u32,
    conn: Option<Conn>,
    /// Bytes read past the last answer's line end.
    pending: Vec<u8>,
}

impl Session {
    fn configure(&mut self, dev: &Device<Session>) -> Result<()> {
        let pc = dev.protocol_config();
        let ip = pc.at("ip").to_text().unwrap_or_default();
        let port = pc.at("port").to_i64().unwrap_or(0);
        if ip.is_empty() || !(1..=65535).contains(&port) {
            return Err(Error::invalid(format!(
                "device {}: protocol configData needs ip and port (1-65535)",
                dev.full_name()
            )));
        }
        let timeout = match pc.get("timeout") {
            None => 1000.0,
            Some(t) => match t.to_f64() {
                Some(ms) if ms >= 1.0 => ms,
                _ => {
                    return Err(Error::invalid(format!(
                        "device {}: protocol configData timeout: want milliseconds, at least 1",
                        dev.full_name()
                    )))
                }
            },
        };
        self.close();
        self.addr = format!("{}:{}", ip, port);
        self.timeout_ms = timeout.min(u32::MAX as f64) as u32;
        Ok(())
    }

    /// Opens the connection if none is open. The host checks the address
    /// against the MapperPlugin's `spec.grants.network`.
    fn connect(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(Conn::tcp(&self.addr, self.timeout_ms)?);
            self.pending.clear();
        }
        Ok(self.conn.as_mut().unwrap())
    }

    fn close(&mut self) {
        self.conn = None; // dropping a Conn closes it
        self.pending.clear();
    }

    /// Sends one command line and returns the answer line without its line
    /// end. After any I/O error the connection is dropped, so that a late
    /// answer cannot be taken for the next command's; the next call
    /// reconnects.
    fn query(&mut self, cmd: &str) -> Result<String> {
        let r = self.exchange(cmd);
        if r.is_err() {
            self.close();
        }
        let line = r?;
        if line.starts_with("ERR") {
            return Err(Error::new(Code::DEVICE, format!("{} answered {:?} to {:?}", self.addr, line, cmd)));
        }
        Ok(line)
    }

    fn exchange(&mut self, cmd: &str) -> Result<String> {
        let deadline = host::monotonic_ms() + self.timeout_ms as i64;
        let addr = self.addr.clone();
        let mut line = format!("{}\n", cmd).into_bytes();
        let conn = self.connect()?;
        while !line.is_empty() {
            let n = conn.write(&line, remaining(deadline)?)?;
            line.drain(..n);
        }
        let mut buf = [0u8; 256];
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(i + 1);
                let answer = std::mem::replace(&mut self.pending, rest);
                let text = String::from_utf8_lossy(&answer);
                return Ok(text.trim_end_matches(&['\r', '\n'][..]).to_string());
            }
            if self.pending.len() > MAX_LINE {
                return Err(Error::new(
                    Code::DEVICE,
                    format!("{} answered {:?} with a line longer than {} bytes", addr, cmd, MAX_LINE),
                ));
            }
            let conn = self.conn.as_mut().unwrap();
            let n = conn.read(&mut buf, remaining(deadline)?)?;
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

/// The milliseconds left before `deadline` (monotonic ms), or a timeout.
fn remaining(deadline: i64) -> Result<u32> {
    let left = deadline - host::monotonic_ms();
    if left <= 0 {
        return Err(Error::new(Code::TIMEOUT, "the instrument did not answer in time"));
    }
    Ok(left as u32)
}

/// Turns an answer into a value of the property's type.
pub fn parse_reading(prop: &Property, line: &str) -> Result<Value> {
    let ty = prop.declared_type()?;
    if ty == Type::String {
        return Ok(Value::String(line.to_string()));
    }
    let f: f64 = line.trim().parse().map_err(|_| {
        Error::new(Code::DEVICE, format!("{}: the instrument answered {:?}, not a number", prop.name, line))
    })?;
    Value::Double(f)
        .convert(ty)
        .map_err(|e| Error::new(Code::DEVICE, format!("{}: {}", prop.name, e.message)))
}

impl Driver for Instrument {
    type Data = Session;

    /// Checks the device's configData; the first read connects.
    fn add_device(&mut self, dev: &mut Device<Session>) -> Result<()> {
        let mut s = Session::default();
        s.configure(dev)?;
        dev.data = s;
        Ok(())
    }

    /// Reconnects with the new configData.
    fn update_device(&mut self, dev: &mut Device<Session>) -> Result<()> {
        self.add_device(dev)
    }

    /// Sends the property's query and parses the answer.
    fn read(&mut self, dev: &mut Device<Session>, prop: &Property) -> Result<Value> {
        let cmd = prop
            .visitor_text("command")
            .unwrap_or_else(|| format!("{}?", prop.name.to_ascii_uppercase()));
        let line = dev.data.query(&cmd)?;
        parse_reading(prop, &line)
    }

    /// Sends the property's setCommand with the value.
    fn write(&mut self, dev: &mut Device<Session>, prop: &Property, value: Value) -> Result<()> {
        let set = prop.visitor_text("setCommand").ok_or_else(|| {
            Error::unsupported(format!("property {:?} has no setCommand in its visitor configData", prop.name))
        })?;
        let line = dev.data.query(&format!("{} {}", set, value.text()))?;
        if line != "OK" {
            return Err(Error::new(Code::DEVICE, format!("{}: {} answered {:?}, not OK", prop.name, set, line)));
        }
        Ok(())
    }

    /// Online while a connection is open or can be opened.
    fn state(&mut self, dev: &mut Device<Session>) -> Result<State> {
        match dev.data.connect() {
            Ok(_) => Ok(State::Online),
            Err(_) => Ok(State::Offline),
        }
    }
}

wapper::export_plugin!(Instrument);
