//! Brute-force limits: how many wrong enrolment codes, tokens and sign-ins
//! a client address (and, for enrolment, a worker id) may try. Only
//! failures count: each takes a cell of a keyed governor limiter (a burst
//! of [`BURST`], then one per [`REFILL`]); when none is left the key is
//! blocked until the next cell is due, and every try behind that door
//! from it is answered 429 with `Retry-After` without being checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Failures allowed at once before the limit starts.
pub(crate) const BURST: u32 = 10;
/// Then one more failure per this long (10 a minute).
pub(crate) const REFILL: Duration = Duration::from_secs(6);

/// What is being guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Door {
    /// Bearer tokens and `api_key`.
    Token,
    /// Enrolment codes.
    Enrol,
    /// The dashboard's sign-in form.
    SignIn,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(Door, Option<IpAddr>),
    Account(Door, String),
}

/// A key over its limit, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocked {
    pub retry_after: Duration,
}

/// One cell per failure, each key its own bucket; a check says how many
/// are left.
type Cells = RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock, StateInformationMiddleware>;

pub(crate) struct Limits {
    cells: Cells,
    blocked: Mutex<HashMap<Key, Instant>>,
}

impl Default for Limits {
    fn default() -> Limits {
        let burst = NonZeroU32::new(BURST).expect("the burst is not zero");
        let quota = Quota::with_period(REFILL)
            .expect("the period is not zero")
            .allow_burst(burst);
        Limits {
            cells: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            blocked: Mutex::new(HashMap::new()),
        }
    }
}

fn keys(door: Door, client: Option<IpAddr>, account: Option<&str>) -> Vec<Key> {
    let mut out = vec![Key::Client(door, client)];
    out.extend(account.map(|a| Key::Account(door, a.to_owned())));
    out
}

impl Limits {
    /// Refuses a try from a blocked client or account.
    pub fn check(&self, door: Door, client: Option<IpAddr>, account: Option<&str>) -> Result<(), Blocked> {
        let now = Instant::now();
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let until = keys(door, client, account)
            .iter()
            .filter_map(|k| blocked.get(k))
            .max()
            .copied();
        match until {
            Some(until) if until > now => Err(Blocked {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure; `Some` when it starts a block.
    pub fn failed(&self, door: Door, client: Option<IpAddr>, account: Option<&str>) -> Option<Blocked> {
        let mut started = None;
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys(door, client, account) {
            // The failure that takes the last cell starts the block, so
            // each new cell buys exactly one more checked try.
            let wait = match self.cells.check_key(&key) {
                Ok(state) if state.remaining_burst_capacity() > 0 => continue,
                Ok(_) => REFILL,
                Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
            };
            let wait = wait.max(Duration::from_secs(1));
            blocked.insert(key, Instant::now() + wait);
            started = Some(Blocked { retry_after: wait });
        }
        if blocked.len() > 10_000 {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            self.cells.retain_recent();
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_count_and_a_block_ends() {
        let limits = Limits::default();
        let me = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..BURST - 1 {
            assert!(limits.check(Door::Enrol, me, Some("w1")).is_ok());
            assert!(limits.failed(Door::Enrol, me, Some("w1")).is_none());
        }
        assert!(limits.check(Door::Enrol, me, Some("w1")).is_ok());
        let started = limits
            .failed(Door::Enrol, me, Some("w1"))
            .expect("the last failure of the burst starts the block");
        assert!(started.retry_after <= REFILL);
        assert!(limits.check(Door::Enrol, me, None).is_err(), "the address is blocked");
        assert!(
            limits.check(Door::Enrol, other, Some("w1")).is_err(),
            "so is the account"
        );
        assert!(limits.check(Door::Enrol, other, Some("w2")).is_ok());
        assert!(limits.check(Door::Token, me, None).is_ok(), "each door counts alone");
    }
}
