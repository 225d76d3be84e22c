//! `POST /v1/enroll`, `POST /v1/sync` and `POST /v1/manifest`.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::post;
use sync_core::protocol::{EnrollRequest, EnrollResponse, MAX_BODY, ManifestReport, SyncRequest};

use super::auth::{field_device, token_first};
use super::client::{Client, audit, check_limit, count_failure};
use super::error::{ApiError, Body, blocking, cbor, decode};
use super::limits::Door;
use super::{App, body_cap};
use crate::accounts::AccountError;
use crate::accounts::{enroll_device, scope_of};
use crate::clock::ServerTime;
use crate::storage::AuditKind;
use crate::sync::{Caller, report_manifest};

/// How large an enrolment request may be.
const ENROL_BODY: usize = 4 * 1024;
/// How large a manifest report may be.
const MANIFEST_BODY: usize = 64 * 1024;

/// Enrolment, open to anyone with a small body; sync and manifest only
/// with a valid token, checked before the body is read.
pub(super) fn routes(app: &App) -> Router<App> {
    let devices = Router::new()
        .route("/v1/sync", post(sync).layer(body_cap(MAX_BODY)))
        .route("/v1/manifest", post(manifest).layer(body_cap(MANIFEST_BODY)))
        .route_layer(from_fn_with_state(app.clone(), token_first));
    Router::new()
        .route("/v1/enroll", post(enroll).layer(body_cap(ENROL_BODY)))
        .merge(devices)
}

async fn enroll(State(app): State<App>, client: Client, Body(body): Body) -> Result<Response, ApiError> {
    let req: EnrollRequest = decode(&body)?;
    blocking(move || {
        check_limit(&app, &client, Door::Enrol, Some(&req.worker))?;
        let known = app.storage.device(&req.device)?;
        let enrolled = enroll_device(app.storage.as_ref(), &req);
        let enrolled = match enrolled {
            Ok(e) => e,
            Err(e) => {
                if !matches!(e, AccountError::Storage(_)) {
                    let detail = format!("worker {:?}, device {:?}: {e}", req.worker, req.device);
                    audit(&app, &client, AuditKind::EnrolFailed, known.as_ref(), &detail)?;
                    count_failure(&app, &client, Door::Enrol, Some(&req.worker))?;
                }
                return Err(e.into());
            }
        };
        let device = app.storage.device(&enrolled.device_id)?;
        let kind = if known.is_some() {
            AuditKind::ReEnrol
        } else {
            AuditKind::Enrol
        };
        audit(&app, &client, kind, device.as_ref(), "enrolled with a code")?;
        Ok(cbor(&EnrollResponse {
            token: enrolled.token,
            role: enrolled.worker.role.as_str().to_owned(),
            grids: crate::accounts::cells_of(&enrolled.worker, &app.grids),
            worker: enrolled.worker.id,
            name: Some(enrolled.worker.name),
            epoch: app.storage.epoch()?,
            number: device.as_ref().and_then(|d| d.number),
        }))
    })
    .await
}

async fn sync(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &client, &headers)?;
        let req: SyncRequest = decode(&body)?;
        let scope = scope_of(&device, &app.grids);
        let now = ServerTime::now();
        let caller = Caller {
            device: &device,
            scope: &scope,
            now: &now,
        };
        // Only a push merges documents (read, merge, write back), so only a
        // push waits for another; a pull reads committed rows only, and
        // SQLite commits the feed in order, so it never waits behind one.
        let guard = (!req.push.is_empty()).then(|| app.push_lock.lock().unwrap_or_else(|p| p.into_inner()));
        let resp = crate::sync::sync(app.storage.as_ref(), &caller, &req).inspect_err(|e| {
            tracing::warn!(device = %device.id, error = %e, "sync refused");
        })?;
        drop(guard);
        for (id, refused) in resp.acks.iter().filter_map(|a| Some((&a.id, a.refused.as_ref()?))) {
            let rule = refused.rule.as_deref().unwrap_or("-");
            let detail = format!("incident {id}: {} (rule {rule}): {}", refused.code, refused.message);
            audit(&app, &client, AuditKind::PushRefused, Some(&device), &detail)?;
        }
        Ok(cbor(&resp))
    })
    .await
}

async fn manifest(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = field_device(&app, &client, &headers)?;
        let report: ManifestReport = decode(&body)?;
        let reply = report_manifest(app.storage.as_ref(), &device, &report, &ServerTime::now())?;
        Ok(cbor(&reply))
    })
    .await
}
