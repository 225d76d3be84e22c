//! `GET /v1/exports/incidents.{csv,geojson,json}` for center and operator tokens.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sync_core::Taxonomy;
use sync_core::export::{self, Format};

use super::App;
use super::auth::{bearer, reader};
use super::client::{Client, audit};
use super::error::{ApiError, blocking};
use crate::accounts::scope_of;
use crate::export::{ExportError, FilterInput, file_name, select};
use crate::storage::AuditKind;

/// The header naming incidents an export left out because their stored
/// documents cannot be read (empty when there are none).
static UNREADABLE: header::HeaderName = header::HeaderName::from_static("x-unreadable-incidents");

pub(super) fn routes() -> Router<App> {
    Router::new().route("/v1/exports/{file}", get(http_export))
}

async fn http_export(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(file): Path<String>,
    query: Result<Query<FilterInput>, QueryRejection>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let device = reader(&app, &client, bearer(&headers))?;
        let format = file.strip_prefix("incidents.").and_then(Format::parse).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_export",
                "the exports are incidents.csv, incidents.geojson and incidents.json",
            )
        })?;
        let Query(input) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
        let taxonomy = Taxonomy::builtin();
        let filter = input.parse(&app.grids, taxonomy).map_err(ExportError::from)?;
        let scope = scope_of(&device, &app.grids);
        let mut selected = select(app.storage.as_ref(), &app.grids, &scope, &filter)?;
        // Photo links go to Open311's media, which the same token opens.
        selected.extras.photo_base = Some(format!("{}/open311/v2/media", app.base_url));
        let bytes =
            export::render(format, &selected.incidents, taxonomy, &selected.extras).map_err(ExportError::from)?;
        let detail = format!("{file}: {} incidents", selected.incidents.len());
        audit(&app, &client, AuditKind::Export, Some(&device), &detail)?;
        let disposition = format!("attachment; filename=\"{}\"", file_name(&filter, format));
        Ok((
            [
                (header::CONTENT_TYPE, format.content_type().to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
                // Stored documents that could not be read are left out, and named here.
                (UNREADABLE.clone(), selected.unreadable.join(",")),
            ],
            bytes,
        )
            .into_response())
    })
    .await
}
