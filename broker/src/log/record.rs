//! The record frame: `[len: u32 LE][crc: u32 LE][payload: len bytes]`.
//!
//! `crc` is CRC-32C (Castagnoli) over the four length bytes followed by the payload. Covering
//! the length as well as the payload means a zero-filled region (what some filesystems show
//! after a crash in place of unwritten data) never parses as a run of valid empty records:
//! the CRC of four zero bytes is not zero. Any damage of up to 32 consecutive bits inside a
//! frame is always detected.

/// Bytes before each payload: length and checksum.
pub const RECORD_HEADER_LEN: usize = 8;

/// The largest payload one record may hold. Recovery and readers refuse a length above it, so
/// a damaged length field can never make the log allocate more than this.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The largest total (framed) size of one `append` call.
pub const MAX_APPEND_BYTES: u64 = 64 * 1024 * 1024;

/// Checksum stored in a record header.
pub(crate) fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Framed size of a record with a payload of `payload_len` bytes.
pub(crate) const fn framed_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len) as u64
}

/// Appends the frame of `payload` to `buf`. The caller has checked the size limit.
pub(crate) fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("record length checked against MAX_RECORD_BYTES");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub crc: u32,
}

impl RecordHeader {
    pub(crate) fn parse(bytes: [u8; RECORD_HEADER_LEN]) -> Self {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = bytes;
        RecordHeader {
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }

    /// The payload length, if it is within [`MAX_RECORD_BYTES`].
    pub(crate) fn payload_len(&self) -> Option<usize> {
        let len = usize::try_from(self.len).ok()?;
        (len <= MAX_RECORD_BYTES).then_some(len)
    }

    pub(crate) fn framed_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    pub(crate) fn matches(&self, payload: &[u8]) -> bool {
        checksum(self.len, payload) == self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let mut buf = Vec::new();
        encode_into(&mut buf, b"hello");
        assert_eq!(buf.len() as u64, framed_len(5));
        let header = RecordHeader::parse(buf[..RECORD_HEADER_LEN].try_into().unwrap());
        assert_eq!(header.payload_len(), Some(5));
        assert!(header.matches(&buf[RECORD_HEADER_LEN..]));
        assert!(!header.matches(b"hellO"));
    }

    #[test]
    fn zeroed_bytes_are_not_a_valid_empty_record() {
        let header = RecordHeader::parse([0; RECORD_HEADER_LEN]);
        assert_eq!(header.payload_len(), Some(0));
        assert!(!header.matches(&[]));
    }

    #[test]
    fn absurd_length_is_refused() {
        let header = RecordHeader::parse([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(header.payload_len(), None);
    }
}
