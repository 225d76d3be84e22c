//! Manifests: what a device says it holds, kept with its last sync and
//! compared with what the server holds from it, so the center can see
//! whether the device is in step.

use serde::Serialize;
use sync_core::protocol::{Manifest, ManifestReply, ManifestReport, OwnDigest};

use super::{SyncError, check_version};
use crate::clock::ServerTime;
use crate::storage::{Device, DeviceManifest, OwnRecord, Storage, StorageError, SyncRecord};

/// A manifest as the server keeps it. One without the own-incident digest
/// keeps the one `before` holds; the flag says there was none to keep.
pub(super) fn record_of(m: &Manifest, before: Option<&DeviceManifest>) -> (DeviceManifest, bool) {
    let own = match (m.own, before) {
        (Some(own), _) => Some(OwnRecord {
            count: own.count,
            digest: hex(&own.digest.0),
        }),
        (None, Some(b)) if !b.own.digest.is_empty() => Some(b.own.clone()),
        (None, _) => None,
    };
    let missing = own.is_none();
    let record = DeviceManifest {
        pending_docs: m.pending_docs,
        pending_photos: m.pending_photos,
        refused_docs: m.refused_docs,
        own: own.unwrap_or_default(),
    };
    (record, missing)
}

/// The device clock minus the server's: as the device measured it around a
/// round trip (NTP-style), else, before it has measured one, its clock when
/// it built the request against the server's when it arrived (which counts
/// the upload's time as offset); `None` when the device said neither.
pub(super) fn clock_offset(m: &Manifest, device_time_ms: Option<i64>, server_ms: i64) -> Option<i64> {
    m.clock_offset_ms
        .or_else(|| device_time_ms.map(|t| t.saturating_sub(server_ms)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A device's latest manifest against what the server holds from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestStatus {
    /// When the manifest arrived (server clock).
    pub last_sync_at: String,
    /// The server holds every incident the device created, and the device
    /// had no records or photos waiting.
    pub in_step: bool,
    /// Incidents with changes the device had not yet pushed.
    pub pending_docs: u64,
    /// Photo files the device had not yet uploaded.
    pub pending_photos: u64,
    /// Incidents the server refused, which the device holds with the reason.
    pub refused_docs: u64,
    /// Incidents the device had created.
    pub device_own: u64,
    /// Of those, the ones the server holds.
    pub server_own: u64,
}

/// `None` when the device has never sent a manifest.
pub fn manifest_status(storage: &dyn Storage, device: &Device) -> Result<Option<ManifestStatus>, StorageError> {
    let (Some(manifest), Some(at)) = (&device.manifest, &device.last_sync_at) else {
        return Ok(None);
    };
    Ok(Some(compare(manifest, server_own(storage, &device.id)?, at)))
}

fn server_own(storage: &dyn Storage, device: &str) -> Result<OwnDigest, StorageError> {
    let ids = storage.own_incident_ids(device)?;
    Ok(OwnDigest::of(ids.iter().map(String::as_str)))
}

fn compare(manifest: &DeviceManifest, server: OwnDigest, at: &str) -> ManifestStatus {
    let same = manifest.own.count == server.count && manifest.own.digest == hex(&server.digest.0);
    ManifestStatus {
        last_sync_at: at.to_owned(),
        in_step: same && manifest.pending_docs == 0 && manifest.pending_photos == 0 && manifest.refused_docs == 0,
        pending_docs: manifest.pending_docs,
        pending_photos: manifest.pending_photos,
        refused_docs: manifest.refused_docs,
        device_own: manifest.own.count,
        server_own: server.count,
    }
}

/// Records a manifest sent on its own, and answers whether the server agrees.
pub fn report_manifest(
    storage: &dyn Storage,
    device: &Device,
    report: &ManifestReport,
    now: &ServerTime,
) -> Result<ManifestReply, SyncError> {
    check_version(report.version)?;
    let (manifest, _) = record_of(&report.manifest, device.manifest.as_ref());
    storage.record_sync(&SyncRecord {
        device: &device.id,
        manifest: &manifest,
        clock_offset_ms: clock_offset(&report.manifest, Some(report.device_time_ms), now.ms),
        scope: None,
        at: &now.text,
    })?;
    let status = compare(&manifest, server_own(storage, &device.id)?, &now.text);
    Ok(ManifestReply {
        in_step: status.in_step,
        server_own: status.server_own,
        server_time_ms: now.ms,
    })
}
