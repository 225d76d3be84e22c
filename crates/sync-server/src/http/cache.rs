//! What browsers and proxies may keep. Every answer is private: JSON,
//! pages and exports carry `no-store` unless a handler says otherwise.
//! A photo never changes under its hash, but whoever fetched it may lose
//! the right to see it, so it is `private, no-cache` with its hash as
//! `ETag`: a browser keeps the bytes and asks again each time, and the
//! server answers 304 only after checking the asker again.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sync_core::BlobHash;

use crate::photos::Chunks;
use tower_http::set_header::SetResponseHeaderLayer;

/// `Cache-Control: no-store` on every answer that sets no policy itself.
pub(crate) fn no_store_by_default() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

const PHOTO_POLICY: &str = "private, no-cache";

fn etag(hash: &BlobHash) -> String {
    format!("\"{}\"", hash.to_hex())
}

/// Whether the asker already holds these bytes (`If-None-Match`).
fn already_held(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == tag || t.trim() == "*")
}

/// A photo the asker may see: 304 when it holds the bytes already, else
/// the chunks `open` gives (JPEG, or PNG as the magic says), streamed: a
/// blocking task reads them as the connection takes them, two ahead.
/// Called from a blocking thread of the server's runtime.
pub(crate) fn photo(
    headers: &HeaderMap,
    hash: &BlobHash,
    open: impl FnOnce() -> std::io::Result<Chunks>,
) -> std::io::Result<Response> {
    let tag = etag(hash);
    let policy = [
        (header::CACHE_CONTROL, PHOTO_POLICY.to_owned()),
        (header::ETAG, tag.clone()),
    ];
    if already_held(headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, policy, Body::empty()).into_response());
    }
    let mut chunks = open()?;
    let first = chunks.next().transpose()?.unwrap_or_default();
    let mime = if first.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::task::spawn_blocking(move || {
        for chunk in std::iter::once(Ok(first)).chain(chunks) {
            if tx.blocking_send(chunk).is_err() {
                break; // the asker went away
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok((policy, [(header::CONTENT_TYPE, mime)], Body::from_stream(stream)).into_response())
}
