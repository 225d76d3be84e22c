//! The community center's dashboard at `/center`: server-rendered HTML, no
//! script, no external resources, a strict Content-Security-Policy.
//!
//! Sign-in takes a center or operator read-only token and starts a session
//! (`session.rs`): the cookie holds a random id, never the token; every
//! page and photo checks the session and its token again (a revoked token
//! ends its sessions at once), and every form checks Origin and CSRF. The
//! reconciliation is the same report model as the CLI and the JSON API,
//! rendered by `report::html`; `pages.rs` has the pages.

mod actions;
mod department;
mod pages;
mod session;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth;
use super::client::{Client, audit, check_limit, count_failure};
use super::error::{ApiError, blocking};
use super::limits::Door;
use super::{App, HeavyReads, body_cap};
use crate::report::html::{STYLE, page};
use crate::storage::AuditKind;
use session::{SignedIn, signed_in};

const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// How large a sign-in or sign-out form may be.
const FORM_BODY: usize = 8 * 1024;

/// The reconciliation page goes through the heavy-read gate.
pub(super) fn routes(heavy: &HeavyReads) -> Router<App> {
    let home = Router::new()
        .route("/center", get(pages::home))
        .route("/center/", get(pages::home));
    let forms = Router::new()
        .route("/center/sign-in", post(sign_in))
        .route("/center/sign-out", post(sign_out))
        .route("/center/incidents/{id}/act", post(actions::act_on))
        .layer(body_cap(FORM_BODY));
    Router::new()
        .merge(heavy.guard(home))
        .merge(forms)
        .route("/center/style.css", get(style))
        .route("/center/incidents/{id}", get(pages::incident_page))
        .route("/center/photos/{hash}", get(pages::photo))
}

/// Security headers on every dashboard response.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
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

fn sign_in_page(client: &Client, status: StatusCode, error: Option<&str>) -> Response {
    let (nonce, set) = session::login_nonce(client);
    let mut resp = html_response(
        status,
        page(
            "社区中心 Center — sign in",
            false,
            html! {
                h1 { "社区网格管理服务中心 Community center" }
                @if let Some(e) = error { p class="error" role="alert" { (e) } }
                form method="post" action="/center/sign-in" {
                    input type="hidden" name="csrf" value=(nonce);
                    p { label for="token" { "Center or operator token 中心令牌" } br;
                        input type="password" id="token" name="token" size="70" autocomplete="off" required; }
                    p { button type="submit" { "Sign in 登录" } }
                }
                p class="muted" { "The operator makes a token with " code { "sync-server token create --worker ID" } "." }
            },
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The sign-in form again, saying why, with `Retry-After` when limited.
fn refused_sign_in(client: &Client, e: &ApiError) -> Response {
    let mut resp = sign_in_page(client, e.status(), Some(e.message()));
    if let Some(secs) = e.retry_after() {
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    resp
}

/// Back to `/center`, setting these cookies.
fn see_center(cookies: &[String]) -> Response {
    let mut resp = secure((StatusCode::SEE_OTHER, [(header::LOCATION, "/center")]).into_response());
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

/// Whether a sign-in form came from this server's own page.
fn own_sign_in_form(client: &Client, headers: &HeaderMap, form: &SignIn) -> bool {
    let nonce = session::cookie(headers, session::LOGIN_COOKIE);
    session::same_origin(client, headers) && !form.csrf.is_empty() && nonce.as_deref() == Some(form.csrf.as_str())
}

async fn sign_in(State(app): State<App>, client: Client, headers: HeaderMap, Form(form): Form<SignIn>) -> Response {
    let result = blocking(move || {
        if let Err(e) = check_limit(&app, &client, Door::SignIn, None) {
            return Ok(refused_sign_in(&client, &e));
        }
        if !own_sign_in_form(&client, &headers, &form) {
            audit(
                &app,
                &client,
                AuditKind::SignInFailed,
                None,
                "a sign-in form from another site or an old page",
            )?;
            return Ok(sign_in_page(
                &client,
                StatusCode::FORBIDDEN,
                Some("This sign-in did not come from this server's own page; sign in again here."),
            ));
        }
        match auth::dashboard_user(&app, &client, Some(form.token.trim())) {
            Ok(who) => {
                let set = session::start(&app, &client, &who)?;
                audit(&app, &client, AuditKind::SignIn, Some(&who), "dashboard")?;
                let clear = session::set_cookie(&client, session::LOGIN_COOKIE, "", 0);
                Ok(see_center(&[set, clear]))
            }
            Err(e) if e.status().is_client_error() => {
                audit(&app, &client, AuditKind::SignInFailed, None, e.message())?;
                count_failure(&app, &client, Door::SignIn, None)?;
                Ok(refused_sign_in(&client, &e))
            }
            Err(e) => Err(e),
        }
    })
    .await;
    result.unwrap_or_else(|_| {
        sign_in_page(
            &client,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The server cannot check tokens right now; try again later."),
        )
    })
}

async fn sign_out(State(app): State<App>, client: Client, headers: HeaderMap, Form(form): Form<Csrf>) -> Response {
    let clear = session::set_cookie(&client, session::SESSION_COOKIE, "", 0);
    let result = blocking(move || {
        let Some(s) = signed_in(&app, &client, &headers)? else {
            return Ok(see_center(&[clear]));
        };
        if !session::same_origin(&client, &headers) || form.csrf != s.csrf {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "This sign-out did not come from this server's own page; you are still signed in.",
            ));
        }
        session::end(&app, &s)?;
        audit(&app, &client, AuditKind::SignOut, Some(&s.who), "dashboard")?;
        Ok(see_center(&[clear]))
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
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

fn header_bar(s: &SignedIn) -> Markup {
    let who = &s.who;
    html! {
        header {
            div { h1 { "社区网格管理服务中心 Community center" } }
            div {
                span class="muted" { "signed in as " (who.worker.name) " (" (who.worker.role.as_str()) ") " }
                form class="inline" method="post" action="/center/sign-out" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button type="submit" { "Sign out 退出" }
                }
            }
        }
    }
}
