//! The owner's commands on a session's links: answer an attach, send,
//! settle, grant credit, end a drain, detach.

use super::event::{AttachAnswer, CommandError, Event, Outgoing};
use super::link::{Link, LinkState};
use super::session::{Ctx, PendingDisposition, Queued, Session};
use crate::protocol::amqp::{
    to_bytes, AmqpError, Attach, DeliveryState, Detach, Performative, ReceiverSettleMode, Role,
    SenderSettleMode, Transfer, FRAME_HEADER_BYTES,
};
use crate::wire_bytes::WireBytes;

/// A delivery tag is at most 32 bytes (spec 2.8.7).
const DELIVERY_TAG_BYTES_MAX: usize = 32;
/// More than the largest transfer performative we send (about 80 bytes
/// with a 32-byte tag).
const TRANSFER_BYTES_MAX: usize = 128;

impl Session {
    fn link_mut(&mut self, handle: u32) -> Result<&mut Link, CommandError> {
        match self.links.get_mut(&handle) {
            Some(l) if l.state != LinkState::DetachSent => Ok(l),
            _ => Err(CommandError::UnknownLink),
        }
    }

    fn attached(&mut self, handle: u32, role: Role) -> Result<&mut Link, CommandError> {
        let link = self.link_mut(handle)?;
        if link.state != LinkState::Attached {
            return Err(CommandError::NotAttached);
        }
        if link.role != role {
            return Err(match role {
                Role::Sender => CommandError::NotSender,
                Role::Receiver => CommandError::NotReceiver,
            });
        }
        Ok(link)
    }

    pub fn accept(
        &mut self,
        ctx: &mut Ctx,
        handle: u32,
        answer: AttachAnswer,
    ) -> Result<(), CommandError> {
        let link = self.link_mut(handle)?;
        if link.state != LinkState::Pending {
            return Err(CommandError::NotPending);
        }
        link.state = LinkState::Attached;
        if link.role == Role::Receiver {
            // We settle at once (first); never wait for the sender to settle.
            link.rcv_settle_mode = ReceiverSettleMode::First;
        }
        let attach = Attach {
            name: link.name.clone(),
            handle,
            role: link.role,
            snd_settle_mode: link.snd_settle_mode,
            rcv_settle_mode: link.rcv_settle_mode,
            source: answer.source,
            target: answer.target,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (link.role == Role::Sender).then_some(0),
            max_message_size: Some(ctx.config.message_size_max),
            offered_capabilities: answer.offered_capabilities,
            desired_capabilities: Vec::new(),
            properties: answer.properties,
        };
        // Clients send their flow right behind the attach, before our
        // answer: credit that arrived while pending is announced now.
        let early_credit = (link.role == Role::Sender && (link.credit > 0 || link.drain))
            .then_some((link.id, link.credit, link.drain));
        self.write(ctx.out, &Performative::Attach(Box::new(attach)));
        if let Some((link, credit, drain)) = early_credit {
            ctx.out.event(Event::Credit {
                link,
                credit,
                drain,
            });
        }
        Ok(())
    }

    pub fn refuse(
        &mut self,
        ctx: &mut Ctx,
        handle: u32,
        error: AmqpError,
    ) -> Result<(), CommandError> {
        let link = self.link_mut(handle)?;
        if link.state != LinkState::Pending {
            return Err(CommandError::NotPending);
        }
        link.state = LinkState::DetachSent;
        if let Some(link) = self.links.remove(&handle) {
            self.write_refusal(ctx.out, &link, error);
            self.links.insert(handle, link);
        }
        Ok(())
    }

    /// Sends a delivery, split into frames that fit the peer's
    /// max-frame-size; frames wait for the peer's session window.
    pub fn send(&mut self, ctx: &mut Ctx, handle: u32, d: Outgoing) -> Result<u32, CommandError> {
        let unsettled_max = ctx.config.unsettled_per_session_max;
        let queued_max = ctx.config.queued_bytes_per_session_max;
        let unsettled = self.unsettled_out.len();
        let queued = self.queued_bytes;
        let delivery_id = self.next_delivery_id;
        let link = self.attached(handle, Role::Sender)?;
        if link.credit == 0 {
            return Err(CommandError::NoCredit);
        }
        if d.tag.len() > DELIVERY_TAG_BYTES_MAX {
            return Err(CommandError::TagTooLong);
        }
        if let Some(max) = link.peer_max_message_size {
            if d.payload.len() as u64 > max {
                return Err(CommandError::MessageTooLarge {
                    size: d.payload.len(),
                    max,
                });
            }
        }
        let settled = match link.snd_settle_mode {
            SenderSettleMode::Settled => true,
            SenderSettleMode::Unsettled => false,
            SenderSettleMode::Mixed => d.settled,
        };
        if !settled && unsettled >= unsettled_max {
            return Err(CommandError::UnsettledMax(unsettled_max));
        }
        if queued + d.payload.len() > queued_max {
            return Err(CommandError::QueuedBytesMax(queued_max));
        }
        link.credit -= 1;
        link.delivery_count = link.delivery_count.wrapping_add(1);
        self.next_delivery_id = delivery_id.wrapping_add(1);
        if !settled {
            self.unsettled_out
                .insert(delivery_id, (handle, d.tag.clone()));
        }
        let first = Transfer {
            handle,
            delivery_id: Some(delivery_id),
            delivery_tag: Some(d.tag),
            message_format: Some(d.message_format),
            settled: Some(settled),
            more: true,
            ..Transfer::default()
        };
        self.queue_frames(ctx.peer_max_frame, first, d.payload);
        self.pump(ctx.out);
        Ok(delivery_id)
    }

    fn queue_frames(&mut self, peer_max_frame: u32, mut first: Transfer, payload: WireBytes) {
        let handle = first.handle;
        if FRAME_HEADER_BYTES + TRANSFER_BYTES_MAX + payload.len() <= peer_max_frame as usize {
            // Surely one frame: no need to encode the transfer to measure it.
            first.more = false;
            self.queued_bytes += payload.len();
            self.queue.push_back(Queued {
                handle,
                transfer: first,
                payload,
            });
            return;
        }
        // Measured with more=true: true and false encode in one byte each.
        let overhead =
            FRAME_HEADER_BYTES + to_bytes(&Performative::Transfer(first.clone()).to_value()).len();
        // The peer's max-frame-size is at least 512 and a transfer
        // performative at most about 80 bytes, so there is always room.
        let room = (peer_max_frame as usize).saturating_sub(overhead).max(1);
        // Split from one buffer: a message larger than a frame is copied
        // once (rare, and dwarfed by its frames' own cost).
        let mut rest = payload.joined();
        let mut transfer = first;
        loop {
            let chunk = rest.split_to(rest.len().min(room));
            transfer.more = !rest.is_empty();
            self.queued_bytes += chunk.len();
            self.queue.push_back(Queued {
                handle,
                transfer: transfer.clone(),
                payload: chunk.into(),
            });
            if rest.is_empty() {
                break;
            }
            // Continuations carry only what the spec requires.
            transfer = Transfer {
                handle,
                delivery_id: transfer.delivery_id,
                ..Transfer::default()
            };
        }
    }

    /// Our disposition of a delivery we received (settled or not).
    pub fn disposition(
        &mut self,
        handle: u32,
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<(), CommandError> {
        self.link_mut(handle)?;
        if self.unsettled_in.get(&delivery_id) != Some(&handle) {
            return Err(CommandError::UnknownDelivery(delivery_id));
        }
        if settled {
            self.unsettled_in.remove(&delivery_id);
        }
        // Coalesced into ranges when flushed.
        self.dispositions.push(PendingDisposition {
            role: Role::Receiver,
            delivery_id,
            settled,
            state,
        });
        Ok(())
    }

    pub fn grant_credit(
        &mut self,
        ctx: &mut Ctx,
        handle: u32,
        credit: u32,
        drain: bool,
    ) -> Result<(), CommandError> {
        let link = self.attached(handle, Role::Receiver)?;
        link.credit = credit;
        link.drain = drain;
        self.send_flow(ctx.out, Some(handle));
        Ok(())
    }

    /// Ends a drain on a sender link: the unused credit is spent by
    /// advancing delivery-count, and the receiver is told (spec 2.6.7).
    pub fn drain_complete(&mut self, ctx: &mut Ctx, handle: u32) -> Result<(), CommandError> {
        let link = self.attached(handle, Role::Sender)?;
        link.delivery_count = link.delivery_count.wrapping_add(link.credit);
        link.credit = 0;
        link.drain = true;
        self.send_flow(ctx.out, Some(handle));
        if let Some(link) = self.links.get_mut(&handle) {
            link.drain = false;
        }
        Ok(())
    }

    /// The owner detaches a link (closing it).
    pub fn detach(
        &mut self,
        ctx: &mut Ctx,
        handle: u32,
        error: Option<AmqpError>,
    ) -> Result<(), CommandError> {
        let link = self.link_mut(handle)?;
        if link.state == LinkState::Pending {
            let error = error.unwrap_or_else(|| {
                AmqpError::new(crate::protocol::amqp::Condition::DetachForced, "refused")
            });
            return self.refuse(ctx, handle, error);
        }
        link.state = LinkState::DetachSent;
        if let Some(p) = link.partial.take() {
            *ctx.reassembly_bytes -= p.bytes.len();
        }
        let detach = Detach {
            handle,
            closed: true,
            error,
        };
        self.write(ctx.out, &Performative::Detach(detach));
        self.drop_link_state(handle);
        Ok(())
    }

    pub fn credit(&self, handle: u32) -> Option<u32> {
        self.links
            .get(&handle)
            .filter(|l| l.state == LinkState::Attached)
            .map(|l| l.credit)
    }
}
