//! `GET /v1/reports/daily?date=YYYY-MM-DD&community=C`: the daily
//! reconciliation as JSON, for center and operator tokens.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use sync_core::calendar::parse_day;

use super::App;
use super::auth::{bearer, reader};
use super::client::{Client, audit};
use super::error::{ApiError, blocking};
use crate::report::{daily_report, reader_community};
use crate::storage::AuditKind;

pub(super) fn routes() -> Router<App> {
    Router::new().route("/v1/reports/daily", get(http_daily))
}

fn bad_date(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_date", message)
}

async fn http_daily(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let who = reader(&app, &client, bearer(&headers))?;
        let date = match q.get("date") {
            Some(d) => parse_day(d).map_err(|e| bad_date(e.to_string()))?,
            None => return Err(bad_date("this report needs date=YYYY-MM-DD".into())),
        };
        let asked = q.get("community").map(String::as_str);
        let storage = app.storage.as_ref();
        let community = reader_community(storage, &app.grids, &who.worker, asked)?;
        let report = daily_report(storage, &app.grids, &community, date, Utc::now())?;
        let detail = format!("daily report of {community} for {date}");
        audit(&app, &client, AuditKind::ReportRead, Some(&who), &detail)?;
        Ok(axum::Json(report).into_response())
    })
    .await
}
