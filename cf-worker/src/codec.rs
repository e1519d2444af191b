//! The one place that knows how values become bytes: bincode 2 through its serde API.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// A value that could not be encoded or decoded; the message is serde's.
#[derive(Debug, Clone)]
pub struct CodecError(String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// Appends the encoding of `value` to `out`.
///
/// # Errors
/// The value's `Serialize` implementation failed.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(drop)
        .map_err(|e| {
            CodecError(match e {
                // A `Serialize` impl's own message, without bincode's wrapping.
                bincode::error::EncodeError::OtherString(message) => message,
                other => other.to_string(),
            })
        })
}

/// Decodes a whole value from `bytes`.
///
/// # Errors
/// The bytes are not the encoding of a `T`, or have bytes left over.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| {
        CodecError(match e {
            // A `Deserialize` impl's own message, without bincode's wrapping.
            bincode::error::DecodeError::OtherString(message) => message,
            other => other.to_string(),
        })
    })?;
    if used != bytes.len() {
        return Err(CodecError(format!(
            "{} bytes left over after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}
