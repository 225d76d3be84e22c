//! HTTP: the one router, authentication, and the one place errors become
//! status codes. Each surface has a file: `sync` (enrol, sync, manifest),
//! `photos`, `reports`, `exports`, `open311` and `dashboard` (the center's
//! pages). Handlers parse, authenticate, call the domain inside
//! `spawn_blocking`, and encode; the rules live in the domain modules.
//! Bodies are CBOR (see `docs/protocol.md`); error bodies are JSON
//! `{code, message, incident}` so that a person with curl can read them.

mod auth;
mod cache;
mod client;
mod dashboard;
mod error;
mod exports;
mod in_flight;
mod limits;
mod listen;
mod open311;
mod photos;
mod reports;
mod sync;
mod tls;

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sync_core::GridMap;
use sync_core::protocol::MAX_BODY;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::photos::PhotoStore;
use crate::setup::{Config, SetupError, Timeouts};
use crate::storage::Storage;

pub(crate) struct AppState {
    pub storage: Arc<dyn Storage>,
    pub photos: Arc<dyn PhotoStore>,
    pub grids: GridMap,
    /// Pushes read, merge and write incident documents; one at a time.
    pub push_lock: Mutex<()>,
    /// Open311 without a token, and the base of its `media_url`s.
    pub open311_public: bool,
    pub base_url: String,
    /// Signs Open311's short-lived photo links.
    pub link_key: [u8; 32],
    /// Brute-force limits on tokens, enrolment codes and sign-ins.
    pub limits: limits::Limits,
    /// Requests with bodies in progress, per device.
    pub in_flight: Arc<in_flight::InFlight>,
    /// Peers whose forwarded headers are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

pub(crate) type App = Arc<AppState>;

pub use tls::{TlsError, TlsFiles};

/// Reports, exports and Open311 lists answered at once; more get 503.
const HEAVY_READS: usize = 4;

fn router(app: App, timeouts: Timeouts) -> Router {
    let heavy = HeavyReads::new();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(sync::routes(&app))
        .merge(photos::routes(&app))
        .merge(heavy.guard(reports::routes()))
        .merge(heavy.guard(exports::routes()))
        .merge(open311::routes(&heavy))
        .merge(dashboard::routes(&heavy))
        // Each route with a body sets its cap (`body_cap`); this one
        // bounds the rest, and axum's own 2 MB default is left to them.
        .layer(body_cap(MAX_BODY))
        .layer(DefaultBodyLimit::disable())
        .layer(cache::no_store_by_default())
        .layer(RequestBodyTimeoutLayer::new(timeouts.body_idle))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeouts.request,
        ))
        .with_state(app)
}

/// A route's body cap: 413 at once when `Content-Length` says more, and
/// the body cut off where it sends more than that.
pub(crate) fn body_cap(bytes: usize) -> RequestBodyLimitLayer {
    RequestBodyLimitLayer::new(bytes)
}

/// The 503 a full heavy-read gate answers.
async fn busy(_: axum::BoxError) -> Response {
    error::ApiError::busy(5).into_response()
}

/// One gate shared by every heavy read: at most [`HEAVY_READS`] at once,
/// and 503 with `Retry-After` rather than a queue when it is full.
#[derive(Clone)]
pub(crate) struct HeavyReads(Arc<tokio::sync::Semaphore>);

impl HeavyReads {
    fn new() -> HeavyReads {
        HeavyReads(Arc::new(tokio::sync::Semaphore::new(HEAVY_READS)))
    }

    /// Every route of `routes` behind the gate.
    pub fn guard<S: Clone + Send + Sync + 'static>(&self, routes: Router<S>) -> Router<S> {
        routes.route_layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(busy))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                    self.0.clone(),
                )),
        )
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SetupError> {
    let addr = listener.local_addr().map_err(SetupError::Serve)?;
    let (data_dir, database) = (config.data_dir.clone(), config.database.clone());
    // The storage may block on a network database: off the async threads.
    let (storage, link_key) = tokio::task::spawn_blocking(move || open_with_link_key(&data_dir, database.as_deref()))
        .await
        .map_err(|e| SetupError::Serve(std::io::Error::other(e)))??;
    let (data_dir, photos) = (config.data_dir.clone(), config.photos.clone());
    // So may the photo store, which also has a runtime of its own to drop.
    let photos = tokio::task::spawn_blocking(move || crate::setup::open_photo_store(&data_dir, photos.as_deref()))
        .await
        .map_err(|e| SetupError::Serve(std::io::Error::other(e)))??;
    let app = Arc::new(AppState {
        storage: Arc::from(storage),
        link_key,
        photos: Arc::from(photos),
        grids: crate::setup::load_grids(config.grid_map.as_deref())?,
        push_lock: Mutex::new(()),
        open311_public: config.open311.public,
        base_url: config.open311.base_url(addr, config.tls.is_some())?,
        limits: limits::Limits::default(),
        in_flight: Arc::default(),
        trusted_proxies: config.trusted_proxies.clone(),
    });
    let tls = match &config.tls {
        None => None,
        Some(files) => {
            let (acceptor, cert) = tls::acceptor(files)?;
            tokio::spawn(reload_on_hangup(cert));
            Some(acceptor)
        }
    };
    let cap = listen::connection_cap(config.max_connections);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), max_connections = cap, tls = tls.is_some(), "serving");
    listen::run(listener, router(app, config.timeouts), tls, cap, shutdown)
        .await
        .map_err(SetupError::Serve)
}

/// The storage and the key photo links are signed with (made on first start).
fn open_with_link_key(
    data_dir: &std::path::Path,
    database: Option<&str>,
) -> Result<(Box<dyn Storage>, [u8; 32]), SetupError> {
    let storage = crate::setup::open_storage(data_dir, database)?;
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).expect("the OS has randomness");
    let link_key = storage.link_key(fresh).map_err(|source| SetupError::Database {
        path: data_dir.to_owned(),
        source,
    })?;
    Ok((storage, link_key))
}

/// Reads the certificate files again on every SIGHUP.
async fn reload_on_hangup(cert: Arc<tls::Certificate>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the certificate reloads only on restart");
            return;
        };
        while hangups.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!(error = %e, "the TLS certificate did not reload; the old one stays"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = cert;
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_full_heavy_read_gate_answers_503_with_retry_after_and_then_opens() {
        let gate = HeavyReads::new();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let inside = release.clone();
        let slow = move || {
            let inside = inside.clone();
            async move {
                let _ = inside.acquire().await.expect("the release gate stays open");
                "done"
            }
        };
        let router: Router = gate.guard(Router::new().route("/", get(slow)));
        let ask = || router.clone().oneshot(Request::get("/").body(Body::empty()).unwrap());
        let held: Vec<_> = (0..HEAVY_READS).map(|_| tokio::spawn(ask())).collect();
        while gate.0.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = ask().await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        release.add_permits(HEAVY_READS);
        for h in held {
            assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(ask().await.unwrap().status(), StatusCode::OK, "the gate opens again");
    }
}
