//! What the center does from its dashboard: dispatch, record a
//! department's progress, reject, mark a duplicate, close, add a note. The
//! server makes each change as the signed-in reader token — with the
//! token's own Automerge actor and an ed25519 key the server keeps for it —
//! and admits it through the same rules and the same path as any device's
//! push, so it reaches the workers' devices at their next sync, attributed
//! to the center, signed like every other change.

use automerge::ActorId;
use chrono::{DateTime, FixedOffset};
use serde_bytes::ByteBuf;
use sync_core::incident::{Dispatch, DocError};
use sync_core::protocol::PushDoc;
use sync_core::signing::DeviceKey;
use sync_core::{IncidentDoc, Status};

use super::{Caller, SyncError, ingest};
use crate::storage::{Device, Storage, StorageError};

/// One thing the center does to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Dispatch(Dispatch),
    /// A move the center makes: a department's progress (`in_progress`,
    /// `resolved`), `rejected`, `closed`.
    Move(Status),
    /// The same case as another, named by its case number or id.
    Duplicate {
        of: String,
    },
    /// Only the note.
    Note,
}

/// What the center asked for on one incident.
#[derive(Debug, Clone)]
pub struct Act<'a> {
    pub incident: &'a str,
    pub action: Action,
    pub note: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("the server holds no incident {0} in your community")]
    NoIncident(String),
    #[error("{0}")]
    Refused(String),
    #[error("a note is needed")]
    NoNote,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ActError {
    /// A refusal of what was asked, not a failure of the server.
    pub fn is_caller_mistake(&self) -> bool {
        matches!(self, ActError::NoIncident(_) | ActError::Refused(_) | ActError::NoNote)
    }
}

/// The key the server signs a reader token's changes with, made and
/// registered (as the token's public key) the first time it acts; the
/// token as stored afterwards.
pub fn token_key(storage: &dyn Storage, token: &Device) -> Result<(DeviceKey, Device), ActError> {
    if let Some(key) = storage
        .token_key(&token.id)?
        .as_deref()
        .and_then(DeviceKey::from_seed_hex)
    {
        return Ok((key, token.clone()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS has randomness");
    let key = DeviceKey::from_seed(seed);
    storage.set_token_key(&token.id, &key.seed_hex(), &key.public())?;
    let token = storage
        .device(&token.id)?
        .ok_or_else(|| StorageError::NoDevice(token.id.clone()))?;
    Ok((key, token))
}

/// Makes the change and admits it as a push of the caller's; a refusal
/// by the rules comes back as [`ActError::Refused`] with the rule's words.
pub fn act(
    storage: &dyn Storage,
    caller: &Caller<'_>,
    key: &DeviceKey,
    act: &Act<'_>,
    now: DateTime<FixedOffset>,
) -> Result<(), ActError> {
    if act.action == Action::Note && act.note.is_none_or(|n| n.trim().is_empty()) {
        return Err(ActError::NoNote);
    }
    if let Action::Duplicate { of } = &act.action {
        let known = storage
            .find_incident(of)?
            .filter(|(id, grid)| caller.scope.allows(grid) && id != act.incident);
        if known.is_none() {
            return Err(ActError::Refused(format!(
                "there is no other case {of} in your community"
            )));
        }
    }
    let stored = storage
        .incident_doc(act.incident)?
        .filter(|s| caller.scope.allows(&s.grid))
        .ok_or_else(|| ActError::NoIncident(act.incident.chars().take(40).collect()))?;
    let refused = |e: DocError| ActError::Refused(e.to_string());
    let mut doc = IncidentDoc::load(&stored.doc, ActorId::from(caller.device.actor.as_slice())).map_err(refused)?;
    // A department hears of no case but its own, not even in a refusal.
    let before = doc.read().map_err(|e| ActError::Refused(e.to_string()))?;
    if !crate::department::sees(&caller.device.worker, &before) {
        return Err(ActError::NoIncident(act.incident.chars().take(40).collect()));
    }
    let heads = doc.heads();
    apply(&mut doc, act, &caller.device.worker.id, now).map_err(refused)?;
    let (changes, sigs): (Vec<ByteBuf>, Vec<ByteBuf>) = doc
        .changes_since(&heads)
        .into_iter()
        .map(|c| (ByteBuf::from(c.bytes), ByteBuf::from(key.sign(&c.hash).to_vec())))
        .unzip();
    let push = PushDoc {
        id: act.incident.to_owned(),
        changes,
        sigs,
    };
    let acks = ingest(storage, caller, &[push])?;
    match acks.into_iter().next() {
        None => Ok(()),
        Some(ack) => Err(ActError::Refused(match ack.refused {
            Some(r) => r.message,
            None => "the case changed meanwhile; load the page again and retry".to_owned(),
        })),
    }
}

fn apply(doc: &mut IncidentDoc, act: &Act<'_>, by: &str, now: DateTime<FixedOffset>) -> Result<(), DocError> {
    match &act.action {
        Action::Dispatch(x) => doc.dispatch(x, by, now)?,
        Action::Move(to) => doc.set_status(*to, by, now)?,
        Action::Duplicate { of } => {
            doc.add_note(by, &format!("duplicate of {of} 重复案件"), now)?;
            doc.set_status(Status::Duplicate, by, now)?;
        }
        Action::Note => {}
    }
    if let Some(note) = act.note.filter(|n| !n.trim().is_empty()) {
        doc.add_note(by, note.trim(), now)?;
    }
    Ok(())
}
