//! Who is asking: bearer tokens checked against their stored hashes.

use axum::http::{HeaderMap, StatusCode, header};

use super::AppState;
use super::error::ApiError;
use crate::secrets::secret_hash;
use crate::storage::{Device, Role};

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
pub(crate) fn field_device(app: &AppState, headers: &HeaderMap) -> Result<Device, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| unauthorized("this request needs a device token (Authorization: Bearer …)"))?;
    let device = any_token(app, token)?;
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
/// exports and the dashboard. Grid workers get 403.
pub(crate) fn reader(app: &AppState, token: Option<&str>) -> Result<Device, ApiError> {
    let token =
        token.ok_or_else(|| unauthorized("this request needs a center or operator token (Authorization: Bearer …)"))?;
    let device = any_token(app, token)?;
    if device.worker.role == Role::Worker {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "this needs a center or operator account; a grid worker's token cannot read reports or exports",
        ));
    }
    Ok(device)
}

/// Any valid, unrevoked token.
pub(crate) fn any_token(app: &AppState, token: &str) -> Result<Device, ApiError> {
    let device = app
        .storage
        .device_by_token(&secret_hash(token))?
        .ok_or_else(|| unauthorized("the device token is not valid; enrol the device again"))?;
    if device.revoked_at.is_some() {
        return Err(unauthorized(
            "this device was revoked; ask the operator for a new enrolment code",
        ));
    }
    Ok(device)
}
