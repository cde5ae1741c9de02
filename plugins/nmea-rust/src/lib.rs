//! A wapper mapper for NMEA-0183 GPS receivers, written in Rust with
//! `sdk-rust`. It reads `$xxGGA` and `$xxRMC` sentences (any talker: GP, GN,
//! GL, ...) with checksum verification from
//!
//! - a TCP feed of raw NMEA (a GPS-to-network bridge, `ser2net`, a phone
//!   app), or gpsd (port 2947), which it asks for raw NMEA with
//!   `?WATCH={"enable":true,"nmea":true};`, or
//! - a serial port (`serial_open`), as a USB GPS presents itself.
//!
//! Properties are chosen by `visitor.kind` (or, without one, the property
//! name): `latitude`, `longitude` (degrees, north and east positive),
//! `altitude` (metres above mean sea level), `fixQuality` (GGA quality, 0
//! no fix), `satellites` (in use), `speed` (over ground; `m/s` unless the
//! visitor's or the property's `unit` says `km/h`, `knots` or `mph`).
//! See README.md for the protocol config.

pub mod nmea;

use nmea::{Applied, Fix, KNOT_MPS};
use std::rc::Rc;
use wapper::host::{self, Conn, Parity, SerialConfig};
use wapper::{Code, Device, Driver, Error, Json, Property, Result, State, Value};

/// The driver. Everything it keeps is per device.
#[derive(Default)]
pub struct Nmea;

/// Where sentences come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A TCP feed; `gpsd` asks a gpsd for raw NMEA first.
    Tcp { addr: String, gpsd: bool },
    /// A serial port.
    Serial { path: String, cfg: SerialConfig },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tcp { addr, gpsd: true } => write!(f, "gpsd tcp://{}", addr),
            Source::Tcp { addr, .. } => write!(f, "tcp://{}", addr),
            Source::Serial { path, .. } => f.write_str(path),
        }
    }
}

/// The device's protocol config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where sentences come from.
    pub source: Source,
    /// How long a read waits for a first sentence, ms.
    pub read_timeout_ms: u32,
    /// How old the last GGA/RMC may be before reads fail, ms.
    pub max_age_ms: i64,
    /// When > 0, `poll` reports every property this often, ms.
    pub push_interval_ms: u32,
}

/// The command that switches a gpsd client connection to raw NMEA.
pub const GPSD_WATCH: &[u8] = b"?WATCH={\"enable\":true,\"nmea\":true};\n";

fn cfg_u32(pc: &Json, key: &str, def: u32) -> Result<u32> {
    match pc.get(key) {
        None | Some(Json::Null) => Ok(def),
        Some(v) => match v.to_i64() {
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(n as u32),
            _ => Err(Error::invalid(format!("protocolConfig {:?} must be a non-negative integer", key))),
        },
    }
}

impl Config {
    /// Parses a device's `protocolConfig`.
    pub fn parse(pc: &Json) -> Result<Config> {
        let text = |k: &str| pc.at(k).to_text().filter(|s| !s.is_empty());
        let source = match (text("address"), text("serialPort")) {
            (Some(addr), None) => {
                let gpsd = match pc.get("gpsd") {
                    None | Some(Json::Null) => addr.ends_with(":2947"),
                    Some(v) => v.to_bool().ok_or_else(|| Error::invalid("protocolConfig \"gpsd\" must be a boolean"))?,
                };
                Source::Tcp { addr, gpsd }
            }
            (None, Some(path)) => {
                let parity = match text("parity").unwrap_or_default().to_ascii_lowercase().as_str() {
                    "" | "none" | "n" => Parity::None,
                    "odd" | "o" => Parity::Odd,
                    "even" | "e" => Parity::Even,
                    p => return Err(Error::invalid(format!("protocolConfig parity {:?}: want none, odd or even", p))),
                };
                let cfg = SerialConfig {
                    baud: cfg_u32(pc, "baudRate", 4800)?,
                    data_bits: cfg_u32(pc, "dataBits", 8)?.min(255) as u8,
                    parity,
                    stop_bits: cfg_u32(pc, "stopBits", 1)?.min(255) as u8,
                };
                Source::Serial { path, cfg }
            }
            (Some(_), Some(_)) => return Err(Error::invalid("protocolConfig has both \"address\" and \"serialPort\"; choose one")),
            (None, None) => {
                return Err(Error::invalid(
                    "protocolConfig needs \"address\" (host:port of an NMEA or gpsd TCP feed) or \"serialPort\"",
                ))
            }
        };
        Ok(Config {
            source,
            read_timeout_ms: cfg_u32(pc, "readTimeoutMs", 2000)?.max(1),
            max_age_ms: cfg_u32(pc, "maxAgeMs", 5000)?.max(1) as i64,
            push_interval_ms: cfg_u32(pc, "pushIntervalMs", 0)?,
        })
    }
}

/// What a property reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Degrees, north positive.
    Latitude,
    /// Degrees, east positive.
    Longitude,
    /// Metres above mean sea level.
    Altitude,
    /// GGA fix quality.
    FixQuality,
    /// Satellites in use.
    Satellites,
    /// Speed over ground, times this factor from m/s.
    Speed(f64),
}

fn norm(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).collect::<String>().to_ascii_lowercase()
}

impl Kind {
    /// The kind of a property: `visitor.kind`, else the property name.
    pub fn of(p: &Property) -> Result<Kind> {
        let k = p.visitor_text("kind").unwrap_or_else(|| p.name.clone());
        Ok(match norm(&k).as_str() {
            "latitude" | "lat" => Kind::Latitude,
            "longitude" | "lon" | "lng" => Kind::Longitude,
            "altitude" | "alt" => Kind::Altitude,
            "fixquality" | "quality" | "fix" => Kind::FixQuality,
            "satellites" | "sats" | "numsatellites" => Kind::Satellites,
            "speed" | "groundspeed" => {
                let unit = p.visitor_text("unit").unwrap_or_else(|| p.unit.clone());
                Kind::Speed(match norm(&unit).as_str() {
                    "" | "m/s" | "mps" => 1.0,
                    "km/h" | "kmh" | "kph" => 3.6,
                    "knots" | "knot" | "kn" | "kt" => 1.0 / KNOT_MPS,
                    "mph" => 3600.0 / 1609.344,
                    u => {
                        return Err(Error::invalid(format!(
                            "property {:?}: speed unit {:?} is not m/s, km/h, knots or mph",
                            p.name, u
                        )))
                    }
                })
            }
            _ => {
                return Err(Error::invalid(format!(
                    "property {:?}: kind {:?} is not latitude, longitude, altitude, fixQuality, satellites or speed",
                    p.name, k
                )))
            }
        })
    }
}

/// Per-device state: config, the connection, and the merged fix.
#[derive(Default)]
pub struct Gps {
    cfg: Option<Config>,
    conn: Option<Conn>,
    partial: Vec<u8>,
    /// The fix merged from every sentence so far.
    pub fix: Fix,
    /// Monotonic ms of the last GGA or RMC.
    last_ms: Option<i64>,
}

/// The longest line kept while waiting for its end; NMEA allows 82 bytes.
const MAX_LINE: usize = 1024;
/// The most bytes one refresh drains, so that a flood cannot hold a call.
const MAX_DRAIN: usize = 64 << 10;

impl Gps {
    fn cfg(&self) -> Result<&Config> {
        self.cfg.as_ref().ok_or_else(|| Error::internal("device has no config"))
    }

    fn connect(&mut self, timeout_ms: u32) -> Result<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        let cfg = self.cfg()?.clone();
        let mut conn = match &cfg.source {
            Source::Tcp { addr, .. } => Conn::tcp(addr, timeout_ms)?,
            Source::Serial { path, cfg } => Conn::serial(path, cfg, timeout_ms)?,
        };
        if let Source::Tcp { gpsd: true, .. } = cfg.source {
            conn.write(GPSD_WATCH, timeout_ms)
                .map_err(|e| e.context(format!("ask {} for raw NMEA", cfg.source)))?;
        }
        self.partial.clear();
        self.conn = Some(conn);
        Ok(())
    }

    fn feed(&mut self, bytes: &[u8], now: i64) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[start..start + i]).into_owned();
            start += i + 1;
            match self.fix.apply_line(&line) {
                Applied::Position => self.last_ms = Some(now),
                Applied::Refused(e) => wapper::debug!("dropped NMEA line {:?}: {}", line, e),
                _ => {}
            }
        }
        self.partial.drain(..start);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
    }

    fn fresh(&self, now: i64) -> bool {
        match (self.last_ms, &self.cfg) {
            (Some(t), Some(c)) => now - t <= c.max_age_ms,
            _ => false,
        }
    }

    /// Reads what the source has sent: waits up to `wait_ms` for a first
    /// GGA/RMC when the last one is stale, then drains what is buffered,
    /// so that the fix is the newest the receiver sent.
    pub fn refresh(&mut self, wait_ms: u32) -> Result<()> {
        self.connect(wait_ms)?;
        let deadline = host::monotonic_ms() + wait_ms as i64;
        let mut buf = [0u8; 2048];
        let mut drained = 0;
        loop {
            let now = host::monotonic_ms();
            let timeout = if self.fresh(now) {
                1
            } else if now >= deadline {
                return Ok(());
            } else {
                (deadline - now) as u32
            };
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => return Ok(()),
            };
            match conn.read(&mut buf, timeout) {
                Ok(n) => {
                    drained += n;
                    self.feed(&buf[..n], host::monotonic_ms());
                    if drained >= MAX_DRAIN {
                        return Ok(());
                    }
                }
                Err(e) if e.code == Code::TIMEOUT => return Ok(()),
                Err(e) => {
                    // Reconnect on the next call.
                    self.conn = None;
                    let src = self.cfg()?.source.to_string();
                    return Err(e.context(format!("read NMEA from {}", src)));
                }
            }
        }
    }

    /// The current value of one kind, or why there is none.
    pub fn value(&self, kind: Kind) -> Result<Value> {
        let cfg = self.cfg()?;
        let now = host::monotonic_ms();
        match self.last_ms {
            None => {
                return Err(Error::new(
                    Code::TIMEOUT,
                    format!("no GGA or RMC sentence from {} yet", cfg.source),
                ))
            }
            Some(t) if now - t > cfg.max_age_ms => {
                return Err(Error::new(
                    Code::TIMEOUT,
                    format!("the last GGA or RMC sentence from {} is {} ms old", cfg.source, now - t),
                ))
            }
            _ => {}
        }
        let f = &self.fix;
        let need = |v: Option<f64>, what: &str| -> Result<Value> {
            if !f.has_fix {
                return Err(Error::new(Code::UNAVAILABLE, "the GPS has no fix"));
            }
            v.map(Value::Double)
                .ok_or_else(|| Error::new(Code::UNAVAILABLE, format!("the GPS has not sent {} yet", what)))
        };
        match kind {
            Kind::FixQuality => Ok(Value::Int(f.quality as i64)),
            Kind::Satellites => Ok(Value::Int(f.satellites as i64)),
            Kind::Latitude => need(f.latitude, "a latitude"),
            Kind::Longitude => need(f.longitude, "a longitude"),
            Kind::Altitude => need(f.altitude, "an altitude (GGA)"),
            Kind::Speed(k) => need(f.speed_mps.map(|s| s * k), "a speed (RMC)"),
        }
    }
}

/// A value in the property's declared type where that loses nothing.
fn typed(p: &Property, v: Value) -> Result<Value> {
    match p.ty {
        Some(t) => v.convert(t).map_err(|e| e.context(format!("property {:?}", p.name))),
        None => Ok(v),
    }
}

fn configure(dev: &mut Device<Gps>) -> Result<()> {
    let cfg = Config::parse(dev.protocol_config()).map_err(|e| e.context(format!("device {}", dev.full_name())))?;
    for p in dev.properties() {
        Kind::of(p)?;
    }
    if dev.data.cfg.as_ref().map(|c| &c.source) != Some(&cfg.source) {
        dev.data.conn = None;
        dev.data.last_ms = None;
        dev.data.fix = Fix::default();
    }
    dev.data.cfg = Some(cfg);
    Ok(())
}

impl Driver for Nmea {
    type Data = Gps;

    fn add_device(&mut self, dev: &mut Device<Gps>) -> Result<()> {
        configure(dev)
    }

    fn update_device(&mut self, dev: &mut Device<Gps>) -> Result<()> {
        configure(dev)
    }

    fn read(&mut self, dev: &mut Device<Gps>, p: &Property) -> Result<Value> {
        let kind = Kind::of(p)?;
        let wait = dev.data.cfg()?.read_timeout_ms;
        dev.data.refresh(wait)?;
        typed(p, dev.data.value(kind)?)
    }

    fn read_batch(&mut self, dev: &mut Device<Gps>, props: &[Rc<Property>]) -> Vec<Result<Value>> {
        let refreshed = dev.data.cfg().map(|c| c.read_timeout_ms).and_then(|w| dev.data.refresh(w));
        props
            .iter()
            .map(|p| {
                refreshed.clone()?;
                typed(p, dev.data.value(Kind::of(p)?)?)
            })
            .collect()
    }

    fn state(&mut self, dev: &mut Device<Gps>) -> Result<State> {
        let wait = dev.data.cfg()?.read_timeout_ms.min(1000);
        dev.data.refresh(wait)?;
        if dev.data.fresh(host::monotonic_ms()) {
            Ok(State::Online)
        } else {
            Err(Error::new(Code::TIMEOUT, format!("no GGA or RMC sentence from {} in {} ms", dev.data.cfg()?.source, wait)))
        }
    }

    fn poll(&mut self, dev: &mut Device<Gps>, budget_ms: u32) -> Result<u32> {
        let cfg = dev.data.cfg()?.clone();
        if cfg.push_interval_ms == 0 {
            return Ok(0);
        }
        if let Err(e) = dev.data.refresh(budget_ms.min(cfg.read_timeout_ms).max(1)) {
            // Keep polling: the state call reports the trouble.
            wapper::warn!("{}: {}", dev.full_name(), e.message);
            return Ok(cfg.push_interval_ms);
        }
        for p in dev.properties() {
            if let Ok(v) = Kind::of(p).and_then(|k| dev.data.value(k)).and_then(|v| typed(p, v)) {
                p.report(&v)?;
            }
        }
        Ok(cfg.push_interval_ms)
    }
}

wapper::export_plugin!(Nmea);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use wapper::rt::testing::*;
    use wapper::rt::Runtime;

    fn desc(id: u32, pc: &str) -> String {
        format!(
            r#"{{"id":{},"namespace":"default","name":"gps","protocol":"nmea","protocolConfig":{},
            "properties":[
             {{"handle":0,"name":"lat","type":"DOUBLE","accessMode":"ReadOnly","visitor":{{"kind":"latitude"}}}},
             {{"handle":1,"name":"longitude","type":"DOUBLE","accessMode":"ReadOnly"}},
             {{"handle":2,"name":"altitude","type":"DOUBLE","accessMode":"ReadOnly"}},
             {{"handle":3,"name":"fix","type":"INT","accessMode":"ReadOnly","visitor":{{"kind":"fixQuality"}}}},
             {{"handle":4,"name":"satellites","type":"INT","accessMode":"ReadOnly"}},
             {{"handle":5,"name":"speed","type":"DOUBLE","accessMode":"ReadOnly","visitor":{{"kind":"speed","unit":"km/h"}}}},
             {{"handle":6,"name":"sats-text","type":"STRING","accessMode":"ReadOnly","visitor":{{"kind":"satellites"}}}}]}}"#,
            id, pc
        )
    }

    #[test]
    fn config() {
        let c = Config::parse(&Json::parse(r#"{"address":"127.0.0.1:2947"}"#).unwrap()).unwrap();
        assert_eq!(c.source, Source::Tcp { addr: "127.0.0.1:2947".into(), gpsd: true });
        assert_eq!((c.read_timeout_ms, c.max_age_ms, c.push_interval_ms), (2000, 5000, 0));
        let c = Config::parse(&Json::parse(r#"{"address":"gps:10110","readTimeoutMs":"300"}"#).unwrap()).unwrap();
        assert_eq!(c.source, Source::Tcp { addr: "gps:10110".into(), gpsd: false });
        assert_eq!(c.read_timeout_ms, 300);
        let c = Config::parse(&Json::parse(r#"{"serialPort":"/dev/ttyUSB0","baudRate":9600,"parity":"even"}"#).unwrap()).unwrap();
        match c.source {
            Source::Serial { path, cfg } => {
                assert_eq!(path, "/dev/ttyUSB0");
                assert_eq!((cfg.baud, cfg.data_bits, cfg.parity, cfg.stop_bits), (9600, 8, Parity::Even, 1));
            }
            s => panic!("{:?}", s),
        }
        for bad in [r#"{}"#, r#"{"address":"a:1","serialPort":"/dev/x"}"#, r#"{"serialPort":"/dev/x","parity":"mark"}"#, r#"{"address":"a:1","gpsd":"maybe"}"#, r#"{"address":"a:1","maxAgeMs":-1}"#] {
            assert_eq!(Config::parse(&Json::parse(bad).unwrap()).unwrap_err().code, Code::INVALID, "{}", bad);
        }
    }

    #[test]
    fn bad_kind_is_refused_at_add() {
        let mut rt = Runtime::new(Nmea);
        let d = r#"{"id":1,"protocolConfig":{"address":"127.0.0.1:1"},"properties":[{"handle":0,"name":"heading","type":"DOUBLE"}]}"#;
        let e = payload(rt.device_add(1, d.as_bytes())).unwrap_err();
        assert_eq!(e.code, Code::INVALID);
        assert!(e.message.contains("heading"), "{}", e.message);
    }

    /// A raw NMEA TCP feed served by the test itself: checks the plugin's
    /// reading logic end to end over real sockets (the gpsfake test in
    /// tests/ uses a real gpsd).
    #[test]
    fn raw_tcp_feed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // One write, so the client sees the whole epoch at once; the
            // middle GGA has a bad checksum.
            let feed = "$GPGSV,1,1,00*79\r\n\
                $GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n\
                $GPGGA,123519,4807.038,N,01131.000,E,1,09,0.9,545.4,M,46.9,M,,*40\r\n\
                $GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n";
            s.write_all(feed.as_bytes()).unwrap();
            let mut b = [0u8; 16];
            let _ = s.read(&mut b); // hold the connection until the client closes
        });
        let mut rt = Runtime::new(Nmea);
        let d = desc(1, &format!(r#"{{"address":"{}","readTimeoutMs":3000}}"#, addr));
        assert_eq!(rt.device_add(1, d.as_bytes()), b"");
        assert!((value(rt.read(1, 0)).unwrap().as_f64() - 48.1173).abs() < 1e-9);
        let b = batch(rt.read_batch(1, &handles(&[1, 2, 3, 4, 5, 6]))).unwrap();
        assert!((b[0].as_ref().unwrap().as_f64() - 11.516666666666667).abs() < 1e-9);
        assert_eq!(b[1].as_ref().unwrap(), &Value::Double(545.4));
        assert_eq!(b[2].as_ref().unwrap(), &Value::Int(1));
        assert_eq!(b[3].as_ref().unwrap(), &Value::Int(8), "the corrupt sentence with 09 satellites is dropped");
        assert!((b[4].as_ref().unwrap().as_f64() - 22.4 * 1.852).abs() < 1e-9);
        assert_eq!(b[5].as_ref().unwrap(), &Value::String("8".into()), "converted to the declared type");
        assert_eq!(state(rt.device_state(1)).unwrap().0, State::Online);
        assert_eq!(rt.runtime_refused(1), 1);
        assert_eq!(rt.device_remove(1), b"");
        server.join().unwrap();
        assert_eq!(host::native::open_handles(), 0, "remove closes the connection");
    }

    #[test]
    fn unreachable_and_silent_sources() {
        // Nothing listens on a port we just closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut rt = Runtime::new(Nmea);
        let d = desc(2, &format!(r#"{{"address":"127.0.0.1:{}","readTimeoutMs":200}}"#, port));
        assert_eq!(rt.device_add(2, d.as_bytes()), b"");
        assert_eq!(payload(rt.read(2, 0)).unwrap_err().code, Code::UNAVAILABLE);
        let (st, why) = state(rt.device_state(2)).unwrap();
        assert_eq!(st, State::Unhealthy);
        assert!(why.contains("sock_open"), "{}", why);

        // A peer that accepts and says nothing: reads time out.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let d = desc(3, &format!(r#"{{"address":"{}","readTimeoutMs":200}}"#, l.local_addr().unwrap()));
        assert_eq!(rt.device_add(3, d.as_bytes()), b"");
        let e = payload(rt.read(3, 0)).unwrap_err();
        assert_eq!(e.code, Code::TIMEOUT);
        assert!(e.message.contains("no GGA or RMC"), "{}", e.message);
    }

    trait Refused {
        fn runtime_refused(&mut self, id: u32) -> u64;
    }
    impl Refused for Runtime<Nmea> {
        fn runtime_refused(&mut self, id: u32) -> u64 {
            self.device(id).unwrap().data.fix.refused
        }
    }
}
