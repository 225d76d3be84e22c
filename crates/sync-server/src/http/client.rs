//! Who is on the other end, for the audit log, the brute-force limits,
//! cookies and the Origin check: the peer's IP address and whether the
//! request came over TLS. Behind a TLS proxy listed as trusted
//! (`serve --trusted-proxy`), the proxy's `X-Forwarded-For` and
//! `X-Forwarded-Proto` say so instead; from any other peer those headers
//! are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::error::ApiError;
use super::limits::Door;
use super::listen::Transport;
use super::{App, AppState};
use crate::clock::ServerTime;
use crate::storage::{AuditEvent, AuditKind, Device};

/// The client's address, and whether it asked over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    pub ip: Option<IpAddr>,
    pub https: bool,
}

impl Client {
    pub fn text(&self) -> String {
        self.ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// The client a trusted proxy names: the last `X-Forwarded-For` address
/// that is not itself a trusted proxy.
fn forwarded_for(headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.into_iter().rev().find(|ip| !trusted.contains(ip))
}

fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

impl FromRequestParts<App> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Client, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let tls = parts.extensions.get::<Transport>().is_some_and(|t| t.tls);
        let via_proxy = peer.is_some_and(|p| app.trusted_proxies.contains(&p));
        if !via_proxy {
            return Ok(Client { ip: peer, https: tls });
        }
        Ok(Client {
            ip: forwarded_for(&parts.headers, &app.trusted_proxies).or(peer),
            https: tls || forwarded_https(&parts.headers),
        })
    }
}

/// Refuses a try behind `door` from a client or account over its limit.
pub(crate) fn check_limit(app: &AppState, client: &Client, door: Door, account: Option<&str>) -> Result<(), ApiError> {
    app.limits
        .check(door, client.ip, account)
        .map_err(|b| ApiError::too_many(b.retry_after))
}

/// Counts a failed try behind `door`; the start of a block is audited.
pub(crate) fn count_failure(
    app: &AppState,
    client: &Client,
    door: Door,
    account: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(b) = app.limits.failed(door, client.ip, account) {
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
