//! Client sockets: the accept loops (plain and TLS), and each
//! connection's reader and writer tasks, which talk to the node's task
//! through [`DriverMsg`]s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halyard_core::ids::ConnId;
use halyard_core::node::{ConnEvent, Input};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, info_span, warn, Instrument};

#[cfg(not(madsim))]
use crate::tls::TlsListener;
use crate::write_gather::Gather;

/// Bytes read from a socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What flows into the node's task.
pub(crate) enum DriverMsg {
    Input(Input),
    /// A new connection's writer and reader controls, sent before its `Opened`.
    Register(ConnId, ConnHandle),
}

impl From<Input> for DriverMsg {
    fn from(i: Input) -> Self {
        DriverMsg::Input(i)
    }
}

pub(crate) enum WriteCmd {
    Data(Bytes),
    Close,
}

pub(crate) struct ConnHandle {
    pub(crate) writer: mpsc::UnboundedSender<WriteCmd>,
    pub(crate) pause: watch::Sender<bool>,
    pub(crate) reader: tokio::task::AbortHandle,
    /// The client's address, for `/api/connections`.
    pub(crate) peer: SocketAddr,
    /// Read chunks the node has not handled yet: the reader waits for a
    /// permit before sending one, so a flooding client is held back by TCP
    /// instead of filling the driver's queue (and the decoder's buffer).
    pub(crate) credit: Arc<tokio::sync::Semaphore>,
}

/// Read chunks (of up to READ_BUFFER_BYTES) in flight per connection.
const READ_CHUNKS_IN_FLIGHT: usize = 16;

/// What the connection tasks count (the node sees neither socket bytes nor
/// accepts).
#[derive(Debug, Default)]
pub struct IoCounters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// HTTP management logins refused (the node counts client logins).
    pub http_login_failures: AtomicU64,
}

/// Where a connection came in.
#[derive(Clone)]
pub(crate) struct AcceptCx {
    pub tx: mpsc::Sender<DriverMsg>,
    pub flush_tx: mpsc::UnboundedSender<(ConnId, usize)>,
    pub next_conn: Arc<AtomicU64>,
    pub counters: Arc<IoCounters>,
}

async fn bind(addr: SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                error!(listen = %addr, error = %e, "cannot listen; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn accept_one(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => return x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub(crate) async fn accept_loop(addr: SocketAddr, cx: AcceptCx) {
    let listener = bind(addr).await;
    info!(listen = %addr, "accepting clients (STOMP, AMQP)");
    loop {
        let (sock, peer) = accept_one(&listener).await;
        let _ = sock.set_nodelay(true);
        if !start_conn(sock, peer, None, &cx).await {
            return;
        }
    }
}

/// TLS handshakes in progress at once per listener; further clients wait
/// in the listen backlog. Bounds the work a burst of connects puts on the
/// runtime the handshakes share (`handshakes`: the peer port's and the
/// lock's in `halyard node`).
#[cfg(not(madsim))]
const TLS_HANDSHAKES_MAX: usize = 256;

/// The TLS listener: each handshake runs in its own task, so a slow
/// client holds up nobody, on `handshakes` if given (their CPU off the
/// node's thread); the connection then runs on the listener's runtime.
#[cfg(not(madsim))]
pub(crate) async fn tls_accept_loop(
    tls: Arc<TlsListener>,
    cx: AcceptCx,
    handshakes: Option<tokio::runtime::Handle>,
) {
    let listener = bind(tls.listen).await;
    info!(
        listen = %tls.listen,
        client_certificates = tls.client_auth,
        "accepting TLS clients (STOMP, AMQP)"
    );
    let here = tokio::runtime::Handle::current();
    let handshakes = handshakes.unwrap_or_else(|| here.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(TLS_HANDSHAKES_MAX));
    // Dropped with this loop (the node stopped accepting): a handshake that
    // ends later hands the node no connection.
    let accepting = Arc::new(());
    let span = tracing::Span::current();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (sock, peer) = accept_one(&listener).await;
        let _ = sock.set_nodelay(true);
        let (tls, cx, here) = (tls.clone(), cx.clone(), here.clone());
        let open = Arc::downgrade(&accepting);
        let conn_span = span.clone();
        handshakes.spawn(
            async move {
                let shaken = tls.handshake(sock).await;
                drop(slot);
                match shaken {
                    Ok((stream, user)) if open.upgrade().is_some() => {
                        here.spawn(
                            async move { start_conn(stream, peer, user, &cx).await }
                                .instrument(conn_span),
                        );
                    }
                    Ok(_) => debug!(%peer, "TLS handshake ended after the node stopped accepting"),
                    Err(e) => info!(%peer, "TLS handshake failed: {e}"),
                }
            }
            .instrument(span.clone()),
        );
    }
}

/// Registers a connection with the node and starts its reader and writer.
/// `user`: the user its client certificate names. False when the node's
/// task is gone.
async fn start_conn<S>(stream: S, peer: SocketAddr, user: Option<String>, cx: &AcceptCx) -> bool
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    cx.counters
        .connections_accepted
        .fetch_add(1, Ordering::Relaxed);
    let id = ConnId(cx.next_conn.fetch_add(1, Ordering::Relaxed));
    let span = info_span!("conn", id = %id, %peer);
    debug!(parent: &span, "connection opened");
    // tokio::io::split rather than into_split: madsim's TcpStream has only the former.
    let (rd, wr) = tokio::io::split(stream);
    let (wtx, wrx) = mpsc::unbounded_channel();
    let (ptx, prx) = watch::channel(false);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let credit = Arc::new(tokio::sync::Semaphore::new(READ_CHUNKS_IN_FLIGHT));
    let tx = &cx.tx;
    let reader = tokio::spawn(
        read_loop(
            id,
            rd,
            prx,
            go_rx,
            credit.clone(),
            tx.clone(),
            cx.counters.clone(),
        )
        .instrument(span.clone()),
    );
    tokio::spawn(
        write_loop(
            id,
            wr,
            wrx,
            cx.flush_tx.clone(),
            tx.clone(),
            cx.counters.clone(),
        )
        .instrument(span),
    );
    let handle = ConnHandle {
        writer: wtx,
        pause: ptx,
        reader: reader.abort_handle(),
        peer,
        credit,
    };
    if tx.send(DriverMsg::Register(id, handle)).await.is_err()
        || tx
            .send(Input::Conn(ConnEvent::Opened { conn: id }).into())
            .await
            .is_err()
    {
        return false;
    }
    if let Some(user) = user {
        if tx
            .send(Input::Conn(ConnEvent::Identified { conn: id, user }).into())
            .await
            .is_err()
        {
            return false;
        }
    }
    let _ = go_tx.send(());
    true
}

async fn read_loop<R: AsyncRead + Unpin>(
    id: ConnId,
    mut rd: R,
    mut paused: watch::Receiver<bool>,
    go: tokio::sync::oneshot::Receiver<()>,
    credit: Arc<tokio::sync::Semaphore>,
    tx: mpsc::Sender<DriverMsg>,
    counters: Arc<IoCounters>,
) {
    // Registration and `Opened` must reach the node before the first bytes.
    if go.await.is_err() {
        return;
    }
    // Each chunk handed to the node is a slice of this buffer (no copy); a
    // new one is taken when little room is left. The node's decoders copy
    // what they keep, so a chunk does not pin its buffer for long.
    let mut buf = BytesMut::new();
    loop {
        while *paused.borrow() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        // The driver returns the permit once the node has handled the chunk.
        match credit.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        if buf.capacity() < READ_BUFFER_BYTES / 16 {
            buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        }
        let n = match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "read failed");
                break;
            }
        };
        debug_assert_eq!(buf.len(), n);
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let bytes = buf.split().freeze();
        if tx
            .send(Input::Conn(ConnEvent::Received { conn: id, bytes }).into())
            .await
            .is_err()
        {
            return;
        }
    }
    debug!("connection closed by peer");
    let _ = tx
        .send(Input::Conn(ConnEvent::Closed { conn: id }).into())
        .await;
}

async fn write_loop<W: AsyncWrite + Unpin>(
    id: ConnId,
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    flushed: mpsc::UnboundedSender<(ConnId, usize)>,
    tx: mpsc::Sender<DriverMsg>,
    counters: Arc<IoCounters>,
) {
    let mut batch = Gather::default();
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut close = false;
        let mut pending = Some(first);
        // What is queued goes out in one write.
        while let Some(cmd) = pending.take() {
            match cmd {
                WriteCmd::Data(b) => batch.push(b),
                WriteCmd::Close => {
                    close = true;
                    break;
                }
            }
            if batch.full() {
                break;
            }
            pending = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let n = batch.len();
            // flush: a no-op on a real socket, but generic writers (madsim's
            // simulated TCP) may hold bytes until it.
            let written = match batch.write_to(&mut wr).await {
                Ok(()) => wr.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                debug!(error = %e, "write failed");
                let _ = tx
                    .send(Input::Conn(ConnEvent::Closed { conn: id }).into())
                    .await;
                return;
            }
            counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            if flushed.send((id, n)).is_err() {
                return;
            }
        }
        if close {
            let _ = wr.shutdown().await;
            return;
        }
    }
}
