//! The library's one error type. Every failure carries a machine-readable `kind` and a message meant for
//! the user; the HTTP layer maps kinds to status codes in exactly one place (`api::error`).
use std::fmt;

/// What went wrong, coarse enough for a client to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The named resource does not exist.
    NotFound,
    /// The request or its data is malformed (bad name, bad shape, NaN, ...).
    InvalidInput,
    /// The uploaded or scanned file is not a model faculty can use.
    InvalidModel,
    /// The resource exists already, or changed underneath us.
    Conflict,
    /// The upload exceeds the configured limit.
    PayloadTooLarge,
    /// No credentials, or unknown ones, where a token is required.
    Unauthorized,
    /// A token whose role does not allow this request.
    Forbidden,
    /// The disk is full (or over quota): nothing was written.
    InsufficientStorage,
    /// Too much work in flight; retry later.
    Overloaded,
    /// ONNX Runtime could not be loaded.
    RuntimeUnavailable,
    /// The state database (or object store) cannot be reached; retry when it is back.
    StoreUnavailable,
    /// A bug or an I/O failure on the server side.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidInput => "invalid_input",
            Self::InvalidModel => "invalid_model",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Overloaded => "overloaded",
            Self::RuntimeUnavailable => "runtime_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// An error with a kind and a human-readable message.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, m)
    }
    pub fn invalid_input(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, m)
    }
    pub fn invalid_model(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidModel, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Whether an I/O error means the disk is full.
fn disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28)
}

fn full(what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InsufficientStorage,
        format!("the server's disk is full ({what}); nothing was stored: free space and retry"),
    )
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if disk_full(&e) {
            return full("no space left on device");
        }
        Self::internal(format!("I/O error: {e}"))
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        if let sled::Error::Io(io) = &e
            && disk_full(io)
        {
            return full("no space left on device");
        }
        Self::internal(format!("state store error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::internal(format!("serialization error: {e}"))
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Self::internal(format!("ONNX Runtime: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_insufficient_storage() {
        let e: Error = std::io::Error::from_raw_os_error(28).into();
        assert_eq!(e.kind, ErrorKind::InsufficientStorage);
        assert!(e.message.contains("disk is full"), "{}", e.message);
        let e: Error = std::io::Error::from_raw_os_error(5).into();
        assert_eq!(e.kind, ErrorKind::Internal);
    }

    #[test]
    fn the_wire_name_of_a_kind_reads_back_as_that_kind() {
        use ErrorKind::*;
        for k in [
            NotFound,
            InvalidInput,
            InvalidModel,
            Conflict,
            PayloadTooLarge,
            Unauthorized,
            Forbidden,
            InsufficientStorage,
            Overloaded,
            RuntimeUnavailable,
            Internal,
        ] {
            let v = serde_json::Value::String(k.as_str().into());
            assert_eq!(serde_json::to_value(k).unwrap(), v);
            assert_eq!(serde_json::from_value::<ErrorKind>(v).unwrap(), k);
        }
    }
}
