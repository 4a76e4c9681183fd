//! A small TCP fault proxy (our own ToxiProxy) for tests and walkthroughs.
//!
//! [`FaultProxy`] accepts TCP connections on one address and forwards each to
//! an upstream address, bytes both ways. On demand it cuts the link:
//!
//! - [`CutMode::Reset`]: every proxied connection is closed at once with a
//!   TCP reset (both the client and the upstream side), and new connections
//!   are accepted and reset immediately. Peers see errors right away.
//! - [`CutMode::Blackhole`]: sockets stay open but every byte is dropped, both
//!   ways; new connections are accepted and go nowhere. Like a network
//!   partition: peers see timeouts, not errors.
//!
//! [`FaultProxy::heal`] forwards new connections again and closes the
//! black-holed ones (their byte streams have holes in them), so clients
//! reconnect.
//!
//! [`serve_control`] puts a tiny HTTP/1.1 API in front of a proxy
//! (`POST /cut?mode=reset|blackhole`, `POST /heal`, `GET /status`), which is
//! what `halyard proxy` runs. See docs/proxy.md.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

/// Connections proxied at once by default; further clients wait in the
/// kernel's accept backlog until one ends.
pub const MAX_CONNECTIONS_DEFAULT: usize = 1024;
/// Bytes buffered per direction per connection by default.
const BUFFER_BYTES_DEFAULT: usize = 16 * 1024;
/// How long connecting to the upstream may take by default.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Control API connections served at once.
const CONTROL_CONNECTIONS_MAX: usize = 16;
/// Largest control request head (request line and headers).
const CONTROL_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Largest control request body (read and ignored).
const CONTROL_BODY_BYTES_MAX: usize = 64 * 1024;
/// How long a control client may take to send its request.
const CONTROL_READ_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed accept (for example out of file descriptors).
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// How a cut link behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Close every connection with a TCP reset; reset new ones at once.
    Reset,
    /// Keep sockets open, drop every byte both ways (a partition).
    Blackhole,
}

impl CutMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CutMode::Reset => "reset",
            CutMode::Blackhole => "blackhole",
        }
    }
}

impl fmt::Display for CutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`CutMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cut mode {0:?} (expected \"reset\" or \"blackhole\")")]
pub struct ParseCutModeError(pub String);

impl FromStr for CutMode {
    type Err = ParseCutModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reset" => Ok(CutMode::Reset),
            "blackhole" => Ok(CutMode::Blackhole),
            other => Err(ParseCutModeError(other.to_string())),
        }
    }
}

/// Whether the proxy forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyState {
    Open,
    Cut(CutMode),
}

/// A snapshot of a proxy, as `GET /status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyStatus {
    pub state: ProxyState,
    /// Client connections currently held (forwarding or black-holed).
    pub connections: usize,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
}

impl ProxyStatus {
    /// `{"state":"open"|"cut","mode":"reset"|"blackhole"|null,"connections":N,"bytes_up":N,"bytes_down":N}`
    fn to_json(self) -> String {
        let (state, mode) = match self.state {
            ProxyState::Open => ("open", "null".to_string()),
            ProxyState::Cut(m) => ("cut", format!("\"{m}\"")),
        };
        format!(
            "{{\"state\":\"{state}\",\"mode\":{mode},\"connections\":{},\"bytes_up\":{},\"bytes_down\":{}}}",
            self.connections, self.bytes_up, self.bytes_down
        )
    }
}

/// Limits of a [`FaultProxy`].
#[derive(Clone, Copy, Debug)]
pub struct ProxyConfig {
    /// Connections proxied at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Buffer per direction per connection.
    pub buffer_bytes: usize,
    /// Upper bound on connecting to the upstream.
    pub connect_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_connections: MAX_CONNECTIONS_DEFAULT,
            buffer_bytes: BUFFER_BYTES_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// What connection tasks watch. `Stopped` is set when the last handle of the
/// proxy is dropped, and closes every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Run(ProxyState),
    Stopped,
}

struct Shared {
    upstream: SocketAddr,
    config: ProxyConfig,
    phase: watch::Sender<Phase>,
    connections: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// Stops the accept loop and closes every connection when the last
/// [`FaultProxy`] handle goes.
struct StopOnDrop {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.phase.send_replace(Phase::Stopped);
    }
}

/// A running TCP fault proxy. Cheap to clone; all clones control the same
/// proxy, which stops when the last one is dropped.
#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    _stop: Arc<StopOnDrop>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("listen", &self.local_addr)
            .field("upstream", &self.shared.upstream)
            .field("status", &self.status())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks one; see [`FaultProxy::local_addr`])
    /// and forwards to `upstream`, with the default limits.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<FaultProxy> {
        FaultProxy::start_with(listen, upstream, ProxyConfig::default()).await
    }

    /// As [`FaultProxy::start`], with explicit limits.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> io::Result<FaultProxy> {
        if config.max_connections == 0 || config.buffer_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_connections and buffer_bytes must be at least 1",
            ));
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let (phase, _) = watch::channel(Phase::Run(ProxyState::Open));
        let shared = Arc::new(Shared {
            upstream,
            config,
            phase,
            connections: AtomicUsize::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        });
        let accept = tokio::spawn(
            accept_loop(listener, shared.clone())
                .instrument(info_span!("proxy", listen = %local_addr, upstream = %upstream)),
        );
        info!(listen = %local_addr, upstream = %upstream, "proxy forwarding");
        Ok(FaultProxy {
            _stop: Arc::new(StopOnDrop {
                shared: shared.clone(),
                accept,
            }),
            shared,
            local_addr,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Cuts the link in `mode`. Returns false if it was already cut that way.
    pub fn cut(&self, mode: CutMode) -> bool {
        let changed = self.set_state(ProxyState::Cut(mode));
        if changed {
            info!(listen = %self.local_addr, upstream = %self.shared.upstream, "proxy cut ({mode})");
        }
        changed
    }

    /// Forwards new connections again and closes black-holed ones. Returns
    /// false if the proxy was not cut.
    pub fn heal(&self) -> bool {
        let changed = self.set_state(ProxyState::Open);
        if changed {
            info!(listen = %self.local_addr, upstream = %self.shared.upstream, "proxy healed");
        }
        changed
    }

    pub fn state(&self) -> ProxyState {
        match *self.shared.phase.borrow() {
            Phase::Run(s) => s,
            // Unreachable while a handle exists; report it as a reset cut.
            Phase::Stopped => ProxyState::Cut(CutMode::Reset),
        }
    }

    pub fn status(&self) -> ProxyStatus {
        ProxyStatus {
            state: self.state(),
            connections: self.shared.connections.load(Ordering::Relaxed),
            bytes_up: self.shared.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.shared.bytes_down.load(Ordering::Relaxed),
        }
    }

    fn set_state(&self, state: ProxyState) -> bool {
        self.shared.phase.send_if_modified(|p| {
            if *p == Phase::Run(state) {
                false
            } else {
                *p = Phase::Run(state);
                true
            }
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
    loop {
        // Take the permit first: past the limit, clients wait in the backlog.
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return, // the semaphore is never closed
        };
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        if let Err(e) = client.set_nodelay(true) {
            debug!(%peer, error = %e, "set_nodelay on client failed");
        }
        let phase = shared.phase.subscribe();
        let conn_shared = shared.clone();
        shared.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(
            async move {
                let _permit = permit;
                let _count = ConnCount(&conn_shared);
                run_conn(client, phase, &conn_shared).await;
                debug!("connection closed");
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
}

/// Decrements the connection count when a connection task ends, however.
struct ConnCount<'a>(&'a Shared);

impl Drop for ConnCount<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Closes a socket with a TCP reset instead of a FIN.
fn reset(s: TcpStream) {
    // SO_LINGER 0 makes close() send RST; it never blocks.
    let _ = s.set_zero_linger();
    drop(s);
}

/// One client connection, from accept to close. Any phase change while
/// forwarding ends forwarding for good: bytes in flight may have been
/// dropped, so the stream cannot resume.
async fn run_conn(mut client: TcpStream, mut phase: watch::Receiver<Phase>, shared: &Shared) {
    let mut upstream: Option<TcpStream> = None;
    let mut forwarded = false;
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Stopped => return,
            Phase::Run(ProxyState::Cut(CutMode::Reset)) => {
                debug!("reset");
                reset(client);
                if let Some(u) = upstream {
                    reset(u);
                }
                return;
            }
            Phase::Run(ProxyState::Cut(CutMode::Blackhole)) => {
                debug!("black-holed");
                let buf = shared.config.buffer_bytes;
                if !blackhole(&mut client, &mut upstream, &mut phase, buf).await {
                    return; // the client went away
                }
                if matches!(*phase.borrow(), Phase::Run(ProxyState::Open)) {
                    debug!("healed: closing the black-holed connection");
                    return;
                }
                // Reset or stopped: the loop handles it.
            }
            Phase::Run(ProxyState::Open) => {
                if forwarded {
                    return; // interrupted and healed before we looked: cannot resume
                }
                let up = match upstream.as_mut() {
                    Some(u) => u,
                    None => {
                        let timeout = Duration::from_millis(shared.config.connect_timeout_ms);
                        let connect =
                            tokio::time::timeout(timeout, TcpStream::connect(shared.upstream));
                        let r = tokio::select! {
                            r = connect => r,
                            c = phase.changed() => {
                                if c.is_err() { return; }
                                continue;
                            }
                        };
                        match r {
                            Ok(Ok(u)) => {
                                if let Err(e) = u.set_nodelay(true) {
                                    debug!(error = %e, "set_nodelay on upstream failed");
                                }
                                upstream.insert(u)
                            }
                            Ok(Err(e)) => {
                                warn!(upstream = %shared.upstream, error = %e,
                                    "cannot connect to upstream; closing the client");
                                return;
                            }
                            Err(_) => {
                                warn!(upstream = %shared.upstream, timeout_ms = shared.config.connect_timeout_ms,
                                    "connecting to upstream timed out; closing the client");
                                return;
                            }
                        }
                    }
                };
                forwarded = true;
                tokio::select! {
                    r = forward(&mut client, up, shared) => {
                        if let Err(e) = r {
                            debug!(error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    c = phase.changed() => {
                        if c.is_err() { return; }
                    }
                }
            }
        }
    }
}

/// Copies both ways until both directions reached end of stream (each end
/// is passed on as a write shutdown) or either failed.
async fn forward(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    let buf = shared.config.buffer_bytes;
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    tokio::try_join!(
        pump(&mut cr, &mut uw, buf, &shared.bytes_up),
        pump(&mut ur, &mut cw, buf, &shared.bytes_down),
    )?;
    Ok(())
}

async fn pump<R, W>(r: &mut R, w: &mut W, buf_bytes: usize, counter: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buf_bytes];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Reads and drops everything from both sides until the phase changes.
/// Returns false if the client closed or failed (the connection is over).
/// An upstream that closes is dropped silently: the client must not learn
/// anything during a partition.
async fn blackhole(
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    phase: &mut watch::Receiver<Phase>,
    buf_bytes: usize,
) -> bool {
    let mut cbuf = vec![0u8; buf_bytes];
    let mut ubuf = vec![0u8; buf_bytes];
    loop {
        tokio::select! {
            c = phase.changed() => {
                return c.is_ok();
            }
            r = client.read(&mut cbuf) => match r {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            },
            r = read_opt(upstream, &mut ubuf) => match r {
                Ok(0) | Err(_) => *upstream = None,
                Ok(_) => {}
            },
        }
    }
}

/// Reads from the upstream if there is one; otherwise never completes.
async fn read_opt(s: &mut Option<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    match s {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

// --- control API -------------------------------------------------------------

/// Binds `addr` and serves the control API for `proxy` until an accept
/// fails for good. One request per connection, answered with
/// `Connection: close`:
///
/// - `POST /cut?mode=reset|blackhole` (default blackhole) -> 200, status JSON
/// - `POST /heal` -> 200, status JSON
/// - `GET /status` -> 200, status JSON
/// - other paths -> 404; other methods on these paths -> 405
pub async fn serve_control(proxy: FaultProxy, addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for control on {addr}: {e}"),
        )
    })?;
    serve_control_on(proxy, listener).await
}

/// As [`serve_control`], on a listener already bound (tests bind port 0).
pub async fn serve_control_on(proxy: FaultProxy, listener: TcpListener) -> io::Result<()> {
    let addr = listener.local_addr()?;
    info!(control = %addr, listen = %proxy.local_addr(), "proxy control API listening");
    let permits = Arc::new(Semaphore::new(CONTROL_CONNECTIONS_MAX));
    loop {
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "control accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = control_conn(stream, &proxy).await {
                debug!(%peer, error = %e, "control connection failed");
            }
        });
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Response {
    fn json(status: &ProxyStatus) -> Response {
        Response {
            status: 200,
            reason: "OK",
            content_type: "application/json",
            body: status.to_json() + "\n",
            allow: None,
        }
    }

    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }
}

async fn control_conn(mut stream: TcpStream, proxy: &FaultProxy) -> io::Result<()> {
    let deadline = Duration::from_millis(CONTROL_READ_TIMEOUT_MS);
    let response = match tokio::time::timeout(deadline, read_request(&mut stream)).await {
        Err(_) => Response::text(408, "Request Timeout", "request timed out\n"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(resp))) => resp,
        Ok(Ok(Ok((method, target)))) => route(proxy, &method, &target),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.reason,
        response.content_type,
        response.body.len()
    );
    if let Some(allow) = response.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&response.body);
    stream.write_all(head.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads one request head (and drains a body of Content-Length bytes).
/// Returns the method and target, or a ready error response.
async fn read_request(stream: &mut TcpStream) -> io::Result<Result<(String, String), Response>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > CONTROL_HEAD_BYTES_MAX {
            return Ok(Err(Response::text(
                431,
                "Request Header Fields Too Large",
                "request head too large\n",
            )));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control client closed before a full request head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Ok(Err(Response::text(
            400,
            "Bad Request",
            "request head is not UTF-8\n",
        )));
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(Err(Response::text(
            400,
            "Bad Request",
            "malformed request line\n",
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(Err(Response::text(
            505,
            "HTTP Version Not Supported",
            "only HTTP/1.x\n",
        )));
    }
    let mut body_bytes = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                match value.trim().parse::<usize>() {
                    Ok(n) => body_bytes = n,
                    Err(_) => {
                        return Ok(Err(Response::text(
                            400,
                            "Bad Request",
                            "bad Content-Length\n",
                        )))
                    }
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Ok(Err(Response::text(
                    501,
                    "Not Implemented",
                    "chunked bodies are not supported\n",
                )));
            }
        }
    }
    if body_bytes > CONTROL_BODY_BYTES_MAX {
        return Ok(Err(Response::text(
            413,
            "Payload Too Large",
            "body too large\n",
        )));
    }
    // Drain the body so closing the socket does not reset it under the response.
    let mut have = buf.len() - head_end;
    while have < body_bytes {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(Ok((method.to_string(), target.to_string())))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn route(proxy: &FaultProxy, method: &str, target: &str) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    let allowed = match path {
        "/cut" | "/heal" => "POST",
        "/status" => "GET",
        _ => return Response::text(404, "Not Found", format!("no such endpoint: {path}\n")),
    };
    if method != allowed {
        let mut r = Response::text(
            405,
            "Method Not Allowed",
            format!("{path} takes {allowed}\n"),
        );
        r.allow = Some(allowed);
        return r;
    }
    match path {
        "/cut" => {
            let mode = match param("mode") {
                None | Some("") => CutMode::Blackhole,
                Some(m) => match m.parse::<CutMode>() {
                    Ok(m) => m,
                    Err(e) => return Response::text(400, "Bad Request", format!("{e}\n")),
                },
            };
            proxy.cut(mode);
            Response::json(&proxy.status())
        }
        "/heal" => {
            proxy.heal();
            Response::json(&proxy.status())
        }
        _ => Response::json(&proxy.status()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_shapes() {
        let mut s = ProxyStatus {
            state: ProxyState::Open,
            connections: 2,
            bytes_up: 10,
            bytes_down: 20,
        };
        assert_eq!(
            s.to_json(),
            r#"{"state":"open","mode":null,"connections":2,"bytes_up":10,"bytes_down":20}"#
        );
        s.state = ProxyState::Cut(CutMode::Blackhole);
        assert_eq!(
            s.to_json(),
            r#"{"state":"cut","mode":"blackhole","connections":2,"bytes_up":10,"bytes_down":20}"#
        );
    }

    #[test]
    fn cut_mode_parses() {
        assert_eq!("reset".parse::<CutMode>(), Ok(CutMode::Reset));
        assert_eq!("blackhole".parse::<CutMode>(), Ok(CutMode::Blackhole));
        assert!("drop".parse::<CutMode>().is_err());
    }
}
