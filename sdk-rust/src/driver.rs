//! The [`Driver`] trait a plugin implements.

use crate::device::{Device, Property};
use crate::json::Json;
use crate::value::Value;
use crate::{Error, Result};
use std::rc::Rc;

/// A device state (payload byte of `wapper_device_state`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum State {
    /// Unknown.
    Unknown = 0,
    /// OK.
    Ok = 1,
    /// Online.
    Online = 2,
    /// Offline.
    Offline = 3,
    /// Unhealthy.
    Unhealthy = 4,
}

impl State {
    /// KubeEdge's spelling ("ok", "offline", ...).
    pub fn name(self) -> &'static str {
        ["unknown", "ok", "online", "offline", "unhealthy"][self as usize]
    }

    /// Parses KubeEdge's spelling.
    pub fn parse(s: &str) -> Option<State> {
        [State::Unknown, State::Ok, State::Online, State::Offline, State::Unhealthy]
            .iter()
            .copied()
            .find(|st| st.name() == s)
    }
}

/// What a plugin implements. The SDK calls it for one device at a time per
/// instance; methods never run concurrently. Only [`Driver::read`] has no
/// default.
///
/// `Data` is the per-device state the driver keeps in
/// [`Device::data`](crate::Device::data): a connection, parsed config,
/// caches. It starts as `Data::default()` when the device is added and is
/// kept across updates. Instances are disposable and several may run (ABI
/// §9): keep what must survive in the device or the kv store.
pub trait Driver {
    /// Per-device driver state.
    type Data: Default;

    /// Receives the MapperPlugin's `spec.config` (`{}` when absent).
    fn init(&mut self, config: &Json) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Called before any other call naming the device. An error leaves the
    /// device unknown to the plugin.
    fn add_device(&mut self, dev: &mut Device<Self::Data>) -> Result<()> {
        let _ = dev;
        Ok(())
    }

    /// Called with the new description already in `dev.desc`; `dev.data`
    /// is kept.
    fn update_device(&mut self, dev: &mut Device<Self::Data>) -> Result<()> {
        let _ = dev;
        Ok(())
    }

    /// The last call naming the device on this instance; `dev.data` is
    /// dropped afterwards. The device was deleted, or it moved to another
    /// instance of the plugin, which was given it first. The kv store is
    /// shared by the instances: do not delete the device's kv state here
    /// (ABI SPEC §2).
    fn remove_device(&mut self, dev: &mut Device<Self::Data>) -> Result<()> {
        let _ = dev;
        Ok(())
    }

    /// Returns the current value of one property, preferably of its
    /// declared type (the host converts where nothing is lost).
    fn read(&mut self, dev: &mut Device<Self::Data>, prop: &Property) -> Result<Value>;

    /// Sets a property. `value` already has the property's declared type;
    /// the SDK refuses writes to `ReadOnly` properties before this is
    /// called. The default answers "unsupported".
    fn write(&mut self, dev: &mut Device<Self::Data>, prop: &Property, value: Value) -> Result<()> {
        let _ = (dev, value);
        Err(Error::unsupported(format!("property {:?} cannot be written by this plugin", prop.name)))
    }

    /// Reports the device state. An error is reported to the host as
    /// [`State::Unhealthy`] with the error's message as the reason.
    fn state(&mut self, dev: &mut Device<Self::Data>) -> Result<State> {
        let _ = dev;
        Ok(State::Ok)
    }

    /// Reads several properties at once (for example neighbouring Modbus
    /// registers in one request), returning one result per property, in
    /// order. The default calls [`Driver::read`] for each.
    fn read_batch(&mut self, dev: &mut Device<Self::Data>, props: &[Rc<Property>]) -> Vec<Result<Value>> {
        props.iter().map(|p| self.read(dev, p)).collect()
    }

    /// A custom device method. `args` is the request's `args` (`null` when
    /// absent); the result is JSON text, or empty for none. The default
    /// answers "unsupported".
    fn call_method(&mut self, dev: &mut Device<Self::Data>, method: &str, args: &Json) -> Result<String> {
        let _ = (dev, args);
        Err(Error::unsupported(format!("plugin has no custom device methods (asked for {:?})", method)))
    }

    /// For devices that push data: may block in host I/O for at most
    /// `budget_ms`, calls [`Property::report`] (or
    /// [`host::report`](crate::host::report)) for what arrived, and returns
    /// after how many milliseconds the host should poll this device again
    /// (0: not until it is updated). The default returns 0.
    fn poll(&mut self, dev: &mut Device<Self::Data>, budget_ms: u32) -> Result<u32> {
        let _ = (dev, budget_ms);
        Ok(0)
    }
}
