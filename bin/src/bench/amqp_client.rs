//! A small AMQP 1.0 client connection over TCP, on the core codec: SASL
//! (ANONYMOUS, or PLAIN with credentials), open, one session on channel 0,
//! and one link attached on handle 0. It knows nothing of the bench;
//! `amqp_run` drives the link.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    decode_amqp_body, decode_sasl_body, encode_frame, encode_performative, to_bytes, AmqpError,
    Attach, Begin, DecodeLimits, Detach, FrameDecoder, Item, Open, Performative, ProtocolHeader,
    Role, SaslCode, SaslFrame, Symbol, Transfer, AMQP_HEADER, EMPTY_FRAME, FRAME_HEADER_BYTES,
    MIN_MAX_FRAME_SIZE, SASL_HEADER,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// The largest frame we accept, advertised in open (Qpid JMS's default).
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Our session windows: wide open, so only link credit paces the broker;
/// re-advertised in every flow we send.
pub const SESSION_WINDOW: u32 = i32::MAX as u32;
/// Our first transfer-id.
pub const FIRST_OUTGOING_ID: u32 = 0;
/// Most bytes read but not yet decoded, and most bytes of one message.
pub const PENDING_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum AmqpClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what} timed out after {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("SASL: {0}")]
    Sasl(String),
    #[error("broker closed the connection: {0}")]
    Closed(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("protocol error from broker: {0}")]
    Protocol(String),
}

/// How to authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    Anonymous,
    Plain { user: String, password: String },
}

/// One decoded AMQP frame.
#[derive(Debug)]
pub struct Frame {
    pub perf: Performative,
    /// A transfer's payload (empty otherwise).
    pub payload: Bytes,
}

/// The text of an optional AMQP error, for reports.
pub fn error_text(e: &Option<AmqpError>) -> String {
    match e {
        Some(e) => e.to_string(),
        None => "no error given".into(),
    }
}

/// Receives frames.
pub struct AmqpReader {
    rd: ReadHalf<TcpStream>,
    dec: FrameDecoder,
    buf: Vec<u8>,
    limits: DecodeLimits,
}

impl AmqpReader {
    async fn item(&mut self) -> Result<Item, AmqpClientError> {
        loop {
            if let Some(item) = self
                .dec
                .next_item()
                .map_err(|e| AmqpClientError::Protocol(e.to_string()))?
            {
                return Ok(item);
            }
            let n = self
                .rd
                .read(&mut self.buf)
                .await
                .map_err(|e| AmqpClientError::Lost(e.to_string()))?;
            if n == 0 {
                return Err(AmqpClientError::Lost("closed by broker".into()));
            }
            self.dec
                .push(&self.buf[..n])
                .map_err(|e| AmqpClientError::Protocol(e.to_string()))?;
        }
    }

    /// The next AMQP frame; empty (heartbeat) frames are skipped. EOF is
    /// `Lost`.
    pub async fn recv(&mut self) -> Result<Frame, AmqpClientError> {
        loop {
            match self.item().await? {
                Item::Frame(f) if f.sasl => {
                    return Err(AmqpClientError::Protocol("SASL frame after SASL".into()))
                }
                Item::Frame(f) if f.body.is_empty() => continue,
                Item::Frame(f) => {
                    let (perf, payload) = decode_amqp_body(f.body, &self.limits)
                        .map_err(|e| AmqpClientError::Protocol(e.to_string()))?;
                    return Ok(Frame { perf, payload });
                }
                Item::Header(h) => {
                    return Err(AmqpClientError::Protocol(format!(
                        "unexpected protocol header {h:?}"
                    )))
                }
            }
        }
    }

    async fn sasl(&mut self) -> Result<SaslFrame, AmqpClientError> {
        match self.item().await? {
            Item::Frame(f) if f.sasl => decode_sasl_body(f.body, &self.limits)
                .map_err(|e| AmqpClientError::Protocol(e.to_string())),
            other => Err(AmqpClientError::Protocol(format!(
                "expected a SASL frame, got {other:?}"
            ))),
        }
    }
}

/// Sends frames: performatives are encoded into a buffer, `flush` writes it.
pub struct AmqpWriter {
    wr: WriteHalf<TcpStream>,
    buf: BytesMut,
    /// The broker's max-frame-size from its open.
    max_frame_size: u32,
}

impl AmqpWriter {
    pub fn push(&mut self, perf: &Performative) {
        encode_performative(&mut self.buf, 0, perf, &[]);
    }

    /// Encodes a transfer, split into as many frames as the broker's
    /// max-frame-size needs (`more` set on all but the last); returns the
    /// number of frames, each of which takes one unit of session window.
    pub fn push_transfer(&mut self, t: Transfer, payload: &[u8]) -> u32 {
        transfer_frames(&mut self.buf, self.max_frame_size, t, payload)
    }

    /// Frames a message of `len` bytes takes.
    pub fn frames_for(&self, t: &Transfer, len: usize) -> u32 {
        if surely_one_frame(self.max_frame_size, len)
            || FRAME_HEADER_BYTES + head_len(t, false) + len <= self.max_frame_size as usize
        {
            1
        } else {
            len.div_ceil(chunk_size(self.max_frame_size, t)).max(1) as u32
        }
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything pushed so far.
    pub async fn flush(&mut self) -> Result<(), AmqpClientError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.wr.write_all(&self.buf).await;
        self.buf.clear();
        r.map_err(|e| AmqpClientError::Lost(e.to_string()))
    }

    /// Writes bytes encoded elsewhere (a consumer's outbox).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), AmqpClientError> {
        self.wr
            .write_all(bytes)
            .await
            .map_err(|e| AmqpClientError::Lost(e.to_string()))
    }

    /// An empty frame: keeps the broker's idle timer from closing us.
    pub fn push_heartbeat(&mut self) {
        self.buf.extend_from_slice(&EMPTY_FRAME);
    }

    /// Ends the link, the session and the connection; the broker answers
    /// with its own close once it has handled every frame before ours.
    pub fn push_goodbye(&mut self) {
        for p in goodbye() {
            self.push(&p);
        }
    }
}

/// Detach (closing handle 0), end and close, in that order.
pub fn goodbye() -> [Performative; 3] {
    [
        Performative::Detach(Detach {
            handle: 0,
            closed: true,
            error: None,
        }),
        Performative::End { error: None },
        Performative::Close { error: None },
    ]
}

/// Bytes the transfer performative takes in a frame.
fn head_len(t: &Transfer, more: bool) -> usize {
    let mut t = t.clone();
    t.more = more;
    to_bytes(&Performative::Transfer(t).to_value()).len()
}

/// Payload bytes per frame when a message is split.
fn chunk_size(max_frame_size: u32, t: &Transfer) -> usize {
    let head = FRAME_HEADER_BYTES + head_len(t, true).max(head_len(t, false));
    (max_frame_size as usize).saturating_sub(head).max(1)
}

/// More than a transfer performative takes (about 80 bytes with a 32-byte
/// delivery tag).
const TRANSFER_BYTES_MAX: usize = 128;

/// Whether `len` payload bytes surely fit one frame with any transfer.
fn surely_one_frame(max_frame_size: u32, len: usize) -> bool {
    FRAME_HEADER_BYTES + TRANSFER_BYTES_MAX + len <= max_frame_size as usize
}

/// Appends `t` with `payload`, split to fit `max_frame_size`; returns the
/// number of frames.
pub fn transfer_frames(
    out: &mut BytesMut,
    max_frame_size: u32,
    t: Transfer,
    payload: &[u8],
) -> u32 {
    // Measuring the performative costs an encode: only near the limit.
    if surely_one_frame(max_frame_size, payload.len())
        || FRAME_HEADER_BYTES + head_len(&t, false) + payload.len() <= max_frame_size as usize
    {
        encode_performative(out, 0, &Performative::Transfer(t), payload);
        return 1;
    }
    let chunk = chunk_size(max_frame_size, &t);
    let mut frames = 0;
    let mut parts = payload.chunks(chunk).peekable();
    while let Some(part) = parts.next() {
        let mut f = t.clone();
        f.more = parts.peek().is_some();
        encode_performative(out, 0, &Performative::Transfer(f), part);
        frames += 1;
    }
    frames
}

/// A connection with its session begun.
pub struct Connected {
    pub writer: AmqpWriter,
    pub reader: AmqpReader,
    pub remote_open: Open,
    pub remote_begin: Begin,
}

async fn within<T>(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, AmqpClientError>>,
) -> Result<T, AmqpClientError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| AmqpClientError::Timeout {
            what: what.to_owned(),
            timeout,
        })?
}

/// Connects, authenticates, opens and begins a session on channel 0.
pub async fn connect(
    addr: &str,
    auth: &Auth,
    container_id: &str,
    timeout: Duration,
) -> Result<Connected, AmqpClientError> {
    let what = format!("connecting to {addr}");
    within(timeout, &what, connect_inner(addr, auth, container_id)).await
}

async fn connect_inner(
    addr: &str,
    auth: &Auth,
    container_id: &str,
) -> Result<Connected, AmqpClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| AmqpClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = tokio::io::split(stream);
    let mut r = AmqpReader {
        rd,
        dec: FrameDecoder::new(MAX_FRAME_SIZE, PENDING_MAX),
        buf: vec![0; 64 * 1024],
        limits: DecodeLimits::default(),
    };
    let mut w = AmqpWriter {
        wr,
        buf: BytesMut::with_capacity(64 * 1024),
        max_frame_size: MIN_MAX_FRAME_SIZE,
    };
    w.buf.extend_from_slice(&SASL_HEADER);
    w.flush().await?;
    let first = r.item().await.map_err(|e| match e {
        AmqpClientError::Protocol(e) => AmqpClientError::Protocol(format!(
            "{addr} did not answer with an AMQP header (not an AMQP port?): {e}"
        )),
        e => e,
    })?;
    match first {
        Item::Header(ProtocolHeader::Sasl) => {}
        other => {
            return Err(AmqpClientError::Sasl(format!(
                "the broker answered the SASL header with {other:?}"
            )))
        }
    }
    let offered = match r.sasl().await? {
        SaslFrame::Mechanisms(m) => m,
        other => {
            return Err(AmqpClientError::Sasl(format!(
                "expected sasl-mechanisms, got {other:?}"
            )))
        }
    };
    let names: Vec<&str> = offered.iter().map(Symbol::as_str).collect();
    let init = match auth {
        Auth::Plain { user, password } if names.contains(&"PLAIN") => {
            let mut resp = Vec::with_capacity(user.len() + password.len() + 2);
            resp.push(0);
            resp.extend_from_slice(user.as_bytes());
            resp.push(0);
            resp.extend_from_slice(password.as_bytes());
            SaslFrame::Init {
                mechanism: Symbol::from("PLAIN"),
                initial_response: Some(Bytes::from(resp)),
                hostname: None,
            }
        }
        Auth::Plain { .. } => {
            return Err(AmqpClientError::Sasl(format!(
                "the broker does not offer PLAIN (it offers {names:?})"
            )))
        }
        Auth::Anonymous if names.contains(&"ANONYMOUS") => SaslFrame::Init {
            mechanism: Symbol::from("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        },
        Auth::Anonymous => {
            return Err(AmqpClientError::Sasl(format!(
            "the broker does not offer ANONYMOUS (it offers {names:?}); give --user and --password"
        )))
        }
    };
    encode_frame(&mut w.buf, true, 0, &init.to_value(), &[]);
    w.flush().await?;
    match r.sasl().await? {
        SaslFrame::Outcome {
            code: SaslCode::Ok, ..
        } => r.dec.expect_header(),
        SaslFrame::Outcome { code, .. } => {
            return Err(AmqpClientError::Sasl(format!(
                "authentication failed ({code:?}); check --user and --password"
            )))
        }
        other => {
            return Err(AmqpClientError::Sasl(format!(
                "expected sasl-outcome, got {other:?} (challenges are not supported)"
            )))
        }
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    w.buf.extend_from_slice(&AMQP_HEADER);
    w.push(&Performative::Open(Open {
        container_id: container_id.to_owned(),
        hostname: Some(host.to_owned()),
        max_frame_size: MAX_FRAME_SIZE,
        channel_max: 0,
        // We do not time the broker out; it may time us out (heartbeats).
        idle_time_out: None,
        ..Open::default()
    }));
    w.push(&Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: FIRST_OUTGOING_ID,
        incoming_window: SESSION_WINDOW,
        outgoing_window: SESSION_WINDOW,
        handle_max: 0,
        ..Begin::default()
    }));
    w.flush().await?;
    match r.item().await? {
        Item::Header(ProtocolHeader::Amqp) => {}
        other => {
            return Err(AmqpClientError::Protocol(format!(
                "expected the AMQP header after SASL, got {other:?}"
            )))
        }
    }
    let remote_open = match r.recv().await?.perf {
        Performative::Open(o) => o,
        Performative::Close { error } => return Err(AmqpClientError::Closed(error_text(&error))),
        other => {
            return Err(AmqpClientError::Protocol(format!(
                "expected open, got {}",
                other.name()
            )))
        }
    };
    w.max_frame_size = remote_open.max_frame_size.max(MIN_MAX_FRAME_SIZE);
    let remote_begin = match r.recv().await?.perf {
        Performative::Begin(b) => b,
        Performative::Close { error } | Performative::End { error } => {
            return Err(AmqpClientError::Closed(error_text(&error)))
        }
        other => {
            return Err(AmqpClientError::Protocol(format!(
                "expected begin, got {}",
                other.name()
            )))
        }
    };
    Ok(Connected {
        writer: w,
        reader: r,
        remote_open,
        remote_begin,
    })
}

/// Why an attach did not give us a link.
#[derive(Debug)]
pub enum AttachError {
    /// The broker refused it: its detach error (or a close) explains why.
    Refused(String),
    Client(AmqpClientError),
}

impl From<AmqpClientError> for AttachError {
    fn from(e: AmqpClientError) -> AttachError {
        AttachError::Client(e)
    }
}

/// Attaches `ours` (handle 0) and waits for the broker's attach. A broker
/// that refuses answers with a null source (we receive) or target (we
/// send), then a detach carrying the reason. Frames after the answer (the
/// broker's first flow) stay buffered for the next `recv`.
pub async fn attach(
    c: &mut Connected,
    ours: Attach,
    timeout: Duration,
) -> Result<Attach, AttachError> {
    let role = ours.role;
    c.writer.push(&Performative::Attach(Box::new(ours)));
    c.writer.flush().await?;
    let r = &mut c.reader;
    let run = async {
        loop {
            let f = r.recv().await?;
            match f.perf {
                Performative::Attach(a) => {
                    let refused = match role {
                        Role::Sender => a.target.is_none(),
                        Role::Receiver => a.source.is_none(),
                    };
                    if !refused {
                        return Ok(Ok(*a));
                    }
                }
                Performative::Detach(d) => return Ok(Err(error_text(&d.error))),
                Performative::End { error } | Performative::Close { error } => {
                    return Ok(Err(error_text(&error)))
                }
                _ => {}
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(a))) => Ok(a),
        Ok(Ok(Err(why))) => Err(AttachError::Refused(why)),
        Ok(Err(e)) => Err(AttachError::Client(e)),
        Err(_) => Err(AttachError::Client(AmqpClientError::Timeout {
            what: "waiting for the broker's attach".into(),
            timeout,
        })),
    }
}

/// How often to send something so that the broker's idle timer (from its
/// open) does not close the connection: half its timeout.
pub fn keepalive(open: &Open) -> Option<Duration> {
    open.idle_time_out
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(u64::from(ms / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_core::protocol::amqp::{FrameDecoder, Item};

    #[test]
    fn large_transfers_are_split_to_the_frame_size() {
        let t = Transfer {
            handle: 0,
            delivery_id: Some(7),
            delivery_tag: Some(Bytes::from_static(&[0; 8])),
            message_format: Some(0),
            settled: Some(false),
            ..Transfer::default()
        };
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        let n = transfer_frames(&mut out, 512, t.clone(), &payload);
        assert!(n >= 10, "{n}");
        let mut dec = FrameDecoder::new(512, usize::MAX);
        dec.push(&AMQP_HEADER).unwrap();
        dec.push(&out).unwrap();
        assert!(matches!(dec.next_item(), Ok(Some(Item::Header(_)))));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(Item::Frame(f)) = dec.next_item().unwrap() {
            let (p, body) = decode_amqp_body(f.body, &DecodeLimits::default()).unwrap();
            let Performative::Transfer(x) = p else {
                panic!("not a transfer")
            };
            frames += 1;
            assert_eq!(x.more, frames < n);
            got.extend_from_slice(&body);
        }
        assert_eq!(frames, n);
        assert_eq!(got, payload);
        // A small one is one frame.
        let mut out = BytesMut::new();
        assert_eq!(transfer_frames(&mut out, 512, t, &payload[..100]), 1);
    }

    #[test]
    fn keepalive_is_half_the_broker_idle_timeout() {
        let mut o = Open::default();
        assert_eq!(keepalive(&o), None);
        o.idle_time_out = Some(30_000);
        assert_eq!(keepalive(&o), Some(Duration::from_secs(15)));
        o.idle_time_out = Some(0);
        assert_eq!(keepalive(&o), None);
    }
}
