//! The one place that knows how values become bytes: bincode 2 through its serde API.
//!
//! A `Vec<u8>` takes a fast path. serde sees it as a sequence of `u8`s and bincode would encode
//! and decode it one element at a time (about 8 ns a byte); as a byte string it is one copy. For
//! bincode both are the same bytes (a varint length, then the bytes as they are), so the fast
//! path changes no encoding: it is only faster, and a value encoded either way decodes either
//! way. The check is on the type as a whole (a `Vec<u8>` argument of a one-argument task, a
//! `Vec<u8>` result or error); a `Vec<u8>` inside a tuple or a struct still goes element by
//! element, and `serde_bytes` remains the way to make those fast.

use std::any::Any;
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
pub fn encode_into<T: Serialize + 'static>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_to(value, out)
}

/// Writes the encoding of `value` to `out` (for a buffer of the caller's that is not a `Vec`).
///
/// # Errors
/// The value's `Serialize` implementation failed, or `out` refused the bytes.
pub fn encode_to<T: Serialize + 'static, W: std::io::Write>(
    value: &T,
    out: &mut W,
) -> Result<(), CodecError> {
    match (value as &dyn Any).downcast_ref::<Vec<u8>>() {
        Some(bytes) => encode_serde(&AsBytes(bytes), out),
        None => encode_serde(value, out),
    }
}

fn encode_serde<T: Serialize + ?Sized, W: std::io::Write>(
    value: &T,
    out: &mut W,
) -> Result<(), CodecError> {
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
pub fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut slot: Option<T> = None;
    if let Some(fast) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
        *fast = Some(decode_limited::<ByteVec>(bytes)?.0);
        return slot.ok_or_else(|| CodecError("the byte fast path lost its value".to_owned()));
    }
    decode_limited(bytes)
}

/// [`decode`] without the fast path.
fn decode_limited<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
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

/// A byte slice that serializes as a byte string (`serialize_bytes`), not as a sequence.
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A `Vec<u8>` that deserializes from a byte string (and, like any `Vec<u8>`, from a sequence).
struct ByteVec(Vec<u8>);

impl<'de> serde::Deserialize<'de> for ByteVec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_byte_buf(ByteVecVisitor)
            .map(ByteVec)
    }
}

struct ByteVecVisitor;

impl<'de> serde::de::Visitor<'de> for ByteVecVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod test;
