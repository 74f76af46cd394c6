//! The one place bincode is used: payloads are bincode 2's *standard* configuration, serde
//! flavour (docs/format.md, "Payload encoding"): little-endian, variable-length integers
//! (values below 251 in one byte; 251, 252, 253 announce a following u16, u32, u64), zigzag for
//! signed integers, sequences and strings prefixed by their length, struct fields in order.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most bytes the decoder counts against its limit per payload byte it reads (a one-byte
/// varint decoded as a u128 counts 16; strings count their length): a payload of n bytes that
/// decodes never counts more than 16 n.
const CLAIM_PER_BYTE: usize = 16;

fn config<const LIMIT: usize>() -> Configuration<LittleEndian, Varint, Limit<LIMIT>> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes `value` as a payload (the size limit of a file is the caller's check).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config::<LIMIT>())
}

/// Decodes a payload, which must be consumed exactly.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    // The decoder allocates a string's bytes as soon as it reads the string's length, checked
    // only against its limit: the limit follows the payload's size, so that a length inside a
    // checksummed payload cannot make it allocate more than 16 × 16 times the payload (or
    // 64 KiB), where a single fixed limit let a 43-byte file allocate 1 GiB.
    let claim = bytes.len().saturating_mul(CLAIM_PER_BYTE);
    let (value, read) = if claim <= 1 << 16 {
        decode_within::<T, { 1 << 16 }>(bytes)
    } else if claim <= 1 << 20 {
        decode_within::<T, { 1 << 20 }>(bytes)
    } else if claim <= 1 << 24 {
        decode_within::<T, { 1 << 24 }>(bytes)
    } else if claim <= 1 << 28 {
        decode_within::<T, { 1 << 28 }>(bytes)
    } else {
        decode_large::<T>(bytes, claim)
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
) -> Result<(T, usize), bincode::error::DecodeError> {
    if claim <= 1 << 30 {
        decode_within::<T, { 1 << 30 }>(bytes)
    } else if claim <= 1 << 34 {
        decode_within::<T, { 1 << 34 }>(bytes)
    } else {
        decode_within::<T, { 1 << 38 }>(bytes)
    }
}

#[cfg(not(target_pointer_width = "64"))]
fn decode_large<T: DeserializeOwned>(
    bytes: &[u8],
    _claim: usize,
) -> Result<(T, usize), bincode::error::DecodeError> {
    decode_within::<T, { usize::MAX }>(bytes)
}
