//! Dashboard sign-in state. The browser holds a random session id
//! (`center_session`); the server keeps its hash, expiry, CSRF token and
//! the reader token it came from, so revoking that token ends the session.
//! Every form posts back a CSRF token and is refused unless its `Origin`
//! is this server: the sign-in form's token is a one-time value also set
//! as the `center_login` cookie (double submit), the session's forms carry
//! the session's own.

use axum::http::{HeaderMap, header};

use super::super::AppState;
use super::super::client::{Client, audit};
use super::super::error::ApiError;
use crate::clock::ServerTime;
use crate::secrets::{random_token, secret_hash};
use crate::storage::{AuditKind, Device, NewSession};

pub(super) const SESSION_COOKIE: &str = "center_session";
pub(super) const LOGIN_COOKIE: &str = "center_login";
/// How long a sign-in lasts, in seconds (12 hours: one working day).
const SESSION_SECS: u32 = 12 * 3600;
/// How long a sign-in form may wait, in seconds.
const LOGIN_FORM_SECS: u32 = 3600;

/// A reader signed in, and the token its forms must carry.
pub(super) struct SignedIn {
    pub who: Device,
    pub csrf: String,
    id_hash: String,
}

/// The value of cookie `name`, if the request has a non-empty one.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value scoped to the dashboard, `Secure` when the page
/// is HTTPS; `max_age` 0 clears it.
pub(super) fn set_cookie(client: &Client, name: &str, value: &str, max_age: u32) -> String {
    let secure = if client.https { "; Secure" } else { "" };
    format!("{name}={value}; Path=/center; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A fresh sign-in form token and the cookie that holds it too.
pub(super) fn login_nonce(client: &Client) -> (String, String) {
    let nonce = random_token();
    let set = set_cookie(client, LOGIN_COOKIE, &nonce, LOGIN_FORM_SECS);
    (nonce, set)
}

/// Whether the request's `Origin` is this server (its scheme + `Host`).
/// Browsers send `Origin` with every form POST; a missing one is refused.
pub(super) fn same_origin(client: &Client, headers: &HeaderMap) -> bool {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = if client.https { "https://" } else { "http://" };
    match (value(header::ORIGIN), value(header::HOST)) {
        (Some(origin), Some(host)) => origin.strip_prefix(scheme) == Some(host),
        _ => false,
    }
}

/// The signed-in reader, if the cookie names a live session. A cookie
/// that names none is recorded as a failed authentication.
pub(super) fn signed_in(app: &AppState, client: &Client, headers: &HeaderMap) -> Result<Option<SignedIn>, ApiError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_hash = secret_hash(&id);
    match app.storage.session(&id_hash, ServerTime::now().ms)? {
        Some(s) => Ok(Some(SignedIn {
            who: s.device,
            csrf: s.csrf,
            id_hash,
        })),
        None => {
            audit(
                app,
                client,
                AuditKind::AuthFailed,
                None,
                "a dashboard session that has ended or never was",
            )?;
            Ok(None)
        }
    }
}

/// Starts a session for `who`; returns the `Set-Cookie` value.
pub(super) fn start(app: &AppState, client: &Client, who: &Device) -> Result<String, ApiError> {
    let id = random_token();
    let now = ServerTime::now();
    let session = NewSession {
        id_hash: &secret_hash(&id),
        device: &who.id,
        csrf: &random_token(),
        expires_ms: now.ms + i64::from(SESSION_SECS) * 1000,
    };
    app.storage.start_session(&session, &now.text)?;
    Ok(set_cookie(client, SESSION_COOKIE, &id, SESSION_SECS))
}

pub(super) fn end(app: &AppState, s: &SignedIn) -> Result<(), ApiError> {
    app.storage.end_session(&s.id_hash, &ServerTime::now().text)?;
    Ok(())
}
