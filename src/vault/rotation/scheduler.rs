//! One rotation scheduler across all replicas: every replica competes for a
//! lease document in MongoDB (`scheduler_lease`, see `store::rotation`);
//! the holder renews it every third of its length (`ROTATION_LEASE_SECS`,
//! default 10 s), the others try to take it every fifth. Each acquisition
//! increments the lease's fencing token (`epoch`); the leader acts only while
//! its local deadline (the renewal's send time + lease − a fifth) has not
//! passed, and every state change it makes to a secret carries the token in
//! its compare-and-set, so a leader that was paused past its lease cannot
//! overwrite what a newer leader did. A dead leader's lease runs out within
//! the lease's length, and another replica takes it within a fifth more:
//! 12 s with the defaults, then rotates what is due within `ROTATION_SCAN_MS`.
//!
//! The leader scans due schedules by the `next_rotation_at` index alone (and
//! expiry warnings by the `warn_at` index), a few rotations at a time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use mongodb::bson::DateTime as BsonDateTime;

use super::{Fence, Job};
use crate::error::{ApiError, ErrorCode};
use crate::store::rotation::{self as store, Schedule, Staged};
use crate::vault::names::SecretKey;
use crate::vault::{Op, RequestMeta, Vault};

/// Rotations the leader runs at once.
const CONCURRENT_ROTATIONS: usize = 4;
/// Due schedules taken per scan.
const SCAN_BATCH: i64 = 16;
/// The actor of the scheduler's audit records.
pub const SCHEDULER_ACTOR: &str = "rotation-scheduler";

static EPOCH_START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> i64 {
    i64::try_from(EPOCH_START.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// This replica's part in the election.
pub struct Leader {
    /// Who this replica is in the lease document: process id and a random suffix.
    pub holder: String,
    /// The fencing token while this replica leads; 0 otherwise.
    epoch: AtomicI64,
    /// Until when (local clock, ms since `EPOCH_START`) it may act.
    valid_until: AtomicI64,
}

impl Leader {
    pub fn new() -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self {
            holder: format!("pid{}-{}", std::process::id(), &suffix[..12]),
            epoch: AtomicI64::new(0),
            valid_until: AtomicI64::new(0),
        }
    }

    /// Whether this replica still leads with fencing token `epoch`.
    pub fn holds(&self, epoch: i64) -> bool {
        epoch > 0
            && self.epoch.load(Ordering::SeqCst) == epoch
            && now_ms() < self.valid_until.load(Ordering::SeqCst)
    }

    /// The fencing token while this replica leads.
    pub fn current(&self) -> Option<i64> {
        let e = self.epoch.load(Ordering::SeqCst);
        self.holds(e).then_some(e)
    }

    fn lead(&self, epoch: i64, sent_ms: i64, lease: Duration) {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.valid_until
            .store(sent_ms + ms - ms / 5, Ordering::SeqCst);
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    fn resign(&self) {
        self.epoch.store(0, Ordering::SeqCst);
        self.valid_until.store(0, Ordering::SeqCst);
    }
}

impl Default for Leader {
    fn default() -> Self {
        Self::new()
    }
}

/// The scheduler's tasks; dropping this stops them (the lease then runs out).
pub struct SchedulerHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Vault {
    /// This replica's scheduler identity (the lease's `holder` while it leads).
    pub fn scheduler_holder(&self) -> &str {
        &self.rotation.leader.holder
    }

    /// Starts the election and, while leading, the scans.
    pub fn spawn_rotation_scheduler(&self) -> SchedulerHandle {
        let lease = self.rotation.settings.lease;
        let elect = {
            let vault = self.clone();
            tokio::spawn(async move {
                loop {
                    let leading = vault.elect_once(lease).await;
                    let pause = if leading { lease / 3 } else { lease / 5 };
                    tokio::time::sleep(pause).await;
                }
            })
        };
        let scan = {
            let vault = self.clone();
            let every = self.rotation.settings.scan;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Some(epoch) = vault.rotation.leader.current() {
                        vault.scheduler_pass(epoch).await;
                    }
                }
            })
        };
        SchedulerHandle {
            tasks: vec![elect, scan],
        }
    }

    /// Renews the lease while leading, or tries to take it; `true` when leading.
    async fn elect_once(&self, lease: Duration) -> bool {
        let leader = &self.rotation.leader;
        let ttl = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let sent = now_ms();
        let epoch = leader.epoch.load(Ordering::SeqCst);
        if epoch > 0 {
            match store::renew(self.db(), store::ROTATION_LEASE, &leader.holder, epoch, ttl).await {
                Ok(true) => {
                    leader.lead(epoch, sent, lease);
                    return true;
                }
                Ok(false) => {
                    tracing::warn!(epoch, "lost the rotation scheduler lease");
                    leader.resign();
                }
                // Keep acting until the local deadline: the lease may still be ours.
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the rotation scheduler lease");
                    return leader.current().is_some();
                }
            }
        }
        match store::acquire(self.db(), store::ROTATION_LEASE, &leader.holder, ttl).await {
            Ok(Some(epoch)) => {
                tracing::info!(epoch, holder = %leader.holder, "leading the rotation scheduler");
                leader.lead(epoch, sent, lease);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not take the rotation scheduler lease");
                false
            }
        }
    }

    /// One scan: due rotations, then due expiry warnings.
    async fn scheduler_pass(&self, epoch: i64) {
        let fence = Fence::Leader(self.rotation.leader.clone(), epoch);
        match store::due(self.db(), BsonDateTime::now(), SCAN_BATCH).await {
            Ok(due) => {
                futures_util::stream::iter(due)
                    .for_each_concurrent(CONCURRENT_ROTATIONS, |s| {
                        let fence = fence.clone();
                        async move {
                            if fence.holds() {
                                self.rotate_scheduled(s, fence).await;
                            }
                        }
                    })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "could not scan due rotations"),
        }
        if !fence.holds() {
            return;
        }
        match store::warnings_due(self.db(), BsonDateTime::now(), 64).await {
            Ok(due) => {
                for s in due {
                    self.warn_expiring(s).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not scan expiry warnings"),
        }
    }

    fn scheduler_meta() -> RequestMeta {
        RequestMeta {
            actor: Some(SCHEDULER_ACTOR.to_string()),
            client_ip: None,
            user_agent: None,
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            channel: "scheduler",
        }
    }

    async fn rotate_scheduled(&self, schedule: Schedule, fence: Fence) {
        let meta = Self::scheduler_meta();
        let Ok(key) = SecretKey::new(&schedule.project, &schedule.path) else {
            let _ = store::remove(self.db(), &schedule.id).await;
            return;
        };
        let _ = self
            .run(Op::Rotate, &meta, async |scope| {
                scope.key(&key);
                scope.secret_id(&schedule.id);
                let staged = store::load(self.db(), &schedule.id).await?;
                match staged {
                    None => {
                        // The secret was purged: so is its schedule.
                        store::remove(self.db(), &schedule.id).await?;
                        return Err(ApiError::new(
                            ErrorCode::SecretNotFound,
                            "the secret was purged",
                        ));
                    }
                    Some(s) if !Staged::is_live(&s) => {
                        let later = BsonDateTime::from_millis(
                            BsonDateTime::now().timestamp_millis() + 3_600_000,
                        );
                        store::postpone(self.db(), &schedule.id, later).await?;
                        return Err(ApiError::new(
                            ErrorCode::SecretNotFound,
                            "the secret is deleted; its rotation waits",
                        ));
                    }
                    Some(_) => {}
                }
                let job = Job {
                    key: &key,
                    id: &schedule.id,
                    schedule: Some(&schedule),
                    fence,
                    explicit: None,
                    trigger: "schedule",
                };
                self.rotate_with_tries(&meta, scope, job).await
            })
            .await;
    }

    /// Publishes `secret_expiring` once per expiry (the warning is taken by
    /// compare-and-set, so two leaders in a race publish it once).
    async fn warn_expiring(&self, s: Schedule) {
        let Some(warn_at) = s.warn_at else {
            return;
        };
        match store::take_warning(self.db(), &s.id, warn_at).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not take an expiry warning");
                return;
            }
        }
        let meta = Self::scheduler_meta();
        let _ = self
            .run(Op::ExpiryWarning, &meta, async |scope| {
                scope.project(Some(&s.project));
                scope.path(Some(&s.path));
                scope.secret_id(&s.id);
                scope.event("secret_expiring");
                Ok(())
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_at_its_deadline() {
        let l = Leader::new();
        assert!(l.current().is_none());
        l.lead(3, now_ms(), Duration::from_secs(10));
        assert!(l.holds(3));
        assert!(!l.holds(2), "an older token is not this leader's");
        l.lead(3, now_ms() - 9_000, Duration::from_secs(10));
        assert!(!l.holds(3), "past lease minus a fifth: no longer acts");
        l.lead(4, now_ms(), Duration::from_secs(10));
        l.resign();
        assert!(l.current().is_none());
    }
}
