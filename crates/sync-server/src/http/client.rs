//! Who is on the other end of the connection, for the audit log and the
//! brute-force limits: the peer's IP address as the listener accepted it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use super::limits::Door;
use crate::clock::ServerTime;
use crate::storage::{AuditEvent, AuditKind, Device};

/// The client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client(pub Option<IpAddr>);

impl Client {
    pub fn text(&self) -> String {
        self.0.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(Client(peer))
    }
}

/// Refuses a try behind `door` from a client or account over its limit.
pub(crate) fn check_limit(app: &AppState, client: &Client, door: Door, account: Option<&str>) -> Result<(), ApiError> {
    app.limits
        .check(door, client.0, account)
        .map_err(|b| ApiError::too_many(b.retry_after))
}

/// Counts a failed try behind `door`; the start of a block is audited.
pub(crate) fn count_failure(
    app: &AppState,
    client: &Client,
    door: Door,
    account: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(b) = app.limits.failed(door, client.0, account) {
        let detail = format!("{door:?}: blocked for {} s", b.retry_after.as_secs().max(1));
        audit(app, client, AuditKind::RateLimited, None, &detail)?;
    }
    Ok(())
}

/// Appends an event to the audit log and to the server's log. A failure
/// to record fails the request: nothing audited happens unrecorded.
pub(crate) fn audit(
    app: &AppState,
    client: &Client,
    kind: AuditKind,
    who: Option<&Device>,
    detail: &str,
) -> Result<(), ApiError> {
    let client = client.text();
    let event = AuditEvent {
        kind,
        account: who.map(|d| d.worker.id.as_str()),
        device: who.map(|d| d.id.as_str()),
        client: &client,
        detail,
    };
    tracing::info!(
        target: "audit",
        kind = kind.as_str(),
        account = event.account,
        device = event.device,
        client = %client,
        detail,
    );
    app.storage.audit(&event, &ServerTime::now().text)?;
    Ok(())
}
