//! Status codes (ABI §5) and the SDK's error type.

use std::fmt;

/// An ABI status code. Exports put it in the first byte of a result buffer;
/// host functions return it negated. Codes 15–63 are reserved; 64–255 are
/// the plugin's own and are reported by the host as "plugin code N".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Code(pub u8);

impl Code {
    /// Success.
    pub const OK: Code = Code(0);
    /// A bug or an unexpected condition.
    pub const INTERNAL: Code = Code(1);
    /// A malformed argument, description, config or value.
    pub const INVALID: Code = Code(2);
    /// Unknown device, property, key or handle.
    pub const NOT_FOUND: Code = Code(3);
    /// The operation is not implemented.
    pub const UNSUPPORTED: Code = Code(4);
    /// The device or an I/O call did not answer in time.
    pub const TIMEOUT: Code = Code(5);
    /// The device cannot be reached now.
    pub const UNAVAILABLE: Code = Code(6);
    /// The MapperPlugin does not grant the resource.
    pub const DENIED: Code = Code(7);
    /// Write to a read-only property.
    pub const READ_ONLY: Code = Code(8);
    /// A buffer or store exceeds a limit.
    pub const TOO_LARGE: Code = Code(9);
    /// Too many handles, or another cap.
    pub const LIMIT: Code = Code(10);
    /// The handle is closed (or the stream ended).
    pub const CLOSED: Code = Code(11);
    /// An I/O error other than a timeout.
    pub const IO: Code = Code(12);
    /// The plugin panicked; the host throws the instance away.
    pub const PANIC: Code = Code(13);
    /// The device answered with an error (a Modbus exception, say).
    pub const DEVICE: Code = Code(14);

    /// The code a host function's negative return value stands for.
    /// Values that are not a negated code map to [`Code::INTERNAL`].
    pub fn from_host(ret: i64) -> Code {
        if (-255..0).contains(&ret) {
            Code((-ret) as u8)
        } else {
            Code::INTERNAL
        }
    }

    /// The ABI's name of the code ("not found"), or "plugin code N".
    pub fn name(self) -> String {
        const NAMES: [&str; 15] = [
            "ok",
            "internal",
            "invalid argument",
            "not found",
            "unsupported",
            "timeout",
            "unavailable",
            "denied by grants",
            "read-only",
            "too large",
            "limit reached",
            "closed",
            "i/o error",
            "plugin panic",
            "device error",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) => n.to_string(),
            None => format!("plugin code {}", self.0),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An error with a status code. Return one from a [`Driver`](crate::Driver)
/// method to choose the code the host sees; the message travels as-is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    /// The status code the host sees.
    pub code: Code,
    /// The message the host sees (without the code's name).
    pub message: String,
}

impl Error {
    /// An error with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// [`Code::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Code::INTERNAL, message)
    }

    /// [`Code::INVALID`].
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::INVALID, message)
    }

    /// [`Code::NOT_FOUND`].
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Code::NOT_FOUND, message)
    }

    /// [`Code::UNSUPPORTED`].
    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::new(Code::UNSUPPORTED, message)
    }

    /// The error a host function's negative return value stands for, with
    /// what was being done as the message.
    pub fn from_host(ret: i64, what: impl fmt::Display) -> Error {
        let code = Code::from_host(ret);
        Error::new(code, format!("{}: {}", what, code))
    }

    /// Prefixes the message with context: `e.context("read register 7")`.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{}: {}", what, self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// The SDK's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] with a code and a formatted message:
/// `wapper::err!(Code::INVALID, "bad register {}", r)`.
#[macro_export]
macro_rules! err {
    ($code:expr, $($arg:tt)+) => {
        $crate::Error::new($code, format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Code::DENIED.name(), "denied by grants");
        assert_eq!(Code(70).to_string(), "plugin code 70");
        assert_eq!(Code::from_host(-7), Code::DENIED);
        assert_eq!(Code::from_host(3), Code::INTERNAL);
        let e = Error::from_host(-5, "io_read");
        assert_eq!(e.code, Code::TIMEOUT);
        assert_eq!(e.message, "io_read: timeout");
        assert_eq!(err!(Code::IO, "x{}", 1).to_string(), "i/o error: x1");
    }
}
