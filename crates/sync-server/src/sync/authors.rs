//! Who made each pushed change. A device pushes its own changes and may pass
//! on any other device's it holds; each travels with its author's ed25519
//! signature over the change hash (`sync_core::signing`), which the server
//! checks against the key the author registered at enrolment.

use std::collections::HashMap;

use automerge::{ActorId, Change};
use sync_core::rules::Author;
use sync_core::signing;

use crate::storage::{Device, Storage, StorageError};

/// The device (with its account and role) behind one actor.
#[derive(Debug, Clone)]
pub(super) struct Owner(Device);

impl Owner {
    fn of(d: &Device) -> Owner {
        Owner(d.clone())
    }

    pub(super) fn author(&self) -> Author<'_> {
        self.0.author()
    }
}

/// What the signature says about one change.
pub(super) enum Verdict {
    /// Made by this device.
    By(Owner),
    /// Made by a device this server does not know: kept in quarantine.
    Unknown,
    /// Not signed by its author's key: the incident is refused.
    Forged(String),
}

/// The owners of the actors seen in one push, looked up once each.
#[derive(Default)]
pub(super) struct Authors {
    owners: HashMap<ActorId, Option<Device>>,
}

impl Authors {
    /// Checks who made `change`, sent by `caller` with `sig` (if any).
    pub(super) fn verdict(
        &mut self,
        storage: &dyn Storage,
        caller: &Device,
        change: &Change,
        sig: Option<&[u8]>,
    ) -> Result<Verdict, StorageError> {
        let actor = change.actor_id();
        let own = actor.to_bytes() == caller.actor.as_slice();
        if !self.owners.contains_key(actor) {
            let found = if own {
                Some(caller.clone())
            } else {
                storage.device_by_actor(actor.to_bytes())?
            };
            self.owners.insert(actor.clone(), found);
        }
        let Some(device) = &self.owners[actor] else {
            return Ok(Verdict::Unknown);
        };
        let hash = change.hash();
        Ok(match (&device.public_key, sig) {
            (Some(key), Some(sig)) if signing::verify(key, &hash, sig) => Verdict::By(Owner::of(device)),
            (Some(_), Some(_)) => Verdict::Forged(format!("change {hash} does not carry its author's signature")),
            (Some(_), None) => Verdict::Forged(format!("change {hash} is not signed")),
            // A device enrolled before devices had keys: its own changes
            // are known by its token, as they always were.
            (None, _) if own => Verdict::By(Owner::of(device)),
            (None, _) => Verdict::Forged(format!(
                "change {hash} was made by a device without a key, and only that device may send it"
            )),
        })
    }
}

/// The owner of every admitted change's actor.
pub(super) type Owners = HashMap<ActorId, Owner>;
