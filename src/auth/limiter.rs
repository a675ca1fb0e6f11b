//! Slows token guessing: a token bucket of authentication failures per
//! (claimed service, client address). While a key's bucket is empty every
//! request for that service from that address gets 429, right token or not, so
//! a guess cannot be confirmed at wire speed. Keying by the claimed service too
//! means that behind an ingress or HAProxy (every client sharing one source
//! address) one service's failures never lock out another; requests that claim
//! no service share a bucket of their own per address. Requests without an
//! address (NATS) are never limited: see `Vault::authenticate`. Per replica.
//!
//! It also aggregates the audit trail of refused authentications (401 and
//! 429): per (claimed service, address or channel) the first refusal in a
//! window is recorded at once; further refusals in that window only count, and
//! the next record for the key (or the periodic flush when the window ends)
//! carries `count`, the number of refused requests it stands for. The window is
//! the time one failure takes to refill (`60 s / AUTH_FAILURE_PER_MINUTE`),
//! kept between 1 s and 60 s.
//!
//! Bounds: the claimed service is cut to [`ACTOR_MAX_CHARS`] and every other
//! stored or keyed string to [`FIELD_MAX_CHARS`] characters ([`clip`]), so a
//! huge header or NATS field can neither grow a key nor an audit record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most characters of the actor (claimed or authenticated service) kept.
pub const ACTOR_MAX_CHARS: usize = 128;
/// Most characters kept of any other audited or keyed string.
pub const FIELD_MAX_CHARS: usize = 256;

/// `text` cut to at most `max` characters, on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Who a failure is counted against: the claimed service (`None` when no
/// service was claimed) and where the request came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    service: Option<String>,
    origin: String,
}

impl LimitKey {
    /// Both parts bounded (see the module comment).
    pub fn new(service: Option<&str>, origin: &str) -> Self {
        Self {
            service: service.map(|s| clip(s, ACTOR_MAX_CHARS).to_string()),
            origin: clip(origin, FIELD_MAX_CHARS).to_string(),
        }
    }

    /// Where refusals beyond [`MAX_TRACKED`] distinct keys are counted.
    fn overflow() -> Self {
        Self {
            service: None,
            origin: "*".into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Refusals of one key in the current window.
#[derive(Debug)]
struct Tally<S> {
    opened: Instant,
    /// Refused since the last record, not yet recorded.
    unrecorded: u64,
    /// The latest unrecorded refusal, which the next record describes.
    last: Option<S>,
}

/// What to do with a refused request's audit record.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Write it, with `count` = the refused requests it stands for (itself included).
    Record(u64),
    /// Counted; a later record carries it.
    Counted,
}

/// What a deferred audit record of a refused authentication says.
#[derive(Debug, Clone)]
pub struct Refused {
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub channel: &'static str,
    pub code: crate::error::ErrorCode,
}

/// A failure limiter and refusal tally; `S` is what a deferred audit record needs.
#[derive(Debug)]
pub struct FailureLimiter<S = Refused> {
    burst: f64,
    per_sec: f64,
    window: Duration,
    buckets: Mutex<HashMap<LimitKey, Bucket>>,
    refusals: Mutex<HashMap<LimitKey, Tally<S>>>,
    flusher: AtomicBool,
}

const MAX_TRACKED: usize = 100_000;

impl<S> FailureLimiter<S> {
    /// `burst` failures at once, refilled at `per_minute`. `burst == 0` turns
    /// the limit off (refusals are still aggregated).
    pub fn new(burst: u32, per_minute: u32) -> Self {
        let window = if per_minute == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_secs_f64(60.0 / f64::from(per_minute))
                .clamp(Duration::from_secs(1), Duration::from_secs(60))
        };
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            window,
            buckets: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            flusher: AtomicBool::new(false),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.updated = now;
    }

    /// `Err(wait)` while the key has no failures left.
    pub fn check(&self, key: &LimitKey) -> Result<(), Duration> {
        if self.burst == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get_mut(key) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        } else {
            Err(Duration::from_secs(3600))
        }
    }

    /// Records one failure for the key.
    pub fn fail(&self, key: &LimitKey) {
        if self.burst == 0.0 {
            return;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec < burst
            });
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    /// How long refusals of one key are aggregated.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// One refused request for `key`, described by `sample`: whether its audit
    /// record is written now (and for how many refusals) or only counted.
    pub fn refused(&self, key: &LimitKey, sample: S) -> Refusal {
        let now = Instant::now();
        let mut tallies = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let key = if tallies.len() >= MAX_TRACKED && !tallies.contains_key(key) {
            LimitKey::overflow()
        } else {
            key.clone()
        };
        match tallies.get_mut(&key) {
            Some(t) if now.saturating_duration_since(t.opened) < self.window => {
                t.unrecorded += 1;
                t.last = Some(sample);
                Refusal::Counted
            }
            Some(t) => {
                let count = t.unrecorded + 1;
                *t = Tally {
                    opened: now,
                    unrecorded: 0,
                    last: None,
                };
                Refusal::Record(count)
            }
            None => {
                tallies.insert(
                    key,
                    Tally {
                        opened: now,
                        unrecorded: 0,
                        last: None,
                    },
                );
                Refusal::Record(1)
            }
        }
    }

    /// Ends every window that is over: the counted refusals of each, with the
    /// latest of them, to be recorded now. Quiet keys are forgotten.
    pub fn due_refusals(&self) -> Vec<(S, u64)> {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut tallies = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        tallies.retain(|_, t| {
            if now.saturating_duration_since(t.opened) < self.window {
                return true;
            }
            match t.last.take() {
                Some(sample) => {
                    due.push((sample, t.unrecorded));
                    t.opened = now;
                    t.unrecorded = 0;
                    true
                }
                None => false,
            }
        });
        due
    }

    /// `true` exactly once: the caller starts the periodic flush.
    pub fn claim_flusher(&self) -> bool {
        !self.flusher.swap(true, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_failures_then_blocked_then_refilled() {
        let l: FailureLimiter = FailureLimiter::new(3, 600); // one back every 100 ms
        let a = LimitKey::new(Some("a"), "1.2.3.4");
        for _ in 0..3 {
            assert!(l.check(&a).is_ok());
            l.fail(&a);
        }
        let wait = l.check(&a).expect_err("blocked after the burst");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(
            l.check(&LimitKey::new(Some("a"), "5.6.7.8")).is_ok(),
            "other addresses unaffected"
        );
        assert!(
            l.check(&LimitKey::new(Some("b"), "1.2.3.4")).is_ok(),
            "other services from the same address unaffected"
        );
        assert!(
            l.check(&LimitKey::new(None, "1.2.3.4")).is_ok(),
            "requests claiming no service have their own bucket"
        );
        std::thread::sleep(Duration::from_millis(150));
        assert!(l.check(&a).is_ok(), "refilled");
    }

    #[test]
    fn zero_burst_disables_the_limiter() {
        let l: FailureLimiter = FailureLimiter::new(0, 0);
        let x = LimitKey::new(None, "x");
        for _ in 0..100 {
            l.fail(&x);
        }
        assert!(l.check(&x).is_ok());
    }

    #[test]
    fn refusals_are_recorded_once_per_window_and_the_counts_add_up() {
        let l: FailureLimiter<u32> = FailureLimiter::new(3, 6000); // window: 1 s (the floor)
        assert_eq!(l.window(), Duration::from_secs(1));
        let key = LimitKey::new(Some("a"), "1.2.3.4");
        let mut recorded = 0;
        for i in 0..100 {
            if let Refusal::Record(n) = l.refused(&key, i) {
                recorded += n;
            }
        }
        assert_eq!(recorded, 1, "only the first refusal is written at once");
        assert!(l.due_refusals().is_empty(), "the window is still open");
        assert_eq!(
            l.refused(&LimitKey::new(Some("b"), "1.2.3.4"), 0),
            Refusal::Record(1)
        );
        std::thread::sleep(Duration::from_millis(1050));
        let due = l.due_refusals();
        assert_eq!(
            due,
            vec![(99, 99)],
            "the latest refusal, standing for the 99 counted"
        );
        assert!(l.due_refusals().is_empty(), "flushed once");
        assert_eq!(
            l.refused(&key, 100),
            Refusal::Counted,
            "a new window opened at the flush"
        );
    }

    #[test]
    fn keys_and_fields_are_clipped_on_character_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hé", 5), "hé");
        let long = "é".repeat(10_000);
        let key = LimitKey::new(Some(&long), &long);
        assert_eq!(
            key.service.as_deref().map(|s| s.chars().count()),
            Some(ACTOR_MAX_CHARS)
        );
        assert_eq!(key.origin.chars().count(), FIELD_MAX_CHARS);
    }
}
