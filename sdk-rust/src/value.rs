//! Typed property values and their ABI encoding (ABI §4), text form and
//! conversions.

use crate::{Error, Result};
use std::fmt;

/// Bounds every buffer that crosses the ABI boundary (§10): 4 MiB.
pub const MAX_MESSAGE: usize = 4 << 20;

/// A KubeEdge property type; the discriminant is the ABI type byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Type {
    /// int64.
    Int = 1,
    /// float32.
    Float = 2,
    /// float64.
    Double = 3,
    /// UTF-8 text.
    String = 4,
    /// true or false.
    Boolean = 5,
    /// raw bytes.
    Bytes = 6,
    /// raw bytes, KubeEdge's STREAM.
    Stream = 7,
}

const TYPE_NAMES: [&str; 7] = ["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"];
const TYPES: [Type; 7] = [
    Type::Int,
    Type::Float,
    Type::Double,
    Type::String,
    Type::Boolean,
    Type::Bytes,
    Type::Stream,
];

impl Type {
    /// The type of an ABI type byte.
    pub fn from_byte(b: u8) -> Option<Type> {
        TYPES.get((b as usize).wrapping_sub(1)).copied()
    }

    /// KubeEdge's spelling: "INT", "FLOAT", ...
    pub fn name(self) -> &'static str {
        TYPE_NAMES[self as usize - 1]
    }

    /// Parses KubeEdge's spelling, in any case.
    pub fn parse(s: &str) -> Option<Type> {
        TYPE_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| TYPES[i])
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed property value.
#[derive(Clone, PartialEq, Debug)]
pub enum Value {
    /// INT.
    Int(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// STRING.
    String(String),
    /// BOOLEAN.
    Boolean(bool),
    /// BYTES.
    Bytes(Vec<u8>),
    /// STREAM.
    Stream(Vec<u8>),
}

impl Value {
    /// The value's type.
    pub fn ty(&self) -> Type {
        match self {
            Value::Int(_) => Type::Int,
            Value::Float(_) => Type::Float,
            Value::Double(_) => Type::Double,
            Value::String(_) => Type::String,
            Value::Boolean(_) => Type::Boolean,
            Value::Bytes(_) => Type::Bytes,
            Value::Stream(_) => Type::Stream,
        }
    }

    /// Appends the ABI encoding (type byte, then payload) to `dst`.
    pub fn encode_into(&self, dst: &mut Vec<u8>) {
        dst.push(self.ty() as u8);
        match self {
            Value::Int(n) => dst.extend_from_slice(&n.to_le_bytes()),
            Value::Float(f) => dst.extend_from_slice(&f.to_bits().to_le_bytes()),
            Value::Double(f) => dst.extend_from_slice(&f.to_bits().to_le_bytes()),
            Value::String(s) => dst.extend_from_slice(s.as_bytes()),
            Value::Boolean(b) => dst.push(*b as u8),
            Value::Bytes(b) | Value::Stream(b) => dst.extend_from_slice(b),
        }
    }

    /// The ABI encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9);
        self.encode_into(&mut v);
        v
    }

    /// Decodes an ABI-encoded value; anything malformed is
    /// [`Code::INVALID`](crate::Code::INVALID).
    pub fn decode(b: &[u8]) -> Result<Value> {
        let (&t, p) = match b.split_first() {
            Some(x) => x,
            None => return Err(Error::invalid("empty value")),
        };
        if b.len() > MAX_MESSAGE {
            return Err(Error::invalid(format!(
                "value of {} bytes exceeds the {} byte limit",
                b.len(),
                MAX_MESSAGE
            )));
        }
        let ty = match Type::from_byte(t) {
            Some(ty) => ty,
            None => return Err(Error::invalid(format!("unknown value type byte {}", t))),
        };
        let want = match ty {
            Type::Int | Type::Double => 8,
            Type::Float => 4,
            Type::Boolean => 1,
            Type::String => {
                return match std::str::from_utf8(p) {
                    Ok(s) => Ok(Value::String(s.to_string())),
                    Err(_) => Err(Error::invalid("STRING value is not valid UTF-8")),
                }
            }
            Type::Bytes => return Ok(Value::Bytes(p.to_vec())),
            Type::Stream => return Ok(Value::Stream(p.to_vec())),
        };
        if p.len() != want {
            return Err(Error::invalid(format!(
                "{} value has {} payload bytes, want {}",
                ty,
                p.len(),
                want
            )));
        }
        let mut b8 = [0u8; 8];
        b8[..want].copy_from_slice(p);
        Ok(match ty {
            Type::Int => Value::Int(i64::from_le_bytes(b8)),
            Type::Double => Value::Double(f64::from_bits(u64::from_le_bytes(b8))),
            Type::Float => {
                let mut b4 = [0u8; 4];
                b4.copy_from_slice(p);
                Value::Float(f32::from_bits(u32::from_le_bytes(b4)))
            }
            _ => match p[0] {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                n => return Err(Error::invalid(format!("BOOLEAN byte is {}, want 0 or 1", n))),
            },
        })
    }

    /// A number or boolean as `i64` (floats truncated); 0 otherwise.
    pub fn as_i64(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            Value::Float(f) => *f as i64,
            Value::Double(f) => *f as i64,
            Value::Boolean(b) => *b as i64,
            _ => 0,
        }
    }

    /// A number or boolean as `f64`; 0 otherwise.
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Int(n) => *n as f64,
            Value::Float(f) => *f as f64,
            Value::Double(f) => *f,
            Value::Boolean(b) => *b as i64 as f64,
            _ => 0.0,
        }
    }

    /// A BOOLEAN, or whether a number is non-zero; false otherwise.
    pub fn as_bool(&self) -> bool {
        match self {
            Value::Boolean(b) => *b,
            Value::Int(n) => *n != 0,
            Value::Float(_) | Value::Double(_) => self.as_f64() != 0.0,
            _ => false,
        }
    }

    /// A STRING's text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The raw bytes of a STRING, BYTES or STREAM; empty otherwise.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::String(s) => s.as_bytes(),
            Value::Bytes(b) | Value::Stream(b) => b,
            _ => &[],
        }
    }

    /// The KubeEdge twin text (§4): INT decimal; FLOAT and DOUBLE the
    /// shortest plain decimal that round-trips, never with an exponent
    /// (`2500000.5`, `0.0000001`, `-0`), infinities `Inf`/`-Inf` and NaN
    /// `NaN`, as Go's `strconv.FormatFloat(v, 'f', -1, bits)`; BOOLEAN
    /// `true`/`false`; STRING as-is; BYTES and STREAM standard base64.
    pub fn text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Float(f) => format_float(*f as f64, f.to_string()),
            Value::Double(f) => format_float(*f, f.to_string()),
            Value::String(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            Value::Bytes(b) | Value::Stream(b) => base64_encode(b),
        }
    }

    /// Parses a twin text as a value of type `ty`: the inverse of
    /// [`Value::text`]. BOOLEAN also accepts `1`/`0` and `on`/`off`, in any
    /// case; INT also accepts an integral decimal such as `12.0`; numbers
    /// also accept exponents (`1e+06`); BYTES and STREAM accept standard
    /// and URL-safe base64, padded or not.
    pub fn parse_text(ty: Type, s: &str) -> Result<Value> {
        let bad = || Error::invalid(format!("{:?} is not a{} {}", s, if ty == Type::Int { "n" } else { "" }, ty));
        match ty {
            Type::Int => match s.parse::<i64>() {
                Ok(n) => Ok(Value::Int(n)),
                Err(_) => match parse_float(s) {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775_808e18 => Ok(Value::Int(f as i64)),
                    _ => Err(bad()),
                },
            },
            Type::Float => parse_float(s).map(|f| Value::Float(f as f32)).ok_or_else(bad),
            Type::Double => parse_float(s).map(Value::Double).ok_or_else(bad),
            Type::Boolean => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" => Ok(Value::Boolean(true)),
                "false" | "0" | "off" => Ok(Value::Boolean(false)),
                _ => Err(Error::invalid(format!("{:?} is not a BOOLEAN (want true or false)", s))),
            },
            Type::String => Ok(Value::String(s.to_string())),
            Type::Bytes | Type::Stream => match base64_decode(s) {
                Some(b) if ty == Type::Bytes => Ok(Value::Bytes(b)),
                Some(b) => Ok(Value::Stream(b)),
                None => Err(Error::invalid(format!("{} value is not base64", ty))),
            },
        }
    }

    /// Returns the value as type `ty` where nothing a user would miss is
    /// lost, as the host does (§4): numbers between each other, booleans and
    /// numbers, anything to STRING, BYTES and STREAM to each other, and a
    /// STRING parsed as `ty`.
    pub fn convert(self, ty: Type) -> Result<Value> {
        if self.ty() == ty {
            return Ok(self);
        }
        let from = self.ty();
        let out = match (ty, &self) {
            (Type::Int, Value::Float(_)) | (Type::Int, Value::Double(_)) => {
                let f = self.as_f64();
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(Error::invalid(format!("{} {} is not an integer", from, f)));
                }
                Some(Value::Int(f as i64))
            }
            (Type::Int, Value::Boolean(b)) => Some(Value::Int(*b as i64)),
            (Type::Float, Value::Int(_) | Value::Double(_) | Value::Boolean(_)) => Some(Value::Float(self.as_f64() as f32)),
            (Type::Double, Value::Int(_) | Value::Float(_) | Value::Boolean(_)) => Some(Value::Double(self.as_f64())),
            (Type::Boolean, Value::Int(_) | Value::Float(_) | Value::Double(_)) => Some(Value::Boolean(self.as_bool())),
            (Type::String, _) => Some(Value::String(self.text())),
            (Type::Bytes, Value::Stream(b)) => Some(Value::Bytes(b.clone())),
            (Type::Stream, Value::Bytes(b)) => Some(Value::Stream(b.clone())),
            _ => None,
        };
        match (out, self) {
            (Some(v), _) => Ok(v),
            (None, Value::String(s)) => Value::parse_text(ty, &s),
            (None, _) => Err(Error::invalid(format!("cannot convert {} to {}", from, ty))),
        }
    }
}

impl fmt::Display for Value {
    /// The twin text; see [`Value::text`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n as i64)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(n as i64)
    }
}
impl From<f32> for Value {
    fn from(f: f32) -> Value {
        Value::Float(f)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Double(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}

/// Parses a float as Go's strconv.ParseFloat does for ordinary input,
/// including Go's spellings of the infinities and NaN.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    s.parse().ok()
}

/// Formats a float for [`Value::text`] from Rust's `Display` form
/// (`shown`, the shortest plain decimal that round-trips, as Go's `'f'`
/// format with precision -1), spelling the infinities and NaN as Go does
/// but without a `+`.
fn format_float(f: f64, shown: String) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f < 0.0 { "-Inf".into() } else { "Inf".into() }
    } else {
        shown
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity((b.len() + 2) / 3 * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

/// The URL-safe base64 alphabet (RFC 4648 §5).
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Decodes base64 in the standard or the URL-safe alphabet, padded or not
/// (a text using both alphabets is refused), rejecting non-zero bits
/// after the last byte: `None` for anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let alphabet = if s.bytes().any(|c| c == b'-' || c == b'_') { B64_URL } else { B64 };
    let mut s = s.as_bytes().to_vec();
    if !s.contains(&b'=') {
        // Unpadded: pad it (a remainder of one character is never valid).
        match s.len() % 4 {
            1 => return None,
            r if r > 0 => s.resize(s.len() + 4 - r, b'='),
            _ => {}
        }
    }
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, q) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            let d = alphabet.iter().position(|&x| x == c)? as u32;
            n = n << 6 | d;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Go rejects non-zero bits after the last byte.
        if (pad == 1 && bytes[2] != 0) || (pad == 2 && bytes[1] != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        let vals = vec![
            Value::Int(-2),
            Value::Int(i64::MAX),
            Value::Float(1.5),
            Value::Double(-0.25),
            Value::String("héllo".into()),
            Value::String(String::new()),
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Bytes(vec![0, 255, 7]),
            Value::Stream(vec![]),
        ];
        for v in vals {
            let b = v.encode();
            assert_eq!(b[0], v.ty() as u8);
            assert_eq!(Value::decode(&b).unwrap(), v);
        }
        assert_eq!(Value::Int(-2).encode(), vec![1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Value::Float(1.0).encode(), vec![2, 0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn decode_malformed() {
        for b in [&[][..], &[0], &[8], &[1, 0], &[2, 0, 0, 0, 0, 0], &[5, 2], &[5], &[4, 0xff], &[3, 1, 2, 3]] {
            let e = Value::decode(b).unwrap_err();
            assert_eq!(e.code, crate::Code::INVALID, "{:?}", b);
        }
    }

    #[test]
    fn text_matches_go() {
        // Go's strconv.FormatFloat(f, 'f', -1, 64), with Inf for +Inf.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1e6, "1000000"),
            (2500000.5, "2500000.5"),
            (-2500000.5, "-2500000.5"),
            (12345678.9, "12345678.9"),
            (0.0001, "0.0001"),
            (1.5e-7, "0.00000015"),
            (1e21, "1000000000000000000000"),
            (-3.25, "-3.25"),
            (0.1, "0.1"),
            (f64::INFINITY, "Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(Value::Double(*f).text(), *want, "{:?}", f);
        }
        assert_eq!(Value::Float(0.1).text(), "0.1");
        assert_eq!(Value::Float(16777216.0).text(), "16777216");
        assert_eq!(Value::Float(1e20).text(), "100000000000000000000");
        assert_eq!(Value::Float(f32::NEG_INFINITY).text(), "-Inf");
        assert_eq!(Value::Int(-7).text(), "-7");
        assert_eq!(Value::Boolean(true).text(), "true");
        assert_eq!(Value::Bytes(b"hi!?".to_vec()).text(), "aGkhPw==");
        for v in [
            Value::Double(f64::MAX),
            Value::Double(-f64::MIN_POSITIVE),
            Value::Double(5e-324),
            Value::Double(-0.0),
            Value::Float(f32::MAX),
            Value::Float(1e-45),
            Value::Float(-0.0),
        ] {
            let t = v.text();
            assert!(!t.contains('e') && !t.contains('+'), "{}", t);
            let back = Value::parse_text(v.ty(), &t).unwrap();
            assert_eq!(back.encode(), v.encode(), "{}", t);
        }
    }

    #[test]
    fn parse_text() {
        assert_eq!(Value::parse_text(Type::Int, "12.0").unwrap(), Value::Int(12));
        assert!(Value::parse_text(Type::Int, "12.5").is_err());
        assert_eq!(Value::parse_text(Type::Boolean, "ON").unwrap(), Value::Boolean(true));
        assert_eq!(Value::parse_text(Type::Boolean, "0").unwrap(), Value::Boolean(false));
        assert!(Value::parse_text(Type::Boolean, "yes").is_err());
        assert_eq!(Value::parse_text(Type::Double, "1e+06").unwrap(), Value::Double(1e6));
        assert_eq!(Value::parse_text(Type::Float, "+Inf").unwrap(), Value::Float(f32::INFINITY));
        assert_eq!(Value::parse_text(Type::Bytes, "aGkhPw==").unwrap(), Value::Bytes(b"hi!?".to_vec()));
        assert_eq!(Value::parse_text(Type::Stream, "").unwrap(), Value::Stream(vec![]));
        assert_eq!(Value::parse_text(Type::Double, "2.5000005e+06").unwrap(), Value::Double(2500000.5));
        assert_eq!(Value::parse_text(Type::Double, "Inf").unwrap(), Value::Double(f64::INFINITY));
        let raw = vec![0xfb, 0xff, 0xbf, b'h', b'i'];
        for s in ["+/+/aGk=", "+/+/aGk", "-_-_aGk=", "-_-_aGk"] {
            assert_eq!(Value::parse_text(Type::Bytes, s).unwrap(), Value::Bytes(raw.clone()), "{}", s);
        }
    }

    #[test]
    fn base64() {
        for n in 0..40u8 {
            let b: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&b)).unwrap(), b);
        }
        for n in 0..40u8 {
            let b: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let url = base64_encode(&b).replace('+', "-").replace('/', "_");
            assert_eq!(base64_decode(url.trim_end_matches('=')).unwrap(), b);
        }
        for bad in ["a", "abcde", "ab=c", "a===", "ab==cd==", "YR==", "YR", "Y!==", "YWI=a", "+/-_", "aGk=="] {
            assert_eq!(base64_decode(bad), None, "{:?}", bad);
        }
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    }

    #[test]
    fn convert() {
        assert_eq!(Value::Double(3.0).convert(Type::Int).unwrap(), Value::Int(3));
        assert!(Value::Double(3.5).convert(Type::Int).is_err());
        assert_eq!(Value::Int(1).convert(Type::Boolean).unwrap(), Value::Boolean(true));
        assert_eq!(Value::Boolean(true).convert(Type::Double).unwrap(), Value::Double(1.0));
        assert_eq!(Value::Int(5).convert(Type::String).unwrap(), Value::String("5".into()));
        assert_eq!(Value::String("2.5".into()).convert(Type::Double).unwrap(), Value::Double(2.5));
        assert!(Value::Bytes(vec![1]).convert(Type::Int).is_err());
        assert_eq!(Value::Bytes(vec![1]).convert(Type::Stream).unwrap(), Value::Stream(vec![1]));
    }

    #[test]
    fn types() {
        assert_eq!(Type::parse("double"), Some(Type::Double));
        assert_eq!(Type::parse("nope"), None);
        assert_eq!(Type::from_byte(7), Some(Type::Stream));
        assert_eq!(Type::from_byte(0), None);
        assert_eq!(Type::from_byte(8), None);
        assert_eq!(Type::Boolean.name(), "BOOLEAN");
    }
}
