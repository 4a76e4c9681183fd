//! Where frames and events wait for the driver, in order.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::event::{Event, Output};
use crate::protocol::amqp::{encode_performative_head, Performative, EMPTY_FRAME};
use crate::wire_bytes::WireBytes;

/// Room kept ahead for a frame's performative and small payload pieces.
const FRAME_HEAD_ROOM: usize = 512;
/// What the buffer grows by when that room runs out: a chunk serves
/// dozens of deliveries' heads, and an idle connection holds at most
/// one (small beside its socket's buffers).
const OUTBOX_CHUNK: usize = 4 * 1024;

/// Frames coalesce into one byte buffer until an event or the driver
/// takes them, so a burst of frames costs one write.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    bytes: BytesMut,
    queue: VecDeque<Output>,
    /// Bytes were written since the last call to `take_activity`.
    active: bool,
    disconnect: bool,
    /// The peer's max-frame-size, once known.
    peer_max_frame: Option<u32>,
    /// A frame that did not fit it: its name and size.
    oversize: Option<(&'static str, usize)>,
}

impl Outbox {
    pub fn raw(&mut self, b: &[u8]) {
        // Nothing may follow the disconnect the driver was asked for.
        if self.disconnect {
            return;
        }
        self.bytes.extend_from_slice(b);
        self.active = true;
    }

    /// A frame with no payload.
    pub fn frame(&mut self, channel: u16, perf: &Performative) {
        self.frame_with(channel, perf, WireBytes::default());
    }

    /// A frame whose payload (a transfer's) comes in pieces: a piece of
    /// [`WireBytes::APART_MIN`] or more leaves as its own output (the
    /// stored buffer, not a copy); smaller ones join the frames around.
    pub fn frame_with(&mut self, channel: u16, perf: &Performative, payload: WireBytes) {
        if self.disconnect {
            return;
        }
        self.room();
        let start = self.bytes.len();
        let size = encode_performative_head(&mut self.bytes, channel, perf, payload.len());
        if self.peer_max_frame.is_some_and(|max| size > max as usize) {
            // Unsendable: dropped, and the connection closes.
            self.bytes.truncate(start);
            self.oversize.get_or_insert((perf.name(), size));
            return;
        }
        for piece in payload.pieces() {
            if piece.len() >= WireBytes::APART_MIN {
                self.flush();
                self.queue.push_back(Output::Transmit(piece));
            } else {
                self.bytes.extend_from_slice(&piece);
            }
        }
        self.active = true;
    }

    /// From the peer's open on, frames larger than `max` are refused.
    pub fn set_peer_max_frame(&mut self, max: u32) {
        self.peer_max_frame = Some(max);
    }

    /// The first frame refused as too large since the last call.
    pub fn take_oversize(&mut self) -> Option<(&'static str, usize)> {
        self.oversize.take()
    }

    pub fn heartbeat(&mut self) {
        self.raw(&EMPTY_FRAME);
    }

    pub fn event(&mut self, e: Event) {
        self.flush();
        self.queue.push_back(Output::Event(e));
    }

    /// Asks the driver to close the transport after what is queued.
    pub fn disconnect(&mut self) {
        if !self.disconnect {
            self.flush();
            self.queue.push_back(Output::Disconnect);
            self.disconnect = true;
        }
    }

    pub fn disconnecting(&self) -> bool {
        self.disconnect
    }

    /// Makes room for a frame's head ahead of time. The buffer is handed
    /// out (split off) at every flush, a delivery's flush among them, so
    /// without this each frame started from a buffer with no room left
    /// and grew it by reallocation a few bytes at a time. A chunk is
    /// shared by the frames split from it and freed with the last of them.
    fn room(&mut self) {
        if self.bytes.capacity() - self.bytes.len() < FRAME_HEAD_ROOM {
            self.bytes.reserve(OUTBOX_CHUNK);
        }
    }

    fn flush(&mut self) {
        if !self.bytes.is_empty() {
            self.queue
                .push_back(Output::Transmit(self.bytes.split().freeze()));
        }
    }

    /// Whether every output so far was taken.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.bytes.is_empty()
    }

    pub fn pop(&mut self) -> Option<Output> {
        if self.queue.is_empty() {
            self.flush();
        }
        self.queue.pop_front()
    }

    /// Whether anything was written since the last call.
    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.active)
    }
}
