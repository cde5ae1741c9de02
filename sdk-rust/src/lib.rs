//! The Rust SDK for wapper mapper plugins: KubeEdge device mappers that run
//! as sandboxed WebAssembly modules in `wapper-host` (plugin ABI v1, see
//! `abi/SPEC.md`).
//!
//! A plugin implements [`Driver`] and exports it with
//! [`export_plugin!`]. The macro generates every export of the ABI
//! (`wapper_abi_v1`, `wapper_alloc`, `wapper_free`, `wapper_init`,
//! `wapper_device_add`/`_update`/`_remove`, `wapper_read`, `wapper_write`,
//! `wapper_device_state`, `wapper_read_batch`, `wapper_read_many`,
//! `wapper_call_method`,
//! `wapper_poll`); the SDK parses the device description (JSON, with its
//! own parser: the crate has no dependencies), encodes values and errors,
//! and keeps buffers the host writes into alive until it frees them. The
//! host functions are in [`host`]: logging, clocks, the persistent kv
//! store, `report`, sockets, serial ports and GPIO.
//!
//! # A complete minimal plugin
//!
//! A thermometer whose reading comes from a visitor field, and a switch
//! that remembers what was written:
//!
//! ```
//! use wapper::{Device, Driver, Property, Result, Value, Error};
//!
//! #[derive(Default)]
//! struct Thermo;
//!
//! impl Driver for Thermo {
//!     /// Per-device state: the switch position.
//!     type Data = bool;
//!
//!     fn read(&mut self, dev: &mut Device<bool>, prop: &Property) -> Result<Value> {
//!         match prop.name.as_str() {
//!             "switch" => Ok(Value::Boolean(dev.data)),
//!             _ => {
//!                 let c = prop.visitor.at("celsius").to_f64()
//!                     .ok_or_else(|| Error::invalid("visitor needs a number \"celsius\""))?;
//!                 Ok(Value::Double(c))
//!             }
//!         }
//!     }
//!
//!     fn write(&mut self, dev: &mut Device<bool>, _prop: &Property, v: Value) -> Result<()> {
//!         dev.data = v.as_bool();
//!         wapper::info!("{} switched {}", dev.full_name(), dev.data);
//!         Ok(())
//!     }
//! }
//!
//! wapper::export_plugin!(Thermo);
//! # fn main() {}
//! ```
//!
//! with this `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "thermo"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! wapper = { path = "../sdk-rust" }
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! panic = "abort"
//! strip = true
//! ```
//!
//! and this `.cargo/config.toml`, which gives the module a 64 KiB stack
//! instead of rustc's default 1 MiB, so a small instance needs only a few
//! pages of linear memory:
//!
//! ```toml
//! [target.wasm32-unknown-unknown]
//! rustflags = ["-C", "link-arg=-zstack-size=65536"]
//! ```
//!
//! Build it (Debian's rustc 1.63 with `libstd-rust-dev-wasm32`; no
//! network needed):
//!
//! ```sh
//! RUSTC=/usr/bin/rustc /usr/bin/cargo build --offline --release --target wasm32-unknown-unknown
//! ```
//!
//! `wasm32-unknown-unknown` modules import only module `wapper`;
//! `wasm32-wasi` works too (the host provides WASI).
//!
//! # What the toolchain needs on Debian
//!
//! - Packages `rustc`, `cargo` and `libstd-rust-dev-wasm32` (the wasm32
//!   standard libraries), and **`lld-14`** for wasm builds: rustc links
//!   wasm with `rust-lld`, which Debian's rustc ships as a link to
//!   `lld-14` without depending on it. wapper's `hack/deps.sh` installs
//!   all four.
//! - **`RUSTDOC=/usr/bin/rustdoc`** next to `RUSTC=/usr/bin/rustc` for
//!   `cargo test`: the doc tests (like the plugin above) are compiled by
//!   rustdoc, and a newer rustdoc first in `PATH` (rustup's, in
//!   `~/.cargo/bin`) cannot read the crate rustc 1.63 built (error E0786,
//!   "found invalid metadata files"). Natively:
//!
//! ```sh
//! RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo test --offline
//! ```
//!
//! `hack/rust-toolchain.sh cargo DIR ARGS...` runs cargo that way.
//!
//! # Rules worth knowing
//!
//! - **Instances are disposable** and several may serve one plugin (ABI
//!   §9). Keep state in [`Device::data`] (rebuilt when the host re-adds the
//!   device to a new instance) or in the kv store ([`host::kv_set`]).
//! - **Nothing runs between calls.** Devices that push data implement
//!   [`Driver::poll`] and call [`Property::report`].
//! - **Panics.** Natively (`cargo test`), a panic in a driver method is
//!   caught with `catch_unwind` and returned as [`Code::PANIC`], as the ABI
//!   asks. In wasm, Rust 1.63 has no unwinding (panics always abort), so a
//!   panic *traps* instead: the SDK's panic hook first writes the message
//!   to the host log, and the host then throws the instance away, exactly
//!   as it does for code 13. Return errors rather than panic.
//! - **Errors** carry a [`Code`]; the message travels to the host as-is.
//!   Codes 64–255 are the plugin's own.
//! - **Testing natively.** Off wasm, the host functions run in-process
//!   ([`host::native`]), sockets included, and [`rt::Runtime`] drives a
//!   driver exactly as the host does, buffers in and result buffers out.
//! - **configData numbers** may come as JSON numbers (narrowed to `f32` by
//!   edgecore) or as strings: read them with [`Json::field_i64`] and
//!   [`Json::field_f64`].
//! - **Text protocols**: [`host::Conn::read_line`] reads a line at a time,
//!   with a length limit and a timeout for the whole line.

#![warn(missing_docs)]

mod device;
mod driver;
mod error;
pub mod host;
pub mod json;
pub mod rt;
mod value;

pub use device::{Description, Device, Method, Property};
pub use driver::{Driver, State};
pub use error::{Code, Error, Result};
pub use json::Json;
pub use value::{base64_decode, base64_encode, Type, Value, MAX_MESSAGE};

/// The ABI minor version this SDK implements; `wapper_abi_v1` returns it.
/// Minor 1 added `wapper_read_many`.
pub const ABI_MINOR: u32 = 1;

/// Generates every export of the plugin ABI for a [`Driver`].
///
/// `export_plugin!(MyDriver)` builds the driver with `Default`;
/// `export_plugin!(MyDriver, MyDriver::new(42))` with an expression. The
/// driver is built on the first call into the instance. Use the macro once
/// per crate, at the top level of a `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        $crate::export_plugin!($ty, <$ty as ::core::default::Default>::default());
    };
    ($ty:ty, $init:expr) => {
        const _: () = {
            ::std::thread_local! {
                static WAPPER_RUNTIME: ::core::cell::RefCell<::core::option::Option<$crate::rt::Runtime<$ty>>> =
                    ::core::cell::RefCell::new(::core::option::Option::None);
            }

            fn with<R>(f: impl FnOnce(&mut $crate::rt::Runtime<$ty>) -> R) -> R {
                WAPPER_RUNTIME.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = ::core::option::Option::Some($crate::rt::Runtime::new($init));
                    }
                    f(slot.as_mut().unwrap())
                })
            }

            #[no_mangle]
            pub extern "C" fn wapper_abi_v1() -> u32 {
                $crate::ABI_MINOR
            }

            #[no_mangle]
            pub extern "C" fn wapper_alloc(size: u32) -> u32 {
                $crate::rt::alloc_buf(size) as u32
            }

            #[no_mangle]
            pub extern "C" fn wapper_free(ptr: u32) {
                $crate::rt::free_buf(ptr as usize)
            }

            #[no_mangle]
            pub extern "C" fn wapper_init(ptr: u32, len: u32) -> u64 {
                with(|rt| $crate::rt::export_init(rt, ptr, len))
            }

            #[no_mangle]
            pub extern "C" fn wapper_device_add(dev: u32, ptr: u32, len: u32) -> u64 {
                with(|rt| $crate::rt::export_device_add(rt, dev, ptr, len))
            }

            #[no_mangle]
            pub extern "C" fn wapper_device_update(dev: u32, ptr: u32, len: u32) -> u64 {
                with(|rt| $crate::rt::export_device_update(rt, dev, ptr, len))
            }

            #[no_mangle]
            pub extern "C" fn wapper_device_remove(dev: u32) -> u64 {
                with(|rt| $crate::rt::pack(rt.device_remove(dev)))
            }

            #[no_mangle]
            pub extern "C" fn wapper_read(dev: u32, prop: u32) -> u64 {
                with(|rt| $crate::rt::pack(rt.read(dev, prop)))
            }

            #[no_mangle]
            pub extern "C" fn wapper_write(dev: u32, prop: u32, ptr: u32, len: u32) -> u64 {
                with(|rt| $crate::rt::export_write(rt, dev, prop, ptr, len))
            }

            #[no_mangle]
            pub extern "C" fn wapper_device_state(dev: u32) -> u64 {
                with(|rt| $crate::rt::pack(rt.device_state(dev)))
            }

            #[no_mangle]
            pub extern "C" fn wapper_read_batch(dev: u32, ptr: u32, count: u32) -> u64 {
                with(|rt| $crate::rt::export_read_batch(rt, dev, ptr, count))
            }

            #[no_mangle]
            pub extern "C" fn wapper_read_many(ptr: u32, count: u32) -> u64 {
                with(|rt| $crate::rt::export_read_many(rt, ptr, count))
            }

            #[no_mangle]
            pub extern "C" fn wapper_call_method(dev: u32, ptr: u32, len: u32) -> u64 {
                with(|rt| $crate::rt::export_call_method(rt, dev, ptr, len))
            }

            #[no_mangle]
            pub extern "C" fn wapper_poll(dev: u32, budget_ms: u32) -> u64 {
                with(|rt| $crate::rt::pack(rt.poll(dev, budget_ms)))
            }
        };
    };
}

/// Logs a formatted line at debug level to the host log.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::host::log($crate::host::Level::Debug, &format!($($arg)+)) };
}

/// Logs a formatted line at info level to the host log.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::host::log($crate::host::Level::Info, &format!($($arg)+)) };
}

/// Logs a formatted line at warn level to the host log.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::host::log($crate::host::Level::Warn, &format!($($arg)+)) };
}

/// Logs a formatted line at error level to the host log.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::host::log($crate::host::Level::Error, &format!($($arg)+)) };
}
