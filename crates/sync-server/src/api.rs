//! HTTP: routes, authentication, and the one place errors become status
//! codes. Bodies are CBOR (see `docs/protocol.md`); error bodies are JSON
//! `{code, message, incident}` so that a person with curl can read them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sync_core::protocol::{
    self, BlobStatus, EnrollRequest, EnrollResponse, ErrorBody, MAX_BODY, ManifestReport, SyncRequest,
};
use sync_core::{BlobHash, GridMap};

use crate::photos::{Append, PhotoStore};
use crate::storage::{Device, Enrolment, Storage, StorageError};
use crate::sync::{SyncError, scope_of};
use crate::{clock, secret_hash};

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub photos: Arc<dyn PhotoStore>,
    pub grids: GridMap,
    /// Pushes read, merge and write incident documents; one at a time.
    pub push_lock: Mutex<()>,
}

pub type App = Arc<AppState>;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/enroll", post(enroll))
        .route("/v1/sync", post(sync))
        .route("/v1/manifest", post(manifest))
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob))
        .route("/v1/blobs/{hash}/status", get(blob_status))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    incident: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            incident: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            incident: self.incident,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the server cannot reach its storage right now; try again later",
        )
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
            SyncError::Forbidden { incident, reason } => ApiError {
                incident,
                ..ApiError::new(StatusCode::FORBIDDEN, "out_of_scope", reason)
            },
            SyncError::Invalid { incident, reason } => ApiError {
                incident,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_incident", reason)
            },
            SyncError::Storage(s) => s.into(),
        }
    }
}

fn cbor(value: &impl serde::Serialize) -> Response {
    ([(header::CONTENT_TYPE, "application/cbor")], protocol::encode(value)).into_response()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    protocol::decode(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))
}

/// Runs blocking storage work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "request handler panicked");
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed on this request",
        ))
    })
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A field device that may push, upload and pull.
fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Device, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| unauthorized("this request needs a device token (Authorization: Bearer …)"))?;
    let device = authenticate_token(app, token)?;
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
pub fn require_reader(app: &AppState, token: Option<&str>) -> Result<Device, ApiError> {
    let token =
        token.ok_or_else(|| unauthorized("this request needs a center or operator token (Authorization: Bearer …)"))?;
    let device = authenticate_token(app, token)?;
    if device.worker.role == crate::storage::Role::Worker {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "this needs a center or operator account; a grid worker's token cannot read reports or exports",
        ));
    }
    Ok(device)
}

/// Any valid, unrevoked token.
pub fn authenticate_token(app: &AppState, token: &str) -> Result<Device, ApiError> {
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

async fn enroll(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let req: EnrollRequest = decode(&body)?;
    blocking(move || {
        // The device id is a UUID whose 16 bytes are its Automerge actor id.
        let device = uuid::Uuid::try_parse(&req.device)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the device id is not a UUID"))?;
        // One spelling per device, whatever the client sent.
        let device_id = device.hyphenated().to_string();
        let token = crate::random_token();
        let (now_ms, now) = clock();
        let worker = app
            .storage
            .enroll(
                &Enrolment {
                    code_hash: &secret_hash(&crate::normalise_code(&req.code)),
                    worker: &req.worker,
                    device: &device_id,
                    actor: device.as_bytes(),
                    token_hash: &secret_hash(&token),
                },
                now_ms,
                &now,
            )?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_code",
                    "the enrolment code is unknown, used, expired, or for another worker",
                )
            })?;
        tracing::info!(device = %device_id, worker = %worker.id, "device enrolled");
        Ok(cbor(&EnrollResponse {
            token,
            worker: worker.id,
            role: worker.role.as_str().to_owned(),
            grids: worker.grids,
            epoch: app.storage.epoch()?,
        }))
    })
    .await
}

async fn sync(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    blocking(move || {
        let device = authenticate(&app, &headers)?;
        let req: SyncRequest = decode(&body)?;
        let scope = scope_of(&device, &app.grids);
        let (now_ms, now) = clock();
        let _guard = app.push_lock.lock().unwrap_or_else(|p| p.into_inner());
        let resp = crate::sync::sync(app.storage.as_ref(), &device, &scope, &req, now_ms, &now).inspect_err(|e| {
            tracing::warn!(device = %device.id, error = %e, "sync refused");
        })?;
        Ok(cbor(&resp))
    })
    .await
}

async fn manifest(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    blocking(move || {
        let device = authenticate(&app, &headers)?;
        let report: ManifestReport = decode(&body)?;
        let (now_ms, now) = clock();
        let reply = crate::sync::report_manifest(app.storage.as_ref(), &device, &report, now_ms, &now)?;
        Ok(cbor(&reply))
    })
    .await
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

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "photo storage failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the server cannot store photos right now",
    )
}

async fn blob_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = authenticate(&app, &headers)?;
        let hash = parse_hash(&hash)?;
        check_blob_scope(&app, &device, &hash)?;
        let (received, complete) = app.photos.progress(&hash).map_err(io_error)?;
        if complete {
            let (_, now) = clock();
            app.storage.mark_blob_verified(&hash.to_hex(), received, &now)?;
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
        let device = authenticate(&app, &headers)?;
        let hash = parse_hash(&hash)?;
        check_blob_scope(&app, &device, &hash)?;
        if q.size > sync_core::photo::MAX_BYTES as u64 || body.len() > protocol::MAX_UPLOAD_CHUNK {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the photo or the chunk is too large",
            ));
        }
        let outcome = app.photos.append(&hash, q.offset, &body, q.size).map_err(io_error)?;
        let (_, now) = clock();
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
        let token =
            bearer(&headers).ok_or_else(|| unauthorized("this request needs a token (Authorization: Bearer …)"))?;
        let device = authenticate_token(&app, token)?;
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
