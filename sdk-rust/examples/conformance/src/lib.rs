//! The Rust conformance plugin: exactly the behaviour written down in
//! `abi/CONFORMANCE.md`, which the Go conformance plugin shares.

use std::collections::BTreeMap;
use std::rc::Rc;

use wapper::host::{self, Clock, Conn, PacketConn};
use wapper::{Code, Device, Driver, Error, Json, Property, Result, State, Type, Value};

/// The driver; all its state is per device.
#[derive(Default)]
pub struct Conformance;

/// Per-device state, in the instance's memory only.
#[derive(Default)]
pub struct Data {
    echo: BTreeMap<u32, Value>,
    polls: i64,
}

fn kind(p: &Property) -> String {
    p.visitor.at("kind").to_text().unwrap_or_default()
}

fn zero(t: Type) -> Value {
    match t {
        Type::Int => Value::Int(0),
        Type::Float => Value::Float(0.0),
        Type::Double => Value::Double(0.0),
        Type::String => Value::String(String::new()),
        Type::Boolean => Value::Boolean(false),
        Type::Bytes => Value::Bytes(vec![]),
        Type::Stream => Value::Stream(vec![]),
    }
}

fn visitor_error(p: &Property) -> Error {
    let code = p.visitor.at("code").to_i64().unwrap_or(1);
    let code = if (1..=255).contains(&code) { code as u8 } else { 1 };
    Error::new(Code(code), p.visitor.at("message").to_text().unwrap_or_default())
}

fn kv_key(p: &Property) -> String {
    p.visitor.at("key").to_text().unwrap_or_default()
}

fn unknown_kind(k: &str) -> Error {
    Error::unsupported(format!("unknown visitor kind {:?}", k))
}

impl Driver for Conformance {
    type Data = Data;

    fn init(&mut self, config: &Json) -> Result<()> {
        match config.get("failInit") {
            Some(Json::String(m)) => Err(Error::invalid(m.clone())),
            _ => Ok(()),
        }
    }

    fn add_device(&mut self, dev: &mut Device<Data>) -> Result<()> {
        match dev.protocol_config().get("failAdd") {
            Some(Json::String(m)) => Err(Error::invalid(m.clone())),
            _ => Ok(()),
        }
    }

    fn read(&mut self, dev: &mut Device<Data>, p: &Property) -> Result<Value> {
        let t = p.declared_type()?;
        match kind(p).as_str() {
            "echo" => Ok(dev.data.echo.get(&p.handle).cloned().unwrap_or_else(|| zero(t))),
            "error" => Err(visitor_error(p)),
            "kv" => {
                let key = kv_key(p);
                match host::kv_get(&key)? {
                    Some(b) => Value::decode(&b),
                    None => Err(Error::not_found(format!("kv key {:?} is absent", key))),
                }
            }
            "panic" => panic!("conformance panic"),
            "poll" => Ok(Value::Int(dev.data.polls)),
            "spin" => {
                let ms = p.visitor.at("ms").to_i64().unwrap_or(0);
                let start = host::clock_ns(Clock::Monotonic);
                loop {
                    let spent = (host::clock_ns(Clock::Monotonic) - start) / 1_000_000;
                    if ms > 0 && spent >= ms {
                        return Ok(Value::Int(spent));
                    }
                }
            }
            k => Err(unknown_kind(k)),
        }
    }

    fn write(&mut self, dev: &mut Device<Data>, p: &Property, v: Value) -> Result<()> {
        let t = p.declared_type()?;
        match kind(p).as_str() {
            "echo" => {
                if v.ty() != t {
                    return Err(Error::invalid(format!(
                        "echo: value type {} does not match declared type {}",
                        v.ty(),
                        t
                    )));
                }
                dev.data.echo.insert(p.handle, v);
                Ok(())
            }
            "error" => Err(visitor_error(p)),
            "kv" => host::kv_set(&kv_key(p), &v.encode()),
            "panic" => panic!("conformance panic"),
            "poll" => Err(Error::unsupported("poll properties are not writable")),
            "spin" => Err(Error::unsupported("spin properties are not writable")),
            k => Err(unknown_kind(k)),
        }
    }

    fn state(&mut self, dev: &mut Device<Data>) -> Result<State> {
        let cfg = dev.protocol_config();
        if let Some(Json::String(r)) = cfg.get("reason") {
            return Err(Error::new(Code::UNAVAILABLE, r.clone()));
        }
        match cfg.get("state") {
            Some(Json::String(s)) => State::parse(s).ok_or_else(|| Error::invalid(format!("unknown state {:?}", s))),
            _ => Ok(State::Ok),
        }
    }

    fn poll(&mut self, dev: &mut Device<Data>, _budget_ms: u32) -> Result<u32> {
        let polls: Vec<Rc<Property>> = dev.properties().iter().filter(|p| kind(p) == "poll").cloned().collect();
        let first = match polls.first() {
            Some(p) => p.clone(),
            None => return Ok(0),
        };
        dev.data.polls += 1;
        for p in &polls {
            p.report(&Value::Int(dev.data.polls))?;
        }
        Ok(match first.visitor.at("every").to_i64() {
            Some(ms) if ms > 0 && ms <= u32::MAX as i64 => ms as u32,
            _ => 100,
        })
    }

    fn call_method(&mut self, _dev: &mut Device<Data>, method: &str, args: &Json) -> Result<String> {
        match method {
            "echo" => Ok(args.to_string()),
            "kvDelete" => host::kv_delete(&args.at("key").to_text().unwrap_or_default()).map(|_| String::new()),
            "secret" => {
                let mut v = host::secret_get(&args.at("ref").to_text().unwrap_or_default())?;
                let out = Json::String(hex(&v)).to_string();
                v.iter_mut().for_each(|b| *b = 0);
                Ok(out)
            }
            "dialEcho" => dial_echo(args),
            "dgramEcho" => dgram_echo(args),
            m => Err(Error::not_found(format!("unknown method {:?}", m))),
        }
    }
}

/// Lower-case hex of `b`.
fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Opens a socket of kind `args.kind` to `args.addr`, writes `args.send`,
/// reads as many bytes back and closes the socket; the result is what it
/// read, as a JSON string.
fn dial_echo(args: &Json) -> Result<String> {
    let kind = args.at("kind").to_text().unwrap_or_default();
    let addr = args.at("addr").to_text().unwrap_or_default();
    let send = args.at("send").to_text().unwrap_or_default();
    let mut c = match kind.as_str() {
        "tcp" => Conn::tcp(&addr, 0)?,
        "udp" => Conn::udp(&addr, 0)?,
        "tls" => Conn::tls(&addr, 0)?,
        k => return Err(Error::invalid(format!("dialEcho: unknown kind {:?}", k))),
    };
    c.write(send.as_bytes(), 0)?;
    let mut got = Vec::with_capacity(send.len());
    let mut buf = vec![0u8; send.len().max(1)];
    while got.len() < send.len() {
        let n = c.read(&mut buf[..send.len() - got.len()], 0)?;
        got.extend_from_slice(&buf[..n]);
    }
    c.close()?;
    Ok(Json::String(String::from_utf8_lossy(&got).into_owned()).to_string())
}

/// Binds a datagram socket to `args.bind`, sends `args.send` as one
/// datagram to `args.to`, receives one datagram (waiting `args.timeoutMs`,
/// or the host default when absent or 0) and closes the socket; the result
/// is `{"data": what it received, "from": its sender}`.
fn dgram_echo(args: &Json) -> Result<String> {
    let bind = args.at("bind").to_text().unwrap_or_default();
    let to = args.at("to").to_text().unwrap_or_default();
    let send = args.at("send").to_text().unwrap_or_default();
    let ms = args.at("timeoutMs").to_i64().unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
    let c = PacketConn::open(&bind)?;
    c.send_to(&to, send.as_bytes(), 0)?;
    let mut buf = vec![0u8; 64 << 10];
    let (n, from) = c.recv_from(&mut buf, ms)?;
    c.close()?;
    Ok(Json::Object(vec![
        ("data".to_string(), Json::String(String::from_utf8_lossy(&buf[..n]).into_owned())),
        ("from".to_string(), Json::String(from)),
    ])
    .to_string())
}

wapper::export_plugin!(Conformance);

#[cfg(test)]
mod tests {
    use super::*;
    use wapper::host::native;
    use wapper::rt::testing::*;
    use wapper::rt::Runtime;

    const DESC: &str = include_str!("../testdata/device.json");

    fn rt() -> Runtime<Conformance> {
        let mut rt = Runtime::new(Conformance);
        assert_eq!(rt.init(b"{}"), b"");
        assert_eq!(rt.device_add(1, DESC.as_bytes()), b"");
        rt
    }

    #[test]
    fn round_trips() {
        let mut rt = rt();
        let vals = [
            Value::Int(-5),
            Value::Float(1.5),
            Value::Double(0.1),
            Value::String(String::new()),
            Value::Boolean(true),
            Value::Bytes(vec![0, 1, 255]),
        ];
        for (h, v) in vals.iter().enumerate() {
            let h = h as u32;
            assert_eq!(value(rt.read(1, h)).unwrap(), zero(v.ty()));
            assert_eq!(rt.write(1, h, &v.encode()), b"");
            assert_eq!(&value(rt.read(1, h)).unwrap(), v);
        }
        let e = payload(rt.write(1, 0, &Value::Double(1.0).encode())).unwrap_err();
        assert_eq!(e, Error::invalid("echo: value type DOUBLE does not match declared type INT"));
        assert_eq!(payload(rt.write(1, 11, &Value::Int(1).encode())).unwrap_err().code, Code::READ_ONLY);
    }

    #[test]
    fn errors_and_kv() {
        native::clear_kv();
        let mut rt = rt();
        let e = Error::new(Code::DEVICE, "device said no");
        assert_eq!(payload(rt.read(1, 6)).unwrap_err(), e);
        assert_eq!(payload(rt.write(1, 6, &Value::Int(1).encode())).unwrap_err(), e);
        assert_eq!(payload(rt.read(1, 7)).unwrap_err(), Error::not_found("kv key \"conf/stored\" is absent"));
        assert_eq!(rt.write(1, 7, &Value::from("hello").encode()), b"");
        assert_eq!(value(rt.read(1, 7)).unwrap(), Value::from("hello"));
        assert_eq!(rt.call_method(1, br#"{"method":"kvDelete","args":{"key":"conf/stored"}}"#), b"");
        assert_eq!(payload(rt.read(1, 7)).unwrap_err().code, Code::NOT_FOUND);
    }

    #[test]
    fn poll_and_batch() {
        let mut rt = rt();
        native::take_reports();
        assert_eq!(value(rt.read(1, 8)).unwrap(), Value::Int(0));
        assert_eq!(poll_next(rt.poll(1, 1000)).unwrap(), 250);
        assert_eq!(native::take_reports(), vec![(1, 8, Value::Int(1))]);
        assert_eq!(value(rt.read(1, 8)).unwrap(), Value::Int(1));
        let b = batch(rt.read_batch(1, &handles(&[0, 6, 8]))).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].as_ref().unwrap(), &Value::Int(0));
        assert_eq!(b[1].as_ref().unwrap_err().code, Code::DEVICE);
        assert_eq!(b[2].as_ref().unwrap(), &Value::Int(1));
        assert_eq!(payload(rt.read_batch(1, &handles(&[0, 99]))).unwrap_err().code, Code::NOT_FOUND);
    }

    #[test]
    fn panic_spin_state_methods() {
        let mut rt = rt();
        let e = payload(rt.read(1, 9)).unwrap_err();
        assert_eq!(e.code, Code::PANIC);
        assert!(e.message.contains("conformance panic"));
        let ms = value(rt.read(1, 10)).unwrap().as_i64();
        assert!(ms >= 50, "spun {} ms", ms);
        assert_eq!(state(rt.device_state(1)).unwrap(), (State::Online, String::new()));
        let echo = payload(rt.call_method(1, br#"{"method":"echo","args":{"a":[1,"x"]}}"#)).unwrap();
        assert_eq!(Json::parse_bytes(&echo).unwrap(), Json::parse(r#"{"a":[1,"x"]}"#).unwrap());
        let e = payload(rt.call_method(1, br#"{"method":"nope"}"#)).unwrap_err();
        assert_eq!(e, Error::not_found("unknown method \"nope\""));
    }

    #[test]
    fn secrets_and_dial_echo() {
        use std::io::{Read, Write};
        let mut rt = rt();
        native::set_secret("plc/password", b"\x00hi\xff");
        let got = payload(rt.call_method(1, br#"{"method":"secret","args":{"ref":"plc/password"}}"#)).unwrap();
        assert_eq!(got, br#""006869ff""#);
        let e = payload(rt.call_method(1, br#"{"method":"secret","args":{"ref":"plc/absent"}}"#)).unwrap_err();
        assert_eq!(e.code, Code::NOT_FOUND);
        let e = payload(rt.call_method(1, br#"{"method":"secret","args":{"ref":"no-key"}}"#)).unwrap_err();
        assert_eq!(e.code, Code::INVALID);
        native::clear_secrets();

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let req = format!(r#"{{"method":"dialEcho","args":{{"kind":"tcp","addr":"{}","send":"hello"}}}}"#, addr);
        assert_eq!(payload(rt.call_method(1, req.as_bytes())).unwrap(), br#""hello""#);
        t.join().unwrap();
        assert_eq!(native::open_handles(), 0);
        let e = payload(rt.call_method(1, br#"{"method":"dialEcho","args":{"kind":"sctp","addr":"x:1","send":""}}"#)).unwrap_err();
        assert_eq!(e, Error::invalid("dialEcho: unknown kind \"sctp\""));
    }

    #[test]
    fn dgram_echo() {
        let mut rt = rt();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = peer.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            let (n, from) = peer.recv_from(&mut b).unwrap();
            peer.send_to(&b[..n], from).unwrap();
        });
        let req = format!(r#"{{"method":"dgramEcho","args":{{"bind":":0","to":"{}","send":"hello \"udp\""}}}}"#, addr);
        let got = payload(rt.call_method(1, req.as_bytes())).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), format!(r#"{{"data":"hello \"udp\"","from":"{}"}}"#, addr));
        t.join().unwrap();
        assert_eq!(native::open_handles(), 0);
        // No answer: a timeout, and the socket is closed all the same.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = silent.local_addr().unwrap();
        let req = format!(r#"{{"method":"dgramEcho","args":{{"bind":":0","to":"{}","send":"x","timeoutMs":50}}}}"#, to);
        assert_eq!(payload(rt.call_method(1, req.as_bytes())).unwrap_err().code, Code::TIMEOUT);
        let e = payload(rt.call_method(1, br#"{"method":"dgramEcho","args":{"bind":"nowhere","to":"x:1","send":""}}"#)).unwrap_err();
        assert_eq!(e.code, Code::INVALID);
        assert_eq!(native::open_handles(), 0);
    }

    #[test]
    fn config_and_add_failures() {
        let mut rt = Runtime::new(Conformance);
        assert_eq!(payload(rt.init(br#"{"failInit":"bad config"}"#)).unwrap_err(), Error::invalid("bad config"));
        let d = br#"{"id":2,"protocolConfig":{"failAdd":"no such device"},"properties":[]}"#;
        assert_eq!(payload(rt.device_add(2, d)).unwrap_err(), Error::invalid("no such device"));
        assert_eq!(payload(rt.read(2, 0)).unwrap_err().code, Code::NOT_FOUND);
        let d = br#"{"id":3,"protocolConfig":{"state":"online","reason":"cable cut"},"properties":[]}"#;
        assert_eq!(rt.device_add(3, d), b"");
        assert_eq!(state(rt.device_state(3)).unwrap(), (State::Unhealthy, "cable cut".into()));
        let d = br#"{"id":4,"protocolConfig":{"state":"weird"},"properties":[{"handle":0,"name":"x","type":"INT","visitor":{}}]}"#;
        assert_eq!(rt.device_add(4, d), b"");
        assert_eq!(state(rt.device_state(4)).unwrap(), (State::Unhealthy, "unknown state \"weird\"".into()));
        assert_eq!(payload(rt.read(4, 0)).unwrap_err(), Error::unsupported("unknown visitor kind \"\""));
        assert_eq!(rt.poll(4, 10), b"", "no poll property: no payload");
    }
}
