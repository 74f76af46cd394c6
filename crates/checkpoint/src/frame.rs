//! The framing of a durable file (docs/format.md, "Durable file").
//!
//! ```text
//! 0   4  magic            "CRDF"
//! 4   2  frame version    1
//! 6   2  flags            0
//! 8   4  kind             four bytes naming the payload type, e.g. "CKPT"
//! 12  4  payload version  the payload's schema version
//! 16  8  payload length   n
//! 24  n  payload
//! 24+n 4 crc32c           of bytes [0, 24 + n)
//! ```

use crate::error::CorruptionKind;

pub(crate) const MAGIC: [u8; 4] = *b"CRDF";
pub(crate) const FRAME_VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 24;
pub(crate) const TRAILER_LEN: usize = 4;

/// What identifies a payload: its kind and schema version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    pub(crate) kind: [u8; 4],
    pub(crate) version: u32,
}

/// The whole file for `payload`.
pub(crate) fn frame(format: Format, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&format.kind);
    out.extend_from_slice(&format.version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Checks a whole file; returns the payload, or what is wrong and at which byte.
pub(crate) fn unframe(bytes: &[u8], format: Format) -> Result<&[u8], (u64, CorruptionKind)> {
    let available = bytes.len() as u64;
    if bytes.is_empty() {
        return Err((0, CorruptionKind::Empty));
    }
    if bytes.len() < 4 || array::<4>(bytes, 0) != MAGIC {
        if bytes.len() < 4 && MAGIC.starts_with(bytes) {
            return Err((
                available,
                CorruptionKind::Truncated { needed: (HEADER_LEN + TRAILER_LEN) as u64, available },
            ));
        }
        return Err((0, CorruptionKind::BadMagic { found: array(bytes, 0) }));
    }
    if bytes.len() < HEADER_LEN {
        return Err((
            available,
            CorruptionKind::Truncated { needed: (HEADER_LEN + TRAILER_LEN) as u64, available },
        ));
    }
    let version = u16::from_le_bytes(array(bytes, 4));
    let flags = u16::from_le_bytes(array(bytes, 6));
    if version != FRAME_VERSION || flags != 0 {
        return Err((
            if version != FRAME_VERSION { 4 } else { 6 },
            CorruptionKind::UnsupportedFrame { version, flags },
        ));
    }
    let payload_len = u64::from_le_bytes(array(bytes, 16));
    let needed = (HEADER_LEN as u64 + TRAILER_LEN as u64).saturating_add(payload_len);
    if needed > available {
        return Err((available, CorruptionKind::Truncated { needed, available }));
    }
    let end = HEADER_LEN + payload_len as usize;
    let stored = u32::from_le_bytes(array(bytes, end));
    let computed = crc32c::crc32c(bytes.get(..end).unwrap_or_default());
    if stored != computed {
        return Err((end as u64, CorruptionKind::Checksum { stored, computed }));
    }
    if needed < available {
        return Err((needed, CorruptionKind::TrailingBytes { bytes: available - needed }));
    }
    // Kind and version are checked after the checksum, so that damage is reported as damage.
    let kind: [u8; 4] = array(bytes, 8);
    if kind != format.kind {
        return Err((8, CorruptionKind::WrongKind { expected: format.kind, found: kind }));
    }
    let version = u32::from_le_bytes(array(bytes, 12));
    if version != format.version {
        return Err((12, CorruptionKind::UnsupportedVersion { expected: format.version, found: version }));
    }
    Ok(bytes.get(HEADER_LEN..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: Format = Format { kind: *b"TEST", version: 3 };

    #[test]
    fn framed_payload_round_trips() {
        let file = frame(FORMAT, b"hello");
        assert_eq!(unframe(&file, FORMAT), Ok(&b"hello"[..]));
        let empty = frame(FORMAT, b"");
        assert_eq!(unframe(&empty, FORMAT), Ok(&b""[..]));
    }

    #[test]
    fn every_damage_is_refused() {
        let file = frame(FORMAT, b"some payload bytes");
        for len in 0..file.len() {
            assert!(unframe(&file[..len], FORMAT).is_err(), "cut at {len} accepted");
        }
        for bit in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(unframe(&damaged, FORMAT).is_err(), "bit {bit} flip accepted");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(
            unframe(&longer, FORMAT),
            Err((file.len() as u64, CorruptionKind::TrailingBytes { bytes: 1 }))
        );
    }

    #[test]
    fn other_kinds_and_versions_are_refused() {
        let file = frame(Format { kind: *b"SNAP", version: 3 }, b"x");
        assert!(matches!(unframe(&file, FORMAT), Err((8, CorruptionKind::WrongKind { .. }))));
        let file = frame(Format { kind: *b"TEST", version: 4 }, b"x");
        assert_eq!(
            unframe(&file, FORMAT),
            Err((12, CorruptionKind::UnsupportedVersion { expected: 3, found: 4 }))
        );
    }

    #[test]
    fn a_huge_declared_length_is_a_truncation_not_an_allocation() {
        let mut file = frame(FORMAT, b"x");
        file[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(unframe(&file, FORMAT), Err((_, CorruptionKind::Truncated { .. }))));
    }
}
