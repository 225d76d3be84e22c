//! The baseline: stock Automerge sync, one `sync::State` per incident per
//! peer, `generate_sync_message` / `receive_sync_message` until quiet.
//!
//! It is run in memory with both peers' documents already loaded, which is
//! generous to it: a real server would also load each document and its
//! sync state from storage, and every message would carry a document id.
//! Bytes are the encoded sync messages only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use automerge::AutoCommit;
use automerge::sync::{Message, State, SyncDoc};

/// One side: its documents and the sync state it persisted for the other
/// side after the last session (`State::encode`, empty = never synced).
pub struct Peer {
    pub docs: Vec<AutoCommit>,
    persisted: Vec<Vec<u8>>,
}

impl Peer {
    pub fn new(docs: Vec<AutoCommit>) -> Peer {
        let persisted = vec![Vec::new(); docs.len()];
        Peer { docs, persisted }
    }

    fn state(&self, i: usize) -> Result<State> {
        match self.persisted[i].as_slice() {
            [] => Ok(State::new()),
            bytes => State::decode(bytes).context("decoding a persisted sync state"),
        }
    }
}

/// What one session cost.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// Device → server message batches (each answered by the server).
    pub round_trips: u32,
    pub up: usize,
    pub down: usize,
    /// Server-side work: decoding its persisted states and the messages,
    /// receiving, generating and encoding replies, persisting the states.
    pub server: Duration,
}

impl Exchange {
    pub fn bytes(&self) -> usize {
        self.up + self.down
    }
}

/// One sync session over the documents `which`, the device speaking first,
/// as a device coming online would. Each round trip carries every message
/// the device has for those documents and the server's replies.
pub fn session(device: &mut Peer, server: &mut Peer, which: &[usize]) -> Result<Exchange> {
    let mut ex = Exchange::default();
    let mut dev_states: HashMap<usize, State> = HashMap::with_capacity(which.len());
    for &i in which {
        dev_states.insert(i, device.state(i)?);
    }
    let mut srv_states: HashMap<usize, State> = HashMap::with_capacity(which.len());
    for round in 0.. {
        if round == 100 {
            bail!("stock sync did not settle in 100 round trips");
        }
        let mut up = Vec::new();
        for &i in which {
            let state = dev_states.get_mut(&i).expect("state per document");
            if let Some(m) = device.docs[i].sync().generate_sync_message(state) {
                up.push((i, m.encode()));
            }
        }
        if up.is_empty() {
            break;
        }
        ex.round_trips += 1;
        ex.up += up.iter().map(|(_, m)| m.len()).sum::<usize>();

        let start = Instant::now();
        let mut down = Vec::with_capacity(up.len());
        for (i, bytes) in &up {
            let state = match srv_states.entry(*i) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(server.state(*i)?),
            };
            let msg = Message::decode(bytes).context("decoding a stock sync message")?;
            server.docs[*i].sync().receive_sync_message(state, msg)?;
            if let Some(m) = server.docs[*i].sync().generate_sync_message(state) {
                down.push((*i, m.encode()));
            }
        }
        ex.server += start.elapsed();
        ex.down += down.iter().map(|(_, m)| m.len()).sum::<usize>();

        for (i, bytes) in down {
            let state = dev_states.get_mut(&i).expect("state per document");
            device.docs[i]
                .sync()
                .receive_sync_message(state, Message::decode(&bytes).context("decoding a stock sync message")?)?;
        }
    }
    let start = Instant::now();
    for (i, s) in &srv_states {
        server.persisted[*i] = s.encode();
    }
    ex.server += start.elapsed();
    for (i, s) in dev_states {
        device.persisted[i] = s.encode();
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    use super::*;

    #[test]
    fn a_session_brings_both_sides_level_and_a_second_costs_one_round_trip() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "status", "reported").unwrap();
        let mut device = Peer::new(vec![doc]);
        let mut server = Peer::new(vec![AutoCommit::new()]);
        let first = session(&mut device, &mut server, &[0]).unwrap();
        assert_eq!(first.round_trips, 2);
        assert_eq!(server.docs[0].get_heads(), device.docs[0].get_heads());
        assert!(server.docs[0].get(ROOT, "status").unwrap().is_some());
        let again = session(&mut device, &mut server, &[0]).unwrap();
        assert_eq!(again.round_trips, 1);
        assert!(again.bytes() > 0, "stock sync says hello even when nothing changed");
    }
}
