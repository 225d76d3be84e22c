//! Workers, devices and tokens: who may sync, and what each may see. The
//! operator's commands call these on the data dir while the server may be
//! running (SQLite allows a second connection; each step is one
//! transaction); `POST /v1/enroll` calls [`enroll_device`].

use sync_core::GridMap;
use sync_core::account::{BadWorkerId, check_label, check_worker_id};
use sync_core::protocol::EnrollRequest;
use sync_core::taxonomy::TaxonomyError;

use crate::clock::ServerTime;
use crate::secrets::{normalise_code, random_code, random_token, secret_hash};
use crate::storage::{Device, EnrolOutcome, Enrolment, NewCode, NewToken, Role, Scope, Storage, StorageError, Worker};
use crate::sync::{ManifestStatus, manifest_status};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    BadId(#[from] BadWorkerId),
    #[error(transparent)]
    Grids(#[from] TaxonomyError),
    #[error("a worker needs at least one --grid cell")]
    NeedsCell,
    #[error("a {0} account needs --community")]
    NeedsCommunity(&'static str),
    #[error("a department account needs --department (城管, 市政 … or its code)")]
    NeedsDepartment,
    #[error("only a department account names a department; leave out --department")]
    DepartmentForOther,
    #[error(
        "`{0}` is a department account; it signs in to the dashboard with a token (`sync-server token create`), not with a field device"
    )]
    DepartmentDevice(String),
    #[error("the name is empty; give the person's name with --name")]
    EmptyName,
    #[error("a grid worker's community follows from its cells; leave out --community")]
    WorkerCommunity,
    #[error("{0} account sees what its role allows, not cells; leave out --grid")]
    CellsForReader(&'static str),
    #[error("an operator account sees every community; leave out --community")]
    OperatorCommunity,
    #[error("`{prefix}` starts the ids of several devices ({}); give more of it", .matches.join(", "))]
    AmbiguousDevice { prefix: String, matches: Vec<String> },
    #[error("--ttl-hours must be between 1 and 720")]
    BadTtl,
    #[error("no worker `{0}`; add it first with `sync-server worker add`")]
    NoWorker(String),
    #[error("`{0}` is a grid worker; read-only tokens are for center, department and operator accounts")]
    NotAReader(String),
    #[error("the device id is not a UUID")]
    BadDeviceId,
    #[error("the device's public key must be 32 bytes (an ed25519 key)")]
    BadPublicKey,
    #[error("a device label is 1 to 64 characters of text, without control characters")]
    BadLabel,
    #[error("the enrolment code is unknown, used, expired, or for another worker")]
    BadCode,
    #[error(
        "device {0} is enrolled already; to enrol it again, the operator makes a code for it with `sync-server device enroll --worker ID --device {0}`"
    )]
    AlreadyEnrolled(String),
    #[error("device {0} was revoked and stays revoked; set the phone up as a new device (a new data dir)")]
    Revoked(String),
    #[error("no device `{0}` of this worker; `sync-server device list` shows the enrolled ones")]
    NoDevice(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AccountError {
    /// A mistake in what the caller asked for, not a failure of the store.
    pub fn is_caller_mistake(&self) -> bool {
        match self {
            AccountError::Storage(e) => e.is_caller_mistake(),
            _ => true,
        }
    }
}

/// A worker or account as the operator describes it.
#[derive(Debug, Clone, Copy)]
pub struct NewWorker<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: Role,
    /// The cells a grid worker patrols.
    pub cells: &'a [String],
    /// The community a center or department account sees.
    pub community: Option<&'a str>,
    /// The department a department account speaks for, as the operator
    /// typed it (code, Chinese or English name).
    pub department: Option<&'a str>,
}

/// Adds a worker. Workers need grid cells; centers need a community;
/// departments a community and a department.
pub fn add_worker(storage: &dyn Storage, grids: &GridMap, new: &NewWorker<'_>) -> Result<Worker, AccountError> {
    check_worker_id(new.id)?;
    let worker = Worker {
        id: new.id.to_owned(),
        name: new.name.trim().to_owned(),
        role: new.role,
        community: new.community.map(str::to_owned),
        grids: dedup(new.cells),
        department: new.department.map(department_code).transpose()?,
        retired_at: None,
    };
    check_account(&worker, grids)?;
    storage.add_worker(&worker, &ServerTime::now().text)?;
    Ok(worker)
}

/// What `sync-server worker update` changes; `None` keeps the old value.
#[derive(Debug, Clone, Default)]
pub struct WorkerUpdate {
    pub name: Option<String>,
    pub role: Option<Role>,
    /// The whole new list of cells.
    pub cells: Option<Vec<String>>,
    pub community: Option<String>,
    /// As the operator typed it.
    pub department: Option<String>,
}

/// Changes a worker's name, role, cells or community. A new role drops
/// what it has no use for (a center's community when it becomes a grid
/// worker, a worker's cells when it becomes a center) and must be given
/// what it needs; the result is checked as `worker add` checks a new one.
/// Devices see the change at their next sync.
pub fn update_worker(
    storage: &dyn Storage,
    grids: &GridMap,
    id: &str,
    change: &WorkerUpdate,
) -> Result<(Worker, Worker), AccountError> {
    let before = storage
        .worker(id)?
        .ok_or_else(|| AccountError::NoWorker(id.to_owned()))?;
    if before.retired_at.is_some() {
        return Err(StorageError::Retired(id.to_owned()).into());
    }
    let mut after = before.clone();
    if let Some(role) = change.role.filter(|r| *r != before.role) {
        after.role = role;
        after.community = None;
        after.grids.clear();
        after.department = None;
    }
    if let Some(name) = &change.name {
        after.name = name.trim().to_owned();
    }
    if let Some(cells) = &change.cells {
        after.grids = dedup(cells);
    }
    if let Some(community) = &change.community {
        after.community = Some(community.clone());
    }
    if let Some(department) = &change.department {
        after.department = Some(department_code(department)?);
    }
    check_account(&after, grids)?;
    storage.update_worker(&after)?;
    Ok((before, after))
}

/// Retires a worker: its devices and tokens stop working at once, its
/// unused codes are void, and its name stays on what it reported.
pub fn retire_worker(storage: &dyn Storage, id: &str) -> Result<Worker, AccountError> {
    let worker = storage
        .worker(id)?
        .ok_or_else(|| AccountError::NoWorker(id.to_owned()))?;
    storage.retire_worker(id, &ServerTime::now().text)?;
    Ok(worker)
}

/// What each role needs and may not have.
fn check_account(w: &Worker, grids: &GridMap) -> Result<(), AccountError> {
    if w.name.is_empty() {
        return Err(AccountError::EmptyName);
    }
    for cell in &w.grids {
        grids.require_cell(cell)?;
    }
    if let Some(c) = &w.community {
        grids.require_community(c)?;
    }
    match w.role {
        Role::Worker if w.grids.is_empty() => Err(AccountError::NeedsCell),
        Role::Worker if w.community.is_some() => Err(AccountError::WorkerCommunity),
        Role::Center if w.community.is_none() => Err(AccountError::NeedsCommunity("center")),
        Role::Center if !w.grids.is_empty() => Err(AccountError::CellsForReader("a center")),
        Role::Department if w.community.is_none() => Err(AccountError::NeedsCommunity("department")),
        Role::Department if !w.grids.is_empty() => Err(AccountError::CellsForReader("a department")),
        Role::Department if w.department.is_none() => Err(AccountError::NeedsDepartment),
        r if r != Role::Department && w.department.is_some() => Err(AccountError::DepartmentForOther),
        Role::Operator if !w.grids.is_empty() => Err(AccountError::CellsForReader("an operator")),
        Role::Operator if w.community.is_some() => Err(AccountError::OperatorCommunity),
        _ => Ok(()),
    }
}

/// A department as the operator types it, as its taxonomy code.
fn department_code(typed: &str) -> Result<String, AccountError> {
    Ok(sync_core::Taxonomy::builtin().resolve_department(typed)?.code.clone())
}

/// The cells in the order given, each once.
fn dedup(cells: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    cells.iter().filter(|c| seen.insert(c.as_str())).cloned().collect()
}

/// A one-time enrolment code and when it expires (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolCode {
    pub code: String,
    pub expires_at: String,
}

/// Makes a one-time enrolment code for a worker's device, valid for
/// `ttl_hours`. With `device`, the code enrols that already enrolled device
/// again (a reinstalled app that kept its data dir) and nothing else; a
/// revoked device cannot be enrolled again.
pub fn enrol_code(
    storage: &dyn Storage,
    worker: &str,
    ttl_hours: u32,
    device: Option<&str>,
) -> Result<EnrolCode, AccountError> {
    if ttl_hours == 0 || ttl_hours > 24 * 30 {
        return Err(AccountError::BadTtl);
    }
    if storage.worker(worker)?.is_some_and(|w| w.role == Role::Department) {
        return Err(AccountError::DepartmentDevice(worker.to_owned()));
    }
    let device = device.map(|d| reenrolable(storage, worker, d)).transpose()?;
    let code = random_code();
    let now = ServerTime::now();
    let expires_ms = now.ms + i64::from(ttl_hours) * 3_600_000;
    let new = NewCode {
        code_hash: &secret_hash(&normalise_code(&code)),
        worker,
        device: device.as_deref(),
        expires_ms,
    };
    storage.add_enrol_code(&new, &now.text).map_err(|e| match e {
        StorageError::NoWorker(w) => AccountError::NoWorker(w),
        e => e.into(),
    })?;
    let expires_at = chrono::DateTime::from_timestamp_millis(expires_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(EnrolCode { code, expires_at })
}

/// The id of an enrolled, unrevoked device of `worker`, in its one spelling.
fn reenrolable(storage: &dyn Storage, worker: &str, device: &str) -> Result<String, AccountError> {
    let id = uuid::Uuid::try_parse(device.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| AccountError::NoDevice(device.chars().take(80).collect()))?;
    match storage.device(&id)? {
        Some(d) if d.worker.id == worker && !d.read_only => match d.revoked_at {
            Some(_) => Err(AccountError::Revoked(id)),
            None => Ok(id),
        },
        _ => Err(AccountError::NoDevice(id)),
    }
}

/// A read-only token and the id it is revoked by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderToken {
    pub id: String,
    pub token: String,
}

/// Makes a read-only token for a center, department or operator account:
/// it reads reports, exports and the dashboard (a department only its own
/// cases there), and can never push or upload.
pub fn create_token(storage: &dyn Storage, worker: &str) -> Result<ReaderToken, AccountError> {
    let Some(w) = storage.worker(worker)? else {
        return Err(AccountError::NoWorker(worker.to_owned()));
    };
    if w.role == Role::Worker {
        return Err(AccountError::NotAReader(worker.to_owned()));
    }
    let id = format!("token-{}", uuid::Uuid::new_v4());
    let token = random_token();
    let token_hash = secret_hash(&token);
    let actor = uuid::Uuid::new_v4();
    let new = NewToken {
        id: &id,
        worker,
        actor: actor.as_bytes(),
        token_hash: &token_hash,
    };
    storage.add_token(&new, &ServerTime::now().text)?;
    Ok(ReaderToken { id, token })
}

/// A device that has just exchanged its code for a token.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub device_id: String,
    pub token: String,
    pub worker: Worker,
}

/// Exchanges a one-time code for a device token. The device id is a UUID
/// whose 16 bytes become the device's Automerge actor id.
pub fn enroll_device(storage: &dyn Storage, req: &EnrollRequest) -> Result<Enrolled, AccountError> {
    let device = uuid::Uuid::try_parse(&req.device).map_err(|_| AccountError::BadDeviceId)?;
    let public_key = req.public_key.as_deref().map(|k| k.as_slice());
    if public_key.is_some_and(|k| k.len() != 32) {
        return Err(AccountError::BadPublicKey);
    }
    let label = req
        .label
        .as_deref()
        .map(check_label)
        .transpose()
        .map_err(|_| AccountError::BadLabel)?;
    let (code, worker) = (&req.code, req.worker.as_str());
    // One spelling per device, whatever the client sent.
    let device_id = device.hyphenated().to_string();
    let token = random_token();
    let now = ServerTime::now();
    let enrolment = Enrolment {
        code_hash: &secret_hash(&normalise_code(code)),
        worker,
        device: &device_id,
        actor: device.as_bytes(),
        token_hash: &secret_hash(&token),
        public_key,
        label,
    };
    let worker = match storage.enroll(&enrolment, now.ms, &now.text)? {
        EnrolOutcome::Enrolled(w) => w,
        EnrolOutcome::BadCode => return Err(AccountError::BadCode),
        EnrolOutcome::AlreadyEnrolled => return Err(AccountError::AlreadyEnrolled(device_id)),
        EnrolOutcome::Revoked => return Err(AccountError::Revoked(device_id)),
    };
    Ok(Enrolled {
        device_id,
        token,
        worker,
    })
}

/// A device and how its last manifest compares with what the server holds.
#[derive(Debug, serde::Serialize)]
pub struct DeviceRow {
    #[serde(flatten)]
    pub device: Device,
    pub sync: Option<ManifestStatus>,
}

pub fn devices(storage: &dyn Storage) -> Result<Vec<DeviceRow>, AccountError> {
    storage
        .devices()?
        .into_iter()
        .map(|device| {
            let sync = manifest_status(storage, &device)?;
            Ok(DeviceRow { device, sync })
        })
        .collect()
}

/// Revokes a device or token named by its id or a unique start of it;
/// the full id of what was revoked.
pub fn revoke(storage: &dyn Storage, device: &str) -> Result<Device, AccountError> {
    let found = find_device(storage, device)?;
    storage.revoke_device(&found.id, &ServerTime::now().text)?;
    Ok(found)
}

/// The device or token whose id is `given` or starts with it (any case).
pub fn find_device(storage: &dyn Storage, given: &str) -> Result<Device, AccountError> {
    let given = given.trim().to_ascii_lowercase();
    if let Some(d) = storage.device(&given)? {
        return Ok(d);
    }
    let mut matches: Vec<Device> = if given.is_empty() {
        Vec::new()
    } else {
        storage
            .devices()?
            .into_iter()
            .filter(|d| d.id.starts_with(&given))
            .collect()
    };
    match matches.len() {
        0 => Err(AccountError::NoDevice(given.chars().take(80).collect())),
        1 => Ok(matches.remove(0)),
        _ => Err(AccountError::AmbiguousDevice {
            prefix: given,
            matches: matches.into_iter().map(|d| d.id).collect(),
        }),
    }
}

/// The cells an account works in, as its devices are told: a worker's
/// own, a center's whole community, none for an operator (it sees all).
pub fn cells_of(worker: &Worker, grids: &GridMap) -> Vec<String> {
    match worker.role {
        Role::Worker => worker.grids.clone(),
        Role::Center | Role::Department => grids.community_cells(worker.community.as_deref().unwrap_or_default()),
        Role::Operator => Vec::new(),
    }
}

/// Where a device or token may read and write.
pub fn scope_of(device: &Device, grids: &GridMap) -> Scope {
    match device.worker.role {
        Role::Operator => Scope::All,
        Role::Worker => Scope::Grids(device.worker.grids.clone()),
        // A department reads only the cases dispatched to it (`department`),
        // all of them in its community's cells.
        Role::Center | Role::Department => {
            let community = device.worker.community.as_deref().unwrap_or_default();
            Scope::Grids(grids.community_cells(community))
        }
    }
}
