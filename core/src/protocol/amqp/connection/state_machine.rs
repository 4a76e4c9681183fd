//! The server side of one AMQP connection: protocol headers, SASL, open
//! and close, sessions by channel, idle timeout.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::config::ConnectionConfig;
use super::event::{CloseReason, Event, Input, Output, PeerOpen, SaslAuth, SessionId};
use super::fault::{Fault, ProtocolError};
use super::outbox::Outbox;
use super::session::{Ctx, Session, SessionState};
use crate::protocol::amqp::{
    decode_amqp_body, decode_sasl_body, encode_frame, AmqpError, Begin, Condition, FrameDecoder,
    FrameError, Item, Open, Performative, ProtocolHeader, RawFrame, SaslCode, SaslFrame,
    AMQP_HEADER, MIN_MAX_FRAME_SIZE, SASL_HEADER,
};
use crate::Millis;

/// A session context borrowing the connection's parts (a macro, because a
/// method would borrow the whole connection).
macro_rules! ctx {
    ($c:expr) => {
        Ctx {
            out: &mut $c.out,
            config: &$c.config,
            peer_max_frame: $c.peer.map_or(MIN_MAX_FRAME_SIZE, |p| p.max_frame_size),
            serial: &mut $c.serial,
            reassembly_bytes: &mut $c.reassembly_bytes,
        }
    };
}

/// Heartbeats are never sent more often than this, whatever idle timeout
/// the peer asks for.
const HEARTBEAT_INTERVAL_MIN_MS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the first protocol header.
    Header,
    /// Sent sasl-mechanisms; waiting for sasl-init.
    SaslInit,
    /// Waiting for the owner's verdict on the SASL identity.
    SaslVerdict,
    /// SASL done; waiting for the AMQP header.
    AmqpHeader,
    /// Headers exchanged; waiting for open.
    Open,
    Opened,
    /// We sent close and wait for the peer's until `deadline`.
    Closing {
        deadline: Millis,
    },
    Done,
}

/// What we learned from the peer's open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub max_frame_size: u32,
    pub channel_max: u16,
    pub heartbeat_interval_ms: Option<u64>,
}

/// A sans-IO AMQP 1.0 server connection.
///
/// Feed it with [`handle`](Connection::handle), drain
/// [`poll_output`](Connection::poll_output), and call `handle(now,
/// Input::Tick)` at [`next_deadline`](Connection::next_deadline). The
/// owner answers events with the command methods.
#[derive(Debug)]
pub struct Connection {
    pub(crate) config: ConnectionConfig,
    pub(crate) phase: Phase,
    decoder: FrameDecoder,
    pub(crate) out: Outbox,
    pub(crate) peer: Option<Peer>,
    pub(crate) sessions: BTreeMap<u16, Session>,
    pub(crate) serial: u64,
    pub(crate) reassembly_bytes: usize,
    /// The latest time seen by `handle`.
    pub(crate) now: Millis,
    started_ms: Option<Millis>,
    last_received_ms: Millis,
    last_sent_ms: Millis,
    closed_announced: bool,
}

impl Connection {
    pub fn new(config: ConnectionConfig) -> Connection {
        let decoder = FrameDecoder::new(
            config.max_frame_size.max(MIN_MAX_FRAME_SIZE),
            config.pending_input_bytes_max,
        );
        Connection {
            config,
            phase: Phase::Header,
            decoder,
            out: Outbox::default(),
            peer: None,
            sessions: BTreeMap::new(),
            serial: 0,
            reassembly_bytes: 0,
            now: 0,
            started_ms: None,
            last_received_ms: 0,
            last_sent_ms: 0,
            closed_announced: false,
        }
    }

    /// One input at time `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        if self.started_ms.is_none() {
            // Time starts with the first input: the open timeout and the
            // idle clocks count from here.
            self.started_ms = Some(self.now);
            self.last_received_ms = self.now;
            self.last_sent_ms = self.now;
        }
        match input {
            Input::Bytes(b) => {
                self.last_received_ms = self.now;
                if self.phase == Phase::Done || self.out.disconnecting() {
                    return;
                }
                match self.decoder.push_bytes(b) {
                    Ok(()) => self.process(),
                    Err(e) => self.fail(e.into()),
                }
            }
            Input::Tick => self.tick(),
            Input::TransportClosed => {
                if self.phase != Phase::Done {
                    self.finish(CloseReason::Transport);
                }
            }
        }
        self.note_activity();
    }

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_drained() && self.phase == Phase::Opened {
            let window = self.config.session_incoming_window;
            for s in self.sessions.values_mut() {
                s.reopen_window(&mut self.out, window);
            }
        }
        for s in self.sessions.values_mut() {
            s.flush_dispositions(&mut self.out);
        }
        self.note_activity();
        self.out.pop()
    }

    /// When to call `handle(now, Input::Tick)` next.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        let started = self.started_ms?;
        match self.phase {
            Phase::Done => None,
            Phase::Closing { deadline } => Some(deadline),
            Phase::Opened => {
                let recv = (self.config.idle_timeout_ms > 0)
                    .then(|| self.last_received_ms + u64::from(self.config.idle_timeout_ms));
                let send = self
                    .peer
                    .and_then(|p| p.heartbeat_interval_ms)
                    .map(|i| self.last_sent_ms + i);
                recv.into_iter().chain(send).min()
            }
            _ => Some(started + self.config.open_timeout_ms),
        }
    }

    /// Whether the connection has ended (the driver may drop it once the
    /// outputs are drained).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Done || matches!(self.phase, Phase::Closing { .. })
    }

    /// Notes bytes written as sent now, and closes the connection if one of
    /// our frames could not be written because it exceeds the peer's
    /// max-frame-size (e.g. an attach echoing a huge filter).
    pub(crate) fn note_activity(&mut self) {
        if let Some((what, size)) = self.out.take_oversize() {
            let max = self.peer.map_or(MIN_MAX_FRAME_SIZE, |p| p.max_frame_size);
            self.fail(ProtocolError::OurFrameTooLarge { what, size, max });
        }
        if self.out.take_activity() {
            self.last_sent_ms = self.now;
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.phase {
            Phase::Closing { .. } => self.finish(CloseReason::Transport),
            Phase::Opened => {
                let idle = u64::from(self.config.idle_timeout_ms);
                if idle > 0 && now >= self.last_received_ms + idle {
                    self.fail(ProtocolError::IdleTimeout(self.config.idle_timeout_ms));
                    return;
                }
                if let Some(i) = self.peer.and_then(|p| p.heartbeat_interval_ms) {
                    if now >= self.last_sent_ms + i {
                        self.out.heartbeat();
                    }
                }
            }
            // Header, SASL or open did not finish in time.
            _ => self.finish(CloseReason::Transport),
        }
    }

    /// Decodes and handles buffered input until it runs out, or until the
    /// owner must decide on SASL.
    pub(crate) fn process(&mut self) {
        loop {
            if matches!(self.phase, Phase::SaslVerdict | Phase::Done) || self.out.disconnecting() {
                return;
            }
            match self.decoder.next_item() {
                Ok(None) => return,
                Ok(Some(Item::Header(h))) => {
                    if let Err(e) = self.on_header(h) {
                        self.fail(e);
                    }
                }
                Ok(Some(Item::Frame(f))) => {
                    if let Err(e) = self.on_frame(f) {
                        self.fail(e);
                    }
                }
                Err(e) => {
                    self.fail(e.into());
                    return;
                }
            }
        }
    }

    fn on_header(&mut self, h: ProtocolHeader) -> Result<(), ProtocolError> {
        match (self.phase, h) {
            (Phase::Header, ProtocolHeader::Sasl) => {
                self.out.raw(&SASL_HEADER);
                let mechanisms = self.config.sasl_mechanisms.clone();
                self.sasl_frame(&SaslFrame::Mechanisms(mechanisms));
                self.phase = Phase::SaslInit;
                Ok(())
            }
            (Phase::Header, ProtocolHeader::Amqp) if self.config.sasl_required => {
                Err(FrameError::BadHeader(AMQP_HEADER.to_vec()).into())
            }
            (Phase::Header | Phase::AmqpHeader, ProtocolHeader::Amqp) => {
                self.out.raw(&AMQP_HEADER);
                self.phase = Phase::Open;
                Ok(())
            }
            _ => Err(FrameError::BadHeader(h.bytes().to_vec()).into()),
        }
    }

    fn sasl_frame(&mut self, f: &SaslFrame) {
        let mut b = bytes::BytesMut::new();
        encode_frame(&mut b, true, 0, &f.to_value(), &[]);
        self.out.raw(&b);
    }

    fn on_frame(&mut self, f: RawFrame) -> Result<(), ProtocolError> {
        if f.sasl {
            if self.phase != Phase::SaslInit {
                return Err(ProtocolError::Unexpected {
                    frame: "SASL frame",
                    when: "outside the SASL exchange",
                });
            }
            let frame = decode_sasl_body(f.body, &self.config.decode)?;
            return self.on_sasl(frame);
        }
        if matches!(self.phase, Phase::SaslInit) {
            return Err(ProtocolError::Unexpected {
                frame: "AMQP frame",
                when: "during SASL",
            });
        }
        if f.body.is_empty() {
            // An empty frame: a heartbeat; receiving it was the point.
            return Ok(());
        }
        let (perf, payload) = decode_amqp_body(f.body, &self.config.decode)?;
        match (self.phase, perf) {
            (Phase::Closing { .. }, Performative::Close { .. }) => {
                self.finish(CloseReason::Transport);
                Ok(())
            }
            (Phase::Closing { .. }, _) => Ok(()),
            (Phase::Open, Performative::Open(o)) => self.on_open(o),
            (Phase::Open, p) => Err(ProtocolError::Unexpected {
                frame: p.name(),
                when: "before open",
            }),
            (Phase::Opened, Performative::Open(_)) => Err(ProtocolError::Unexpected {
                frame: "open",
                when: "twice",
            }),
            (Phase::Opened, Performative::Close { error }) => {
                self.announce_all(error.clone());
                self.out.frame(0, &Performative::Close { error: None });
                self.finish(CloseReason::Peer(error));
                Ok(())
            }
            (Phase::Opened, Performative::Begin(b)) => self.on_begin(f.channel, b),
            (Phase::Opened, Performative::End { error }) => self.on_end(f.channel, error),
            (Phase::Opened, p) => self.on_session_frame(f.channel, p, payload),
            // Header and SASL phases never reach here with an AMQP frame.
            (_, p) => Err(ProtocolError::Unexpected {
                frame: p.name(),
                when: "now",
            }),
        }
    }

    fn on_sasl(&mut self, frame: SaslFrame) -> Result<(), ProtocolError> {
        let SaslFrame::Init {
            mechanism,
            initial_response,
            hostname,
        } = frame
        else {
            return Err(ProtocolError::Unexpected {
                frame: "SASL frame other than init",
                when: "from a client",
            });
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let offered = self.config.sasl_mechanisms.contains(&mechanism);
        let auth = match mechanism.as_str() {
            // EXTERNAL: the identity the transport (a TLS client
            // certificate) established; the response is an optional authzid.
            "ANONYMOUS" | "EXTERNAL" if offered => SaslAuth {
                mechanism,
                authzid: None,
                username: initial_response.as_deref().map(text),
                password: None,
                hostname,
            },
            "PLAIN" if offered => {
                // authzid NUL authcid NUL passwd (RFC 4616).
                let resp = initial_response.unwrap_or_default();
                let mut parts = resp.split(|b| *b == 0);
                let (Some(authzid), Some(user), Some(pass)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    self.sasl_frame(&SaslFrame::Outcome {
                        code: SaslCode::Auth,
                        additional_data: None,
                    });
                    self.finish(CloseReason::Protocol(AmqpError::new(
                        Condition::UnauthorizedAccess,
                        "malformed PLAIN response",
                    )));
                    return Ok(());
                };
                SaslAuth {
                    mechanism,
                    authzid: (!authzid.is_empty()).then(|| text(authzid)),
                    username: Some(text(user)),
                    password: Some(text(pass)),
                    hostname,
                }
            }
            other => {
                self.sasl_frame(&SaslFrame::Outcome {
                    code: SaslCode::Auth,
                    additional_data: None,
                });
                let e = ProtocolError::SaslMechanism(other.to_owned());
                self.finish(CloseReason::Protocol(e.to_amqp()));
                return Ok(());
            }
        };
        self.phase = Phase::SaslVerdict;
        self.out.event(Event::SaslAuth(auth));
        Ok(())
    }

    /// Answers the SASL identity of the last `SaslAuth` event; input held
    /// meanwhile is handled now.
    pub fn sasl_outcome(&mut self, ok: bool) -> Result<(), super::event::CommandError> {
        if self.phase != Phase::SaslVerdict {
            return Err(super::event::CommandError::NoSaslPending);
        }
        if ok {
            self.sasl_frame(&SaslFrame::Outcome {
                code: SaslCode::Ok,
                additional_data: None,
            });
            self.phase = Phase::AmqpHeader;
            self.decoder.expect_header();
            self.process();
        } else {
            self.sasl_frame(&SaslFrame::Outcome {
                code: SaslCode::Auth,
                additional_data: None,
            });
            self.finish(CloseReason::Protocol(AmqpError::new(
                Condition::UnauthorizedAccess,
                "authentication failed",
            )));
        }
        self.note_activity();
        Ok(())
    }

    fn our_open(&self) -> Performative {
        Performative::Open(Open {
            container_id: self.config.container_id.clone(),
            hostname: None,
            max_frame_size: self.config.max_frame_size.max(MIN_MAX_FRAME_SIZE),
            channel_max: self.config.channel_max,
            idle_time_out: (self.config.idle_timeout_ms > 0).then_some(self.config.idle_timeout_ms),
            offered_capabilities: self.config.offered_capabilities.clone(),
            properties: self.config.properties.clone(),
            ..Open::default()
        })
    }

    fn on_open(&mut self, o: Open) -> Result<(), ProtocolError> {
        if o.max_frame_size < MIN_MAX_FRAME_SIZE {
            return Err(ProtocolError::PeerFrameSizeTooSmall(o.max_frame_size));
        }
        let heartbeat_interval_ms = o
            .idle_time_out
            .filter(|t| *t > 0)
            .map(|t| (u64::from(t) / 2).max(HEARTBEAT_INTERVAL_MIN_MS));
        self.out.set_peer_max_frame(o.max_frame_size);
        self.peer = Some(Peer {
            max_frame_size: o.max_frame_size,
            channel_max: o.channel_max,
            heartbeat_interval_ms,
        });
        let open = self.our_open();
        self.out.frame(0, &open);
        self.phase = Phase::Opened;
        self.out.event(Event::Opened(PeerOpen {
            container_id: o.container_id,
            hostname: o.hostname,
            max_frame_size: o.max_frame_size,
            channel_max: o.channel_max,
            idle_time_out_ms: o.idle_time_out,
            offered_capabilities: o.offered_capabilities,
            desired_capabilities: o.desired_capabilities,
            properties: o.properties,
        }));
        Ok(())
    }

    fn on_begin(&mut self, channel: u16, b: Begin) -> Result<(), ProtocolError> {
        if b.remote_channel.is_some() {
            return Err(ProtocolError::Unexpected {
                frame: "begin with a remote-channel",
                when: "(this server never begins sessions)",
            });
        }
        let max = self
            .peer
            .map_or(0, |p| p.channel_max)
            .min(self.config.channel_max);
        if channel > max {
            return Err(ProtocolError::ChannelMax { channel, max });
        }
        if self.sessions.contains_key(&channel) {
            return Err(ProtocolError::ChannelInUse(channel));
        }
        self.serial += 1;
        let id = SessionId {
            channel,
            serial: self.serial,
        };
        let mut session = Session::new(id, &b, &self.config);
        let live = self
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Mapped)
            .count();
        let reply = session.begin_reply(&self.config);
        self.out.frame(channel, &reply);
        if live >= self.config.sessions_max {
            // Begun only to be ended at once: the spec's way to refuse.
            let error = ProtocolError::SessionsMax(self.config.sessions_max).to_amqp();
            let mut ctx = ctx!(self);
            session.end(&mut ctx, Some(error));
        } else {
            session.announced = true;
            self.out.event(Event::SessionBegun(id));
        }
        self.sessions.insert(channel, session);
        Ok(())
    }

    fn on_end(&mut self, channel: u16, error: Option<AmqpError>) -> Result<(), ProtocolError> {
        let Some(mut session) = self.sessions.remove(&channel) else {
            return Err(ProtocolError::UnmappedChannel(channel));
        };
        if session.state == SessionState::Mapped {
            let mut ctx = ctx!(self);
            session.announce_end(&mut ctx, error);
            session.write(ctx.out, &Performative::End { error: None });
        }
        Ok(())
    }

    fn on_session_frame(
        &mut self,
        channel: u16,
        perf: Performative,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        // Borrowed in place (the context borrows other fields): a session
        // is large, and moving it out and back per frame showed in profiles.
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Err(ProtocolError::UnmappedChannel(channel));
        };
        let mut ctx = ctx!(self);
        match session.on_frame(&mut ctx, perf, payload) {
            Ok(()) => Ok(()),
            Err(Fault::Connection(e)) => Err(e),
            Err(Fault::Session(e)) => {
                session.end(&mut ctx, Some(e.to_amqp()));
                Ok(())
            }
            Err(Fault::Link(handle, e)) => {
                session.detach_with_error(&mut ctx, handle, e.to_amqp());
                Ok(())
            }
        }
    }

    /// Tells the owner every session and link is gone.
    pub(crate) fn announce_all(&mut self, error: Option<AmqpError>) {
        let mut sessions = std::mem::take(&mut self.sessions);
        {
            let mut ctx = ctx!(self);
            for s in sessions.values_mut() {
                s.announce_end(&mut ctx, error.clone());
            }
        }
        self.sessions = sessions;
    }

    /// Closes because of the peer: our close carries the error.
    pub(crate) fn fail(&mut self, e: ProtocolError) {
        let error = e.to_amqp();
        match self.phase {
            Phase::Done | Phase::Closing { .. } => self.finish(CloseReason::Protocol(error)),
            Phase::Header | Phase::AmqpHeader | Phase::SaslInit | Phase::SaslVerdict => {
                if let ProtocolError::Frame(FrameError::BadHeader(_)) = e {
                    // Tell the peer which protocol we do speak.
                    match self.phase {
                        Phase::Header if self.config.sasl_required => self.out.raw(&SASL_HEADER),
                        Phase::Header | Phase::AmqpHeader => self.out.raw(&AMQP_HEADER),
                        _ => {}
                    }
                }
                self.finish(CloseReason::Protocol(error));
            }
            Phase::Open => {
                // A close must follow an open: refuse with open then close.
                let open = self.our_open();
                self.out.frame(0, &open);
                self.close_with(Some(error.clone()));
                self.announce_closed(CloseReason::Protocol(error));
            }
            Phase::Opened => {
                self.announce_all(Some(error.clone()));
                self.close_with(Some(error.clone()));
                self.announce_closed(CloseReason::Protocol(error));
            }
        }
    }

    /// Sends close and waits for the peer's.
    pub(crate) fn close_with(&mut self, error: Option<AmqpError>) {
        for s in self.sessions.values_mut() {
            s.flush_dispositions(&mut self.out);
        }
        self.out.frame(0, &Performative::Close { error });
        self.phase = Phase::Closing {
            deadline: self.now + self.config.close_timeout_ms,
        };
    }

    pub(crate) fn announce_closed(&mut self, reason: CloseReason) {
        if !self.closed_announced {
            self.closed_announced = true;
            self.out.event(Event::Closed(reason));
        }
    }

    /// The end: events for whatever is still open, then disconnect.
    pub(crate) fn finish(&mut self, reason: CloseReason) {
        if !self.closed_announced {
            self.announce_all(None);
        }
        self.announce_closed(reason);
        self.sessions.clear();
        self.phase = Phase::Done;
        self.out.disconnect();
    }
}
