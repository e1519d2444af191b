//! The one place that knows how values become bytes: bincode 2 through its serde API.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

fn config() -> bincode::config::Configuration {
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

/// How many bytes a decoder may claim (for strings, byte buffers and collections) for each byte
/// of input. Valid data claims at most 16 per byte (a `u128` takes one byte as a varint); a
/// length field that claims more is a lie, and is refused before anything is allocated for it.
const CLAIM_PER_BYTE: usize = 16;

/// Decodes a whole value from `bytes`.
///
/// Allocation stays proportional to the input: the decoder's limit is the smallest of a few
/// fixed sizes that covers 16 times `bytes.len()` (valid data never claims more).
///
/// # Errors
/// The bytes are not the encoding of a `T`, or have bytes left over.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let claim = bytes.len().saturating_mul(CLAIM_PER_BYTE);
    if claim <= 1 << 16 {
        decode_within::<T, { 1 << 16 }>(bytes)
    } else if claim <= 1 << 20 {
        decode_within::<T, { 1 << 20 }>(bytes)
    } else if claim <= 1 << 24 {
        decode_within::<T, { 1 << 24 }>(bytes)
    } else if claim <= 1 << 28 {
        decode_within::<T, { 1 << 28 }>(bytes)
    } else if claim <= 1 << 32 {
        decode_within::<T, { 1 << 32 }>(bytes)
    } else {
        decode_within::<T, { 1 << 36 }>(bytes)
    }
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = config().with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config).map_err(|e| {
        CodecError(match e {
            // A `Deserialize` impl's own message, without bincode's wrapping.
            bincode::error::DecodeError::OtherString(message) => message,
            bincode::error::DecodeError::LimitExceeded => {
                "a length in the data claims far more bytes than the input holds".to_owned()
            }
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

#[cfg(test)]
mod test;
