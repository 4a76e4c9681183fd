//! The owner's commands on a connection, by link or session id.

use super::event::{AttachAnswer, CloseReason, CommandError, LinkId, Outgoing, SessionId};
use super::session::{Ctx, Session, SessionState};
use super::state_machine::{Connection, Phase};
use crate::protocol::amqp::{AmqpError, DeliveryState, MIN_MAX_FRAME_SIZE};

impl Connection {
    /// Runs `f` on the session of `channel` with a context, then notes the
    /// bytes it wrote as sent now.
    fn with_session<T>(
        &mut self,
        channel: u16,
        serial: Option<u64>,
        f: impl FnOnce(&mut Session, &mut Ctx) -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        if self.phase != Phase::Opened {
            return Err(CommandError::NotOpen);
        }
        let session = self
            .sessions
            .get_mut(&channel)
            .filter(|s| {
                s.state == SessionState::Mapped && serial.is_none_or(|x| x == s.id.serial())
            })
            .ok_or(CommandError::UnknownSession)?;
        let mut ctx = Ctx {
            out: &mut self.out,
            config: &self.config,
            peer_max_frame: self.peer.map_or(MIN_MAX_FRAME_SIZE, |p| p.max_frame_size),
            serial: &mut self.serial,
            reassembly_bytes: &mut self.reassembly_bytes,
        };
        let r = f(session, &mut ctx);
        self.note_activity();
        r
    }

    fn with_link<T>(
        &mut self,
        link: LinkId,
        f: impl FnOnce(&mut Session, &mut Ctx, u32) -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        self.with_session(link.channel, None, |s, ctx| {
            if s.links.get(&link.handle).map(|l| l.id) != Some(link) {
                return Err(CommandError::UnknownLink);
            }
            f(s, ctx, link.handle)
        })
        .map_err(|e| match e {
            CommandError::UnknownSession => CommandError::UnknownLink,
            e => e,
        })
    }

    /// Accepts the peer's attach with these termini.
    pub fn accept_attach(
        &mut self,
        link: LinkId,
        answer: AttachAnswer,
    ) -> Result<(), CommandError> {
        self.with_link(link, |s, ctx, h| s.accept(ctx, h, answer))
    }

    /// Refuses the peer's attach: null terminus, then a detach with `error`.
    pub fn refuse_attach(&mut self, link: LinkId, error: AmqpError) -> Result<(), CommandError> {
        self.with_link(link, |s, ctx, h| s.refuse(ctx, h, error))
    }

    /// Sends a delivery on a sender link within its credit; returns its
    /// delivery id.
    pub fn send(&mut self, link: LinkId, delivery: Outgoing) -> Result<u32, CommandError> {
        self.with_link(link, |s, ctx, h| s.send(ctx, h, delivery))
    }

    /// Our disposition of a delivery received on `link`: settled with an
    /// outcome (accepted, rejected, released, modified), or a non-final
    /// state. Consecutive ones are sent as one range.
    pub fn disposition(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<(), CommandError> {
        self.with_link(link, |s, _, h| {
            s.disposition(h, delivery_id, state, settled)
        })
    }

    /// Settles a received delivery with an outcome.
    pub fn settle(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        outcome: DeliveryState,
    ) -> Result<(), CommandError> {
        self.disposition(link, delivery_id, Some(outcome), true)
    }

    /// Sets the credit of a receiver link (how many more deliveries the
    /// peer may send), asking it to drain when `drain`.
    pub fn grant_credit(
        &mut self,
        link: LinkId,
        credit: u32,
        drain: bool,
    ) -> Result<(), CommandError> {
        self.with_link(link, |s, ctx, h| s.grant_credit(ctx, h, credit, drain))
    }

    /// Answers a drain on a sender link: the credit left is used up.
    pub fn drain_complete(&mut self, link: LinkId) -> Result<(), CommandError> {
        self.with_link(link, |s, ctx, h| s.drain_complete(ctx, h))
    }

    /// Closes a link (no `LinkDetached` event follows).
    pub fn detach(&mut self, link: LinkId, error: Option<AmqpError>) -> Result<(), CommandError> {
        self.with_link(link, |s, ctx, h| s.detach(ctx, h, error))
    }

    /// The credit left on an attached link.
    pub fn credit(&self, link: LinkId) -> Option<u32> {
        self.sessions
            .get(&link.channel)
            .filter(|s| s.links.get(&link.handle).map(|l| l.id) == Some(link))
            .and_then(|s| s.credit(link.handle))
    }

    /// Ends a session; its links get `LinkDetached`, it gets `SessionEnded`.
    pub fn end_session(
        &mut self,
        session: SessionId,
        error: Option<AmqpError>,
    ) -> Result<(), CommandError> {
        self.with_session(session.channel, Some(session.serial()), |s, ctx| {
            s.end(ctx, error);
            Ok(())
        })
    }

    /// Closes the connection: events for what is still open, close sent,
    /// then the transport is dropped when the peer answers (or after
    /// `close_timeout_ms`).
    pub fn close(&mut self, error: Option<AmqpError>) {
        match self.phase {
            Phase::Opened => {
                self.announce_all(error.clone());
                self.close_with(error.clone());
                self.announce_closed(CloseReason::Owner(error));
            }
            Phase::Closing { .. } | Phase::Done => {}
            _ => self.finish(CloseReason::Owner(error)),
        }
        self.note_activity();
    }

    /// Bytes of outgoing transfers waiting for the peer's session window.
    pub fn queued_bytes(&self) -> usize {
        self.sessions.values().map(|s| s.queued_bytes).sum()
    }
}
