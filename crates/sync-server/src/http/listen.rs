//! The listener: accepts connections up to a cap below the process's
//! descriptor limit and serves each with hyper's HTTP/1, whose header-read
//! timeout closes a connection that is slow to send a request head and
//! one that idles between requests. When full it makes room by closing the
//! oldest connection that is waiting for a request, so idle and
//! slow-header clients cannot lock a worker's sync out; a connection in
//! the middle of a request is never closed for room. On shutdown the
//! requests in flight finish.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client may take to send a request head, and may idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors kept for the database, photos and logs beyond the connections.
const RESERVED_FDS: u64 = 64;
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(20);
/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection reached the server, for each request on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transport {
    /// Over the server's own TLS.
    pub tls: bool,
}

/// One connection's place.
struct Slot {
    /// Requests being answered on it now.
    busy: AtomicUsize,
    /// Told when the connection must close to make room.
    evict: Notify,
}

/// The connections open now, oldest first.
struct Slots {
    max: usize,
    open: Mutex<VecDeque<Arc<Slot>>>,
}

impl Slots {
    /// A place for a new connection, closing the oldest idle one if full;
    /// `None` when every connection is busy with a request.
    fn admit(&self) -> Option<Arc<Slot>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max {
            let idle = open.iter().position(|s| s.busy.load(Ordering::Acquire) == 0)?;
            let evicted = open.remove(idle).expect("the position is in the queue");
            evicted.evict.notify_one();
        }
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        open.push_back(slot.clone());
        Some(slot)
    }

    fn leave(&self, slot: &Arc<Slot>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|s| !Arc::ptr_eq(s, slot));
    }
}

/// Counts a request on its connection while it is answered.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: &Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection cap: `max` if given, else what the descriptor limit
/// allows after raising the soft limit to the hard one.
pub(crate) fn connection_cap(max: Option<usize>) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let by_fds = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
    max.map_or(by_fds, |m| m.min(by_fds))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots {
        max: max_connections,
        open: Mutex::new(VecDeque::new()),
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or a connection reset before accept:
                // wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.admit() else {
            tracing::warn!(%peer, "every connection is busy; closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            transport: Transport { tls: tls.is_some() },
            peer,
            slot,
            slots: slots.clone(),
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.serve(TokioIo::new(stream), watcher).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => conn.serve(TokioIo::new(stream), watcher).await,
                    Ok(Err(e)) => conn.refused(&format!("TLS handshake failed: {e}")),
                    Err(_) => conn.refused("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

/// One accepted connection.
struct Conn {
    router: Router,
    transport: Transport,
    peer: SocketAddr,
    slot: Arc<Slot>,
    slots: Arc<Slots>,
}

impl Conn {
    /// A connection that never got to HTTP.
    fn refused(self, why: &str) {
        tracing::debug!(peer = %self.peer, "{why}");
        self.slots.leave(&self.slot);
    }

    async fn serve<IO>(self, io: TokioIo<IO>, watcher: hyper_util::server::graceful::Watcher)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (router, peer, slot, transport) = (self.router, self.peer, self.slot.clone(), self.transport);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(transport);
            let busy = Busy::new(&slot);
            let answer = router.clone().oneshot(req);
            async move {
                let resp = answer.await;
                drop(busy);
                resp
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let conn = watcher.watch(http.serve_connection(io, service));
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(peer = %self.peer, error = %e, "connection ended");
            },
            () = self.slot.evict.notified() => {
                tracing::debug!(peer = %self.peer, "closed an idle connection to make room");
            }
        }
        self.slots.leave(&self.slot);
    }
}
