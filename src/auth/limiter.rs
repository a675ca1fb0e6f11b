//! Slows token guessing: a token bucket of authentication failures per client
//! address. While an address's bucket is empty every request from it gets 429,
//! right token or not, so a guess cannot be confirmed at wire speed. Per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

const MAX_TRACKED: usize = 100_000;

impl FailureLimiter {
    /// `burst` failures at once, refilled at `per_minute`. `burst == 0` turns it off.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.updated = now;
    }

    /// `Err(wait)` while the address has no failures left.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        if self.burst == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get_mut(client) else {
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

    /// Records one failure for the address.
    pub fn fail(&self, client: &str) {
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
        let b = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_failures_then_blocked_then_refilled() {
        let l = FailureLimiter::new(3, 600); // one back every 100 ms
        for _ in 0..3 {
            assert!(l.check("1.2.3.4").is_ok());
            l.fail("1.2.3.4");
        }
        let wait = l.check("1.2.3.4").expect_err("blocked after the burst");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check("5.6.7.8").is_ok(), "other addresses unaffected");
        std::thread::sleep(Duration::from_millis(150));
        assert!(l.check("1.2.3.4").is_ok(), "refilled");
    }

    #[test]
    fn zero_burst_disables_the_limiter() {
        let l = FailureLimiter::new(0, 0);
        for _ in 0..100 {
            l.fail("x");
        }
        assert!(l.check("x").is_ok());
    }
}
