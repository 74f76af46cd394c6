//! The one place bincode is used in the workspace (docs/format.md, "Payload encoding"), in two
//! flavours:
//! - [`Flavour::Standard`], for payloads and values: bincode 2's *standard* configuration,
//!   serde flavour: little-endian, variable-length integers (values below 251 in one byte; 251,
//!   252, 253 announce a following u16, u32, u64), zigzag for signed integers, sequences and
//!   strings prefixed by their length, struct fields in order.
//! - [`Flavour::Ordered`], for keys whose byte order should follow their value's order: the
//!   same with big-endian, fixed-width integers (lengths as u64). Byte order then follows value
//!   order for unsigned integers, `bool`, `char`, fixed-size byte arrays, `Option`s, enums
//!   (by variant, then fields) and tuples and structs of these, field by field; not for signed
//!   integers (negatives sort after positives), floats, or strings and sequences (shorter ones
//!   first, whatever their bytes).

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which encoding: see the module's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavour {
    /// Little-endian varints: compact, for payloads and values.
    Standard,
    /// Big-endian fixed-width integers: order-preserving for the types listed above.
    Ordered,
}

/// The most bytes the decoder counts against its limit per payload byte it reads (a one-byte
/// varint decoded as a u128 counts 16; strings count their length): a payload of n bytes that
/// decodes never counts more than 16 n.
const CLAIM_PER_BYTE: usize = 16;

fn config<const LIMIT: usize>() -> Configuration<LittleEndian, Varint, Limit<LIMIT>> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes `value` in the standard flavour (the size limit of a file is the caller's check).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

/// Encodes `value` in `flavour`.
///
/// # Errors
/// The serializer's error if `value` cannot be encoded (say, a map with a failing key).
pub fn encode_as<T: Serialize>(
    value: &T,
    flavour: Flavour,
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let encoded = match flavour {
        Flavour::Standard => encode(value),
        Flavour::Ordered => bincode::serde::encode_to_vec(
            value,
            bincode::config::standard().with_big_endian().with_fixed_int_encoding(),
        ),
    };
    Ok(encoded?)
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
    flavour: Flavour,
) -> Result<(T, usize), bincode::error::DecodeError> {
    match flavour {
        Flavour::Standard => bincode::serde::decode_from_slice(bytes, config::<LIMIT>()),
        Flavour::Ordered => bincode::serde::decode_from_slice(
            bytes,
            bincode::config::standard().with_big_endian().with_fixed_int_encoding().with_limit::<LIMIT>(),
        ),
    }
}

/// Decodes a standard-flavour payload, which must be consumed exactly.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    decode_as(bytes, Flavour::Standard)
}

/// Decodes `bytes` in `flavour`; they must be consumed exactly. Whatever lengths the bytes
/// claim, the decoder allocates at most 256 times their size (or 64 KiB).
///
/// # Errors
/// The decoder's error, or leftover bytes.
pub fn decode_as<T: DeserializeOwned>(
    bytes: &[u8],
    flavour: Flavour,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    // The decoder allocates a string's bytes as soon as it reads the string's length, checked
    // only against its limit: the limit follows the payload's size, so that a length inside a
    // checksummed payload cannot make it allocate more than 16 × 16 times the payload (or
    // 64 KiB), where a single fixed limit let a 43-byte file allocate 1 GiB.
    let claim = bytes.len().saturating_mul(CLAIM_PER_BYTE);
    let (value, read) = if claim <= 1 << 16 {
        decode_within::<T, { 1 << 16 }>(bytes, flavour)
    } else if claim <= 1 << 20 {
        decode_within::<T, { 1 << 20 }>(bytes, flavour)
    } else if claim <= 1 << 24 {
        decode_within::<T, { 1 << 24 }>(bytes, flavour)
    } else if claim <= 1 << 28 {
        decode_within::<T, { 1 << 28 }>(bytes, flavour)
    } else {
        decode_large::<T>(bytes, claim, flavour)
    }?;
    if read != bytes.len() {
        return Err(format!("{} bytes left over after the value", bytes.len() - read).into());
    }
    Ok(value)
}

/// Payloads over 16 MiB: the steps go on, so that any payload that decodes stays readable at
/// any size a file may have (up to 16 GiB of payload on 64-bit targets).
#[cfg(target_pointer_width = "64")]
fn decode_large<T: DeserializeOwned>(
    bytes: &[u8],
    claim: usize,
    flavour: Flavour,
) -> Result<(T, usize), bincode::error::DecodeError> {
    if claim <= 1 << 30 {
        decode_within::<T, { 1 << 30 }>(bytes, flavour)
    } else if claim <= 1 << 34 {
        decode_within::<T, { 1 << 34 }>(bytes, flavour)
    } else {
        decode_within::<T, { 1 << 38 }>(bytes, flavour)
    }
}

#[cfg(not(target_pointer_width = "64"))]
fn decode_large<T: DeserializeOwned>(
    bytes: &[u8],
    _claim: usize,
    flavour: Flavour,
) -> Result<(T, usize), bincode::error::DecodeError> {
    decode_within::<T, { usize::MAX }>(bytes, flavour)
}
