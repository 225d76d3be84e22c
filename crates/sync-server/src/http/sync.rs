//! `POST /v1/enroll`, `POST /v1/sync` and `POST /v1/manifest`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use sync_core::protocol::{EnrollRequest, EnrollResponse, ManifestReport, SyncRequest};

use super::App;
use super::auth::field_device;
use super::error::{ApiError, blocking, cbor, decode};
use crate::accounts::{enroll_device, scope_of};
use crate::clock::ServerTime;
use crate::sync::{Caller, report_manifest};

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/sync", post(sync))
        .route("/v1/manifest", post(manifest))
}

async fn enroll(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let req: EnrollRequest = decode(&body)?;
    blocking(move || {
        let enrolled = enroll_device(
            app.storage.as_ref(),
            &req.code,
            &req.worker,
            &req.device,
            req.public_key.as_deref().map(|k| k.as_slice()),
        )?;
        tracing::info!(device = %enrolled.device_id, worker = %enrolled.worker.id, "device enrolled");
        Ok(cbor(&EnrollResponse {
            token: enrolled.token,
            role: enrolled.worker.role.as_str().to_owned(),
            worker: enrolled.worker.id,
            grids: enrolled.worker.grids,
            epoch: app.storage.epoch()?,
        }))
    })
    .await
}

async fn sync(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &headers)?;
        let req: SyncRequest = decode(&body)?;
        let scope = scope_of(&device, &app.grids);
        let now = ServerTime::now();
        let caller = Caller {
            device: &device,
            scope: &scope,
            now: &now,
        };
        let _guard = app.push_lock.lock().unwrap_or_else(|p| p.into_inner());
        let resp = crate::sync::sync(app.storage.as_ref(), &caller, &req).inspect_err(|e| {
            tracing::warn!(device = %device.id, error = %e, "sync refused");
        })?;
        Ok(cbor(&resp))
    })
    .await
}

async fn manifest(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &headers)?;
        let report: ManifestReport = decode(&body)?;
        let reply = report_manifest(app.storage.as_ref(), &device, &report, &ServerTime::now())?;
        Ok(cbor(&reply))
    })
    .await
}
