//! A small, strict JSON parser and writer (RFC 8259), so that the SDK needs
//! no dependencies.
//!
//! Numbers keep their text, so an `int64` or a `uint64` never loses digits
//! on its way through `f64`; [`Json::as_i64`], [`Json::as_u64`] and
//! [`Json::as_f64`] convert on demand. Objects keep their members in order;
//! [`Json::get`] returns the last member of a name, as Go's `encoding/json`
//! does. A lone UTF-16 surrogate in a `\u` escape becomes U+FFFD, also as in
//! Go, since a Rust `String` cannot hold it.
//!
//! # configData numbers
//!
//! KubeEdge passes configData numbers loosely: edgecore sends them as JSON
//! numbers narrowed to 32-bit floats (502 arrives as 502, but 123456789 as
//! 123456790), or as strings (`"502"`). Read an integer or a float member
//! of a configData object with [`Json::field_i64`] and [`Json::field_f64`]:
//! they accept both forms, refuse what would lose information, and name
//! the field in their error.
//!
//! ```
//! use wapper::Json;
//!
//! let cfg = Json::parse(r#"{"port": "502", "slaveID": 1, "offset": 1.5}"#).unwrap();
//! assert_eq!(cfg.field_i64("port").unwrap(), Some(502));
//! assert_eq!(cfg.field_i64("timeout").unwrap().unwrap_or(1000), 1000); // absent
//! let e = cfg.field_i64("offset").unwrap_err();
//! assert_eq!(e.code, wapper::Code::INVALID);
//! assert_eq!(e.message, r#"field "offset": 1.5 is not a whole number"#);
//! ```

use std::fmt;

/// The deepest nesting of arrays and objects the parser accepts. It keeps
/// recursion well inside a 64 KiB wasm stack.
pub const MAX_DEPTH: usize = 100;

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as its JSON text (always valid JSON number syntax).
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object: its members in document order.
    Object(Vec<(String, Json)>),
}

/// Why a document is not JSON: what is wrong and the byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

impl From<JsonError> for crate::Error {
    fn from(e: JsonError) -> Self {
        crate::Error::new(crate::Code::INVALID, e.to_string())
    }
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses a complete document. Leading and trailing whitespace is
    /// allowed, anything else after the value is not.
    pub fn parse(src: &str) -> Result<Json, JsonError> {
        Self::parse_bytes(src.as_bytes())
    }

    /// Parses a complete document from bytes, which must be UTF-8.
    pub fn parse_bytes(src: &[u8]) -> Result<Json, JsonError> {
        if let Err(e) = std::str::from_utf8(src) {
            return Err(JsonError {
                offset: e.valid_up_to(),
                message: "invalid UTF-8".into(),
            });
        }
        let mut p = Parser { s: src, i: 0 };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != src.len() {
            return Err(p.err("unexpected data after the JSON value"));
        }
        Ok(v)
    }

    /// Returns the member `key` of an object (the last one if repeated), or
    /// `None` for a missing member or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Like [`Json::get`], but returns `null` when absent, for chaining:
    /// `cfg.at("a").at("b")`.
    pub fn at(&self, key: &str) -> &Json {
        self.get(key).unwrap_or(&NULL)
    }

    /// Returns element `i` of an array.
    pub fn index(&self, i: usize) -> Option<&Json> {
        match self {
            Json::Array(a) => a.get(i),
            _ => None,
        }
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A number as `f64` (nearest value).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// A number as `i64`, when it is integral and in range (`12`, `-3`,
    /// `1.0`, `2e3`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok().or_else(|| integral(n.parse().ok()?)),
            _ => None,
        }
    }

    /// A number as `u64`, when it is integral, non-negative and in range.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok().or_else(|| {
                let i = integral(n.parse().ok()?)?;
                if i >= 0 {
                    Some(i as u64)
                } else {
                    None
                }
            }),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members of an object.
    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    /// KubeEdge gives `configData` values flat and loosely typed: `"42"` and
    /// `42` mean the same. This returns a string as-is, and a number or a
    /// boolean as its JSON text; `None` for null, arrays and objects.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A number, or a string holding one (`42`, `"42"`, `"4.2e1"`), as
    /// `f64`. See [`Json::to_text`]. For a configData member, prefer
    /// [`Json::field_f64`], whose error names the field.
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Json::String(s) => s.trim().parse().ok(),
            _ => self.as_f64(),
        }
    }

    /// A number, or a string holding one, as `i64` when integral. For a
    /// configData member, prefer [`Json::field_i64`], whose error names the
    /// field and says what is wrong.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Json::String(s) => Json::Number(s.trim().to_string()).as_i64(),
            _ => self.as_i64(),
        }
    }

    /// A boolean, or a string `true`/`false`/`1`/`0`/`on`/`off`, or a number
    /// (non-zero is true).
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            Json::Number(_) => self.as_f64().map(|f| f != 0.0),
            Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" => Some(true),
                "false" | "0" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// Reads member `key` of a configData object as an integer: a JSON
    /// number, or a string holding one (`502`, `"502"`, `5e2`). `Ok(None)`
    /// when the member is absent, `null` or `""` (or `self` is no object),
    /// so that a default reads `cfg.field_i64("port")?.unwrap_or(502)`.
    /// An [`Code::INVALID`](crate::Code::INVALID) error names the field
    /// when the value is not a number, not a whole number (`1.5`), or
    /// outside the `i64` range. Narrowing to `f32` on the way cannot be
    /// detected: an integer above 2^24 (16777216) may arrive rounded, so
    /// such values are best written as strings.
    pub fn field_i64(&self, key: &str) -> crate::Result<Option<i64>> {
        let text = match self.field_number(key)? {
            Some(t) => t,
            None => return Ok(None),
        };
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Some(i));
        }
        let f: f64 = text.parse().map_err(|_| field_err(key, &text, "is not a number"))?;
        if !f.is_finite() || f < -9.223_372_036_854_775_808e18 || f >= 9.223_372_036_854_775_808e18 {
            return Err(field_err(key, &text, "is out of range"));
        }
        // A fraction too small for an f64 (1e-400) parses as 0.
        if f.fract() != 0.0 || (f == 0.0 && mantissa(&text).bytes().any(|b| (b'1'..=b'9').contains(&b))) {
            return Err(field_err(key, &text, "is not a whole number"));
        }
        Ok(Some(f as i64))
    }

    /// Reads member `key` of a configData object as a number: a JSON
    /// number, or a string holding one (`0.5`, `"1e-3"`). `Ok(None)` when
    /// the member is absent, `null` or `""`. An
    /// [`Code::INVALID`](crate::Code::INVALID) error names the field when
    /// the value is not a number or beyond the `f64` range.
    pub fn field_f64(&self, key: &str) -> crate::Result<Option<f64>> {
        let text = match self.field_number(key)? {
            Some(t) => t,
            None => return Ok(None),
        };
        let f: f64 = text.parse().map_err(|_| field_err(key, &text, "is not a number"))?;
        if !f.is_finite() {
            return Err(field_err(key, &text, "is out of range"));
        }
        Ok(Some(f))
    }

    /// The numeric text of member `key`: a number's text, or a string's
    /// trimmed content when it has only the characters of a decimal number
    /// (so that "inf", "NaN" and hexadecimal are refused).
    fn field_number(&self, key: &str) -> crate::Result<Option<String>> {
        let decimal = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => Ok(Some(n.clone())),
            Some(Json::String(s)) => {
                let t = s.trim();
                if t.is_empty() {
                    Ok(None)
                } else if decimal(t) {
                    Ok(Some(t.to_string()))
                } else {
                    Err(field_err(key, &quote(s), "is not a number"))
                }
            }
            Some(v) => Err(field_err(key, &v.to_string(), "is not a number")),
        }
    }

    /// A JSON number from an integer.
    pub fn from_i64(n: i64) -> Json {
        Json::Number(n.to_string())
    }

    /// A JSON number from a float; NaN and infinities, which JSON cannot
    /// hold, become `null`.
    pub fn from_f64(f: f64) -> Json {
        if f.is_finite() {
            Json::Number(format!("{:?}", f))
        } else {
            Json::Null
        }
    }
}

fn integral(f: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which is out of range.
    if f.fract() == 0.0 && f >= -9.223_372_036_854_775_808e18 && f < 9.223_372_036_854_775_808e18 {
        Some(f as i64)
    } else {
        None
    }
}

/// The error of a bad configData member, naming it.
fn field_err(key: &str, text: &str, what: &str) -> crate::Error {
    let mut t = text.to_string();
    if t.len() > 64 {
        let mut end = 61;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push_str("...");
    }
    crate::Error::invalid(format!("field {}: {} {}", quote(key), t, what))
}

/// `s` up to its exponent.
fn mantissa(s: &str) -> &str {
    match s.find(|c| c == 'e' || c == 'E') {
        Some(i) => &s[..i],
        None => s,
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl From<i64> for Json {
    fn from(n: i64) -> Json {
        Json::from_i64(n)
    }
}

impl From<f64> for Json {
    fn from(f: f64) -> Json {
        Json::from_f64(f)
    }
}

/// Writes compact JSON: `{"a":1,"b":[true,null]}`.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Json::Number(n) => f.write_str(n),
            Json::String(s) => write_str(f, s),
            Json::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    fmt::Display::fmt(v, f)?;
                }
                f.write_str("]")
            }
            Json::Object(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_str(f, k)?;
                    f.write_str(":")?;
                    fmt::Display::fmt(v, f)?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Writes `s` as a JSON string literal, quotes included.
pub fn write_str(f: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        f.write_str(&s[start..i])?;
        if esc.is_empty() {
            write!(f, "\\u{:04x}", c as u32)?;
        } else {
            f.write_str(esc)?;
        }
        start = i + c.len_utf8();
    }
    f.write_str(&s[start..])?;
    f.write_char('"')
}

/// Returns `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let _ = write_str(&mut out, s);
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> JsonError {
        JsonError {
            offset: self.i,
            message: msg.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, JsonError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        match self.peek() {
            None => Err(self.err("unexpected end of JSON")),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("JSON nested too deeply"));
                }
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Array(out));
                }
                loop {
                    self.ws();
                    out.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(out));
                        }
                        _ => return Err(self.err("expected ',' or ']' in array")),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("JSON nested too deeply"));
                }
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Object(out));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a string key in object"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(self.err("expected ':' after object key"));
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    out.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(out));
                        }
                        _ => return Err(self.err("expected ',' or '}' in object")),
                    }
                }
            }
            Some(_) => Err(self.err("invalid character looking for a JSON value")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number: expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number: expected a digit after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number: expected a digit in the exponent"));
            }
        }
        // The input was checked to be UTF-8 and these bytes are ASCII.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        Ok(Json::Number(text.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape: expected 4 hex digits")),
            };
            n = n * 16 + d as u32;
            self.i += 1;
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    out.push_str(self.utf8(run));
                    self.i += 1;
                    return Ok(out);
                }
                Some(c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(b'\\') => {
                    out.push_str(self.utf8(run));
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            run = self.i;
                            continue;
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    };
                    out.push(c);
                    self.i += 1;
                    run = self.i;
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// Decodes the rest of a `\u` escape (after `\u`), joining a surrogate
    /// pair; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.s[self.i..].starts_with(b"\\u") {
                let save = self.i;
                self.i += 2;
                let lo = self.hex4()?;
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                // Not a low surrogate: leave it to be decoded on its own.
                self.i = save;
            }
            return Ok('\u{FFFD}');
        }
        Ok(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }

    fn utf8(&self, from: usize) -> &'a str {
        // Runs never split a UTF-8 sequence: they end at an ASCII '"' or '\\'.
        std::str::from_utf8(&self.s[from..self.i]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Json {
        Json::parse(s).unwrap_or_else(|e| panic!("parse {:?}: {}", s, e))
    }

    #[test]
    fn scalars() {
        assert_eq!(p("null"), Json::Null);
        assert_eq!(p(" true "), Json::Bool(true));
        assert_eq!(p("false"), Json::Bool(false));
        assert_eq!(p("0"), Json::Number("0".into()));
        assert_eq!(p("-12.5e+3"), Json::Number("-12.5e+3".into()));
        assert_eq!(p("\"x\""), Json::String("x".into()));
    }

    #[test]
    fn numbers() {
        assert_eq!(p("9223372036854775807").as_i64(), Some(i64::MAX));
        assert_eq!(p("-9223372036854775808").as_i64(), Some(i64::MIN));
        assert_eq!(p("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(p("9223372036854775808").as_i64(), None);
        assert_eq!(p("2e3").as_i64(), Some(2000));
        assert_eq!(p("1.0").as_u64(), Some(1));
        assert_eq!(p("1.5").as_i64(), None);
        assert_eq!(p("-1").as_u64(), None);
        assert_eq!(p("0.1").as_f64(), Some(0.1));
        assert_eq!(p("1E400").as_f64(), Some(f64::INFINITY));
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "1e+", "0x1", "NaN", "-Infinity", "1.e2"] {
            assert!(Json::parse(bad).is_err(), "{:?} must not parse", bad);
        }
    }

    #[test]
    fn strings() {
        assert_eq!(p(r#""a\"b\\c\/d\b\f\n\r\t""#).as_str(), Some("a\"b\\c/d\u{8}\u{c}\n\r\t"));
        assert_eq!(p(r#""\u00e9\u4e2D""#).as_str(), Some("é中"));
        assert_eq!(p(r#""\ud83d\ude00""#).as_str(), Some("😀"));
        assert_eq!(p(r#""x\ud83dy""#).as_str(), Some("x\u{FFFD}y"));
        assert_eq!(p(r#""\ude00""#).as_str(), Some("\u{FFFD}"));
        assert_eq!(p(r#""\ud83d\u0041""#).as_str(), Some("\u{FFFD}A"));
        assert_eq!(p("\"ünï 😀\"").as_str(), Some("ünï 😀"));
        for bad in ["\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"a\nb\"", "\"\\"] {
            assert!(Json::parse(bad).is_err(), "{:?} must not parse", bad);
        }
        assert!(Json::parse_bytes(b"\"\xff\"").is_err());
    }

    #[test]
    fn containers() {
        let v = p(r#" { "a" : [1, {"b": null}, []], "c": {}, "a2": "x", "a": 7 } "#);
        assert_eq!(v.get("a").and_then(Json::as_i64), Some(7), "last duplicate wins");
        assert_eq!(v.at("c"), &Json::Object(vec![]));
        assert!(v.at("missing").at("deeper").is_null());
        let first = &v.as_object().unwrap()[0].1;
        assert_eq!(first.index(1).unwrap().get("b"), Some(&Json::Null));
        assert_eq!(first.index(2).unwrap().as_array().map(|a| a.len()), Some(0));
        for bad in ["[1,]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "[", "{", "[]]", "{} x", ""] {
            assert!(Json::parse(bad).is_err(), "{:?} must not parse", bad);
        }
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(Json::parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(Json::parse(&deep).unwrap_err().message.contains("deeply"));
    }

    #[test]
    fn error_offset() {
        let e = Json::parse("{\"a\": tru}").unwrap_err();
        assert_eq!(e.offset, 6);
    }

    #[test]
    fn write_round_trip() {
        let src = r#"{"s":"q\"\\\n\u0001é😀","n":-1.5e3,"a":[true,false,null],"o":{}}"#;
        let v = p(src);
        let out = v.to_string();
        assert_eq!(out, r#"{"s":"q\"\\\n\u0001é😀","n":-1.5e3,"a":[true,false,null],"o":{}}"#);
        assert_eq!(p(&out), v);
        assert_eq!(quote("a\tb"), "\"a\\tb\"");
        assert_eq!(Json::from_f64(0.1).to_string(), "0.1");
        assert_eq!(Json::from_f64(1.0).to_string(), "1.0");
        assert_eq!(Json::from_f64(f64::NAN), Json::Null);
    }

    #[test]
    fn config_numbers() {
        let cfg = p(r#"{
            "port": 502, "portText": " 502 ", "narrowed": 1.2345679e+08, "exp": "5e2", "neg": -7,
            "half": 1.5, "halfText": "1.5", "word": "abc", "flag": true, "obj": {}, "list": [1],
            "empty": "", "null": null, "huge": 1e19, "hugeText": "99999999999999999999",
            "min": -9223372036854775808, "max": "9223372036854775807", "tiny": 1e-400, "inf": "Inf",
            "nan": "NaN", "hex": "0x10", "over": 1e400, "plus": "+4", "lead": "0502"
        }"#);
        for (k, want) in [
            ("port", Some(502)),
            ("portText", Some(502)),
            ("narrowed", Some(123_456_790)),
            ("exp", Some(500)),
            ("neg", Some(-7)),
            ("min", Some(i64::MIN)),
            ("max", Some(i64::MAX)),
            ("plus", Some(4)),
            ("lead", Some(502)),
            ("absent", None),
            ("empty", None),
            ("null", None),
        ] {
            assert_eq!(cfg.field_i64(k), Ok(want), "{}", k);
        }
        for (k, want) in [
            ("half", r#"field "half": 1.5 is not a whole number"#),
            ("halfText", r#"field "halfText": 1.5 is not a whole number"#),
            ("word", r#"field "word": "abc" is not a number"#),
            ("flag", r#"field "flag": true is not a number"#),
            ("obj", r#"field "obj": {} is not a number"#),
            ("list", r#"field "list": [1] is not a number"#),
            ("huge", r#"field "huge": 1e19 is out of range"#),
            ("hugeText", r#"field "hugeText": 99999999999999999999 is out of range"#),
            ("inf", r#"field "inf": "Inf" is not a number"#),
            ("nan", r#"field "nan": "NaN" is not a number"#),
            ("hex", r#"field "hex": "0x10" is not a number"#),
            ("over", r#"field "over": 1e400 is out of range"#),
            ("tiny", r#"field "tiny": 1e-400 is not a whole number"#),
        ] {
            let e = cfg.field_i64(k).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (crate::Code::INVALID, want), "{}", k);
        }
        for (k, want) in [("port", 502.0), ("halfText", 1.5), ("half", 1.5), ("exp", 500.0), ("huge", 1e19), ("tiny", 0.0)] {
            assert_eq!(cfg.field_f64(k), Ok(Some(want)), "{}", k);
        }
        assert_eq!(cfg.field_f64("absent"), Ok(None));
        for k in ["word", "flag", "inf", "nan", "over", "hex"] {
            let e = cfg.field_f64(k).unwrap_err();
            assert!(e.code == crate::Code::INVALID && e.message.contains(&format!("{:?}", k)), "{}: {}", k, e);
        }
        // Not an object (an absent configData is null): nothing to read.
        assert_eq!(Json::Null.field_i64("port"), Ok(None));
        let long = p(&format!(r#"{{"x": "{}"}}"#, "é".repeat(50)));
        assert!(long.field_i64("x").unwrap_err().message.ends_with("... is not a number"));
    }

    #[test]
    fn loose_values() {
        let v = p(r#"{"a":"42","b":42,"c":"on","d":0,"e":" 1.5 ","f":true}"#);
        assert_eq!(v.at("a").to_i64(), Some(42));
        assert_eq!(v.at("b").to_i64(), Some(42));
        assert_eq!(v.at("c").to_bool(), Some(true));
        assert_eq!(v.at("d").to_bool(), Some(false));
        assert_eq!(v.at("e").to_f64(), Some(1.5));
        assert_eq!(v.at("f").to_text().as_deref(), Some("true"));
        assert_eq!(v.at("b").to_text().as_deref(), Some("42"));
        assert_eq!(v.at("x").to_text(), None);
    }
}
