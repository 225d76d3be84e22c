//! The operator's commands, run on the data dir while the server may be
//! running (SQLite allows a second connection; each command is one
//! transaction).

use anyhow::{Result, bail};
use sync_core::GridMap;

use crate::storage::{Device, Role, Storage, Worker};
use crate::sync::{ManifestStatus, manifest_status};
use crate::{clock, normalise_code, random_code, secret_hash};

/// Adds a worker. Workers need grid cells; centers need a community.
pub fn add_worker(
    storage: &dyn Storage,
    grids: &GridMap,
    id: &str,
    name: &str,
    role: Role,
    cells: &[String],
    community: Option<&str>,
) -> Result<Worker> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(valid) {
        bail!("`{id}` is not a worker id; use 1 to 64 letters, digits, `.`, `_` or `-`");
    }
    for cell in cells {
        grids.require_cell(cell)?;
    }
    if let Some(c) = community
        && grids.community(c).is_none()
    {
        let known: Vec<_> = grids
            .districts
            .iter()
            .flat_map(|d| &d.streets)
            .flat_map(|s| &s.communities)
            .map(|c| c.id.as_str())
            .collect();
        bail!("unknown community `{c}`; known communities are: {}", known.join(", "));
    }
    match role {
        Role::Worker if cells.is_empty() => bail!("a worker needs at least one --grid cell"),
        Role::Center if community.is_none() => bail!("a center account needs --community"),
        _ => {}
    }
    let worker = Worker {
        id: id.to_owned(),
        name: name.to_owned(),
        role,
        community: community.map(str::to_owned),
        grids: cells.to_vec(),
    };
    storage.add_worker(&worker, &clock().1)?;
    Ok(worker)
}

/// Makes a one-time enrolment code for a worker's device, valid for `ttl_hours`.
pub fn enrol_code(storage: &dyn Storage, worker: &str, ttl_hours: u32) -> Result<(String, String)> {
    if ttl_hours == 0 || ttl_hours > 24 * 30 {
        bail!("--ttl-hours must be between 1 and 720");
    }
    let code = random_code();
    let (now_ms, now) = clock();
    let expires_ms = now_ms + i64::from(ttl_hours) * 3_600_000;
    storage.add_enrol_code(&secret_hash(&normalise_code(&code)), worker, expires_ms, &now)?;
    let expires = chrono::DateTime::from_timestamp_millis(expires_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok((code, expires))
}

/// Makes a read-only token for a center or operator account: it reads
/// reports, exports and the dashboard, and can never push or upload.
/// Returns the token's id (for `device revoke`) and the token itself.
pub fn create_token(storage: &dyn Storage, worker: &str) -> Result<(String, String)> {
    let Some(w) = storage.worker(worker)? else {
        bail!("no worker `{worker}`; add it first with `sync-server worker add`");
    };
    if w.role == Role::Worker {
        bail!("`{worker}` is a grid worker; read-only tokens are for center and operator accounts");
    }
    let id = format!("token-{}", uuid::Uuid::new_v4());
    let token = crate::random_token();
    // The actor is never used: the token cannot push.
    storage.add_token(
        &id,
        worker,
        uuid::Uuid::new_v4().as_bytes(),
        &secret_hash(&token),
        &clock().1,
    )?;
    Ok((id, token))
}

/// A device and how its last manifest compares with what the server holds.
#[derive(Debug, serde::Serialize)]
pub struct DeviceRow {
    #[serde(flatten)]
    pub device: Device,
    pub sync: Option<ManifestStatus>,
}

pub fn devices(storage: &dyn Storage) -> Result<Vec<DeviceRow>> {
    storage
        .devices()?
        .into_iter()
        .map(|device| {
            let sync = manifest_status(storage, &device)?;
            Ok(DeviceRow { device, sync })
        })
        .collect()
}

pub fn revoke(storage: &dyn Storage, device: &str) -> Result<()> {
    Ok(storage.revoke_device(device, &clock().1)?)
}
