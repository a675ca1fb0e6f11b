//! `WatchSecret`: one secret's version metadata as it changes, never its value.
//!
//! Opening a watch is one audited operation (`watch`): the caller must be
//! allowed to read the secret (by policy or a grant in force) — it need not
//! exist yet, so a service can wait for a stub to be filled. The first update
//! is the current state; then one update per change. A change wakes the
//! watcher at once when it was written through this replica (a change event)
//! and within [`POLL`] when another replica wrote it (the path is re-read).
//! Before each update the caller is authenticated and authorised again, so a
//! revoked token or a withdrawn policy ends the stream with that error.
//! At most [`MAX_WATCHES`] streams are open per replica (`busy` beyond).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use super::events::Event;
use super::names::SecretKey;
use super::{utc, Op, RequestMeta, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::{ApiError, ErrorCode};
use crate::store::access_requests as grants;
use crate::store::secrets::{self as store, PathState, MISSING};

/// Open watch streams per replica.
pub const MAX_WATCHES: usize = 1024;
/// How often a watcher re-reads its path for changes written elsewhere.
pub const POLL: Duration = Duration::from_secs(1);

/// Where the secret stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStatus {
    /// Nothing at the path.
    Absent,
    /// A stub: someone asked for it, no value yet.
    Missing,
    Live,
    /// Deleted, restorable until purged.
    Deleted,
}

impl PathStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Missing => "missing",
            Self::Live => "live",
            Self::Deleted => "deleted",
        }
    }
}

/// What happened between two updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first update of a stream: the state when it opened.
    Current,
    Created,
    Updated,
    Deleted,
    Restored,
    /// A stub was recorded (or a deleted secret purged and asked for again).
    Missing,
    /// A deleted secret was purged.
    Purged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
            Self::Missing => "missing",
            Self::Purged => "purged",
        }
    }
}

/// One update: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchUpdate {
    pub change: Change,
    pub status: PathStatus,
    /// The current version; 0 when there is none (absent, a stub).
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

impl WatchUpdate {
    fn of(state: Option<PathState>) -> Self {
        let Some(s) = state else {
            return Self {
                change: Change::Current,
                status: PathStatus::Absent,
                version: 0,
                updated_at: None,
                updated_by: None,
            };
        };
        let status = if s.deleted_at.is_some() {
            PathStatus::Deleted
        } else if s.state.as_deref() == Some(MISSING) {
            PathStatus::Missing
        } else {
            PathStatus::Live
        };
        Self {
            change: Change::Current,
            status,
            version: s.current_version,
            updated_at: Some(utc(s.updated_at)),
            updated_by: Some(s.updated_by),
        }
    }

    /// What turned `before` into `self`; `None` when nothing a watcher sees changed.
    fn change_from(&self, before: &Self) -> Option<Change> {
        use PathStatus::*;
        if (self.status, self.version, &self.updated_at)
            == (before.status, before.version, &before.updated_at)
        {
            return None;
        }
        Some(match (before.status, self.status) {
            (Live, Live) => Change::Updated,
            (Deleted, Live) if self.version == before.version => Change::Restored,
            (_, Live) => Change::Created,
            (_, Deleted) => Change::Deleted,
            (_, Missing) => Change::Missing,
            (Deleted, Absent) => Change::Purged,
            (_, Absent) => Change::Deleted,
        })
    }
}

/// The identity a stream re-checks before each update.
pub struct Credentials {
    pub service: Option<String>,
    pub token: Option<Zeroizing<String>>,
}

/// An open watch; [`Watch::next`] waits for the next update.
pub struct Watch {
    vault: Vault,
    meta: RequestMeta,
    credentials: Credentials,
    key: SecretKey,
    events: broadcast::Receiver<Event>,
    last: Option<WatchUpdate>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Watch {
    fn drop(&mut self) {
        crate::metrics::METRICS.watch_streams_open.dec();
    }
}

/// The per-replica bound on open streams.
pub(super) fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_WATCHES))
}

impl Vault {
    /// Opens a watch on `key` for an authenticated caller (audited as `watch`).
    pub async fn watch(
        &self,
        meta: &RequestMeta,
        credentials: Credentials,
        key: &SecretKey,
    ) -> Result<Watch, ApiError> {
        self.run(Op::Watch, meta, async |scope| {
            scope.key(key);
            let slot = self.watch_slots.clone().try_acquire_owned().map_err(|_| {
                ApiError::new(
                    ErrorCode::Busy,
                    format!("{MAX_WATCHES} watch streams are open on this replica; retry shortly"),
                )
            })?;
            // Subscribed before the first read, so no change falls in between.
            let events = self.subscribe_events();
            self.require_read(meta, key).await?;
            crate::metrics::METRICS.watch_streams_open.inc();
            Ok(Watch {
                vault: self.clone(),
                meta: meta.clone(),
                credentials,
                key: key.clone(),
                events,
                last: None,
                _slot: slot,
            })
        })
        .await
    }

    /// Whether the caller may still read `key`: by policy or a grant in force
    /// (without counting a read or opening a request).
    async fn still_may_read(&self, meta: &RequestMeta, key: &SecretKey) -> Result<bool, ApiError> {
        let (project, path) = (key.project(), key.path());
        if self.may(meta, Action::Read, &secret_resource(project, path)) {
            return Ok(true);
        }
        Ok(grants::has_grant(self.db(), meta.actor(), project, path).await?)
    }
}

impl Watch {
    /// The next update: the current state first, then each change. An error
    /// ends the stream (the caller lost its access, MongoDB is unreachable).
    pub async fn next(&mut self) -> Result<WatchUpdate, ApiError> {
        loop {
            if self.last.is_some() {
                self.wait().await;
            }
            let state =
                store::path_state(self.vault.db(), self.key.project(), self.key.path()).await?;
            let mut update = WatchUpdate::of(state);
            let change = match &self.last {
                None => Some(Change::Current),
                Some(before) => update.change_from(before),
            };
            let Some(change) = change else { continue };
            update.change = change;
            self.recheck().await?;
            self.last = Some(update.clone());
            return Ok(update);
        }
    }

    /// Until a change event for this path arrives, or [`POLL`] passes.
    async fn wait(&mut self) {
        let deadline = tokio::time::Instant::now() + POLL;
        loop {
            let event = tokio::select! {
                event = self.events.recv() => event,
                () = tokio::time::sleep_until(deadline) => return,
            };
            match event {
                Ok(e)
                    if e.project.as_deref() == Some(self.key.project())
                        && e.path.as_deref() == Some(self.key.path()) =>
                {
                    return
                }
                Ok(_) => {}
                // Fell behind: some change may be ours; read the path.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
        }
    }

    /// Authenticates and authorises the caller again; the refusal is audited
    /// (as a `watch` that failed) and ends the stream.
    async fn recheck(&mut self) -> Result<(), ApiError> {
        let mut meta = self.meta.clone();
        meta.actor = None;
        let token = self.credentials.token.as_deref().map(String::as_str);
        self.vault
            .authenticate(&mut meta, self.credentials.service.as_deref(), token)
            .await?;
        let allowed = self.vault.still_may_read(&meta, &self.key).await;
        match allowed {
            Ok(true) => Ok(()),
            Ok(false) => {
                let target = format!("{}:{}", self.key.project(), self.key.path());
                let err = ApiError::forbidden(meta.actor(), &target);
                let mut scope = super::Scope::new(Op::Watch);
                scope.key(&self.key);
                self.vault.audit_failure(&meta, &scope, &err).await;
                Err(err)
            }
            Err(e) => Err(e),
        }
    }
}
