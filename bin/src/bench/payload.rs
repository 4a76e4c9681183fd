//! The body of a bench message: a fixed-width stamp, then padding.
//!
//! `HB <run:016x> <producer:04x> <seq:016x> <sched_ns:016x>\n` followed by
//! `x` up to the requested size. `run` tells this run's messages from ones
//! an earlier run left in the queue; `sched_ns` is when the message was
//! scheduled on the bench clock (nanoseconds since the bench started), so a
//! consumer in the same process computes the end-to-end latency.

use bytes::Bytes;

/// Length of the stamp; bodies are at least this long.
pub const STAMP_LEN: usize = 59;

/// The smallest `--size` accepted.
pub const MIN_SIZE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub run: u64,
    pub producer: u16,
    pub seq: u64,
    pub sched_ns: u64,
}

/// Encodes a body of exactly `max(size, STAMP_LEN)` bytes.
pub fn encode(stamp: &Stamp, size: usize) -> Bytes {
    use std::io::Write;
    let mut b = Vec::with_capacity(size.max(STAMP_LEN));
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        b,
        "HB {:016x} {:04x} {:016x} {:016x}",
        stamp.run, stamp.producer, stamp.seq, stamp.sched_ns
    );
    debug_assert_eq!(b.len(), STAMP_LEN);
    b.resize(size.max(STAMP_LEN), b'x');
    Bytes::from(b)
}

/// Reads the stamp back; `None` for a body that is not a bench message.
pub fn decode(body: &[u8]) -> Option<Stamp> {
    let s = body.get(..STAMP_LEN)?;
    if &s[..3] != b"HB " || s[STAMP_LEN - 1] != b'\n' {
        return None;
    }
    let field = |from: usize, len: usize| -> Option<u64> {
        let sep = s.get(from + len)?;
        if *sep != b' ' && *sep != b'\n' {
            return None;
        }
        let text = std::str::from_utf8(s.get(from..from + len)?).ok()?;
        u64::from_str_radix(text, 16).ok()
    };
    Some(Stamp {
        run: field(3, 16)?,
        producer: u16::try_from(field(20, 4)?).ok()?,
        seq: field(25, 16)?,
        sched_ns: field(42, 16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_every_size() {
        let st = Stamp {
            run: 0xdead_beef_0123_4567,
            producer: 7,
            seq: u64::MAX,
            sched_ns: 12_345_678_901,
        };
        for size in [0, 1, STAMP_LEN, MIN_SIZE, 1024, 100_000] {
            let b = encode(&st, size);
            assert_eq!(b.len(), size.max(STAMP_LEN));
            assert_eq!(decode(&b), Some(st));
        }
    }

    #[test]
    fn foreign_bodies_are_rejected() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"hello world"), None);
        assert_eq!(decode(&[b'x'; 100]), None);
        let mut b = encode(
            &Stamp {
                run: 1,
                producer: 2,
                seq: 3,
                sched_ns: 4,
            },
            100,
        )
        .to_vec();
        b[10] = b'g';
        assert_eq!(decode(&b), None);
    }
}
