//! The management API under `/api/`: JSON in and out, errors as
//! `{"error": "..."}` with a status that says what kind (404 no such queue,
//! 409 consumers attached, 400 bad request, 503 not the live node).
//! Changes are journaled before they are answered (see
//! `halyard_core::node::admin`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use halyard_core::node::{AdminError, AdminOp, AdminReply, BROWSE_MAX};
use halyard_io::server::Query;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::metrics::Snapshot;
use super::{node_json, snapshot, HttpState};

/// How long a change may wait for the journal before the request gives
/// up (the change itself still completes, or is abandoned by a step-down).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// History kept for the console's charts: 10 minutes of 5 s samples.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(5);
const HISTORY_SAMPLES_MAX: usize = 120;
/// A peer's `/api/node` must answer within this.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn admin_error(e: &AdminError) -> Response {
    let status = match e {
        AdminError::NotLive { .. } | AdminError::Abandoned => StatusCode::SERVICE_UNAVAILABLE,
        AdminError::NoQueue(_) => StatusCode::NOT_FOUND,
        AdminError::ConsumersAttached { .. } | AdminError::NotDurable(_) => StatusCode::CONFLICT,
        AdminError::BadTarget { .. } => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

async fn ask_admin(state: &HttpState, op: AdminOp) -> Result<AdminReply, Response> {
    let (reply, answer) = oneshot::channel();
    if state
        .queries
        .send(Query::Admin { op, reply })
        .await
        .is_err()
    {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node has stopped",
        ));
    }
    match tokio::time::timeout(ADMIN_TIMEOUT, answer).await {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Ok(Err(e))) => Err(admin_error(&e)),
        Ok(Err(_)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node has stopped",
        )),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "the journal did not take the change within 30 s; check the queue before retrying",
        )),
    }
}

fn moved_json(queue: &str, r: AdminReply) -> Value {
    match r {
        AdminReply::Purged { purged, remaining } => {
            json!({ "queue": queue, "purged": purged, "remaining": remaining })
        }
        AdminReply::Moved {
            moved,
            skipped,
            remaining,
        } => json!({ "queue": queue, "moved": moved, "skipped": skipped, "remaining": remaining }),
        AdminReply::Deleted { messages } => {
            json!({ "queue": queue, "deleted": true, "messages": messages })
        }
    }
}

pub async fn purge(State(state): State<HttpState>, Path(queue): Path<String>) -> Response {
    let op = AdminOp::Purge {
        queue: queue.clone(),
    };
    match ask_admin(&state, op).await {
        Ok(r) => Json(moved_json(&queue, r)).into_response(),
        Err(resp) => resp,
    }
}

pub async fn retry(State(state): State<HttpState>, Path(queue): Path<String>) -> Response {
    let op = AdminOp::Retry {
        queue: queue.clone(),
    };
    match ask_admin(&state, op).await {
        Ok(r) => Json(moved_json(&queue, r)).into_response(),
        Err(resp) => resp,
    }
}

pub async fn move_to(
    State(state): State<HttpState>,
    Path(queue): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let Some(to) = params.get("to").filter(|t| !t.is_empty()).cloned() else {
        return error(StatusCode::BAD_REQUEST, "move needs ?to=ADDRESS");
    };
    let op = AdminOp::Move {
        queue: queue.clone(),
        to: to.clone(),
    };
    match ask_admin(&state, op).await {
        Ok(r) => {
            let mut v = moved_json(&queue, r);
            v["to"] = Value::String(to);
            Json(v).into_response()
        }
        Err(resp) => resp,
    }
}

pub async fn delete(State(state): State<HttpState>, Path(queue): Path<String>) -> Response {
    let op = AdminOp::DeleteQueue {
        queue: queue.clone(),
    };
    match ask_admin(&state, op).await {
        Ok(r) => Json(moved_json(&queue, r)).into_response(),
        Err(resp) => resp,
    }
}

pub async fn browse(
    State(state): State<HttpState>,
    Path(queue): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=BROWSE_MAX).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be a number from 1 to {BROWSE_MAX}"),
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    let asked = Query::Browse {
        queue: queue.clone(),
        limit,
        reply,
    };
    if state.queries.send(asked).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped");
    }
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(Ok(messages))) => {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|m| {
                    let headers: serde_json::Map<String, Value> = m
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    json!({
                        "id": m.id,
                        "address": m.address,
                        "original_address": m.original_address,
                        "priority": m.priority,
                        "deliveries": m.deliveries,
                        "state": m.state,
                        "persistent": m.persistent,
                        "headers": headers,
                        "body_bytes": m.body_bytes,
                        "body_preview": m.body_preview,
                        "paged": m.paged,
                    })
                })
                .collect();
            Json(json!({ "queue": queue, "messages": messages })).into_response()
        }
        Ok(Ok(Err(e))) => admin_error(&e),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "the node did not answer"),
    }
}

/// This node and its peers (`--peer-http`), each as its `/api/node` says.
pub async fn cluster(State(state): State<HttpState>) -> Response {
    let me = match snapshot(&state).await {
        Ok(stats) => {
            let snap = Snapshot::new(
                stats,
                &state.io,
                &state.journal,
                state.started.elapsed().as_secs_f64(),
            );
            let mut v = node_json(&snap);
            v["http"] = Value::String(state.self_url.clone());
            v["reachable"] = Value::Bool(true);
            v
        }
        Err(r) => return r,
    };
    let mut nodes = vec![me];
    let peers = state.peers.clone();
    let fetched = tokio::task::spawn_blocking(move || {
        peers
            .iter()
            .map(|url| {
                let got = ureq::get(&format!("{}/api/node", url.trim_end_matches('/')))
                    .timeout(PEER_TIMEOUT)
                    .call()
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.into_json::<Value>().map_err(|e| e.to_string()));
                match got {
                    Ok(mut v) => {
                        v["http"] = Value::String(url.clone());
                        v["reachable"] = Value::Bool(true);
                        v
                    }
                    Err(e) => json!({ "http": url, "reachable": false, "error": e }),
                }
            })
            .collect::<Vec<Value>>()
    })
    .await
    .unwrap_or_default();
    nodes.extend(fetched);
    Json(json!({ "nodes": nodes })).into_response()
}

/// One sample of the console's charts.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t: u64,
    pub added: u64,
    pub delivered: u64,
    pub acknowledged: u64,
    pub messages: u64,
    pub journal_latency_count: u64,
    pub journal_latency_sum_ms: u64,
}

pub type History = Arc<Mutex<VecDeque<Sample>>>;

/// Samples the node every `HISTORY_INTERVAL` for `/api/history`.
pub async fn sample_history(state: HttpState) {
    let mut tick = tokio::time::interval(HISTORY_INTERVAL);
    loop {
        tick.tick().await;
        let Ok(s) = snapshot(&state).await else {
            continue;
        };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sample = Sample {
            t,
            added: s.totals.added,
            delivered: s.totals.delivered,
            acknowledged: s.totals.acknowledged,
            messages: s.messages,
            journal_latency_count: s.counters.journal_latency.count,
            journal_latency_sum_ms: s.counters.journal_latency.sum_ms,
        };
        let Ok(mut h) = state.history.lock() else {
            return;
        };
        if h.len() >= HISTORY_SAMPLES_MAX {
            h.pop_front();
        }
        h.push_back(sample);
    }
}

pub async fn history(State(state): State<HttpState>) -> Response {
    let samples: Vec<Value> = match state.history.lock() {
        Ok(h) => h
            .iter()
            .map(|s| {
                json!({
                    "t": s.t,
                    "added": s.added,
                    "delivered": s.delivered,
                    "acknowledged": s.acknowledged,
                    "messages": s.messages,
                    "journal_latency_count": s.journal_latency_count,
                    "journal_latency_sum_ms": s.journal_latency_sum_ms,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Json(json!({
        "interval_seconds": HISTORY_INTERVAL.as_secs(),
        "samples": samples,
    }))
    .into_response()
}

/// Addresses with their queues' messages and consumers.
pub async fn addresses(State(state): State<HttpState>) -> Response {
    let stats = match snapshot(&state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list: Vec<Value> = stats
        .addresses
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "routing": super::metrics::routing(a.routing),
                "queues": a.queues,
                "messages": a.messages,
                "consumers": a.consumers,
            })
        })
        .collect();
    Json(json!({ "node_id": stats.node_id, "addresses": list })).into_response()
}

/// Client connections: protocol, address, age, consumers, what is in flight.
pub async fn connections(State(state): State<HttpState>) -> Response {
    let stats = match snapshot(&state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list: Vec<Value> = stats
        .connection_list
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "protocol": c.protocol,
                "remote": c.remote,
                "opened_at_ms": c.opened_at_ms,
                "consumers": c.consumers,
                "unacknowledged": c.unacknowledged,
                "in_flight": c.in_flight,
                "transactions": c.transactions,
                "paused": c.paused,
            })
        })
        .collect();
    Json(json!({
        "node_id": stats.node_id,
        "connections_total": stats.connections.stomp + stats.connections.amqp + stats.connections.unknown,
        "connections": list,
    }))
    .into_response()
}
