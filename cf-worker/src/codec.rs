//! The one place that knows how values become bytes: bincode 2 through its serde API.
//!
//! A `Vec<u8>` takes a fast path. serde sees it as a sequence of `u8`s and bincode would encode
//! and decode it one element at a time (about 8 ns a byte); as a byte string it is one copy. For
//! bincode both are the same bytes (a varint length, then the bytes as they are), so the fast
//! path changes no encoding: it is only faster, and a value encoded either way decodes either
//! way. The check is on the type as a whole (a `Vec<u8>` argument of a one-argument task, a
//! `Vec<u8>` result or error); a `Vec<u8>` inside a tuple or a struct still goes element by
//! element, and `serde_bytes` remains the way to make those fast.
//!
//! A large byte string (a `Vec<u8>`, `serde_bytes::ByteBuf` or `String` of more than
//! [`SPLIT_AT`] bytes, as a one-argument task's argument, a result or an error) is not encoded
//! at all: [`split`] takes its buffer out of the value, the frame carries its length prefix
//! ([`bytes_prefix`]) and then the buffer's bytes as they are, written straight from it (see
//! [`frame::SPLIT`](crate::frame::SPLIT)). On the other side the bytes are read straight into the
//! buffer of the value that [`decode_payload`] builds around it. The bytes on the wire are the
//! encoding all the same: a reader that does not split decodes them as usual.

use std::any::Any;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

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

/// Byte strings longer than this cross as a frame's raw tail ([`split`]); shorter ones are
/// encoded into the frame like any value (a copy costs less than a second write there).
pub const SPLIT_AT: usize = 64 << 10;

/// A value as it arrives in a frame.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Its whole encoding.
    Encoded(&'a [u8]),
    /// The bytes of a byte string whose length prefix came before them: a split frame's tail,
    /// already in the buffer the value keeps.
    Bytes(Vec<u8>),
}

/// Takes the buffer out of `value`, without a copy, when it is a byte string (`Vec<u8>`,
/// `serde_bytes::ByteBuf` or `String`) of more than [`SPLIT_AT`] bytes; gives `value` back
/// otherwise. The value's encoding is [`bytes_prefix`] of the buffer's length, then the buffer.
///
/// # Errors
/// `value` itself, when it is not such a byte string.
pub fn split<T: 'static>(value: T) -> Result<Vec<u8>, T> {
    let long = |len: usize| len > SPLIT_AT;
    let mut slot = Some(value);
    let any = &mut slot as &mut dyn Any;
    let bytes = if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        v.take_if(|v| long(v.len()))
    } else if let Some(v) = any.downcast_mut::<Option<ByteBuf>>() {
        v.take_if(|v| long(v.len())).map(ByteBuf::into_vec)
    } else if let Some(v) = any.downcast_mut::<Option<String>>() {
        v.take_if(|v| long(v.len())).map(String::into_bytes)
    } else {
        None
    };
    match slot {
        Some(value) => Err(value),
        // Taken, so `bytes` holds it.
        None => Ok(bytes.unwrap_or_default()),
    }
}

/// The byte string `T` around `bytes` (no copy; a `String`'s bytes are checked to be UTF-8);
/// `Err(bytes)` back when `T` is not one of the byte strings [`split`] takes apart.
fn join<T: 'static>(bytes: Vec<u8>) -> Result<Result<T, CodecError>, Vec<u8>> {
    let mut slot: Option<T> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        *v = Some(bytes);
    } else if let Some(v) = any.downcast_mut::<Option<ByteBuf>>() {
        *v = Some(ByteBuf::from(bytes));
    } else if let Some(v) = any.downcast_mut::<Option<String>>() {
        match String::from_utf8(bytes) {
            Ok(text) => *v = Some(text),
            Err(e) => {
                return Ok(Err(CodecError(format!(
                    "invalid UTF-8 in a string: {}",
                    e.utf8_error()
                ))));
            }
        }
    } else {
        return Err(bytes);
    }
    Ok(slot.ok_or_else(|| CodecError("the byte fast path lost its value".to_owned())))
}

/// The value whose buffer [`split`] took: what a submit that is refused gives back.
///
/// # Errors
/// `T` is not a byte string that [`split`] takes apart, or `bytes` are not UTF-8 for a `String`.
pub fn unsplit<T: 'static>(bytes: Vec<u8>) -> Result<T, CodecError> {
    join(bytes).unwrap_or_else(|_| {
        Err(CodecError(format!(
            "`{}` is not a byte string",
            std::any::type_name::<T>()
        )))
    })
}

/// Decodes a value from a frame's payload: [`decode`] for an encoding, and for a split frame's
/// tail the byte string around its buffer, with no copy.
///
/// # Errors
/// As [`decode`]; a tail's bytes are not UTF-8 for a `String`.
pub fn decode_payload<T: DeserializeOwned + 'static>(
    payload: Payload<'_>,
) -> Result<T, CodecError> {
    match payload {
        Payload::Encoded(bytes) => decode(bytes),
        Payload::Bytes(bytes) => join(bytes).unwrap_or_else(|bytes| {
            // A type that is not sent this way (no worker of this binary splits it): its whole
            // encoding is the prefix and the bytes.
            let mut whole = Vec::with_capacity(9 + bytes.len());
            bytes_prefix(bytes.len(), &mut whole);
            whole.extend_from_slice(&bytes);
            decode(&whole)
        }),
    }
}

/// Appends the encoding of `value` to `out`, unless [`split`] takes it apart: then only its
/// length prefix goes to `out`, and its buffer comes back, to be written after `out`.
///
/// # Errors
/// The value's `Serialize` implementation failed.
pub fn encode_split<T: Serialize + 'static>(
    value: T,
    out: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, CodecError> {
    match split(value) {
        Ok(bytes) => {
            bytes_prefix(bytes.len(), out);
            Ok(Some(bytes))
        }
        Err(value) => encode_into(&value, out).map(|()| None),
    }
}

/// Appends the length prefix of a byte string of `len` bytes: bincode's varint, one byte below
/// 251, otherwise a marker (251, 252, 253) and a little-endian `u16`, `u32` or `u64`.
pub fn bytes_prefix(len: usize, out: &mut Vec<u8>) {
    let len = len as u64;
    if let Ok(small) = u8::try_from(len)
        && small < 251
    {
        out.push(small);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(251);
        out.extend_from_slice(&len.to_le_bytes());
    } else if let Ok(len) = u32::try_from(len) {
        out.push(252);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&len.to_le_bytes());
    }
}

/// The size of a length prefix whose first byte is `first` (`None`: not a length a byte string
/// can have).
pub fn prefix_size(first: u8) -> Option<usize> {
    match first {
        0..=250 => Some(1),
        251 => Some(3),
        252 => Some(5),
        253 => Some(9),
        _ => None,
    }
}

/// The length a whole prefix ([`bytes_prefix`]) at the start of `bytes` says, and its size;
/// `None` if `bytes` does not start with one.
pub fn read_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let size = prefix_size(*bytes.first()?)?;
    let field = bytes.get(1..size)?;
    let len = match size {
        1 => u64::from(bytes[0]),
        3 => u64::from(u16::from_le_bytes(field.try_into().ok()?)),
        5 => u64::from(u32::from_le_bytes(field.try_into().ok()?)),
        _ => u64::from_le_bytes(field.try_into().ok()?),
    };
    Some((len, size))
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
