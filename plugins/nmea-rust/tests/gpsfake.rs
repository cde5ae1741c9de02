//! The plugin against a real, independent peer: gpsd, fed by gpsfake
//! (Debian's gpsd and gpsd-clients) from testdata/walk.nmea, asked for raw
//! NMEA over its TCP protocol. The driver runs natively here, through the
//! SDK's runtime and real sockets; the wasm build runs the same code.
//!
//! Without gpsfake or gpsd the test fails, saying what to install: it never
//! passes without running. hack/rust-test.sh (make test) installs both
//! through hack/rust-toolchain.sh before it runs cargo.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nmea_rust::Nmea;
use wapper::rt::testing::*;
use wapper::rt::Runtime;
use wapper::{State, Value};

struct Gpsfake(Child);

impl Drop for Gpsfake {
    fn drop(&mut self) {
        // gpsfake runs gpsd as its child: end the whole process group,
        // which setsid made for this test alone.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {} >/dev/null", cmd)]).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn reads_position_from_gpsd_fed_by_gpsfake() {
    assert!(
        have("gpsfake") && have("gpsd") && have("setsid"),
        "gpsfake, gpsd and setsid are needed (Debian packages gpsd, gpsd-clients, util-linux); run hack/deps.sh"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/walk.nmea");
    let child = Command::new("setsid")
        .args(["gpsfake", "-q", "-n", "-c", "0.05", "-P", &port.to_string(), log])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gpsfake");
    let _guard = Gpsfake(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "gpsd did not listen on {} in 15 s", port);
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut rt = Runtime::new(Nmea);
    assert_eq!(rt.init(b"{}"), b"");
    let desc = format!(
        r#"{{"id":1,"namespace":"default","name":"gps","protocol":"nmea",
        "protocolConfig":{{"address":"127.0.0.1:{}","gpsd":true,"readTimeoutMs":4000}},
        "properties":[
          {{"handle":0,"name":"latitude","type":"DOUBLE","accessMode":"ReadOnly"}},
          {{"handle":1,"name":"longitude","type":"DOUBLE","accessMode":"ReadOnly"}},
          {{"handle":2,"name":"altitude","type":"DOUBLE","accessMode":"ReadOnly"}},
          {{"handle":3,"name":"fixQuality","type":"INT","accessMode":"ReadOnly"}},
          {{"handle":4,"name":"satellites","type":"INT","accessMode":"ReadOnly"}},
          {{"handle":5,"name":"speed","type":"DOUBLE","accessMode":"ReadOnly","visitor":{{"kind":"speed","unit":"knots"}}}}]}}"#,
        port
    );
    assert_eq!(rt.device_add(1, desc.as_bytes()), b"");

    // gpsd opens its fake device lazily; give it a few tries.
    let mut lat = None;
    for _ in 0..5 {
        match value(rt.read(1, 0)) {
            Ok(v) => {
                lat = Some(v.as_f64());
                break;
            }
            Err(e) => eprintln!("not yet: {}", e),
        }
    }
    let lat = lat.expect("a latitude from gpsd within 5 tries");
    let lat0 = 52.0 + 31.2 / 60.0;
    assert!(lat >= lat0 - 1e-9 && lat <= lat0 + 20e-5, "latitude {}", lat);

    // Speed comes from RMC, which follows GGA in each epoch.
    let start = Instant::now();
    while value(rt.read(1, 5)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "no speed in 5 s: {:?}", value(rt.read(1, 5)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = batch(rt.read_batch(1, &handles(&[1, 2, 3, 4, 5]))).unwrap();
    let lon = b[0].as_ref().unwrap().as_f64();
    let lon0 = 13.0 + 24.6 / 60.0;
    assert!(lon >= lon0 - 1e-9 && lon <= lon0 + 40e-5, "longitude {}", lon);
    let alt = b[1].as_ref().unwrap().as_f64();
    assert!((34.5..=36.5).contains(&alt), "altitude {}", alt);
    assert_eq!(b[2].as_ref().unwrap(), &Value::Int(1));
    assert_eq!(b[3].as_ref().unwrap(), &Value::Int(9));
    assert!((b[4].as_ref().unwrap().as_f64() - 3.5).abs() < 1e-9, "speed {:?}", b[4]);
    assert_eq!(state(rt.device_state(1)).unwrap().0, State::Online);
}
