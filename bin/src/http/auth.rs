//! HTTP Basic authentication of the management API and the console: with a
//! security file, a user with `manage` on `halyard.management`. `/metrics`
//! and `/health/*` stay open (scrapers and load balancers).

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use halyard_core::security::{password, Permission, MANAGEMENT_ADDRESS};
use tracing::warn;

use super::HttpState;

/// The user and password of a Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

fn challenge(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"halyard\"")],
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// The middleware: lets the request through, or answers 401 / 403.
pub async fn require_manage(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(security) = state.security.clone() else {
        return next.run(req).await;
    };
    let Some((user, pass)) = basic(req.headers()) else {
        return challenge("log in (HTTP Basic) as a user with the manage permission");
    };
    let hash = security
        .users
        .get(&user)
        .map_or_else(|| security.decoy_hash.clone(), |u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || password::verify(&hash, &pass))
        .await
        .unwrap_or(false);
    let Some(principal) = security.principal(&user).filter(|_| ok) else {
        state.io.http_login_failures.fetch_add(1, Ordering::Relaxed);
        warn!(user, "HTTP login refused for user {user:?}");
        return challenge("bad user name or password");
    };
    if let Err(denied) = security.check(&principal, Permission::Manage, MANAGEMENT_ADDRESS) {
        return super::api::error(StatusCode::FORBIDDEN, denied.to_string());
    }
    next.run(req).await
}
