//! What a connection's writer sends in one system call: the frames queued
//! since its last write, handed to the kernel as they are (`writev`) rather
//! than copied into one buffer first. Profiled under the bench's load, that
//! copy of every outgoing byte was 2-2.6 % of the node's thread.
//!
//! Small pieces (receipts, dispositions) are still copied together: an
//! iovec per 50-byte frame costs the kernel more than the copy.

use std::io::{self, IoSlice};

use bytes::Bytes;
use halyard_core::node::WireBytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Pieces shorter than this are copied into the shared buffer (the size
/// from which the node leaves a body beside its frame).
const COPY_BELOW: usize = WireBytes::APART_MIN;
/// Pieces (iovecs) per write; Linux takes at most 1024.
pub(crate) const PIECES_MAX: usize = 256;
/// Bytes gathered before a write goes out.
pub(crate) const BYTES_MAX: usize = 256 * 1024;

enum Piece {
    /// `small[start..end]`: consecutive small pieces, joined.
    Copied {
        start: usize,
        end: usize,
    },
    Shared(Bytes),
}

/// The frames of one write, in order.
#[derive(Default)]
pub(crate) struct Gather {
    small: Vec<u8>,
    pieces: Vec<Piece>,
    len: usize,
}

impl Gather {
    pub(crate) fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        if b.len() >= COPY_BELOW {
            self.pieces.push(Piece::Shared(b));
            return;
        }
        let start = self.small.len();
        self.small.extend_from_slice(&b);
        let end = self.small.len();
        match self.pieces.last_mut() {
            Some(Piece::Copied { end: last, .. }) if *last == start => *last = end,
            _ => self.pieces.push(Piece::Copied { start, end }),
        }
    }

    /// No more should join this write.
    pub(crate) fn full(&self) -> bool {
        self.len >= BYTES_MAX || self.pieces.len() >= PIECES_MAX
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes everything gathered, in order, and empties the gather.
    /// A writer that cannot take several buffers at once (TLS, madsim's
    /// TCP) gets them joined into one, as before.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> io::Result<()> {
        let result = if wr.is_write_vectored() {
            self.write_vectored(wr).await
        } else {
            let joined = self.joined();
            wr.write_all(&joined).await
        };
        self.small.clear();
        self.pieces.clear();
        self.len = 0;
        result
    }

    async fn write_vectored<W: AsyncWrite + Unpin>(&self, wr: &mut W) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Copied { start, end } => IoSlice::new(&self.small[*start..*end]),
                Piece::Shared(b) => IoSlice::new(b),
            })
            .collect();
        let mut rest = &mut slices[..];
        let mut left = self.len;
        while left > 0 {
            let n = wr.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= n;
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    fn joined(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.pieces {
            match p {
                Piece::Copied { start, end } => out.extend_from_slice(&self.small[*start..*end]),
                Piece::Shared(b) => out.extend_from_slice(b),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.calls += 1;
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut room = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                self.out.extend_from_slice(&b[..take]);
                room -= take;
                n += take;
                if room == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frames() -> Vec<Bytes> {
        // Small and large, so pieces are both joined and shared.
        (0..40u8)
            .map(|i| {
                let len = if i % 3 == 0 {
                    1500 + i as usize
                } else {
                    40 + i as usize
                };
                Bytes::from(vec![i; len])
            })
            .collect()
    }

    async fn written(vectored: bool, step: usize) -> (Vec<u8>, usize) {
        let mut g = Gather::default();
        for f in frames() {
            g.push(f);
        }
        let mut w = Trickle {
            out: Vec::new(),
            step,
            vectored,
            calls: 0,
        };
        g.write_to(&mut w).await.unwrap();
        assert!(g.is_empty() && g.pieces.is_empty() && g.small.is_empty());
        (w.out, w.calls)
    }

    #[tokio::test]
    async fn every_byte_goes_out_in_order_however_the_writer_cuts_it() {
        let want: Vec<u8> = frames().concat();
        for vectored in [true, false] {
            for step in [1, 7, 512, 1499, 4096, 1 << 20] {
                let (out, _) = written(vectored, step).await;
                assert_eq!(out, want, "vectored {vectored}, {step} bytes per call");
            }
        }
    }

    #[tokio::test]
    async fn a_writer_that_takes_everything_needs_one_call() {
        assert_eq!(written(true, 1 << 20).await.1, 1);
        assert_eq!(written(false, 1 << 20).await.1, 1);
    }

    #[test]
    fn small_pieces_in_a_row_share_one_iovec() {
        let mut g = Gather::default();
        for f in [&b"ab"[..], b"cd", &[7u8; 600], b"ef", b"", b"gh"] {
            g.push(Bytes::copy_from_slice(f));
        }
        assert_eq!(g.pieces.len(), 3, "ab+cd, the large one, ef+gh");
        assert_eq!(g.len(), 608);
        assert_eq!(g.joined()[..4], *b"abcd");
    }

    #[test]
    fn full_at_either_limit() {
        let mut g = Gather::default();
        for _ in 0..PIECES_MAX - 1 {
            g.push(Bytes::from(vec![1u8; COPY_BELOW]));
        }
        assert!(!g.full());
        g.push(Bytes::from(vec![1u8; COPY_BELOW]));
        assert!(g.full(), "pieces");
        let mut g = Gather::default();
        g.push(Bytes::from(vec![1u8; BYTES_MAX]));
        assert!(g.full(), "bytes");
    }
}
