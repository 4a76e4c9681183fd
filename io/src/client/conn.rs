//! One STOMP connection over TCP, using the core codec.

use std::time::Duration;

use bytes::BytesMut;
use halyard_core::protocol::stomp::{
    encode, Command, DecodeError, Decoded, Decoder, Frame, Limits, Version,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("broker refused the connection: {0}")]
    Refused(String),
    #[error("broker sent ERROR: {0}")]
    ServerError(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("protocol error from broker: {0}")]
    Protocol(#[from] DecodeError),
    #[error("no broker in {url} accepted a connection after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u64,
        last: String,
    },
}

/// Sends frames.
pub struct StompWriter {
    wr: WriteHalf<TcpStream>,
    version: Version,
    buf: BytesMut,
}

/// Receives frames.
pub struct StompReader {
    rd: ReadHalf<TcpStream>,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl StompWriter {
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.buf.clear();
        encode(frame, self.version, &mut self.buf);
        self.write_raw_inner().await
    }

    /// Encodes several frames into one write.
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.buf.clear();
        for f in frames {
            encode(f, self.version, &mut self.buf);
        }
        self.write_raw_inner().await
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.wr
            .write_all(bytes)
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        self.wr
            .flush()
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))
    }

    /// Writes the encoded buffer and flushes (simulated sockets need the flush).
    async fn write_raw_inner(&mut self) -> Result<(), ClientError> {
        self.wr
            .write_all(&self.buf)
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        self.wr
            .flush()
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))
    }

    pub fn version(&self) -> Version {
        self.version
    }
}

impl StompReader {
    /// The next frame (heart-beats skipped). EOF is `Lost`.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.decoder.next()? {
                Some(Decoded::Frame(f)) => return Ok(f),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            let n = self
                .rd
                .read(&mut self.buf)
                .await
                .map_err(|e| ClientError::Lost(e.to_string()))?;
            if n == 0 {
                return Err(ClientError::Lost("closed by broker".into()));
            }
            self.decoder.push(&self.buf[..n])?;
        }
    }
}

/// Opens a TCP connection, sends CONNECT with `headers`, waits for CONNECTED.
pub async fn connect(
    addr: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(StompWriter, StompReader), ClientError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::ConnectTimeout(addr.to_string()))?
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = tokio::io::split(stream);
    let mut limits = Limits::default();
    limits.pending_bytes_max = limits.pending_bytes_max.max(64 * 1024 * 1024);
    let mut reader = StompReader {
        rd,
        decoder: Decoder::new(limits),
        buf: vec![0; 64 * 1024],
    };
    let mut writer = StompWriter {
        wr,
        version: Version::V1_2,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let mut f = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("host", host)
        .with_header("heart-beat", "0,0");
    for (k, v) in headers {
        f.push_header(k.as_str(), v.as_str());
    }
    // CONNECT is never escaped; encode it as 1.0 to be safe with any value.
    writer.version = Version::V1_0;
    writer.send(&f).await?;
    writer.version = Version::V1_2;
    let reply = tokio::time::timeout(timeout, reader.recv())
        .await
        .map_err(|_| ClientError::ConnectTimeout(addr.to_string()))??;
    match reply.command {
        Command::Connected => {
            let v = reply
                .header("version")
                .and_then(Version::parse)
                .unwrap_or(Version::V1_2);
            writer.version = v;
            reader.decoder.set_version(v);
            Ok((writer, reader))
        }
        Command::Error => Err(ClientError::Refused(
            reply.header("message").unwrap_or("ERROR").to_string(),
        )),
        other => Err(ClientError::Refused(format!(
            "expected CONNECTED, got {}",
            other.as_str()
        ))),
    }
}
