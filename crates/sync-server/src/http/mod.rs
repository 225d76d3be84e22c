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
mod limits;
mod open311;
mod photos;
mod reports;
mod sync;

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use sync_core::GridMap;
use sync_core::protocol::MAX_BODY;

use crate::photos::PhotoStore;
use crate::setup::{Config, SetupError};
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
    /// Brute-force limits on tokens, enrolment codes and sign-ins.
    pub limits: limits::Limits,
}

pub(crate) type App = Arc<AppState>;

fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(sync::routes())
        .merge(photos::routes())
        .merge(reports::routes())
        .merge(exports::routes())
        .merge(open311::routes())
        .merge(dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cache::no_store_by_default())
        .with_state(app)
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SetupError> {
    let addr = listener.local_addr().map_err(SetupError::Serve)?;
    let app = Arc::new(AppState {
        storage: Arc::new(crate::setup::open_storage(&config.data_dir)?),
        photos: Arc::new(crate::setup::open_photos(&config.data_dir)?),
        grids: crate::setup::load_grids(config.grid_map.as_deref())?,
        push_lock: Mutex::new(()),
        open311_public: config.open311.public,
        base_url: config.open311.base_url(addr)?,
        limits: limits::Limits::default(),
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SetupError::Serve)
}
