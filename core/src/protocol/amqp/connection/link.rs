//! One link endpoint: its state, its credit, and the delivery being
//! reassembled from several transfer frames.

use bytes::{Bytes, BytesMut};

use super::event::LinkId;
use crate::protocol::amqp::{
    AttachTarget, DeliveryState, Flow, ReceiverSettleMode, Role, SenderSettleMode, Source,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// The peer's attach waits for the owner's answer.
    Pending,
    Attached,
    /// We sent detach and wait for the peer's. The owner no longer sees
    /// the link; frames for it are dropped.
    DetachSent,
}

/// A multi-frame delivery being received.
#[derive(Debug)]
pub(crate) struct Partial {
    pub delivery_id: u32,
    pub tag: Bytes,
    pub settled: bool,
    pub message_format: u32,
    pub state: Option<DeliveryState>,
    pub bytes: BytesMut,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub id: LinkId,
    pub name: String,
    /// Our role.
    pub role: Role,
    pub state: LinkState,
    /// The peer's source and target, echoed when refusing.
    pub source: Option<Source>,
    pub target: Option<AttachTarget>,
    pub snd_settle_mode: SenderSettleMode,
    pub rcv_settle_mode: ReceiverSettleMode,
    /// Counts deliveries sent on the link (spec 2.6.7), both roles.
    pub delivery_count: u32,
    /// Deliveries the sender may still send.
    pub credit: u32,
    /// The receiver asked the sender to use up or give back its credit.
    pub drain: bool,
    /// The peer's limit, for our sender links (`None`: no limit).
    pub peer_max_message_size: Option<u64>,
    /// Our limit, for our receiver links.
    pub max_message_size: u64,
    pub partial: Option<Partial>,
}

impl Link {
    /// Applies the peer's flow to a sender link: the credit the receiver
    /// granted, counted from the receiver's delivery-count (spec 2.6.7).
    /// Returns whether the owner should hear about it.
    pub fn sender_flow(&mut self, flow: &Flow) -> bool {
        let their_count = flow.delivery_count.unwrap_or(0);
        let limit = their_count.wrapping_add(flow.link_credit.unwrap_or(0));
        self.credit = serial_diff(limit, self.delivery_count);
        self.drain = flow.drain;
        true
    }

    /// Applies the peer's flow to a receiver link: only the sender moves
    /// delivery-count (it does when it ends a drain), and our credit limit
    /// stays where we set it.
    pub fn receiver_flow(&mut self, flow: &Flow) {
        if let Some(count) = flow.delivery_count {
            let limit = self.delivery_count.wrapping_add(self.credit);
            self.credit = serial_diff(limit, count);
            self.delivery_count = count;
        }
    }

    /// The link part of a flow we send.
    pub fn flow_fields(&self, flow: &mut Flow, handle: u32) {
        flow.handle = Some(handle);
        flow.delivery_count = Some(self.delivery_count);
        flow.link_credit = Some(self.credit);
        flow.drain = self.drain;
    }
}

/// `a - b` in serial number arithmetic (RFC 1982), 0 when `a` is behind.
pub(crate) fn serial_diff(a: u32, b: u32) -> u32 {
    let d = a.wrapping_sub(b);
    if d > u32::MAX / 2 {
        0
    } else {
        d
    }
}
