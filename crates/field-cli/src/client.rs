//! The HTTP side of talking to the sync server: CBOR in and out, retries
//! with backoff on network trouble, and server errors as typed values.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use sync_core::protocol::{self, ErrorBody};

use crate::tls::{Seen, Trust, client_config};

/// How a request failed.
#[derive(Debug)]
pub enum CallError {
    /// The network or the server is unavailable: worth retrying later.
    Unreachable(String),
    /// The server showed another key than at enrolment: not retried.
    KeyChanged { pinned: String, shown: String },
    /// The server's certificate is not valid for it: not retried.
    Untrusted(String),
    /// The server answered with an error about this request.
    Refused { status: u16, body: ErrorBody },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) => write!(f, "the server could not be reached: {m}"),
            CallError::Untrusted(why) => write!(
                f,
                "the server's certificate is not trusted ({why}); if the city runs its own CA, \
                 enrol with --ca FILE naming its certificate"
            ),
            CallError::KeyChanged { pinned, shown } => write!(
                f,
                "the server's certificate key is not the one it had at enrolment (sha256 {pinned}, now {shown}): \
                 someone may be between this phone and the server, so nothing was sent; if the operator \
                 really changed the server's key, enrol again with a new code"
            ),
            CallError::Refused { status, body } => {
                write!(f, "the server refused ({status} {}): {}", body.code, body.message)
            }
        }
    }
}

impl std::error::Error for CallError {}

/// Why a request failed, in a worker's words: what happened and what may
/// be wrong, not the HTTP library's phrasing.
fn network_error(e: &reqwest::Error) -> String {
    let host = e
        .url()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_else(|| "the server".to_owned());
    let io_kind = causes(e).find_map(|c| c.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    let root = causes(e).last().map_or_else(|| e.to_string(), |c| c.to_string());
    use std::io::ErrorKind::*;
    if e.is_timeout() {
        return format!("no answer from {host} in time (a slow or lost link, or a busy server)");
    }
    match io_kind {
        Some(ConnectionRefused) => {
            format!("nothing answers at {host} (is the server running, and is the address right?)")
        }
        Some(NetworkUnreachable | HostUnreachable) => format!("no route to {host} (no signal or no network?)"),
        Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) => {
            format!("the connection to {host} broke off")
        }
        _ if root.contains("dns error") || root.contains("failed to lookup address") => {
            format!("the name in {host} cannot be looked up (no network, or a mistyped address)")
        }
        _ if e.is_connect() => format!("cannot connect to {host}: {root}"),
        _ => format!("the exchange with {host} failed: {root}"),
    }
}

/// `e`'s causes, the first one's own source first.
fn causes(e: &reqwest::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(e), |c| c.source())
}

/// Why rustls refused the server's certificate, if that is why `e` failed
/// (the pin's own refusal is told apart by [`Client::key_changed`]).
fn tls_refusal(e: &reqwest::Error) -> Option<String> {
    // Every cause, including what an io::Error wraps (its `source` skips it).
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    while let Some(err) = stack.pop() {
        if let Some(rustls::Error::InvalidCertificate(c)) = err.downcast_ref::<rustls::Error>() {
            return (*c != rustls::CertificateError::ApplicationVerificationFailure).then(|| format!("{c:?}"));
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            stack.push(inner);
        }
        stack.extend(err.source());
    }
    None
}

pub struct Client {
    http: reqwest::blocking::Client,
    /// The key the last TLS handshake showed.
    seen: Arc<Mutex<Seen>>,
    pinned: Option<String>,
    base: String,
    token: Option<String>,
    retries: u32,
    /// Bytes sent and received in request and response bodies.
    pub sent: u64,
    pub received: u64,
}

impl Client {
    pub fn new(base: &str, token: Option<String>, retries: u32, trust: &Trust) -> Result<Client> {
        let (tls, seen) = client_config(trust)?;
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .tls_backend_preconfigured(tls)
            .https_only(base.starts_with("https://"))
            .build()
            .map_err(|e| anyhow!("cannot set up HTTP: {e}"))?;
        Ok(Client {
            http,
            seen,
            pinned: trust.pin.clone(),
            base: base.trim_end_matches('/').to_owned(),
            token,
            retries,
            sent: 0,
            received: 0,
        })
    }

    /// Sends a request, retrying with backoff while the server is unreachable.
    pub fn call(&mut self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            match self.once(method.clone(), path, &body) {
                Err(CallError::Unreachable(_)) if self.key_changed().is_some() => {
                    return Err(self.key_changed().expect("just seen"));
                }
                Err(CallError::Unreachable(m)) if attempt < self.retries => {
                    tracing::info!(path, attempt, error = %m, "retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A client for this enrolled device's server, with its token,
    /// trusting what enrolment recorded.
    pub fn for_device(data_dir: &std::path::Path, retries: u32) -> Result<Client> {
        let token = crate::app::load_token(data_dir)?;
        let server = sync_core::Store::open(data_dir)?
            .sync_state()?
            .server
            .ok_or_else(|| anyhow!("this device is not enrolled; run `field enroll` first"))?;
        let trust = Trust::load(data_dir)?;
        Client::new(&server, Some(token), retries, &trust)
    }

    /// The key the server showed, if TLS refused it for not being the pinned one.
    pub fn key_changed(&self) -> Option<CallError> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match (&self.pinned, &seen.pin) {
            (Some(pinned), Some(shown)) if seen.mismatch => Some(CallError::KeyChanged {
                pinned: pinned.clone(),
                shown: shown.clone(),
            }),
            _ => None,
        }
    }

    /// The key the last handshake showed (none over plain HTTP).
    pub fn shown_key(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).pin.clone()
    }

    fn once(&mut self, method: reqwest::Method, path: &str, body: &[u8]) -> Result<Vec<u8>, CallError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/cbor").body(body.to_vec());
        }
        let resp = req.send().map_err(|e| match tls_refusal(&e) {
            Some(why) => CallError::Untrusted(why),
            None => CallError::Unreachable(network_error(&e)),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| CallError::Unreachable(network_error(&e)))?;
        self.sent += body.len() as u64;
        self.received += bytes.len() as u64;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            return Err(CallError::Unreachable(format!("HTTP {status}")));
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            code: "http".into(),
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
            ),
            incident: None,
        });
        Err(CallError::Refused {
            status: status.as_u16(),
            body,
        })
    }

    pub fn cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        protocol::decode(bytes).map_err(|e| anyhow!("the server's answer is not understood: {e}"))
    }
}
