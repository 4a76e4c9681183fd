//! The STOMP side of a simulated client: CONNECT, SUBSCRIBE, SEND with a
//! receipt (or BEGIN, SENDs, COMMIT with a receipt), and ACK, NACK or
//! transactional ACKs, with the core's STOMP codec.

use std::collections::BTreeMap;

use bytes::BytesMut;
use halyard_core::protocol::stomp::{
    encode_to_bytes, Command, Decoded, Decoder, Frame, FrameWriter, Limits, Version,
};

use super::kinds::{
    decimal, AckStyle, Action, Incoming, Kind, Settle, WireEvent, DUPLICATE_ID, ORIGIN, PRODUCER,
    SEQ,
};

/// Acknowledgements per transaction of a transactional consumer.
const ACKS_PER_TRANSACTION: u32 = 3;

pub struct StompWire {
    name: String,
    kind: Kind,
    decoder: Decoder,
    /// Transactions sent and not yet receipted: name -> their seqs.
    tx_in_flight: BTreeMap<String, Vec<u64>>,
    /// Names transactions; never reset, so a name is never reused.
    next_tx: u64,
    /// Transactional consumer: the open ack transaction and its size.
    open_tx: Option<(String, u32)>,
}

impl StompWire {
    pub fn new(name: &str, kind: &Kind) -> StompWire {
        StompWire {
            name: name.to_string(),
            kind: kind.clone(),
            decoder: Decoder::new(Limits::default()),
            tx_in_flight: BTreeMap::new(),
            next_tx: 0,
            open_tx: None,
        }
    }

    /// The connection is gone: what was in flight on it is forgotten.
    pub fn reset(&mut self) {
        self.tx_in_flight.clear();
        self.open_tx = None;
    }

    fn send_frame(f: &Frame) -> Action {
        Action::Send(encode_to_bytes(f, Version::V1_2))
    }

    /// A frame of a few headers and no body (ACKs, NACKs, transactions),
    /// written straight to its bytes as `send_frame` would encode it: one
    /// allocation instead of a `Frame`'s and the encoder's.
    fn small_frame(command: Command, headers: &[(&str, &str)]) -> Action {
        // Room for the lines and a few escapes.
        let len: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let mut out = BytesMut::with_capacity(command.as_str().len() + len + 16);
        let mut f = FrameWriter::start(&mut out, command, Version::V1_2, 0);
        for (name, value) in headers {
            f.header(name, value);
        }
        f.finish(&[]);
        Action::Send(out.freeze())
    }

    /// The TCP connection was accepted: say CONNECT.
    pub fn greet(&mut self, out: &mut Vec<Action>, login: Option<&(String, String)>) {
        self.decoder = Decoder::new(Limits::default());
        let mut f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "sim");
        if let Some((user, pass)) = login {
            f.push_header("login", user.as_str());
            f.push_header("passcode", pass.as_str());
        }
        if let Kind::Consumer {
            durable: Some((client_id, _)),
            ..
        } = &self.kind
        {
            f.push_header("client-id", client_id.as_str());
        }
        out.push(Action::Send(encode_to_bytes(&f, Version::V1_0)));
    }

    pub fn on_bytes(&mut self, bytes: &[u8], events: &mut Vec<WireEvent>) {
        if let Err(e) = self.decoder.push(bytes) {
            events.push(WireEvent::Broken(format!(
                "undecodable bytes from broker: {e}"
            )));
            return;
        }
        loop {
            match self.decoder.next() {
                Ok(Some(Decoded::Frame(f))) => self.on_frame(f, events),
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(e) => {
                    events.push(WireEvent::Broken(format!("bad frame from broker: {e}")));
                    break;
                }
            }
        }
    }

    fn on_frame(&mut self, f: Frame, events: &mut Vec<WireEvent>) {
        match f.command {
            Command::Connected => {
                self.decoder.set_version(Version::V1_2);
                events.push(WireEvent::Connected);
            }
            Command::Receipt => {
                let id = f.header("receipt-id").unwrap_or_default();
                if id == "sub" {
                    events.push(WireEvent::Subscribed);
                } else if let Some(seq) = id.strip_prefix('m').and_then(|s| s.parse::<u64>().ok()) {
                    events.push(WireEvent::Acknowledged(vec![seq]));
                } else {
                    let seqs = self.tx_in_flight.remove(id).unwrap_or_default();
                    events.push(WireEvent::Acknowledged(seqs));
                }
            }
            Command::Message => {
                // One pass over the headers; the first of a repeated one
                // counts, as with `Frame::header`.
                let [mut producer, mut seq, mut origin, mut message_id, mut redelivered, mut ack] =
                    [None; 6];
                for (name, value) in f.headers() {
                    let slot = match name {
                        PRODUCER => &mut producer,
                        SEQ => &mut seq,
                        ORIGIN => &mut origin,
                        "message-id" => &mut message_id,
                        "redelivered" => &mut redelivered,
                        "ack" => &mut ack,
                        _ => continue,
                    };
                    slot.get_or_insert(value);
                }
                events.push(WireEvent::Delivered(Incoming {
                    producer: producer.unwrap_or_default().to_string(),
                    seq: seq.and_then(|s| s.parse().ok()).unwrap_or(u64::MAX),
                    origin: origin.unwrap_or_default().to_string(),
                    message_id: message_id.unwrap_or_default().to_string(),
                    redelivered: redelivered == Some("true"),
                    token: 0,
                    ack_id: ack.unwrap_or_default().to_string(),
                }));
            }
            Command::Error => events.push(WireEvent::Note(format!(
                "ERROR from broker: {}",
                f.header("message").unwrap_or("")
            ))),
            _ => {}
        }
    }

    /// A consumer's SUBSCRIBE, with a receipt that says it exists.
    pub fn subscribe(&mut self, out: &mut Vec<Action>) {
        let Kind::Consumer {
            destination,
            ack,
            durable,
            ..
        } = &self.kind
        else {
            return;
        };
        let mode = match ack {
            AckStyle::Cumulative => "client",
            AckStyle::Auto => "auto",
            AckStyle::Individual | AckStyle::Transactional => "client-individual",
        };
        let mut s = Frame::new(Command::Subscribe)
            .with_header("id", "s")
            .with_header("destination", destination.as_str())
            .with_header("ack", mode)
            .with_header("receipt", "sub");
        if let Some((_, name)) = durable {
            s.push_header("durable-subscription-name", name.as_str());
        }
        out.push(Self::send_frame(&s));
    }

    /// Settles the delivery whose `ack` header was `ack_id`.
    pub fn settle(&mut self, ack_id: String, how: Settle, out: &mut Vec<Action>) {
        let Kind::Consumer { ack, .. } = &self.kind else {
            return;
        };
        match ack {
            AckStyle::Auto => {}
            AckStyle::Transactional => {
                if self.open_tx.is_none() {
                    self.next_tx += 1;
                    let t = format!("a{}", self.next_tx);
                    out.push(Self::small_frame(Command::Begin, &[("transaction", &t)]));
                    self.open_tx = Some((t, 0));
                }
                if let Some((t, n)) = self.open_tx.as_mut() {
                    out.push(Self::small_frame(
                        Command::Ack,
                        &[("id", &ack_id), ("transaction", t)],
                    ));
                    *n += 1;
                    if *n >= ACKS_PER_TRANSACTION {
                        out.push(Self::small_frame(Command::Commit, &[("transaction", t)]));
                        self.open_tx = None;
                    }
                }
            }
            AckStyle::Individual | AckStyle::Cumulative => {
                let command = if how == Settle::Accept {
                    Command::Ack
                } else {
                    Command::Nack
                };
                out.push(Self::small_frame(command, &[("id", &ack_id)]));
            }
        }
    }

    /// One SEND, written straight to its bytes.
    fn message(&self, seq: u64, tx: Option<&str>) -> Action {
        let Kind::Producer {
            destination,
            duplicate_ids,
            ..
        } = &self.kind
        else {
            unreachable!("only producers send messages")
        };
        let seq_text = decimal(seq);
        let body = [&self.name, ":", &seq_text, ":payload"].concat();
        let mut out = BytesMut::with_capacity(192 + body.len());
        let mut f = FrameWriter::start(&mut out, Command::Send, Version::V1_2, body.len());
        f.header("destination", destination);
        f.header(PRODUCER, &self.name);
        f.header(SEQ, &seq_text);
        f.header(ORIGIN, destination);
        match tx {
            Some(t) => f.header("transaction", t),
            None => f.header_joined("receipt", &["m", &seq_text]),
        }
        if *duplicate_ids {
            f.header_joined(DUPLICATE_ID, &[&self.name, ":", &seq_text]);
        }
        f.finish(body.as_bytes());
        Action::Send(out.freeze())
    }

    /// Sends `seqs` as plain SENDs with receipts, or as one transaction
    /// whose COMMIT has the receipt.
    pub fn send(&mut self, seqs: &[u64], transaction: bool, out: &mut Vec<Action>) {
        if !transaction {
            out.extend(seqs.iter().map(|s| self.message(*s, None)));
            return;
        }
        self.next_tx += 1;
        let name = format!("t{}", self.next_tx);
        out.push(Self::small_frame(Command::Begin, &[("transaction", &name)]));
        out.extend(seqs.iter().map(|s| self.message(*s, Some(&name))));
        out.push(Self::small_frame(
            Command::Commit,
            &[("transaction", &name), ("receipt", &name)],
        ));
        self.tx_in_flight.insert(name, seqs.to_vec());
    }

    /// A producer with every message receipted says goodbye.
    pub fn goodbye(&mut self, out: &mut Vec<Action>) {
        out.push(Self::send_frame(&Frame::new(Command::Disconnect)));
    }
}
