//! [`ApiError`]: the one place errors become status codes and JSON bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sync_core::protocol::{self, ErrorBody};

use crate::accounts::AccountError;
use crate::export::ExportError;
use crate::report::ReportError;
use crate::storage::StorageError;
use crate::sync::SyncError;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for 429 and 503: `Retry-After`.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429: this client or account is over a brute-force limit.
    pub fn too_many(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!("too many failed tries from here; try again in {secs} s"),
            )
        }
    }

    /// 503: the server is at its limit for this kind of request.
    pub fn busy(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("the server is busy with other reports and exports; try again in {retry_after_secs} s"),
            )
        }
    }

    /// 429: this device already has its share of requests in progress.
    pub fn device_busy() -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "device_busy",
                format!(
                    "this device already has {} requests in progress; try again in 1 s",
                    super::in_flight::PER_DEVICE
                ),
            )
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
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
            incident: None,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        resp
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
            SyncError::Storage(s) => s.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadCode => ApiError::new(StatusCode::UNAUTHORIZED, "bad_code", e.to_string()),
            AccountError::AlreadyEnrolled(_) => ApiError::new(StatusCode::CONFLICT, "already_enrolled", e.to_string()),
            AccountError::Revoked(_) => ApiError::new(StatusCode::FORBIDDEN, "device_revoked", e.to_string()),
            AccountError::Storage(s) => s.into(),
            e => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Storage(s) => s.into(),
            ReportError::BadIncident { .. } | ReportError::BadTimezone { .. } => {
                tracing::error!(error = %e, "report failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "report_unavailable",
                    "the server cannot build this report from its data; the operator should check the logs",
                )
            }
            ReportError::UnknownCommunity { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_community", e.to_string())
            }
            ReportError::CommunityNeeded { .. } | ReportError::NoCommunity => {
                ApiError::new(StatusCode::BAD_REQUEST, "community_needed", e.to_string())
            }
            ReportError::OtherCommunity { .. } => ApiError::new(StatusCode::FORBIDDEN, "out_of_scope", e.to_string()),
        }
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Filter(f) => ApiError::new(StatusCode::BAD_REQUEST, f.code(), f.to_string()),
            ExportError::OutOfScope(m) => ApiError::new(StatusCode::FORBIDDEN, "out_of_scope", m),
            ExportError::Storage(s) => s.into(),
            e @ (ExportError::Corrupt { .. } | ExportError::Render(_)) => {
                tracing::error!(error = %e, "export failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not read its own records for this export",
                )
            }
        }
    }
}

/// A whole request body, its failures said as the protocol says them:
/// 408 when it paused past the body timeout, 413 past the route's cap,
/// 400 when the client broke it off.
pub(crate) struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body, ApiError> {
        Bytes::from_request(req, state).await.map(Body).map_err(body_error)
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    let timed_out = std::iter::successors(Some(&rejection as &(dyn std::error::Error + 'static)), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>());
    if timed_out {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body stopped arriving; send it again",
        );
    }
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, rejection.body_text())
}

/// The photo store failed (a full disk, an object store that is down):
/// 503 with `Retry-After`, so devices keep their photos and try again;
/// records keep syncing meanwhile.
pub(crate) fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "photo storage failed");
    ApiError {
        retry_after: Some(30),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the server cannot store or read photos right now; try again in 30 s",
        )
    }
}

pub(crate) fn cbor(value: &impl serde::Serialize) -> Response {
    ([(header::CONTENT_TYPE, "application/cbor")], protocol::encode(value)).into_response()
}

/// Decodes a body; one from a device of another protocol version is told
/// so in words, not called malformed.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    protocol::decode(body).map_err(|e| match protocol::version_of(body) {
        Some(v) if v != protocol::PROTOCOL_VERSION => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "protocol version {v} is not supported; this server speaks {}: update `field` on this device (its records are kept)",
                protocol::PROTOCOL_VERSION
            ),
        ),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
    })
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
