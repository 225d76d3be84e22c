//! `/open311/v2/…`: the Open311 read side over HTTP, with the standard's
//! error shape `[{"code": 400, "description": …}]`.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sync_core::Taxonomy;

use super::auth::{bearer, reader};
use super::client::{Client, audit};
use super::error::{ApiError, blocking};
use super::{App, HeavyReads};
use crate::accounts::scope_of;
use crate::open311::{
    MediaLinks, QueryError, RequestsQuery, find_requests, media_hash, one_incident, only_json, request_id,
    request_stem, service_list, to_requests,
};
use crate::secrets::{LINK_SECS, link_valid};
use crate::storage::{AuditKind, Scope};

/// The request lists go through the heavy-read gate.
pub(super) fn routes(heavy: &HeavyReads) -> Router<App> {
    let lists = Router::new()
        .route("/open311/v2/requests.json", get(requests))
        .route("/open311/v2/requests/{file}", get(request));
    Router::new()
        .route("/open311/v2/services.json", get(services))
        .merge(heavy.guard(lists))
        .route("/open311/v2/media/{file}", get(media))
        .route("/open311/v2/{file}", get(other))
}

/// An Open311 error: the HTTP status and a sentence.
#[derive(Debug)]
struct Open311Error {
    status: StatusCode,
    description: String,
    retry_after: Option<u64>,
}

impl Open311Error {
    fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Open311Error {
            status,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for Open311Error {
    fn from(e: ApiError) -> Self {
        Open311Error {
            retry_after: e.retry_after(),
            ..Open311Error::new(e.status(), e.message())
        }
    }
}

impl From<QueryError> for Open311Error {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadRequest(m) => Open311Error::new(StatusCode::BAD_REQUEST, m),
            QueryError::NotFound(m) => Open311Error::new(StatusCode::NOT_FOUND, m),
            QueryError::Export(e) => ApiError::from(e).into(),
            QueryError::Storage(e) => ApiError::from(e).into(),
        }
    }
}

impl IntoResponse for Open311Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!([{"code": self.status.as_u16(), "description": self.description}]);
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

fn bad_query(e: QueryRejection) -> Open311Error {
    Open311Error::new(StatusCode::BAD_REQUEST, e.body_text())
}

/// What a caller reads, for the audit log.
struct Read<'a> {
    kind: AuditKind,
    detail: &'a str,
}

/// The incidents a caller may read: everything when the server is public,
/// else the scope of a center or operator token. The read is audited.
fn reader_scope(
    app: &App,
    client: &Client,
    headers: &HeaderMap,
    api_key: Option<&str>,
    read: Read<'_>,
) -> Result<Scope, Open311Error> {
    if app.open311_public {
        audit(app, client, read.kind, None, read.detail)?;
        return Ok(Scope::All);
    }
    let token = bearer(headers).or(api_key.filter(|k| !k.is_empty())).ok_or_else(|| {
        Open311Error::new(
            StatusCode::UNAUTHORIZED,
            "this needs a center or operator token, as api_key=… or Authorization: Bearer …",
        )
    })?;
    let device = reader(app, client, Some(token))?;
    audit(app, client, read.kind, Some(&device), read.detail)?;
    Ok(scope_of(&device, &app.grids))
}

fn json_ok(value: &impl Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_vec(value).expect("Open311 answers serialise"),
    )
        .into_response()
}

/// Runs a handler's body off the async threads, in Open311's error shape.
async fn off_thread(
    f: impl FnOnce() -> Result<Response, Open311Error> + Send + 'static,
) -> Result<Response, Open311Error> {
    blocking(move || Ok(f())).await?
}

async fn services() -> Response {
    json_ok(&service_list(Taxonomy::builtin()))
}

/// Any other resource at the top: `.xml` gets a clear refusal.
async fn other(Path(file): Path<String>) -> Open311Error {
    if file.ends_with(".xml") {
        only_json().into()
    } else {
        Open311Error::new(
            StatusCode::NOT_FOUND,
            "Open311 here serves services.json, requests.json, requests/{id}.json and media/{hash}.jpg",
        )
    }
}

async fn requests(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(bad_query)?;
    off_thread(move || {
        let read = Read {
            kind: AuditKind::Open311Read,
            detail: "requests.json",
        };
        let scope = reader_scope(&app, &client, &headers, q.api_key.as_deref(), read)?;
        let now = chrono::Utc::now().fixed_offset();
        let found = find_requests(app.storage.as_ref(), &scope, &q, now)?;
        Ok(json_ok(&to_requests(
            app.storage.as_ref(),
            &app.grids,
            &found,
            &links(&app),
        )?))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

/// How `media_url` is written. Public, the link works for anyone; else it
/// carries a signature valid for an hour ([`LINK_SECS`]), so a client that
/// read the request with its token can open the photo with the link alone
/// (as Open311 clients expect) without the token ever being in a URL.
fn links(app: &App) -> MediaLinks<'_> {
    let expires = chrono::Utc::now().timestamp() + LINK_SECS;
    MediaLinks {
        base_url: &app.base_url,
        signed: (!app.open311_public).then_some((&app.link_key, expires)),
    }
}

/// A media link's signature, when it has one.
#[derive(Debug, Default, Deserialize)]
struct MediaQuery {
    api_key: Option<String>,
    expires: Option<i64>,
    sig: Option<String>,
}

impl MediaQuery {
    /// Whether the link was signed by this server for `file`, and has not expired.
    fn signed_for(&self, app: &App, file: &str) -> bool {
        match (self.expires, &self.sig) {
            (Some(expires), Some(sig)) => link_valid(&app.link_key, file, expires, sig, chrono::Utc::now().timestamp()),
            _ => false,
        }
    }
}

async fn request(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(file): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(bad_query)?;
    off_thread(move || {
        let stem = request_stem(&file)?;
        let detail = format!("requests/{stem}.json");
        let read = Read {
            kind: AuditKind::Open311Read,
            detail: &detail,
        };
        let scope = reader_scope(&app, &client, &headers, q.api_key.as_deref(), read)?;
        let id = request_id(stem)?;
        match one_incident(app.storage.as_ref(), &scope, &id)? {
            Some(i) => Ok(json_ok(&to_requests(
                app.storage.as_ref(),
                &app.grids,
                &[i],
                &links(&app),
            )?)),
            None => Err(Open311Error::new(
                StatusCode::NOT_FOUND,
                format!("no service request `{id}`"),
            )),
        }
    })
    .await
}

async fn media(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(file): Path<String>,
    query: Result<Query<MediaQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(bad_query)?;
    off_thread(move || {
        let detail = format!("open311 media/{file}");
        let read = Read {
            kind: AuditKind::PhotoRead,
            detail: &detail,
        };
        // A link this server signed names a photo it showed a reader of
        // that incident; anything else needs a reader's token. A request
        // that brings a token is that reader's, and audited as theirs.
        let token_given = bearer(&headers).is_some() || q.api_key.is_some();
        let scope = if !token_given && q.signed_for(&app, &file) {
            audit(
                &app,
                &client,
                AuditKind::PhotoRead,
                None,
                &format!("{detail} (signed link)"),
            )?;
            Scope::All
        } else {
            reader_scope(&app, &client, &headers, q.api_key.as_deref(), read)?
        };
        let missing = || Open311Error::new(StatusCode::NOT_FOUND, "no such photo");
        let hash = media_hash(app.storage.as_ref(), &scope, &file)?.ok_or_else(missing)?;
        match super::cache::photo(&headers, &hash, || app.photos.chunks(&hash)) {
            Ok(resp) => Ok(resp),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => {
                tracing::error!(error = %e, "photo storage failed");
                Err(Open311Error::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server cannot read its photos right now",
                ))
            }
        }
    })
    .await
}
