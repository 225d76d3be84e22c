//! Workers, devices, enrolment codes and tokens on PostgreSQL.

use postgres::GenericClient;

use super::{PgStorage, damaged};
use crate::storage::{
    Accounts, Device, EnrolOutcome, Enrolment, NewCode, NewToken, Role, StorageError, SyncRecord, WaitingCode, Worker,
};

/// A lock key only enrolment takes: device numbers are handed out one
/// enrolment at a time, whichever node it reaches.
const ENROL_LOCK: i64 = 0x656e_726f_6c6d_656e;

fn load_worker(c: &mut impl GenericClient, id: &str) -> Result<Option<Worker>, StorageError> {
    let Some(r) = c.query_opt(
        "SELECT name, role, community, retired_at, department FROM workers WHERE id = $1",
        &[&id],
    )?
    else {
        return Ok(None);
    };
    let role: String = r.try_get(1)?;
    let grids = c
        .query(
            "SELECT grid FROM worker_grids WHERE worker_id = $1 ORDER BY grid",
            &[&id],
        )?
        .iter()
        .map(|g| g.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(Some(Worker {
        id: id.to_owned(),
        name: r.try_get(0)?,
        role: Role::parse(&role).ok_or_else(|| damaged("worker role", role))?,
        community: r.try_get(2)?,
        grids,
        department: r.try_get(4)?,
        retired_at: r.try_get(3)?,
    }))
}

fn put_grids(c: &mut impl GenericClient, worker: &str, grids: &[String]) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO worker_grids (worker_id, grid) SELECT $1, g FROM unnest($2::text[]) AS g ON CONFLICT DO NOTHING",
        &[&worker, &grids],
    )?;
    Ok(())
}

const DEVICE_COLUMNS: &str = "id, worker_id, actor, enrolled_at, revoked_at, last_sync_at, manifest, \
     clock_offset_ms, kind, public_key, scope_seen, label, number FROM devices";

fn device_from_row(c: &mut impl GenericClient, r: &postgres::Row) -> Result<Device, StorageError> {
    let worker_id: String = r.try_get(1)?;
    let worker = load_worker(c, &worker_id)?.ok_or(StorageError::NoWorker(worker_id))?;
    let manifest: Option<String> = r.try_get(6)?;
    let number: Option<i64> = r.try_get(12)?;
    Ok(Device {
        id: r.try_get(0)?,
        worker,
        actor: r.try_get(2)?,
        enrolled_at: r.try_get(3)?,
        revoked_at: r.try_get(4)?,
        last_sync_at: r.try_get(5)?,
        manifest: manifest.and_then(|m| serde_json::from_str(&m).ok()),
        clock_offset_ms: r.try_get(7)?,
        read_only: r.try_get::<_, String>(8)? == "token",
        public_key: r.try_get(9)?,
        scope_seen: r.try_get(10)?,
        label: r.try_get(11)?,
        number: number.and_then(|n| u32::try_from(n).ok()),
    })
}

/// The first device whose row matches `filter` (SQL after `WHERE`).
fn device_where(
    c: &mut impl GenericClient,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Option<Device>, StorageError> {
    match c.query_opt(&format!("SELECT {DEVICE_COLUMNS} WHERE {filter}"), params)? {
        Some(r) => Ok(Some(device_from_row(c, &r)?)),
        None => Ok(None),
    }
}

/// Refuses a code or token for a worker who does not exist or is retired.
fn check_active(c: &mut impl GenericClient, worker: &str) -> Result<(), StorageError> {
    match load_worker(c, worker)? {
        None => Err(StorageError::NoWorker(worker.to_owned())),
        Some(w) if w.retired_at.is_some() => Err(StorageError::Retired(w.id)),
        Some(_) => Ok(()),
    }
}

impl Accounts for PgStorage {
    fn add_worker(&self, w: &Worker, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "INSERT INTO workers (id, name, role, community, created_at, department)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            &[&w.id, &w.name, &w.role.as_str(), &w.community, &now, &w.department],
        )?;
        if n == 0 {
            return Err(StorageError::WorkerExists(w.id.clone()));
        }
        put_grids(&mut tx, &w.id, &w.grids)?;
        tx.commit()?;
        Ok(())
    }

    fn worker(&self, id: &str) -> Result<Option<Worker>, StorageError> {
        load_worker(&mut *self.client()?, id)
    }

    fn workers(&self) -> Result<Vec<Worker>, StorageError> {
        let mut c = self.client()?;
        let ids: Vec<String> = c
            .query("SELECT id FROM workers ORDER BY id", &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(load_worker(&mut *c, &id)?);
        }
        Ok(out)
    }

    fn update_worker(&self, w: &Worker) -> Result<(), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE workers SET name = $2, role = $3, community = $4, department = $5 WHERE id = $1",
            &[&w.id, &w.name, &w.role.as_str(), &w.community, &w.department],
        )?;
        if n == 0 {
            return Err(StorageError::NoWorker(w.id.clone()));
        }
        tx.execute("DELETE FROM worker_grids WHERE worker_id = $1", &[&w.id])?;
        put_grids(&mut tx, &w.id, &w.grids)?;
        tx.commit()?;
        Ok(())
    }

    fn retire_worker(&self, id: &str, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE workers SET retired_at = coalesce(retired_at, $2) WHERE id = $1",
            &[&id, &now],
        )?;
        if n == 0 {
            return Err(StorageError::NoWorker(id.to_owned()));
        }
        tx.execute(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE worker_id = $1",
            &[&id, &now],
        )?;
        tx.execute(
            "UPDATE sessions SET ended_at = $2 WHERE ended_at IS NULL
             AND device_id IN (SELECT id FROM devices WHERE worker_id = $1)",
            &[&id, &now],
        )?;
        tx.execute(
            "UPDATE enrol_codes SET used_at = $2 WHERE worker_id = $1 AND used_at IS NULL",
            &[&id, &now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn add_enrol_code(&self, code: &NewCode<'_>, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        check_active(&mut *c, code.worker)?;
        c.execute(
            "INSERT INTO enrol_codes (code_hash, worker_id, device_id, expires_ms, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&code.code_hash, &code.worker, &code.device, &code.expires_ms, &now],
        )?;
        Ok(())
    }

    fn token_key(&self, token: &str) -> Result<Option<String>, StorageError> {
        let row = self.client()?.query_opt(
            "SELECT server_seed FROM devices WHERE id = $1 AND kind = 'token'",
            &[&token],
        )?;
        Ok(row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?.flatten())
    }

    fn set_token_key(&self, token: &str, seed_hex: &str, public: &[u8]) -> Result<(), StorageError> {
        let n = self.client()?.execute(
            "UPDATE devices SET server_seed = $2, public_key = $3
             WHERE id = $1 AND kind = 'token' AND server_seed IS NULL AND public_key IS NULL",
            &[&token, &seed_hex, &public],
        )?;
        match n {
            0 => Err(StorageError::NoDevice(token.to_owned())),
            _ => Ok(()),
        }
    }

    fn waiting_codes(&self, now_ms: i64) -> Result<Vec<WaitingCode>, StorageError> {
        let rows = self.client()?.query(
            "SELECT worker_id, device_id, created_at, expires_ms FROM enrol_codes
             WHERE used_at IS NULL AND expires_ms > $1 ORDER BY created_at, worker_id",
            &[&now_ms],
        )?;
        rows.iter()
            .map(|r| {
                Ok(WaitingCode {
                    worker: r.try_get(0)?,
                    device: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    expires_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    fn enroll(&self, e: &Enrolment<'_>, now_ms: i64, now: &str) -> Result<EnrolOutcome, StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ENROL_LOCK])?;
        let code = tx.query_opt(
            "SELECT device_id FROM enrol_codes
             WHERE code_hash = $1 AND worker_id = $2 AND used_at IS NULL AND expires_ms > $3",
            &[&e.code_hash, &e.worker, &now_ms],
        )?;
        let Some(code) = code else {
            return Ok(EnrolOutcome::BadCode);
        };
        let code_device: Option<String> = code.try_get(0)?;
        let existing = tx
            .query_opt("SELECT worker_id, revoked_at FROM devices WHERE id = $1", &[&e.device])?
            .map(|r| Ok::<_, postgres::Error>((r.try_get::<_, String>(0)?, r.try_get::<_, Option<String>>(1)?)))
            .transpose()?;
        if let Some(outcome) = crate::storage::enrol_refusal(existing.as_ref(), code_device.as_deref(), e) {
            return Ok(outcome);
        }
        tx.execute(
            "UPDATE enrol_codes SET used_at = $2 WHERE code_hash = $1",
            &[&e.code_hash, &now],
        )?;
        tx.execute(
            "INSERT INTO devices (id, worker_id, actor, token_hash, enrolled_at, public_key, label, number)
             VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT coalesce(max(number), 0) + 1 FROM devices))
             ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, enrolled_at = excluded.enrolled_at,
                 public_key = coalesce(excluded.public_key, devices.public_key),
                 label = coalesce(excluded.label, devices.label)",
            &[
                &e.device,
                &e.worker,
                &e.actor,
                &e.token_hash,
                &now,
                &e.public_key,
                &e.label,
            ],
        )?;
        let w = load_worker(&mut tx, e.worker)?.ok_or_else(|| StorageError::NoWorker(e.worker.to_owned()))?;
        tx.commit()?;
        Ok(EnrolOutcome::Enrolled(w))
    }

    fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StorageError> {
        device_where(&mut *self.client()?, "token_hash = $1", &[&token_hash])
    }

    fn device_by_actor(&self, actor: &[u8]) -> Result<Option<Device>, StorageError> {
        // A reader token is an author too once the center acts from its
        // dashboard (it then has a key).
        device_where(
            &mut *self.client()?,
            "actor = $1 AND (kind = 'device' OR public_key IS NOT NULL)",
            &[&actor],
        )
    }

    fn device(&self, id: &str) -> Result<Option<Device>, StorageError> {
        device_where(&mut *self.client()?, "id = $1", &[&id])
    }

    fn add_token(&self, t: &NewToken<'_>, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        check_active(&mut *c, t.worker)?;
        c.execute(
            "INSERT INTO devices (id, worker_id, actor, token_hash, enrolled_at, kind) VALUES ($1, $2, $3, $4, $5, 'token')",
            &[&t.id, &t.worker, &t.actor, &t.token_hash, &now],
        )?;
        Ok(())
    }

    fn devices(&self) -> Result<Vec<Device>, StorageError> {
        let mut c = self.client()?;
        let rows = c.query(&format!("SELECT {DEVICE_COLUMNS} ORDER BY worker_id, enrolled_at"), &[])?;
        rows.iter().map(|r| device_from_row(&mut *c, r)).collect()
    }

    fn revoke_device(&self, id: &str, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
            &[&id, &now],
        )?;
        if n == 0 {
            return Err(StorageError::NoDevice(id.to_owned()));
        }
        tx.execute(
            "UPDATE sessions SET ended_at = $2 WHERE device_id = $1 AND ended_at IS NULL",
            &[&id, &now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_sync(&self, r: &SyncRecord<'_>) -> Result<(), StorageError> {
        let manifest = serde_json::to_string(r.manifest).expect("a manifest serialises");
        self.client()?.execute(
            "UPDATE devices SET last_sync_at = $2, manifest = $3,
             clock_offset_ms = coalesce($4, clock_offset_ms), scope_seen = coalesce($5, scope_seen) WHERE id = $1",
            &[&r.device, &r.at, &manifest, &r.clock_offset_ms, &r.scope],
        )?;
        Ok(())
    }
}
