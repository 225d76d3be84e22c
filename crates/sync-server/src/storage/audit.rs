//! The audit log's records: who did what to the record or tried to, from
//! where and when. The log is append-only: the SQLite table refuses
//! updates and deletes (triggers), so a mistake or an attacker with the
//! server's own code cannot rewrite it.

use serde::Serialize;

/// What happened. Stored by [`AuditKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A device enrolled with a code.
    Enrol,
    /// A known device enrolled again with a code made for it.
    ReEnrol,
    /// An enrolment code that did not work.
    EnrolFailed,
    /// The operator revoked a device or token.
    Revoke,
    /// The operator made a read-only token.
    TokenCreate,
    SignIn,
    SignInFailed,
    SignOut,
    /// A bearer token (or `api_key`, or dashboard session) that is not valid.
    AuthFailed,
    /// An export of incidents (HTTP or `sync-server export`).
    Export,
    /// A daily reconciliation read (HTTP, dashboard or `sync-server reconcile`).
    ReportRead,
    /// An incident page of the dashboard.
    DashboardRead,
    /// A photo read by a reader account, the dashboard or Open311.
    PhotoRead,
    /// An Open311 request list or request.
    Open311Read,
    /// A pushed incident the rules refused, with the rule.
    PushRefused,
    /// The operator accepted a quarantined item into the record.
    QuarantineAccept,
    /// The operator dropped a quarantined item.
    QuarantineDrop,
    /// A client over a brute-force limit.
    RateLimited,
    /// The operator added, changed or retired a worker or account.
    WorkerAdd,
    WorkerUpdate,
    WorkerRetire,
    /// The center dispatched, moved, noted or marked a case from the dashboard.
    CenterAction,
}

impl AuditKind {
    pub const ALL: [AuditKind; 22] = [
        AuditKind::Enrol,
        AuditKind::ReEnrol,
        AuditKind::EnrolFailed,
        AuditKind::Revoke,
        AuditKind::TokenCreate,
        AuditKind::SignIn,
        AuditKind::SignInFailed,
        AuditKind::SignOut,
        AuditKind::AuthFailed,
        AuditKind::Export,
        AuditKind::ReportRead,
        AuditKind::DashboardRead,
        AuditKind::PhotoRead,
        AuditKind::Open311Read,
        AuditKind::PushRefused,
        AuditKind::QuarantineAccept,
        AuditKind::QuarantineDrop,
        AuditKind::RateLimited,
        AuditKind::WorkerAdd,
        AuditKind::WorkerUpdate,
        AuditKind::WorkerRetire,
        AuditKind::CenterAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Enrol => "enrol",
            AuditKind::ReEnrol => "re-enrol",
            AuditKind::EnrolFailed => "enrol-failed",
            AuditKind::Revoke => "revoke",
            AuditKind::TokenCreate => "token-create",
            AuditKind::SignIn => "sign-in",
            AuditKind::SignInFailed => "sign-in-failed",
            AuditKind::SignOut => "sign-out",
            AuditKind::AuthFailed => "auth-failed",
            AuditKind::Export => "export",
            AuditKind::ReportRead => "report-read",
            AuditKind::DashboardRead => "dashboard-read",
            AuditKind::PhotoRead => "photo-read",
            AuditKind::Open311Read => "open311-read",
            AuditKind::PushRefused => "push-refused",
            AuditKind::QuarantineAccept => "quarantine-accept",
            AuditKind::QuarantineDrop => "quarantine-drop",
            AuditKind::RateLimited => "rate-limited",
            AuditKind::WorkerAdd => "worker-add",
            AuditKind::WorkerUpdate => "worker-update",
            AuditKind::WorkerRetire => "worker-retire",
            AuditKind::CenterAction => "center-action",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The client an event came from: a peer address, or `local` for the
/// operator's own commands on the server machine.
pub const LOCAL: &str = "local";

/// One event to append.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub kind: AuditKind,
    /// The worker or account acting, when known.
    pub account: Option<&'a str>,
    /// The device or token acting, when known.
    pub device: Option<&'a str>,
    /// Where it came from: an IP address, or [`LOCAL`].
    pub client: &'a str,
    /// What was done or tried, in a few words.
    pub detail: &'a str,
}

/// One stored event. `kind` is text so that a kind a later version wrote
/// still lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub account: Option<String>,
    pub device: Option<String>,
    pub client: String,
    pub detail: String,
}

/// The audit log.
pub trait AuditLog {
    /// Appends one event at `at` (RFC 3339, UTC, milliseconds).
    fn audit(&self, event: &AuditEvent<'_>, at: &str) -> Result<(), super::StorageError>;
    /// Events at or after `since` (same format), of `kind` if given,
    /// oldest first, at most `limit`.
    fn audit_rows(
        &self,
        since: Option<&str>,
        kind: Option<AuditKind>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, super::StorageError>;
}
