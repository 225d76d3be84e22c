//! The community center's dashboard at `/center`: server-rendered HTML, no
//! script, no external resources, a strict Content-Security-Policy.
//!
//! Sign-in takes a center or operator read-only token and keeps it in an
//! `HttpOnly`, `SameSite=Strict` cookie scoped to `/center`; every page and
//! photo checks it again (a revoked token stops working at once). The
//! reconciliation is the same report model as the CLI and the JSON API,
//! rendered by `report::html`; `pages.rs` has the pages.

mod pages;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::App;
use super::AppState;
use super::auth;
use super::error::{ApiError, blocking};
use crate::report::html::{STYLE, page};
use crate::storage::Device;

const COOKIE: &str = "center_token";
/// How long a sign-in lasts, in seconds (12 hours: one working day).
const SESSION_SECS: u32 = 12 * 3600;
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/center", get(pages::home))
        .route("/center/", get(pages::home))
        .route("/center/sign-in", post(sign_in))
        .route("/center/sign-out", post(sign_out))
        .route("/center/style.css", get(style))
        .route("/center/incidents/{id}", get(pages::incident_page))
        .route("/center/photos/{hash}", get(pages::photo))
}

/// Security headers on every dashboard response.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Photos set their own policy (see `http::cache`).
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

fn html_response(status: StatusCode, page: Markup) -> Response {
    secure(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.into_string(),
        )
            .into_response(),
    )
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The signed-in reader, if the cookie holds a valid center or operator token.
fn signed_in(app: &AppState, headers: &HeaderMap) -> Result<Option<Device>, ApiError> {
    let Some(token) = cookie_token(headers) else {
        return Ok(None);
    };
    match auth::reader(app, Some(&token)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if matches!(e.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Ok(None),
        Err(e) => Err(e),
    }
}

fn sign_in_page(status: StatusCode, error: Option<&str>) -> Response {
    html_response(
        status,
        page(
            "社区中心 Center — sign in",
            false,
            html! {
                h1 { "社区网格管理服务中心 Community center" }
                @if let Some(e) = error { p class="error" role="alert" { (e) } }
                form method="post" action="/center/sign-in" {
                    p { label for="token" { "Center or operator token 中心令牌" } br;
                        input type="password" id="token" name="token" size="70" autocomplete="off" required; }
                    p { button type="submit" { "Sign in 登录" } }
                }
                p class="muted" { "The operator makes a token with " code { "sync-server token create --worker ID" } "." }
            },
        ),
    )
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(app): State<App>, Form(form): Form<SignIn>) -> Response {
    let token = form.token.trim().to_owned();
    let checked = {
        let token = token.clone();
        blocking(move || auth::reader(&app, Some(&token))).await
    };
    match checked {
        // Only hex tokens are ever issued; anything else cannot be one and
        // must not reach a header.
        Ok(_) if token.chars().all(|c| c.is_ascii_hexdigit()) => {
            let cookie = format!("{COOKIE}={token}; Path=/center; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}");
            secure(
                (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, "/center".to_owned()), (header::SET_COOKIE, cookie)],
                )
                    .into_response(),
            )
        }
        Ok(_) => sign_in_page(StatusCode::UNAUTHORIZED, Some("That is not a valid token.")),
        Err(e) if e.status().is_client_error() => sign_in_page(e.status(), Some(e.message())),
        Err(e) => sign_in_page(
            e.status(),
            Some("The server cannot check tokens right now; try again later."),
        ),
    }
}

async fn sign_out() -> Response {
    secure(
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/center".to_owned()),
                (
                    header::SET_COOKIE,
                    format!("{COOKIE}=; Path=/center; HttpOnly; SameSite=Strict; Max-Age=0"),
                ),
            ],
        )
            .into_response(),
    )
}

async fn style() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        page(
            "社区中心 Center",
            false,
            html! {
                h1 { "社区网格管理服务中心 Community center" }
                p class="error" role="alert" { (message) }
                p { a href="/center" { "Back to the reconciliation 返回" } }
            },
        ),
    )
}

fn header_bar(who: &Device) -> Markup {
    html! {
        header {
            div { h1 { "社区网格管理服务中心 Community center" } }
            div {
                span class="muted" { "signed in as " (who.worker.name) " (" (who.worker.role.as_str()) ") " }
                form class="inline" method="post" action="/center/sign-out" { button type="submit" { "Sign out 退出" } }
            }
        }
    }
}
