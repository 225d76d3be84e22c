//! `/v1/blobs/{hash}`: resumable, hash-verified photo uploads, their
//! status, and downloads, each allowed only for a photo that an incident in
//! the caller's scope names.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sync_core::BlobHash;
use sync_core::protocol::{self, BlobStatus};

use super::auth::{any_token, bearer, field_device};
use super::error::{ApiError, blocking, cbor, io_error};
use super::{App, AppState};
use crate::accounts::scope_of;
use crate::clock::ServerTime;
use crate::photos::{Append, MAX_STAGED_BYTES, MAX_STAGED_UPLOADS, Progress, Upload};
use crate::storage::Device;

/// The largest photo file a device may upload.
const MAX_PHOTO_BYTES: usize = sync_core::photo::MAX_BYTES;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob))
        .route("/v1/blobs/{hash}/status", get(blob_status))
}

fn parse_hash(s: &str) -> Result<BlobHash, ApiError> {
    s.parse().map_err(|e: sync_core::blob::ParseBlobHashError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", e.to_string())
    })
}

/// The device may touch a photo only if an incident in its scope names it.
fn check_blob_scope(app: &AppState, device: &Device, hash: &BlobHash) -> Result<(), ApiError> {
    let scope = scope_of(device, &app.grids);
    match app.storage.blob_ref(&hash.to_hex(), &scope)? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            "no incident in this device's cells refers to this photo; sync the incident first",
        )),
    }
}

async fn blob_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &headers)?;
        let hash = parse_hash(&hash)?;
        check_blob_scope(&app, &device, &hash)?;
        let Progress { received, complete } = app.photos.progress(&hash, &device.id).map_err(io_error)?;
        if complete {
            app.storage
                .mark_blob_verified(&hash.to_hex(), received, &ServerTime::now().text)?;
        }
        Ok(cbor(&BlobStatus { received, complete }))
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
    headers: HeaderMap,
    Path(hash): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &headers)?;
        let hash = parse_hash(&hash)?;
        check_blob_scope(&app, &device, &hash)?;
        if q.size > MAX_PHOTO_BYTES as u64 || body.len() > protocol::MAX_UPLOAD_CHUNK {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the photo or the chunk is too large",
            ));
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
                app.storage.mark_blob_verified(&hash.to_hex(), q.size, &now)?;
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

async fn get_blob(State(app): State<App>, headers: HeaderMap, Path(hash): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        // Read-only tokens may fetch the photos of their scope too.
        let token = bearer(&headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this request needs a token (Authorization: Bearer …)",
            )
        })?;
        let device = any_token(&app, token)?;
        let hash = parse_hash(&hash)?;
        check_blob_scope(&app, &device, &hash)?;
        match app.photos.read(&hash) {
            Ok(bytes) => Ok(([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response()),
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
