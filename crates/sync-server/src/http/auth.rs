//! Who is asking: bearer tokens checked against their stored hashes. Every
//! token that fails is recorded in the audit log with the client address.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::{Client, audit, check_limit, count_failure};
use super::error::ApiError;
use super::error::blocking;
use super::in_flight::InFlight;
use super::limits::Door;
use super::{App, AppState};
use crate::secrets::secret_hash;
use crate::storage::{AuditKind, Device, Role};

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A field device that may push, upload and pull.
pub(crate) fn field_device(app: &AppState, client: &Client, headers: &HeaderMap) -> Result<Device, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| unauthorized("this request needs a device token (Authorization: Bearer …)"))?;
    let device = any_token(app, client, token)?;
    if device.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this is a read-only token; only an enrolled field device can sync or upload",
        ));
    }
    Ok(device)
}

/// A center or operator account (device or read-only token): reports,
/// exports and Open311. Grid workers and departments get 403 (a
/// department reads its own cases on the dashboard).
pub(crate) fn reader(app: &AppState, client: &Client, token: Option<&str>) -> Result<Device, ApiError> {
    let device = dashboard_user(app, client, token)?;
    if device.worker.role == Role::Department {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "a department account reads the cases dispatched to it on the dashboard (/center), not reports or exports",
        ));
    }
    Ok(device)
}

/// Who may sign in to the dashboard: a center, department or operator
/// account. Grid workers get 403.
pub(crate) fn dashboard_user(app: &AppState, client: &Client, token: Option<&str>) -> Result<Device, ApiError> {
    let token =
        token.ok_or_else(|| unauthorized("this request needs a center or operator token (Authorization: Bearer …)"))?;
    let device = any_token(app, client, token)?;
    if device.worker.role == Role::Worker {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "this needs a center, department or operator account; a grid worker's token cannot read reports or exports",
        ));
    }
    Ok(device)
}

/// Any valid, unrevoked token.
pub(crate) fn any_token(app: &AppState, client: &Client, token: &str) -> Result<Device, ApiError> {
    check_limit(app, client, Door::Token, None)?;
    let Some(device) = app.storage.device_by_token(&secret_hash(token))? else {
        audit(app, client, AuditKind::AuthFailed, None, "a token that is not valid")?;
        count_failure(app, client, Door::Token, None)?;
        return Err(unauthorized("the device token is not valid; enrol the device again"));
    };
    if device.revoked_at.is_some() {
        audit(
            app,
            client,
            AuditKind::AuthFailed,
            Some(&device),
            "the token of a revoked device",
        )?;
        return Err(unauthorized(
            "this device was revoked; ask the operator for a new enrolment code",
        ));
    }
    Ok(device)
}

/// Route layer for device and photo routes: a request without a valid
/// token is refused before a byte of its body is read, and so is one with
/// a body from a device that has its share of them in progress.
pub(crate) async fn token_first(State(app): State<App>, client: Client, req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let state = app.clone();
    let checked = blocking(move || {
        let token =
            bearer(&headers).ok_or_else(|| unauthorized("this request needs a token (Authorization: Bearer …)"))?;
        any_token(&state, &client, token)
    })
    .await;
    let device = match checked {
        Ok(device) => device,
        Err(e) => return e.into_response(),
    };
    let slot = match *req.method() {
        Method::GET | Method::HEAD => None,
        _ => match InFlight::take(&app.in_flight, &device.id) {
            Some(slot) => Some(slot),
            None => return ApiError::device_busy().into_response(),
        },
    };
    let response = next.run(req).await;
    drop(slot);
    response
}
