//! The PostgreSQL schema, as numbered migrations kept in `schema_version`.
//!
//! It holds the same records as the SQLite schema at its version 14, with
//! two differences that come from many writers: the feed's sequence
//! numbers and hash chain come from one sequencer row (`feed_head`) that
//! every committing push updates, and capture and receipt instants are
//! stored as numbers (PostgreSQL cannot index a text-to-time cast, which
//! depends on the session's settings).

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`.
pub(super) const MIGRATIONS: &[&str] = &[r"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('worker', 'center', 'operator', 'department')),
    community TEXT, created_at TEXT NOT NULL, retired_at TEXT,
    department TEXT CHECK ((role = 'department') = (department IS NOT NULL))
);
CREATE TABLE worker_grids (
    worker_id TEXT NOT NULL REFERENCES workers(id), grid TEXT NOT NULL,
    PRIMARY KEY (worker_id, grid)
);
CREATE TABLE enrol_codes (
    code_hash TEXT PRIMARY KEY, worker_id TEXT NOT NULL REFERENCES workers(id),
    device_id TEXT, expires_ms BIGINT NOT NULL, used_at TEXT, created_at TEXT NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, worker_id TEXT NOT NULL REFERENCES workers(id),
    actor BYTEA NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    enrolled_at TEXT NOT NULL, revoked_at TEXT,
    last_sync_at TEXT, manifest TEXT, clock_offset_ms BIGINT,
    kind TEXT NOT NULL DEFAULT 'device' CHECK (kind IN ('device', 'token')),
    public_key BYTEA, scope_seen TEXT, label TEXT, number BIGINT UNIQUE, server_seed TEXT
);
CREATE INDEX devices_actor ON devices(actor);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY, doc BYTEA NOT NULL, heads BYTEA NOT NULL,
    grid TEXT NOT NULL, category TEXT NOT NULL, status TEXT NOT NULL,
    reporter TEXT NOT NULL, device TEXT NOT NULL,
    captured_at TEXT NOT NULL, captured_unix BIGINT NOT NULL,
    lat DOUBLE PRECISION, lon DOUBLE PRECISION,
    first_received_at TEXT NOT NULL, received_unix BIGINT NOT NULL,
    updated_at TEXT NOT NULL, case_no TEXT
);
CREATE INDEX incidents_device ON incidents(device);
CREATE INDEX incidents_case_no ON incidents(case_no);
CREATE INDEX incidents_captured ON incidents(grid, captured_unix, id);
CREATE INDEX incidents_received ON incidents(grid, received_unix);
CREATE INDEX incidents_status ON incidents(grid, status);
CREATE INDEX incidents_captured_any ON incidents(captured_unix, id);
-- The change log, the truth every document is a projection of. seq and
-- chain are handed out under the lock of the one feed_head row, taken by
-- each committing push and held to its commit: pushes commit in seq
-- order, so a reader that sees seq n sees every seq below it.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY, incident_id TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE, bytes BYTEA NOT NULL,
    device_id TEXT NOT NULL, received_at TEXT NOT NULL,
    chain BYTEA NOT NULL, sig BYTEA
);
CREATE INDEX changes_incident ON changes(incident_id);
CREATE TABLE feed_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL, chain BYTEA NOT NULL
);
INSERT INTO feed_head (seq, chain) VALUES (0, ''::bytea);
CREATE TABLE blob_refs (
    hash TEXT NOT NULL, incident_id TEXT NOT NULL, kind TEXT NOT NULL, device_id TEXT,
    PRIMARY KEY (hash, incident_id)
);
CREATE INDEX blob_refs_incident ON blob_refs(incident_id);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, size BIGINT NOT NULL, verified_at TEXT NOT NULL);
CREATE TABLE blob_proofs (
    device_id TEXT NOT NULL, hash TEXT NOT NULL, proven_at TEXT NOT NULL,
    PRIMARY KEY (device_id, hash)
);
CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY, device_id TEXT NOT NULL, incident_id TEXT,
    reason TEXT NOT NULL, bytes BYTEA NOT NULL, received_at TEXT NOT NULL,
    hash BYTEA, sig BYTEA
);
CREATE UNIQUE INDEX quarantine_hash ON quarantine(hash) WHERE hash IS NOT NULL;
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL,
    account TEXT, device TEXT, client TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices(id),
    csrf TEXT NOT NULL, created_at TEXT NOT NULL, expires_ms BIGINT NOT NULL, ended_at TEXT
);
"];

/// The schema version this build writes on PostgreSQL.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
