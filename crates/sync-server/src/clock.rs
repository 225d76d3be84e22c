//! The server clock. The domain takes the time as a parameter; handlers
//! and commands read it here, once per request.

/// The server clock, read once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTime {
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
    /// The same instant, RFC 3339 in UTC with milliseconds.
    pub text: String,
}

impl ServerTime {
    pub fn now() -> ServerTime {
        let now = chrono::Utc::now();
        ServerTime {
            ms: now.timestamp_millis(),
            text: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}
