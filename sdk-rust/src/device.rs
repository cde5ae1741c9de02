//! The device description (ABI §8) as the plugin sees it.

use crate::json::Json;
use crate::value::{Type, Value};
use crate::{Error, Result};
use std::rc::Rc;

/// One property of a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// The handle that names the property in read, write and report calls.
    pub handle: u32,
    /// The property name.
    pub name: String,
    /// The declared type as spelled in the description ("DOUBLE").
    pub type_name: String,
    /// The declared type, or `None` when the description names no known
    /// type.
    pub ty: Option<Type>,
    /// `ReadWrite` or `ReadOnly`.
    pub access_mode: String,
    /// The declared minimum, as text ("" when absent).
    pub minimum: String,
    /// The declared maximum, as text ("" when absent).
    pub maximum: String,
    /// The unit ("" when absent).
    pub unit: String,
    /// The property's `visitors.configData` object (`null` when absent).
    pub visitor: Json,
    /// Collect cycle in milliseconds; 0 is the host default.
    pub collect_cycle: i64,
    /// Report cycle in milliseconds; 0 is the host default.
    pub report_cycle: i64,
    /// The handle of the device the property belongs to.
    pub device: u32,
}

impl Property {
    /// Whether the access mode allows writes (anything but `ReadOnly`).
    pub fn writable(&self) -> bool {
        self.access_mode != "ReadOnly"
    }

    /// The declared type, or an [`Code::INVALID`](crate::Code::INVALID)
    /// error naming the property.
    pub fn declared_type(&self) -> Result<Type> {
        self.ty.ok_or_else(|| Error::invalid(format!("property {:?} has unknown type {:?}", self.name, self.type_name)))
    }

    /// A visitor field as text, accepting a string, number or boolean (see
    /// [`Json::to_text`]).
    pub fn visitor_text(&self, key: &str) -> Option<String> {
        self.visitor.at(key).to_text()
    }

    /// Pushes a reading of this property now (host function `report`).
    pub fn report(&self, v: &Value) -> Result<()> {
        crate::host::report(self.device, self.handle, v)
    }
}

/// One device method.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Method {
    /// The method name.
    pub name: String,
    /// Its description ("" when absent).
    pub description: String,
    /// The properties it uses.
    pub property_names: Vec<String>,
}

/// The parsed device description passed to `wapper_device_add` and
/// `wapper_device_update`.
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    /// The device handle.
    pub id: u32,
    /// The KubeEdge namespace.
    pub namespace: String,
    /// The KubeEdge device name.
    pub name: String,
    /// The DeviceModel name.
    pub model: String,
    /// The protocol name.
    pub protocol: String,
    /// The Device's `spec.protocol.configData` (`null` when absent).
    pub protocol_config: Json,
    /// The DeviceModel's `spec.protocolConfigData` (`null` when absent).
    pub model_config: Json,
    /// The properties, each with its handle.
    pub properties: Vec<Rc<Property>>,
    /// The device methods.
    pub methods: Vec<Method>,
}

fn field_str(o: &Json, key: &str, what: &str) -> Result<String> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(format!("{}: field {:?} is not a string", what, key))),
    }
}

fn field_u32(o: &Json, key: &str, what: &str) -> Result<u32> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) if n <= u32::MAX as u64 => Ok(n as u32),
            _ => Err(Error::invalid(format!("{}: field {:?} is not a uint32", what, key))),
        },
    }
}

fn field_i64(o: &Json, key: &str, what: &str) -> Result<i64> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| Error::invalid(format!("{}: field {:?} is not an integer", what, key))),
    }
}

fn field_obj(o: &Json, key: &str, what: &str) -> Result<Json> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(Json::Null),
        Some(v @ Json::Object(_)) => Ok(v.clone()),
        Some(_) => Err(Error::invalid(format!("{}: field {:?} is not an object", what, key))),
    }
}

fn field_array<'a>(o: &'a Json, key: &str, what: &str) -> Result<&'a [Json]> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(&[]),
        Some(Json::Array(a)) => Ok(a),
        Some(_) => Err(Error::invalid(format!("{}: field {:?} is not an array", what, key))),
    }
}

impl Description {
    /// Parses a description. Unknown fields are ignored; a known field of
    /// the wrong JSON type is an [`Code::INVALID`](crate::Code::INVALID)
    /// error.
    pub fn parse(b: &[u8]) -> Result<Description> {
        let j = Json::parse_bytes(b).map_err(|e| Error::invalid(format!("device description: {}", e)))?;
        if !matches!(j, Json::Object(_)) {
            return Err(Error::invalid("device description is not a JSON object"));
        }
        let w = "device description";
        let id = field_u32(&j, "id", w)?;
        let mut properties = Vec::new();
        for p in field_array(&j, "properties", w)? {
            if !matches!(p, Json::Object(_)) {
                return Err(Error::invalid("device description: a property is not an object"));
            }
            let w = "device description property";
            let type_name = field_str(p, "type", w)?;
            properties.push(Rc::new(Property {
                handle: field_u32(p, "handle", w)?,
                name: field_str(p, "name", w)?,
                ty: Type::parse(&type_name),
                type_name,
                access_mode: field_str(p, "accessMode", w)?,
                minimum: field_str(p, "minimum", w)?,
                maximum: field_str(p, "maximum", w)?,
                unit: field_str(p, "unit", w)?,
                visitor: field_obj(p, "visitor", w)?,
                collect_cycle: field_i64(p, "collectCycle", w)?,
                report_cycle: field_i64(p, "reportCycle", w)?,
                device: id,
            }));
        }
        let mut methods = Vec::new();
        for m in field_array(&j, "methods", w)? {
            let w = "device description method";
            let mut names = Vec::new();
            for n in field_array(m, "propertyNames", w)? {
                match n.as_str() {
                    Some(s) => names.push(s.to_string()),
                    None => return Err(Error::invalid("device description method: a property name is not a string")),
                }
            }
            methods.push(Method {
                name: field_str(m, "name", w)?,
                description: field_str(m, "description", w)?,
                property_names: names,
            });
        }
        Ok(Description {
            id,
            namespace: field_str(&j, "namespace", w)?,
            name: field_str(&j, "name", w)?,
            model: field_str(&j, "model", w)?,
            protocol: field_str(&j, "protocol", w)?,
            protocol_config: field_obj(&j, "protocolConfig", w)?,
            model_config: field_obj(&j, "modelConfig", w)?,
            properties,
            methods,
        })
    }

    /// The property with the given handle.
    pub fn property(&self, handle: u32) -> Option<&Rc<Property>> {
        match self.properties.get(handle as usize) {
            Some(p) if p.handle == handle => Some(p),
            _ => self.properties.iter().find(|p| p.handle == handle),
        }
    }

    /// The property with the given name.
    pub fn property_by_name(&self, name: &str) -> Option<&Rc<Property>> {
        self.properties.iter().find(|p| p.name == name)
    }
}

/// A device: the host's description plus the driver's own data, which is
/// kept across updates.
#[derive(Debug)]
pub struct Device<T> {
    /// The description, replaced on every update.
    pub desc: Description,
    /// Free for the driver: a connection, parsed config, caches.
    pub data: T,
}

impl<T> Device<T> {
    /// The device handle.
    pub fn id(&self) -> u32 {
        self.desc.id
    }

    /// `namespace/name`, for messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.desc.namespace, self.desc.name)
    }

    /// The property with the given handle.
    pub fn property(&self, handle: u32) -> Option<&Rc<Property>> {
        self.desc.property(handle)
    }

    /// The property with the given name.
    pub fn property_by_name(&self, name: &str) -> Option<&Rc<Property>> {
        self.desc.property_by_name(name)
    }

    /// The properties.
    pub fn properties(&self) -> &[Rc<Property>] {
        &self.desc.properties
    }

    /// The protocol config (`null` when absent).
    pub fn protocol_config(&self) -> &Json {
        &self.desc.protocol_config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{
      "id": 7, "namespace": "default", "name": "thermo-1", "model": "thermo-model",
      "protocol": "virtual", "protocolConfig": {"seed": 42}, "modelConfig": {},
      "properties": [
        {"handle": 0, "name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly",
         "minimum": "0", "maximum": "100", "unit": "C",
         "visitor": {"kind": "sine", "period": "60s"},
         "collectCycle": 1000, "reportCycle": 1000},
        {"handle": 1, "name": "switch", "type": "BOOLEAN", "accessMode": "ReadWrite",
         "visitor": {"kind": "switch"}}
      ],
      "methods": [{"name": "toggle", "propertyNames": ["switch"]}],
      "someFutureField": [1, {"x": null}]
    }"#;

    #[test]
    fn parse_spec_example() {
        let d = Description::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(d.id, 7);
        assert_eq!(d.name, "thermo-1");
        assert_eq!(d.protocol_config.at("seed").as_i64(), Some(42));
        assert_eq!(d.properties.len(), 2);
        let t = d.property(0).unwrap();
        assert_eq!(t.ty, Some(Type::Double));
        assert!(!t.writable());
        assert_eq!(t.unit, "C");
        assert_eq!(t.visitor_text("kind").as_deref(), Some("sine"));
        assert_eq!(t.collect_cycle, 1000);
        assert_eq!(t.device, 7);
        let s = d.property_by_name("switch").unwrap();
        assert!(s.writable());
        assert_eq!(s.handle, 1);
        assert_eq!(d.methods[0].property_names, vec!["switch".to_string()]);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "[]",
            "{\"id\": -1}",
            "{\"id\": 4294967296}",
            "{\"id\": 1, \"name\": 3}",
            "{\"id\": 1, \"properties\": {}}",
            "{\"id\": 1, \"properties\": [{\"handle\": \"0\"}]}",
            "{\"id\": 1, \"protocolConfig\": []}",
            "{\"id\": 1,",
        ] {
            let e = Description::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, crate::Code::INVALID, "{}", bad);
        }
    }

    #[test]
    fn sparse_handles() {
        let d = Description::parse(br#"{"id":1,"properties":[{"handle":5,"name":"a","type":"int"}]}"#).unwrap();
        assert_eq!(d.property(5).unwrap().ty, Some(Type::Int));
        assert!(d.property(0).is_none());
    }
}
