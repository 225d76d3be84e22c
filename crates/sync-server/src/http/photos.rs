//! `/v1/blobs/{hash}`: resumable, hash-verified photo uploads, their
//! status, and downloads, each allowed only for a photo that an incident in
//! the caller's scope names.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use sync_core::BlobHash;
use sync_core::protocol::{self, BlobStatus, MAX_PHOTO_BYTES};

use super::auth::{any_token, bearer, field_device, token_first};
use super::client::{Client, audit};
use super::error::{ApiError, Body, blocking, cbor, io_error};
use super::{App, AppState, body_cap};
use crate::accounts::scope_of;
use crate::clock::ServerTime;
use crate::department::reaches_photo;
use crate::photos::{Append, MAX_STAGED_BYTES, MAX_STAGED_UPLOADS, Upload};
use crate::storage::{AuditKind, Device, Role};

/// Photo routes, only with a valid token, checked before a chunk is read.
pub(super) fn routes(app: &App) -> Router<App> {
    let chunk = body_cap(protocol::MAX_UPLOAD_CHUNK);
    Router::new()
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob).layer(chunk))
        .route("/v1/blobs/{hash}/status", get(blob_status))
        .route_layer(from_fn_with_state(app.clone(), token_first))
}

fn parse_hash(s: &str) -> Result<BlobHash, ApiError> {
    s.parse().map_err(|e: sync_core::blob::ParseBlobHashError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", e.to_string())
    })
}

/// A device may upload a photo only if an incident in its scope names it.
fn check_named(app: &AppState, device: &Device, hash: &BlobHash) -> Result<(), ApiError> {
    if app.storage.blob_named(&hash.to_hex(), &scope_of(device, &app.grids))? {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "out_of_scope",
        "no incident in this device's cells refers to this photo; sync the incident first",
    ))
}

/// A reader gets a photo only through a proven reference in its scope (a
/// department: in one of its cases).
fn check_readable(app: &AppState, device: &Device, hash: &BlobHash) -> Result<(), ApiError> {
    let proven = !app
        .storage
        .proven_kinds(&hash.to_hex(), &scope_of(device, &app.grids))?
        .is_empty();
    if proven && reaches_photo(app.storage.as_ref(), &app.grids, device, hash)? {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "out_of_scope",
        "no incident in this device's cells refers to this photo through an upload the server verified",
    ))
}

/// What the server holds of a photo for this device: the whole photo once
/// the device itself has uploaded it, else the device's own unfinished upload.
fn status_for(app: &AppState, device: &Device, hash: &BlobHash) -> Result<BlobStatus, ApiError> {
    if let Some(size) = app.photos.stored(hash).map_err(io_error)?
        && app.storage.has_proof(&device.id, &hash.to_hex())?
    {
        return Ok(BlobStatus {
            received: size,
            complete: true,
        });
    }
    let received = app.photos.progress(hash, &device.id).map_err(io_error)?;
    Ok(BlobStatus {
        received,
        complete: false,
    })
}

async fn blob_status(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &client, &headers)?;
        let hash = parse_hash(&hash)?;
        check_named(&app, &device, &hash)?;
        Ok(cbor(&status_for(&app, &device, &hash)?))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    offset: u64,
    size: u64,
}

async fn put_blob(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(hash): Path<String>,
    Query(q): Query<UploadQuery>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &client, &headers)?;
        let hash = parse_hash(&hash)?;
        check_named(&app, &device, &hash)?;
        if q.size > MAX_PHOTO_BYTES as u64 || body.len() > protocol::MAX_UPLOAD_CHUNK {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the photo or the chunk is too large",
            ));
        }
        let already = status_for(&app, &device, &hash)?;
        if already.complete {
            return Ok(cbor(&already));
        }
        let upload = Upload {
            hash: &hash,
            uploader: &device.id,
            offset: q.offset,
            size: q.size,
            chunk: &body,
        };
        let outcome = app.photos.append(&upload).map_err(io_error)?;
        let now = ServerTime::now().text;
        match outcome {
            Append::Partial(received) => Ok(cbor(&BlobStatus {
                received,
                complete: false,
            })),
            Append::Complete => {
                app.storage.record_upload(&hash.to_hex(), q.size, &device.id, &now)?;
                Ok(cbor(&BlobStatus {
                    received: q.size,
                    complete: true,
                }))
            }
            Append::WrongOffset(have) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "wrong_offset",
                format!("the server has {have} bytes of this photo; send from there"),
            )),
            Append::TooManyStaged => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!(
                    "this device has {MAX_STAGED_UPLOADS} unfinished photo uploads or {} MiB of them; finish those first",
                    MAX_STAGED_BYTES >> 20
                ),
            )),
            Append::TooLong => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "too_long",
                "the chunk runs past the declared size",
            )),
            Append::Mismatch => {
                tracing::warn!(device = %device.id, hash = %hash, "uploaded photo does not match its hash");
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "hash_mismatch",
                    "the uploaded bytes do not match the photo's hash; they were discarded",
                ))
            }
        }
    })
    .await
}

async fn get_blob(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        // Read-only tokens may fetch the photos of their scope too.
        let token = bearer(&headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this request needs a token (Authorization: Bearer …)",
            )
        })?;
        let device = any_token(&app, &client, token)?;
        let hash = parse_hash(&hash)?;
        check_readable(&app, &device, &hash)?;
        if device.read_only || device.worker.role != Role::Worker {
            audit(
                &app,
                &client,
                AuditKind::PhotoRead,
                Some(&device),
                &format!("photo {hash}"),
            )?;
        }
        match super::cache::photo(&headers, &hash, || app.photos.chunks(&hash)) {
            Ok(resp) => Ok(resp),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_uploaded",
                "the server does not have this photo yet",
            )),
            Err(e) => Err(io_error(e)),
        }
    })
    .await
}
