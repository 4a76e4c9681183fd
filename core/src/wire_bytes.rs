//! Bytes for a client in up to three pieces, so a stored body reaches the
//! socket without a copy.

use bytes::{Bytes, BytesMut};

/// Bytes for a client, in order. Usually one buffer (`head`); a delivery
/// with a large body carries the body as stored (`body`) between its
/// frame's start and end (`tail`), so the node does not copy it: the driver
/// hands the pieces to the socket in one gathered write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireBytes {
    pub head: Bytes,
    pub body: Bytes,
    pub tail: Bytes,
}

impl WireBytes {
    /// Pieces this long or longer are worth a piece of their own: the
    /// driver hands them to the socket as they are and copies shorter ones
    /// together (an iovec per small frame costs more than the copy).
    pub const APART_MIN: usize = 512;

    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in order, empty ones left out.
    pub fn pieces(self) -> impl Iterator<Item = Bytes> {
        [self.head, self.body, self.tail]
            .into_iter()
            .filter(|b| !b.is_empty())
    }

    /// Appends a piece: the first three are kept as they are (head, body,
    /// tail, whatever their sizes); later ones are copied onto the tail.
    /// Usually a delivery is three pieces (frame start, body, frame end),
    /// so nothing is copied.
    pub fn push(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        if self.head.is_empty() {
            self.head = piece;
        } else if self.body.is_empty() {
            self.body = piece;
        } else if self.tail.is_empty() {
            self.tail = piece;
        } else {
            let mut t = BytesMut::with_capacity(self.tail.len() + piece.len());
            t.extend_from_slice(&self.tail);
            t.extend_from_slice(&piece);
            self.tail = t.freeze();
        }
    }

    /// One buffer: the head itself when it is the only piece, else a copy.
    pub fn joined(self) -> Bytes {
        if self.body.is_empty() && self.tail.is_empty() {
            return self.head;
        }
        let mut out = BytesMut::with_capacity(self.len());
        for p in self.pieces() {
            out.extend_from_slice(&p);
        }
        out.freeze()
    }
}

impl From<Bytes> for WireBytes {
    fn from(head: Bytes) -> Self {
        WireBytes {
            head,
            ..WireBytes::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(pieces: &[&[u8]]) -> (WireBytes, Vec<u8>) {
        let mut w = WireBytes::default();
        let mut all = Vec::new();
        for p in pieces {
            w.push(Bytes::copy_from_slice(p));
            all.extend_from_slice(p);
        }
        (w, all)
    }

    #[test]
    fn push_keeps_three_pieces_and_copies_the_rest_onto_the_tail() {
        let (w, all) = joined(&[b"ab", b"", b"cde", b"f"]);
        assert_eq!(
            (&w.head[..], &w.body[..], &w.tail[..]),
            (&b"ab"[..], &b"cde"[..], &b"f"[..])
        );
        assert_eq!(w.clone().joined(), all);
        let (w, all) = joined(&[b"1", b"22", b"333", b"4444", b"55555"]);
        assert_eq!(&w.tail[..], b"333444455555");
        assert_eq!(w.len(), all.len());
        assert_eq!(w.joined(), all);
    }

    #[test]
    fn a_pushed_piece_is_kept_not_copied() {
        let body = Bytes::from(vec![7u8; 2000]);
        let mut w = WireBytes::default();
        w.push(Bytes::from_static(b"start"));
        w.push(body.clone());
        w.push(Bytes::from_static(b"end"));
        assert_eq!(w.body.as_ptr(), body.as_ptr());
        assert_eq!(w.pieces().count(), 3);
    }

    #[test]
    fn nothing_pushed_is_empty() {
        let (w, _) = joined(&[b"", b""]);
        assert!(w.is_empty());
        assert_eq!(w.joined(), Bytes::new());
    }
}
