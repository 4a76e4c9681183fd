//! One session endpoint and the frames the peer sends on it: attach, flow,
//! transfer, disposition, detach (spec 2.5 and 2.6).
//!
//! Channels and handles mirror the peer's: we only ever begin a session or
//! attach a link in answer to the peer, so the peer's channel (handle) is
//! free on our side too, and one number names both ends.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use super::config::ConnectionConfig;
use super::event::{AttachRequest, Event, LinkId, Received, SessionId};
use super::fault::{Fault, ProtocolError};
use super::link::{serial_diff, Link, LinkState, Partial};
use super::outbox::Outbox;
use crate::chunk_map::ChunkMap;
use crate::protocol::amqp::{
    AmqpError, Attach, Begin, DeliveryState, Detach, Disposition, Flow, Performative, Role,
    SenderSettleMode, Transfer,
};
use crate::wire_bytes::WireBytes;

/// Our first transfer-id on every session.
pub(crate) const INITIAL_OUTGOING_ID: u32 = 0;
/// The outgoing-window we advertise: we never hold transfers back for our
/// own sake (the owner's credit and the peer's window do).
const OUTGOING_WINDOW: u32 = i32::MAX as u32;

/// What a session needs from its connection.
pub(crate) struct Ctx<'a> {
    pub out: &'a mut Outbox,
    pub config: &'a ConnectionConfig,
    /// The peer's max-frame-size.
    pub peer_max_frame: u32,
    /// Hands out link serials, unique within the connection.
    pub serial: &'a mut u64,
    /// Bytes of partly received multi-frame deliveries, all sessions.
    pub reassembly_bytes: &'a mut usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionState {
    Mapped,
    /// We sent end and wait for the peer's; its frames are dropped.
    EndSent,
}

/// A transfer frame waiting for the peer's session window.
#[derive(Debug)]
pub(crate) struct Queued {
    pub handle: u32,
    pub transfer: Transfer,
    pub payload: WireBytes,
}

/// A disposition waiting to be coalesced into ranges.
#[derive(Debug, PartialEq)]
pub(crate) struct PendingDisposition {
    pub role: Role,
    pub delivery_id: u32,
    pub settled: bool,
    pub state: Option<DeliveryState>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub id: SessionId,
    pub state: SessionState,
    /// Whether the owner was told about it (`SessionBegun`).
    pub announced: bool,
    pub next_incoming_id: u32,
    pub incoming_window: u32,
    pub next_outgoing_id: u32,
    pub remote_incoming_window: u32,
    pub next_delivery_id: u32,
    /// The lower of ours and the peer's.
    pub handle_max: u32,
    pub links: BTreeMap<u32, Link>,
    /// Deliveries we sent and the peer has not settled: handle and tag.
    pub unsettled_out: ChunkMap<u32, (u32, Bytes)>,
    /// Deliveries we received and have not settled: handle.
    pub unsettled_in: ChunkMap<u32, u32>,
    pub queue: VecDeque<Queued>,
    pub queued_bytes: usize,
    pub dispositions: Vec<PendingDisposition>,
}

impl Session {
    pub fn new(id: SessionId, begin: &Begin, config: &ConnectionConfig) -> Session {
        Session {
            id,
            state: SessionState::Mapped,
            announced: false,
            next_incoming_id: begin.next_outgoing_id,
            incoming_window: config.session_incoming_window,
            next_outgoing_id: INITIAL_OUTGOING_ID,
            remote_incoming_window: begin.incoming_window,
            next_delivery_id: 0,
            handle_max: begin.handle_max.min(config.handle_max),
            links: BTreeMap::new(),
            unsettled_out: ChunkMap::new(),
            unsettled_in: ChunkMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            dispositions: Vec::new(),
        }
    }

    pub fn channel(&self) -> u16 {
        self.id.channel
    }

    /// Our begin in answer to the peer's.
    pub fn begin_reply(&self, config: &ConnectionConfig) -> Performative {
        Performative::Begin(Begin {
            remote_channel: Some(self.channel()),
            next_outgoing_id: self.next_outgoing_id,
            incoming_window: self.incoming_window,
            outgoing_window: OUTGOING_WINDOW,
            handle_max: config.handle_max,
            ..Begin::default()
        })
    }

    /// Writes a frame on this session, dispositions first so that frames
    /// keep the order the owner caused them in.
    pub fn write(&mut self, out: &mut Outbox, perf: &Performative) {
        self.flush_dispositions(out);
        out.frame(self.channel(), perf);
    }

    /// Sends pending dispositions, consecutive ids with the same role,
    /// settlement and state as one range.
    pub fn flush_dispositions(&mut self, out: &mut Outbox) {
        let mut pending = std::mem::take(&mut self.dispositions)
            .into_iter()
            .peekable();
        while let Some(first) = pending.next() {
            let mut last = first.delivery_id;
            while let Some(next) = pending.peek() {
                let joins = next.role == first.role
                    && next.settled == first.settled
                    && next.state == first.state
                    && next.delivery_id == last.wrapping_add(1);
                if !joins {
                    break;
                }
                last = next.delivery_id;
                pending.next();
            }
            let d = Disposition {
                role: first.role,
                first: first.delivery_id,
                last: (last != first.delivery_id).then_some(last),
                settled: first.settled,
                state: first.state,
                batchable: false,
            };
            out.frame(self.channel(), &Performative::Disposition(d));
        }
    }

    /// The session part of a flow we send.
    pub fn flow(&self) -> Flow {
        Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: OUTGOING_WINDOW,
            ..Flow::default()
        }
    }

    /// Sends a flow, with the state of link `handle` if given.
    pub fn send_flow(&mut self, out: &mut Outbox, handle: Option<u32>) {
        let mut flow = self.flow();
        if let Some(link) = handle.and_then(|h| self.links.get(&h)) {
            link.flow_fields(&mut flow, link.id.handle);
        }
        self.write(out, &Performative::Flow(flow));
    }

    /// Reopens our incoming window once half of it is used. Called when the
    /// owner has taken every event: so one burst of input can never queue
    /// more than a window of deliveries.
    pub fn reopen_window(&mut self, out: &mut Outbox, window: u32) {
        if self.state == SessionState::Mapped && self.incoming_window <= window / 2 {
            self.incoming_window = window;
            self.send_flow(out, None);
        }
    }

    /// Sends queued transfers while the peer's session window allows.
    pub fn pump(&mut self, out: &mut Outbox) {
        self.flush_dispositions(out);
        while self.remote_incoming_window > 0 {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= q.payload.len();
            out.frame_with(
                self.channel(),
                &Performative::Transfer(q.transfer),
                q.payload,
            );
            self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
            self.remote_incoming_window -= 1;
        }
    }

    /// Handles a frame the peer sent on this session (not begin or end).
    pub fn on_frame(
        &mut self,
        ctx: &mut Ctx,
        perf: Performative,
        payload: Bytes,
    ) -> Result<(), Fault> {
        if self.state == SessionState::EndSent {
            return Ok(());
        }
        match perf {
            Performative::Attach(a) => self.on_attach(ctx, a),
            Performative::Flow(f) => self.on_flow(ctx, f),
            Performative::Transfer(t) => self.on_transfer(ctx, t, payload),
            Performative::Disposition(d) => {
                self.on_disposition(ctx, d);
                Ok(())
            }
            Performative::Detach(d) => self.on_detach(ctx, d),
            other => Err(Fault::conn(ProtocolError::Unexpected {
                frame: other.name(),
                when: "on a session",
            })),
        }
    }

    fn on_attach(&mut self, ctx: &mut Ctx, a: Box<Attach>) -> Result<(), Fault> {
        if a.handle > self.handle_max {
            return Err(Fault::conn(ProtocolError::HandleMax {
                handle: a.handle,
                max: self.handle_max,
            }));
        }
        if self.links.contains_key(&a.handle) {
            return Err(Fault::Session(ProtocolError::HandleInUse(a.handle)));
        }
        *ctx.serial += 1;
        let id = LinkId {
            channel: self.channel(),
            handle: a.handle,
            serial: *ctx.serial,
        };
        let role = match a.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        let mut link = Link {
            id,
            name: a.name.clone(),
            role,
            state: LinkState::Pending,
            source: a.source.clone(),
            target: a.target.clone(),
            snd_settle_mode: a.snd_settle_mode,
            rcv_settle_mode: a.rcv_settle_mode,
            delivery_count: if role == Role::Receiver {
                a.initial_delivery_count.unwrap_or(0)
            } else {
                0
            },
            credit: 0,
            drain: false,
            peer_max_message_size: a.max_message_size.filter(|m| *m > 0),
            max_message_size: ctx.config.message_size_max,
            partial: None,
        };
        let live = self
            .links
            .values()
            .filter(|l| l.state != LinkState::DetachSent)
            .count();
        if live >= ctx.config.links_per_session_max {
            // Refused before the owner hears of it.
            let error = ProtocolError::LinksMax(ctx.config.links_per_session_max).to_amqp();
            self.write_refusal(ctx.out, &link, error);
            link.state = LinkState::DetachSent;
            self.links.insert(a.handle, link);
            return Ok(());
        }
        self.links.insert(a.handle, link);
        ctx.out
            .event(Event::AttachRequested(Box::new(AttachRequest {
                link: id,
                session: self.id,
                name: a.name,
                role,
                source: a.source,
                target: a.target,
                snd_settle_mode: a.snd_settle_mode,
                rcv_settle_mode: a.rcv_settle_mode,
                max_message_size: a.max_message_size,
                offered_capabilities: a.offered_capabilities,
                desired_capabilities: a.desired_capabilities,
                properties: a.properties,
            })));
        Ok(())
    }

    /// Refuses an attach as the spec asks: an attach with a null source
    /// (for our sender) or target (for our receiver), then a closing
    /// detach with the error.
    pub fn write_refusal(&mut self, out: &mut Outbox, link: &Link, error: AmqpError) {
        let handle = link.id.handle;
        let (source, target) = match link.role {
            Role::Sender => (None, link.target.clone()),
            Role::Receiver => (link.source.clone(), None),
        };
        let attach = Attach {
            name: link.name.clone(),
            handle,
            role: link.role,
            snd_settle_mode: link.snd_settle_mode,
            rcv_settle_mode: link.rcv_settle_mode,
            source,
            target,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (link.role == Role::Sender).then_some(0),
            max_message_size: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        };
        self.write(out, &Performative::Attach(Box::new(attach)));
        let detach = Detach {
            handle,
            closed: true,
            error: Some(error),
        };
        self.write(out, &Performative::Detach(detach));
    }

    fn on_flow(&mut self, ctx: &mut Ctx, flow: Flow) -> Result<(), Fault> {
        let next_in = flow.next_incoming_id.unwrap_or(INITIAL_OUTGOING_ID);
        self.remote_incoming_window = serial_diff(
            next_in.wrapping_add(flow.incoming_window),
            self.next_outgoing_id,
        );
        let mut echo_handle = None;
        if let Some(h) = flow.handle {
            let link = self
                .links
                .get_mut(&h)
                .ok_or(Fault::Session(ProtocolError::UnattachedHandle(h)))?;
            match (link.state, link.role) {
                (LinkState::DetachSent, _) => {}
                (state, Role::Sender) => {
                    link.sender_flow(&flow);
                    if state == LinkState::Attached {
                        ctx.out.event(Event::Credit {
                            link: link.id,
                            credit: link.credit,
                            drain: link.drain,
                        });
                    }
                }
                (_, Role::Receiver) => link.receiver_flow(&flow),
            }
            echo_handle = Some(h);
        }
        if flow.echo {
            self.send_flow(ctx.out, echo_handle);
        }
        self.pump(ctx.out);
        Ok(())
    }

    fn on_transfer(&mut self, ctx: &mut Ctx, t: Transfer, payload: Bytes) -> Result<(), Fault> {
        // Every transfer frame counts against the session window, even one
        // for a link we are detaching.
        if self.incoming_window == 0 {
            return Err(Fault::Session(ProtocolError::WindowViolation));
        }
        self.incoming_window -= 1;
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        let h = t.handle;
        let unsettled_max = ctx.config.unsettled_per_session_max;
        let link = self
            .links
            .get_mut(&h)
            .ok_or(Fault::Session(ProtocolError::UnattachedHandle(h)))?;
        if link.state == LinkState::DetachSent {
            return Ok(());
        }
        if link.role != Role::Receiver {
            return Err(Fault::Link(h, ProtocolError::TransferToSender));
        }
        let mut p = match link.partial.take() {
            Some(p) => {
                *ctx.reassembly_bytes -= p.bytes.len();
                match t.delivery_id {
                    Some(got) if got != p.delivery_id => {
                        return Err(Fault::Link(
                            h,
                            ProtocolError::DeliveryIdMismatch {
                                got,
                                expected: p.delivery_id,
                            },
                        ))
                    }
                    _ => p,
                }
            }
            None => {
                let missing = |f| Fault::Link(h, ProtocolError::MissingDeliveryField(f));
                let delivery_id = t.delivery_id.ok_or_else(|| missing("delivery-id"))?;
                let tag = t
                    .delivery_tag
                    .clone()
                    .ok_or_else(|| missing("delivery-tag"))?;
                if link.credit == 0 {
                    return Err(Fault::Link(h, ProtocolError::TransferWithoutCredit));
                }
                link.credit -= 1;
                link.delivery_count = link.delivery_count.wrapping_add(1);
                Partial {
                    delivery_id,
                    tag,
                    settled: link.snd_settle_mode == SenderSettleMode::Settled,
                    message_format: t.message_format.unwrap_or(0),
                    state: None,
                    bytes: BytesMut::new(),
                }
            }
        };
        if t.aborted {
            ctx.out.event(Event::Aborted {
                link: link.id,
                delivery_id: p.delivery_id,
            });
            return Ok(());
        }
        p.settled |= t.settled == Some(true);
        if t.state.is_some() {
            p.state = t.state;
        }
        let size = p.bytes.len() + payload.len();
        if size as u64 > link.max_message_size {
            return Err(Fault::Link(
                h,
                ProtocolError::MessageSize {
                    max: link.max_message_size,
                },
            ));
        }
        if t.more {
            if *ctx.reassembly_bytes + size > ctx.config.reassembly_bytes_max {
                return Err(Fault::Link(
                    h,
                    ProtocolError::ReassemblyMax(ctx.config.reassembly_bytes_max),
                ));
            }
            p.bytes.extend_from_slice(&payload);
            *ctx.reassembly_bytes += p.bytes.len();
            link.partial = Some(p);
            return Ok(());
        }
        // A one-frame delivery shares the frame's buffer.
        let payload = if p.bytes.is_empty() {
            payload
        } else {
            p.bytes.extend_from_slice(&payload);
            p.bytes.freeze()
        };
        if !p.settled {
            if self.unsettled_in.len() >= unsettled_max {
                return Err(Fault::Link(h, ProtocolError::UnsettledMax(unsettled_max)));
            }
            self.unsettled_in.insert(p.delivery_id, h);
        }
        ctx.out.event(Event::Received(Received {
            link: link.id,
            delivery_id: p.delivery_id,
            tag: p.tag,
            payload,
            settled: p.settled,
            message_format: p.message_format,
            state: p.state,
        }));
        Ok(())
    }

    /// Delivery ids from `first` to `last` among `keys`, in serial order,
    /// found by walking the map rather than the range (which a peer may
    /// make four billion long).
    fn ids_in(keys: &ChunkMap<u32, impl Sized>, first: u32, last: u32) -> Vec<u32> {
        let from_first = keys.range_from(Bound::Included(&first)).map(|(k, _)| *k);
        if first <= last {
            from_first.take_while(|k| *k <= last).collect()
        } else {
            from_first
                .chain(keys.keys().copied().take_while(|k| *k <= last))
                .collect()
        }
    }

    fn on_disposition(&mut self, ctx: &mut Ctx, d: Disposition) {
        let last = d.last.unwrap_or(d.first);
        if d.role == Role::Receiver {
            // The peer's outcome for deliveries we sent.
            for id in Session::ids_in(&self.unsettled_out, d.first, last) {
                let Some((h, tag)) = self.unsettled_out.get(&id).cloned() else {
                    continue;
                };
                let Some(link) = self
                    .links
                    .get(&h)
                    .filter(|l| l.state != LinkState::DetachSent)
                else {
                    continue;
                };
                ctx.out.event(Event::Disposition {
                    link: link.id,
                    delivery_id: id,
                    tag,
                    state: d.state.clone(),
                    settled: d.settled,
                });
                let terminal = d.state.as_ref().is_some_and(DeliveryState::is_terminal);
                if d.settled || terminal {
                    self.unsettled_out.remove(&id);
                }
                if !d.settled && terminal {
                    // rcv-settle-mode second: the receiver waits for us.
                    self.dispositions.push(PendingDisposition {
                        role: Role::Sender,
                        delivery_id: id,
                        settled: true,
                        state: d.state.clone(),
                    });
                }
            }
        } else if d.settled {
            // The sender settled deliveries we received.
            for id in Session::ids_in(&self.unsettled_in, d.first, last) {
                let Some(h) = self.unsettled_in.remove(&id) else {
                    continue;
                };
                if let Some(link) = self
                    .links
                    .get(&h)
                    .filter(|l| l.state != LinkState::DetachSent)
                {
                    ctx.out.event(Event::PeerSettled {
                        link: link.id,
                        delivery_id: id,
                        state: d.state.clone(),
                    });
                }
            }
        }
    }

    fn on_detach(&mut self, ctx: &mut Ctx, d: Detach) -> Result<(), Fault> {
        let link = self
            .links
            .get(&d.handle)
            .ok_or(Fault::Session(ProtocolError::UnattachedHandle(d.handle)))?;
        if link.state != LinkState::DetachSent {
            ctx.out.event(Event::LinkDetached {
                link: link.id,
                closed: d.closed,
                error: d.error,
            });
            let reply = Detach {
                handle: d.handle,
                closed: d.closed,
                error: None,
            };
            self.write(ctx.out, &Performative::Detach(reply));
        }
        self.forget_link(ctx, d.handle);
        Ok(())
    }

    /// Drops a link and everything queued or unsettled on it.
    pub fn forget_link(&mut self, ctx: &mut Ctx, handle: u32) {
        if let Some(link) = self.links.remove(&handle) {
            if let Some(p) = link.partial {
                *ctx.reassembly_bytes -= p.bytes.len();
            }
        }
        self.drop_link_state(handle);
    }

    /// Forgets what was queued or unsettled on link `handle`: unsent
    /// transfers are never sent, and the owner treats unsettled deliveries
    /// of a detached link as it sees fit.
    pub fn drop_link_state(&mut self, handle: u32) {
        self.unsettled_out.retain(|_, (h, _)| *h != handle);
        self.unsettled_in.retain(|_, h| *h != handle);
        let mut freed = 0;
        self.queue.retain(|q| {
            let keep = q.handle != handle;
            if !keep {
                freed += q.payload.len();
            }
            keep
        });
        self.queued_bytes -= freed;
    }

    /// We detach link `handle` because of `error`: the owner is told.
    pub fn detach_with_error(&mut self, ctx: &mut Ctx, handle: u32, error: AmqpError) {
        let Some(link) = self.links.get_mut(&handle) else {
            return;
        };
        if link.state == LinkState::DetachSent {
            return;
        }
        let was_pending = link.state == LinkState::Pending;
        link.state = LinkState::DetachSent;
        let id = link.id;
        if let Some(p) = link.partial.take() {
            *ctx.reassembly_bytes -= p.bytes.len();
        }
        ctx.out.event(Event::LinkDetached {
            link: id,
            closed: true,
            error: Some(error.clone()),
        });
        if was_pending {
            // Every detach follows an attach of ours.
            if let Some(link) = self.links.remove(&handle) {
                self.write_refusal(ctx.out, &link, error);
                self.links.insert(handle, link);
            }
        } else {
            let detach = Detach {
                handle,
                closed: true,
                error: Some(error),
            };
            self.write(ctx.out, &Performative::Detach(detach));
        }
        self.drop_link_state(handle);
    }

    /// Tells the owner that every link it knows and the session itself are
    /// gone (the session or the connection ended).
    pub fn announce_end(&mut self, ctx: &mut Ctx, error: Option<AmqpError>) {
        for link in self.links.values_mut() {
            if link.state != LinkState::DetachSent {
                link.state = LinkState::DetachSent;
                ctx.out.event(Event::LinkDetached {
                    link: link.id,
                    closed: false,
                    error: error.clone(),
                });
            }
            if let Some(p) = link.partial.take() {
                *ctx.reassembly_bytes -= p.bytes.len();
            }
        }
        if self.announced {
            self.announced = false;
            ctx.out.event(Event::SessionEnded {
                session: self.id,
                error,
            });
        }
    }

    /// We end the session (the owner asked, or the peer caused `error`).
    pub fn end(&mut self, ctx: &mut Ctx, error: Option<AmqpError>) {
        if self.state == SessionState::EndSent {
            return;
        }
        self.announce_end(ctx, error.clone());
        self.state = SessionState::EndSent;
        self.queue.clear();
        self.queued_bytes = 0;
        self.write(ctx.out, &Performative::End { error });
    }
}
