//! The STOMP adapter: one client connection's STOMP state, turning frames
//! into the node's protocol-neutral operations and completions and
//! deliveries back into frames.

use std::collections::VecDeque;

use bytes::Bytes;
use tracing::debug;

use super::decode::{Decoded, Decoder};
use super::deliver::message_bytes;
use super::encode::{encode_to_bytes, HEARTBEAT};
use super::frame::{Command, Frame, Version};
use super::refused::Refused;
use super::send::message_from_send;
use super::subscribe::{durable_name, subscription_type, SubscribeHeaders};
use crate::broker::{AckError, Delivery, Destination};
use crate::journal::DurableSub;
use crate::message::Routing;
use crate::node::{
    Gate, NodeConfig, Op, OpError, Outcome, ProtocolSession, Refusal, SessionAction, SessionCx,
    SubscribeOp, SubscribeTarget, WireBytes,
};
use crate::security::Secret;
use crate::Millis;

/// The versions this server speaks, as the ERROR for a version mismatch
/// lists them in its `version` header (STOMP 1.2, CONNECT).
const VERSIONS: &str = "1.0,1.1,1.2";

/// One STOMP client connection.
pub struct StompSession {
    decoder: Decoder,
    version: Version,
    connected: bool,
    /// DISCONNECT or an error: no more frames are read.
    closing: bool,
    /// An ERROR is on its way: no second one.
    error_queued: bool,
    client_id: Option<String>,
    hb_send_ms: u64,
    hb_recv_ms: u64,
    opened_at: Millis,
    last_recv: Millis,
    last_send: Millis,
    /// Operations waiting for completion, in the order pushed: their tag
    /// and the receipt the frame asked for.
    waiting: VecDeque<(u64, Option<String>)>,
    next_tag: u64,
    /// CONNECT came with credentials the node is checking: read nothing
    /// more until it answers.
    logging_in: bool,
    /// A SEND that arrived while producers are held back (the disk or
    /// memory limit): handled when they may go on; nothing after it is read.
    held: Option<Frame>,
}

impl StompSession {
    pub fn new(config: &NodeConfig, opened_at: Millis) -> StompSession {
        StompSession {
            decoder: Decoder::new(config.limits.clone()),
            version: Version::V1_0,
            connected: false,
            closing: false,
            error_queued: false,
            client_id: None,
            hb_send_ms: 0,
            hb_recv_ms: 0,
            opened_at,
            last_recv: opened_at,
            last_send: opened_at,
            waiting: VecDeque::new(),
            next_tag: 1,
            logging_in: false,
            held: None,
        }
    }

    fn op(&mut self, cx: &mut SessionCx<'_>, op: Op, receipt: Option<String>) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.waiting.push_back((tag, receipt));
        cx.push(SessionAction::Op { tag, op });
    }

    /// Sends ERROR (with `receipt-id` if the frame asked for a receipt) after
    /// the answers owed for earlier frames, and closes.
    fn protocol_error(&mut self, cx: &mut SessionCx<'_>, refused: Refused, receipt: Option<&str>) {
        if self.closing && self.error_queued {
            return;
        }
        self.closing = true;
        self.error_queued = true;
        let message = if self.connected {
            refused.message
        } else {
            readable_by_any_version(&refused.message)
        };
        let message = message.as_str();
        let mut f = Frame::error(message, &refused.detail);
        for (k, v) in refused.headers {
            f.push_header(k, v);
        }
        if let Some(r) = receipt {
            f.push_header("receipt-id", r);
        }
        cx.push(SessionAction::ClientError(message.to_string()));
        cx.push(SessionAction::SendInTurn {
            bytes: encode_to_bytes(&f, self.version),
            close: true,
        });
    }

    fn handle_frame(&mut self, cx: &mut SessionCx<'_>, f: Frame) -> Result<(), Refused> {
        debug!(command = f.command.as_str(), "frame");
        match (self.connected, f.command) {
            (false, Command::Connect | Command::Stomp) => self.on_connect(cx, &f),
            (false, other) => Err(Refused::new(format!(
                "expected CONNECT or STOMP, got {}",
                other.as_str()
            ))),
            (true, Command::Connect | Command::Stomp) => Err(Refused::new("already connected")),
            (true, Command::Send) => self.on_send(cx, f),
            (true, Command::Subscribe) => self.on_subscribe(cx, &f),
            (true, Command::Unsubscribe) => self.on_unsubscribe(cx, &f),
            (true, Command::Ack) => self.on_ack(cx, &f, Outcome::Accepted),
            (true, Command::Nack) => self.on_ack(cx, &f, Outcome::Requeue),
            (true, Command::Begin) => {
                let tx = tx_name(&f)?;
                self.op(cx, Op::Begin { tx }, receipt(&f));
                Ok(())
            }
            (true, Command::Commit) => {
                let tx = tx_name(&f)?;
                self.op(cx, Op::Commit { tx }, receipt(&f));
                Ok(())
            }
            (true, Command::Abort) => {
                let tx = tx_name(&f)?;
                self.op(cx, Op::Abort { tx }, receipt(&f));
                Ok(())
            }
            (true, Command::Disconnect) => {
                self.closing = true;
                if let Some(r) = receipt(&f) {
                    let f = Frame::new(Command::Receipt).with_header("receipt-id", r);
                    cx.push(SessionAction::SendInTurn {
                        bytes: encode_to_bytes(&f, self.version),
                        close: true,
                    });
                } else {
                    cx.push(SessionAction::SendInTurn {
                        bytes: Bytes::new(),
                        close: true,
                    });
                }
                Ok(())
            }
            (true, other) => Err(Refused::new(format!(
                "{} is a server frame; clients may not send it",
                other.as_str()
            ))),
        }
    }

    fn on_connect(&mut self, cx: &mut SessionCx<'_>, f: &Frame) -> Result<(), Refused> {
        let version = Version::negotiate(f.header("accept-version")).ok_or_else(|| Refused {
            message: format!("supported protocol versions are {VERSIONS}"),
            detail: format!(
                "client offered accept-version {:?}",
                f.header("accept-version").unwrap_or("")
            ),
            headers: vec![("version", VERSIONS.to_string())],
        })?;
        let (cx_ms, cy_ms) = match f.header("heart-beat") {
            None => (0, 0),
            Some(h) => parse_heartbeat(h)
                .ok_or_else(|| Refused::new(format!("invalid heart-beat header {h:?}")))?,
        };
        let hb = cx.config.heartbeat_ms;
        self.hb_send_ms = if hb == 0 || cy_ms == 0 {
            0
        } else {
            hb.max(cy_ms)
        };
        self.hb_recv_ms = if hb == 0 || cx_ms == 0 {
            0
        } else {
            hb.max(cx_ms)
        };
        self.client_id = f.header("client-id").map(str::to_owned);
        self.version = version;
        self.decoder.set_version(version);
        // With users, a login (unless a client certificate named the user).
        if cx.config.security.is_some() && cx.principal.is_none() {
            let (Some(user), Some(pass)) = (f.header("login"), f.header("passcode")) else {
                return Err(Refused {
                    message:
                        "login refused: this broker has users; send login and passcode on CONNECT"
                            .into(),
                    detail: String::new(),
                    headers: Vec::new(),
                });
            };
            self.logging_in = true;
            cx.push(SessionAction::Login {
                user: user.to_owned(),
                password: Secret(pass.as_bytes().to_vec()),
            });
            return Ok(());
        }
        self.send_connected(cx);
        Ok(())
    }

    fn send_connected(&mut self, cx: &mut SessionCx<'_>) {
        let hb = cx.config.heartbeat_ms;
        self.connected = true;
        let reply = Frame::new(Command::Connected)
            .with_header("version", self.version.as_str())
            .with_header("server", concat!("halyard/", env!("CARGO_PKG_VERSION")))
            .with_header("session", cx.conn.to_string())
            .with_header("heart-beat", format!("{hb},{hb}"));
        cx.push(SessionAction::Send(
            encode_to_bytes(&reply, self.version).into(),
        ));
    }

    /// Where a frame goes; `routing` is the routing type it asks for on
    /// a bare name.
    fn resolve(
        &self,
        cx: &SessionCx<'_>,
        f: &Frame,
        routing: Option<&str>,
    ) -> Result<Destination, Refused> {
        Ok(cx
            .config
            .destinations
            .resolve(f.header("destination"), routing, |a| {
                cx.broker.address_routing(a)
            })?)
    }

    fn on_send(&mut self, cx: &mut SessionCx<'_>, f: Frame) -> Result<(), Refused> {
        if cx.gate == Gate::Block {
            // STOMP has no flow control: the client waits for its receipt
            // and the connection is not read until there is room.
            self.held = Some(f);
            return Ok(());
        }
        let dest = self.resolve(cx, &f, f.header("destination-type"))?;
        let message = message_from_send(&f, dest, cx.now)?;
        let tx = f.header("transaction").map(str::to_owned);
        self.op(cx, Op::Send { message, tx }, receipt(&f));
        Ok(())
    }

    fn on_subscribe(&mut self, cx: &mut SessionCx<'_>, f: &Frame) -> Result<(), Refused> {
        let dest = self.resolve(cx, f, subscription_type(f)?)?;
        let destination = f.header("destination").unwrap_or_default().to_string();
        let sub_id = match f.header("id") {
            Some(id) => id.to_string(),
            None if self.version == Version::V1_0 => destination.clone(),
            None => return Err(Refused::new("SUBSCRIBE needs an id header")),
        };
        let opts = SubscribeHeaders::parse(f, cx.config.broker.consumer_window_bytes_default)?;
        if cx.broker.has_subscription(cx.conn, &sub_id) {
            return Err(Refused::new(format!(
                "subscription id {sub_id:?} is already in use on this connection"
            )));
        }
        let target = match (dest.routing, durable_name(f)) {
            (Routing::Anycast, _) => SubscribeTarget::Queue {
                address: dest.address,
            },
            (Routing::Multicast, name) => {
                let durable = match name {
                    None => None,
                    Some(name) => Some(DurableSub {
                        client_id: self.client_id.clone().ok_or_else(|| {
                            Refused::new(
                                "a durable subscription needs a client-id header on CONNECT",
                            )
                        })?,
                        name: name.to_string(),
                    }),
                };
                SubscribeTarget::Topic {
                    address: dest.address,
                    durable,
                    shared: false,
                    shared_volatile: None,
                }
            }
        };
        let req = SubscribeOp {
            sub_id,
            target,
            ack: opts.ack,
            window_bytes: opts.window_bytes,
            window_messages: opts.window_messages,
            no_local: opts.no_local,
            selector: opts.selector,
            credit: None,
            browse: false,
            destination,
        };
        self.op(cx, Op::Subscribe(req), receipt(f));
        Ok(())
    }

    fn on_unsubscribe(&mut self, cx: &mut SessionCx<'_>, f: &Frame) -> Result<(), Refused> {
        let sub_id = match (f.header("id"), self.version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V1_0) => f
                .header("destination")
                .ok_or_else(|| Refused::new("UNSUBSCRIBE needs an id or destination header"))?
                .to_string(),
            (None, _) => return Err(Refused::new("UNSUBSCRIBE needs an id header")),
        };
        let durable = match durable_name(f) {
            None => None,
            Some(name) => Some(DurableSub {
                client_id: self.client_id.clone().ok_or_else(|| {
                    Refused::new("removing a durable subscription needs a client-id")
                })?,
                name: name.to_string(),
            }),
        };
        self.op(
            cx,
            Op::Unsubscribe {
                sub_id: Some(sub_id),
                durable,
            },
            receipt(f),
        );
        Ok(())
    }

    fn on_ack(
        &mut self,
        cx: &mut SessionCx<'_>,
        f: &Frame,
        outcome: Outcome,
    ) -> Result<(), Refused> {
        let ack = match f.header("id") {
            Some(id) => id
                .parse::<u64>()
                .map_err(|_| AckError::UnknownAckId(id.to_string()))?,
            None => {
                // STOMP 1.0/1.1 clients acknowledge by message-id (and subscription).
                let mid = f
                    .header("message-id")
                    .ok_or_else(|| Refused::new("ACK/NACK needs an id header"))?;
                let parsed = mid
                    .parse()
                    .map_err(|_| Refused::new(format!("unknown message-id {mid:?}")))?;
                cx.broker
                    .ack_for_message(cx.conn, f.header("subscription"), parsed)
                    .ok_or_else(|| Refused::new(format!("unknown message-id {mid:?}")))?
            }
        };
        let tx = f.header("transaction").map(str::to_owned);
        self.op(cx, Op::Settle { ack, outcome, tx }, receipt(f));
        Ok(())
    }
}

impl ProtocolSession for StompSession {
    fn receive(&mut self, cx: &mut SessionCx<'_>, bytes: Bytes) {
        self.last_recv = cx.now;
        if let Err(e) = self.decoder.push(&bytes) {
            self.protocol_error(cx, Refused::new(e.to_string()), None);
        }
    }

    fn step(&mut self, cx: &mut SessionCx<'_>) -> bool {
        if self.closing || self.logging_in || self.held.is_some() {
            return false;
        }
        match self.decoder.next() {
            Ok(None) => false,
            Ok(Some(Decoded::HeartBeat)) => true,
            Ok(Some(Decoded::Frame(f))) => {
                let receipt = receipt(&f);
                match self.handle_frame(cx, f) {
                    Ok(()) => !self.closing,
                    Err(r) => {
                        self.protocol_error(cx, r, receipt.as_deref());
                        false
                    }
                }
            }
            Err(e) => {
                self.protocol_error(cx, Refused::new(e.to_string()), None);
                false
            }
        }
    }

    fn completed(&mut self, cx: &mut SessionCx<'_>, tag: u64, result: Result<(), OpError>) {
        // In order, except a refusal, which comes at once for the newest.
        let pos = if self.waiting.front().is_some_and(|(t, _)| *t == tag) {
            Some(0)
        } else if self.waiting.back().is_some_and(|(t, _)| *t == tag) {
            Some(self.waiting.len() - 1)
        } else {
            self.waiting.iter().position(|(t, _)| *t == tag)
        };
        let Some((_, receipt)) = pos.and_then(|p| self.waiting.remove(p)) else {
            debug_assert!(false, "completion for unknown tag {tag}");
            return;
        };
        match result {
            Ok(()) => {
                if let Some(r) = receipt {
                    let f = Frame::new(Command::Receipt).with_header("receipt-id", r);
                    cx.push(SessionAction::Send(
                        encode_to_bytes(&f, self.version).into(),
                    ));
                }
            }
            Err(e) => self.protocol_error(cx, Refused::new(e.to_string()), receipt.as_deref()),
        }
    }

    fn deliver(&mut self, now: Millis, config: &NodeConfig, delivery: &Delivery) -> WireBytes {
        self.last_send = now;
        message_bytes(config, delivery, self.version)
    }

    fn tick(&mut self, cx: &mut SessionCx<'_>) {
        let now = cx.now;
        if !self.connected {
            if now >= self.opened_at + cx.config.connect_timeout_ms {
                self.protocol_error(cx, Refused::new("no CONNECT frame in time"), None);
            }
            return;
        }
        // While a SEND is held the connection is not read: its silence is ours.
        if self.hb_recv_ms > 0 && self.held.is_none() && now >= self.last_recv + 2 * self.hb_recv_ms
        {
            self.protocol_error(
                cx,
                Refused::new("heart-beat timeout: nothing received from the client"),
                None,
            );
            return;
        }
        if self.hb_send_ms > 0 && now >= self.last_send + self.hb_send_ms {
            cx.push(SessionAction::Send(Bytes::from_static(HEARTBEAT).into()));
        }
    }

    fn deadline(&self, config: &NodeConfig) -> Option<Millis> {
        if self.error_queued {
            // The ERROR waits its turn behind earlier answers and then
            // closes the connection; no timer changes that, and one left
            // due would have the driver spinning on it.
            return None;
        }
        if !self.connected {
            return Some(self.opened_at + config.connect_timeout_ms);
        }
        let mut d = None;
        if self.hb_send_ms > 0 {
            d = Some(self.last_send + self.hb_send_ms);
        }
        if self.hb_recv_ms > 0 && self.held.is_none() {
            let t = self.last_recv + 2 * self.hb_recv_ms;
            d = Some(d.map_or(t, |x: Millis| x.min(t)));
        }
        d
    }

    fn sent(&mut self, now: Millis) {
        self.last_send = now;
    }

    fn refuse(&mut self, cx: &mut SessionCx<'_>, why: &Refusal) {
        self.protocol_error(cx, Refused::new(why.message()), None);
    }

    fn producers_resumed(&mut self, cx: &mut SessionCx<'_>) {
        if let Some(f) = self.held.take() {
            // Reading starts again now: the client's heart-beats count from here.
            self.last_recv = cx.now;
            let receipt = receipt(&f);
            if let Err(r) = self.handle_frame(cx, f) {
                self.protocol_error(cx, r, receipt.as_deref());
            }
        }
    }

    fn holding(&self) -> bool {
        self.held.is_some()
    }

    fn login_checked(&mut self, cx: &mut SessionCx<'_>, ok: bool) {
        if !self.logging_in {
            return;
        }
        self.logging_in = false;
        if ok {
            self.send_connected(cx);
        } else {
            self.protocol_error(
                cx,
                Refused::new("login refused: bad user name or password"),
                None,
            );
        }
    }

    fn established(&self) -> bool {
        self.connected
    }
}

fn receipt(f: &Frame) -> Option<String> {
    f.header("receipt").map(str::to_owned)
}

fn tx_name(f: &Frame) -> Result<String, Refused> {
    f.header("transaction")
        .map(str::to_owned)
        .ok_or_else(|| Refused::new(format!("{} needs a transaction header", f.command.as_str())))
}

fn parse_heartbeat(h: &str) -> Option<(u64, u64)> {
    let (a, b) = h.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Before CONNECT no version is agreed, so an ERROR is written without
/// escapes (STOMP 1.0): its header must then read the same under every
/// version's rules, which a backslash from the client's bytes (`unknown
/// command "\t"`) would not.
fn readable_by_any_version(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if matches!(c, '\\' | '\r' | '\n') {
                '?'
            } else {
                c
            }
        })
        .collect()
}
