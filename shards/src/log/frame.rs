//! How a log file holds one record's bytes, which the log never interprets.
//!
//! A frame is `len: u32 | crc: u32 | payload`, little-endian, where `len` counts the payload
//! and `crc` is CRC-32 over `len` and the payload (so a garbled length is caught too). A zero
//! `len` with a zero `crc` is padding up to the next block: a group commit starts on a fresh
//! block, and a preallocated segment reads as zeros past its last write. What a payload means
//! is the state's business ([`crate::state::record`]).

/// Bytes before a payload: length and checksum.
pub const FRAME_BYTES: usize = 8;
/// The largest payload accepted when reading: a bound on what a garbled length can make the
/// reader believe. A message is bounded far below this by the HTTP body limit.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// What [`read`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole payload, and the bytes its frame took in all.
    Payload(&'a [u8], usize),
    /// Padding: skip to the next block.
    Padding,
}

/// Why bytes hold no whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame announces.
    Truncated,
    /// The checksum does not match (or the length is impossible).
    Checksum,
}

/// Appends a frame around what `payload` appends to `out`: length and checksum are filled in
/// after, so the payload is written once, in place.
pub fn write(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES]);
    payload(out);
    let len = u32::try_from(out.len() - start - FRAME_BYTES).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(len, &out[start + FRAME_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the frame at the start of `bytes`.
pub fn read(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    if bytes.len() < FRAME_BYTES {
        return if bytes.iter().all(|b| *b == 0) {
            Ok(Frame::Padding)
        } else {
            Err(FrameError::Truncated)
        };
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 && crc == 0 {
        return Ok(Frame::Padding);
    }
    let len = len as usize;
    if len == 0 || len > MAX_PAYLOAD_BYTES {
        return Err(FrameError::Checksum);
    }
    let Some(payload) = bytes.get(FRAME_BYTES..FRAME_BYTES + len) else {
        return Err(FrameError::Truncated);
    };
    if checksum(len as u32, payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(Frame::Payload(payload, FRAME_BYTES + len))
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_and_a_flipped_bit_anywhere_is_caught() {
        let mut out = Vec::new();
        write(&mut out, |out| out.extend_from_slice(b"opaque bytes"));
        assert_eq!(read(&out), Ok(Frame::Payload(b"opaque bytes", out.len())));
        for at in 0..out.len() {
            let mut garbled = out.clone();
            garbled[at] ^= 0x10;
            assert!(
                !matches!(read(&garbled), Ok(Frame::Payload(..))),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn a_cut_frame_is_truncated_and_zeros_are_padding() {
        let mut out = Vec::new();
        write(&mut out, |out| out.push(7));
        assert_eq!(read(&out[..out.len() - 1]), Err(FrameError::Truncated));
        assert_eq!(read(&[0; 16]), Ok(Frame::Padding));
        assert_eq!(read(&[0; 3]), Ok(Frame::Padding));
        assert_eq!(read(&[1, 0, 0]), Err(FrameError::Truncated));
    }
}
