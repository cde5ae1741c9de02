//! Native tests: `cargo test` runs the driver on this machine through the
//! SDK's `rt::Runtime`, exactly as the host calls the exports, with the
//! host functions in-process (a plain TCP connect, no grants) against a
//! simulated instrument on a local port.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use wapper::rt::{testing, Runtime};
use wapper::{Code, State, Value};
use tcp_instrument_rust::Instrument;

/// Serves a simulated instrument on a free local port and returns the
/// port: `TEMP?` answers a temperature, `SETP?` and `SETP V` read and set a
/// setpoint, anything else is an error.
fn simulator() -> u16 {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let setpoint = Arc::new(Mutex::new(String::from("20")));
    thread::spawn(move || {
        for conn in ln.incoming() {
            let mut conn = match conn {
                Ok(c) => c,
                Err(_) => return,
            };
            let setpoint = setpoint.clone();
            thread::spawn(move || {
                let lines = BufReader::new(conn.try_clone().unwrap()).lines();
                for line in lines {
                    let cmd = match line {
                        Ok(l) => l.trim().to_string(),
                        Err(_) => return,
                    };
                    let answer = match cmd.as_str() {
                        "TEMP?" => "21.50".to_string(),
                        "SETP?" => setpoint.lock().unwrap().clone(),
                        c if c.starts_with("SETP ") => {
                            *setpoint.lock().unwrap() = c[5..].to_string();
                            "OK".to_string()
                        }
                        c => format!("ERR unknown command {}", c),
                    };
                    if conn.write_all(format!("{}\n", answer).as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A device description as the host passes it to `wapper_device_add`.
fn device(port: u16) -> String {
    String::from(r#"{"id": 1, "namespace": "default", "name": "tcp-instrument-rust-1", "protocol": "tcp-instrument","#)
        + r#" "protocolConfig": {"ip": "127.0.0.1", "timeout": 500, "port": "#
        + &port.to_string()
        + r#"}, "properties": ["#
        + r#" {"handle": 0, "name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly", "visitor": {"command": "TEMP?"}},"#
        + r#" {"handle": 1, "name": "setpoint", "type": "DOUBLE", "accessMode": "ReadWrite", "visitor": {"command": "SETP?", "setCommand": "SETP"}},"#
        + r#" {"handle": 2, "name": "voltage", "type": "DOUBLE", "accessMode": "ReadOnly"},"#
        + r#" {"handle": 3, "name": "count", "type": "INT", "accessMode": "ReadOnly", "visitor": {"command": "TEMP?"}}"#
        + r#"]}"#
}

fn added(port: u16) -> Runtime<Instrument> {
    let mut rt = Runtime::new(Instrument::default());
    testing::payload(rt.init(b"{}")).unwrap();
    testing::payload(rt.device_add(1, device(port).as_bytes())).unwrap();
    rt
}

#[test]
fn read_and_write() {
    let mut rt = added(simulator());
    assert_eq!(testing::value(rt.read(1, 0)).unwrap(), Value::Double(21.5));
    testing::payload(rt.write(1, 1, &Value::Double(22.5).encode())).unwrap();
    assert_eq!(testing::value(rt.read(1, 1)).unwrap(), Value::Double(22.5));
    assert_eq!(testing::state(rt.device_state(1)).unwrap().0, State::Online);
}

#[test]
fn errors() {
    let mut rt = added(simulator());
    // The instrument's own error travels to the host with its words.
    let e = testing::value(rt.read(1, 2)).unwrap_err();
    assert_eq!(e.code, Code::DEVICE, "{:?}", e);
    assert!(e.message.contains("VOLTAGE?"), "{:?}", e);
    // A reading that does not fit the property's type.
    assert_eq!(testing::value(rt.read(1, 3)).unwrap_err().code, Code::DEVICE);
    // A read-only property is refused by the SDK before the driver.
    assert_eq!(testing::payload(rt.write(1, 0, &Value::Double(1.0).encode())).unwrap_err().code, Code::READ_ONLY);
    // configData without a port is refused when the device is added.
    let bad = r#"{"id": 2, "namespace": "default", "name": "bad", "protocolConfig": {"ip": "127.0.0.1"}, "properties": []}"#;
    assert_eq!(testing::payload(rt.device_add(2, bad.as_bytes())).unwrap_err().code, Code::INVALID);
}

#[test]
fn instrument_down() {
    // A port nothing listens on any more.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut rt = added(port);
    assert!(testing::value(rt.read(1, 0)).is_err());
    assert_eq!(testing::state(rt.device_state(1)).unwrap().0, State::Offline);
}
