//! At most [`PER_DEVICE`] requests of one device at once on the routes
//! whose bodies the server buffers (sync, manifest, photo chunks), so one
//! enrolled device cannot make it hold many half-sent 16 MiB bodies. A
//! device never needs more: `field` sends one request at a time, and two
//! `field` processes on one device stay within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Requests one device may have in progress on a buffering route.
pub(crate) const PER_DEVICE: usize = 2;

/// Requests in progress, by device id.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Mutex<HashMap<String, usize>>);

/// One request's place; it is given back when the request is done.
#[derive(Debug)]
pub(crate) struct Slot {
    owner: Arc<InFlight>,
    device: String,
}

impl InFlight {
    /// A place for one more request of `device`, or `None` when it has
    /// [`PER_DEVICE`] in progress.
    pub fn take(this: &Arc<InFlight>, device: &str) -> Option<Slot> {
        let mut counts = this.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(device.to_owned()).or_default();
        if *n >= PER_DEVICE {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(this),
            device: device.to_owned(),
        })
    }

    fn give_back(&self, device: &str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(device) {
            *n -= 1;
            if *n == 0 {
                counts.remove(device);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.give_back(&self.device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_gets_its_places_back_when_its_requests_end() {
        let in_flight = Arc::new(InFlight::default());
        let first = InFlight::take(&in_flight, "d1").unwrap();
        let second = InFlight::take(&in_flight, "d1").unwrap();
        assert!(InFlight::take(&in_flight, "d1").is_none());
        assert!(
            InFlight::take(&in_flight, "d2").is_some(),
            "another device is not held up"
        );
        drop(first);
        let third = InFlight::take(&in_flight, "d1").unwrap();
        drop((second, third));
        assert!(in_flight.0.lock().unwrap().is_empty());
    }
}
