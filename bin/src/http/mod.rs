//! The node's HTTP endpoint (`--http ADDR:PORT`), served whether the node
//! is live or a backup:
//!
//! - `GET /metrics`: Prometheus (OpenMetrics text), see [`metrics`].
//! - `GET /health/live`: 200 while the process runs.
//! - `GET /health/ready`: 200 while this node is live and taking clients,
//!   503 with the reason otherwise (a load balancer's check).
//! - `GET /api/node`, `GET /api/queues`, `GET /api/cluster` (this node and
//!   its `--peer-http` peers), `GET /api/history` (samples for charts): the
//!   same figures as JSON.
//! - The management API ([`api`]): browse, purge, move, retry, delete.
//! - `GET /`: the web console (one page, `console.html`, in the binary).
//!
//! Every answer comes from one snapshot the node's task takes between
//! inputs (`server::Query`); nothing here touches the node.

pub mod api;
mod auth;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use halyard_core::node::NodeStats;
use halyard_io::metrics::JournalMetrics;
use halyard_io::server::{IoCounters, Query};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use metrics::Snapshot;

/// How long a request waits for the node's snapshot before answering 503
/// (the node's task is stuck or gone).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// OpenMetrics text, what `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
pub struct HttpState {
    pub queries: mpsc::Sender<Query>,
    pub io: Arc<IoCounters>,
    pub journal: Arc<JournalMetrics>,
    pub max_queues: usize,
    pub started: Instant,
    /// Other nodes' HTTP base URLs (`--peer-http`), for `/api/cluster`.
    pub peers: Vec<String>,
    /// This node's own base URL as peers would name it.
    pub self_url: String,
    pub history: api::History,
    /// Users (`--security-file`): the API and the console then need a
    /// user with `manage` (HTTP Basic).
    pub security: Option<Arc<halyard_core::security::Security>>,
}

/// The console: one page, no build step.
const CONSOLE: &str = include_str!("console.html");

/// Binds now (so a bad `--http` fails at start-up), then serves in the
/// background.
pub async fn start(addr: SocketAddr, state: HttpState) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve HTTP on {addr}: {e}"))?;
    let open = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready));
    let managed = Router::new()
        .route("/api/node", get(api_node))
        .route("/api/queues", get(api_queues))
        .route("/api/cluster", get(api::cluster))
        .route("/api/addresses", get(api::addresses))
        .route("/api/connections", get(api::connections))
        .route("/api/history", get(api::history))
        .route("/api/queues/{name}", delete(api::delete))
        .route("/api/queues/{name}/messages", get(api::browse))
        .route("/api/queues/{name}/purge", post(api::purge))
        .route("/api/queues/{name}/retry", post(api::retry))
        .route("/api/queues/{name}/move", post(api::move_to))
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    CONSOLE,
                )
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_manage,
        ));
    let app = open
        .merge(managed)
        .fallback(|| async { api::error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state.clone());
    tokio::spawn(api::sample_history(state));
    info!(http = %addr, "serving /metrics, /health/live, /health/ready and /api/ over HTTP");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(())
}

/// A snapshot from the node's task, or the 503 to answer instead.
pub(crate) async fn snapshot(state: &HttpState) -> Result<NodeStats, Response> {
    let unavailable = |why: &str| api::error(StatusCode::SERVICE_UNAVAILABLE, why);
    let (reply, answer) = oneshot::channel();
    let asked = Query::Stats {
        max_queues: state.max_queues,
        reply,
    };
    if state.queries.send(asked).await.is_err() {
        return Err(unavailable("the node has stopped"));
    }
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, answer).await {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(_)) => Err(unavailable("the node has stopped")),
        Err(_) => Err(unavailable("the node did not answer within 5 s")),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    let stats = match snapshot(&state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let snap = Snapshot::new(
        stats,
        &state.io,
        &state.journal,
        state.started.elapsed().as_secs_f64(),
    );
    match snap.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn ready(State(state): State<HttpState>) -> Response {
    match snapshot(&state).await {
        Ok(stats) => match stats.readiness() {
            Ok(()) => (
                StatusCode::OK,
                format!("ready: live, epoch {}\n", stats.epoch),
            )
                .into_response(),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
                .into_response(),
        },
        Err(r) => r,
    }
}

pub(crate) fn node_json(snap: &Snapshot) -> Value {
    let s = &snap.stats;
    json!({
        "node_id": s.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "state": snap.ha_state(),
        "epoch": s.epoch,
        "accepting_clients": s.accepting,
        "ready": s.readiness().is_ok(),
        "reason": s.readiness().err(),
        "fenced_by_epoch": s.fenced_by,
        "uptime_seconds": snap.uptime_seconds,
        "connections": {
            "stomp": s.connections.stomp,
            "amqp": s.connections.amqp,
            "unknown": s.connections.unknown,
        },
        "messages": s.messages,
        "queues": s.queues_total,
        "bytes_in": snap.bytes_in,
        "bytes_out": snap.bytes_out,
        "totals": {
            "added": s.totals.added,
            "delivered": s.totals.delivered,
            "redelivered": s.totals.redelivered,
            "acknowledged": s.totals.acknowledged,
            "dead_lettered": s.totals.dead_lettered,
            "expired": s.totals.expired,
        },
        "journal": {
            "append_batches": s.counters.journal_batches,
            "append_records": s.counters.journal_entries,
            "failures": s.counters.journal_failures,
            "durable_latency_count": s.counters.journal_latency.count,
            "durable_latency_sum_ms": s.counters.journal_latency.sum_ms,
            "send_receipt_latency_count": s.counters.send_receipt_latency.count,
            "send_receipt_latency_sum_ms": s.counters.send_receipt_latency.sum_ms,
        },
    })
}

async fn api_node(State(state): State<HttpState>) -> Response {
    match snapshot(&state).await {
        Ok(stats) => {
            let snap = Snapshot::new(
                stats,
                &state.io,
                &state.journal,
                state.started.elapsed().as_secs_f64(),
            );
            Json(node_json(&snap)).into_response()
        }
        Err(r) => r,
    }
}

async fn api_queues(State(state): State<HttpState>) -> Response {
    let stats = match snapshot(&state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let queues: Vec<Value> = stats
        .queues
        .iter()
        .map(|q| {
            json!({
                "name": q.name,
                "address": q.address,
                "routing": metrics::routing(q.routing),
                "durable": q.durable,
                "messages": q.messages,
                "consumers": q.consumers,
                "added": q.counters.added,
                "delivered": q.counters.delivered,
                "redelivered": q.counters.redelivered,
                "acknowledged": q.counters.acknowledged,
                "dead_lettered": q.counters.dead_lettered,
                "expired": q.counters.expired,
            })
        })
        .collect();
    Json(json!({
        "node_id": stats.node_id,
        "queues_total": stats.queues_total,
        "queues": queues,
    }))
    .into_response()
}
