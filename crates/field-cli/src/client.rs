//! The HTTP side of talking to the sync server: CBOR in and out, retries
//! with backoff on network trouble, and server errors as typed values.

use std::time::Duration;

use anyhow::{Result, anyhow};
use sync_core::protocol::{self, ErrorBody};

/// How a request failed.
#[derive(Debug)]
pub enum CallError {
    /// The network or the server is unavailable: worth retrying later.
    Unreachable(String),
    /// The server answered with an error about this request.
    Refused { status: u16, body: ErrorBody },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) => write!(f, "the server could not be reached: {m}"),
            CallError::Refused { status, body } => {
                write!(f, "the server refused ({status} {}): {}", body.code, body.message)
            }
        }
    }
}

impl std::error::Error for CallError {}

pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
    retries: u32,
    /// Bytes sent and received in request and response bodies.
    pub sent: u64,
    pub received: u64,
}

impl Client {
    pub fn new(base: &str, token: Option<String>, retries: u32) -> Result<Client> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| anyhow!("cannot set up HTTP: {e}"))?;
        Ok(Client {
            http,
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

    fn once(&mut self, method: reqwest::Method, path: &str, body: &[u8]) -> Result<Vec<u8>, CallError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/cbor").body(body.to_vec());
        }
        let resp = req.send().map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| CallError::Unreachable(e.to_string()))?;
        self.sent += body.len() as u64;
        self.received += bytes.len() as u64;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        if status.is_server_error() || status.as_u16() == 429 {
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
