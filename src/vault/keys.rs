//! Key operations (admin on `sys`): rotate, rewrap, status, destroy.

use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;

use super::{utc, Op, RecordRef, RequestMeta, Vault};
use crate::auth::Action;
use crate::crypto::AAD_FORMAT;
use crate::error::{ApiError, ErrorCode};
use crate::store::keyring as key_store;
use crate::store::secrets::{self, SecretDoc, VersionDoc};

/// One data key as the status report shows it.
pub struct KeyStatus {
    pub key_id: String,
    pub state: String,
    pub legacy: bool,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub seals: i64,
    /// Stored versions (live or deleted secrets) still sealed under it.
    pub versions: u64,
}

/// Progress of one rewrap call.
#[derive(Debug, Default, Clone)]
pub struct RewrapReport {
    /// The key everything is being re-sealed under.
    pub active_key_id: String,
    pub documents_scanned: u64,
    pub versions_rewrapped: u64,
    /// Documents changed by someone else mid-way; a later pass takes them.
    pub documents_skipped: u64,
    /// Versions not yet under the active key after this call.
    pub versions_remaining: u64,
}

const REWRAP_BATCH: i64 = 100;
/// A bound on how long a request holds a data key between choosing it and storing
/// what it sealed (database timeouts and compare-and-set retries included).
const LONGEST_REQUEST: std::time::Duration = std::time::Duration::from_secs(60);

impl Vault {
    fn require_sys(&self, meta: &RequestMeta) -> Result<(), ApiError> {
        self.require(meta, Action::Admin, "sys", "sys")
    }

    pub async fn rotate_key(&self, meta: &RequestMeta) -> Result<String, ApiError> {
        self.run(Op::KeyRotate, meta, async |scope| {
            self.require_sys(meta)?;
            self.pending(meta, scope).await?;
            self.keyring
                .rotate()
                .await
                .map_err(|e| ApiError::internal(&e))
        })
        .await
    }

    pub async fn key_status(
        &self,
        meta: &RequestMeta,
    ) -> Result<(Option<String>, Vec<KeyStatus>), ApiError> {
        self.run(Op::KeyStatus, meta, async |_| {
            self.require_sys(meta)?;
            self.keyring
                .reload()
                .await
                .map_err(|e| ApiError::internal(&e))?;
            let counts = secrets::versions_per_key(self.db()).await?;
            let active = self.keyring.active_id();
            let keys = self
                .keyring
                .docs()
                .into_iter()
                .map(|d| KeyStatus {
                    versions: counts.get(&d.id).copied().unwrap_or(0),
                    state: if Some(&d.id) == active.as_ref() {
                        "active".into()
                    } else {
                        "retired".into()
                    },
                    key_id: d.id,
                    legacy: d.legacy,
                    created_at: utc(d.created_at),
                    retired_at: d.retired_at.map(utc),
                    seals: d.seals,
                })
                .collect();
            Ok((active, keys))
        })
        .await
    }

    /// Destroys a data key that no stored version uses; never the active one,
    /// and never one retired less than [`Vault::destroy_grace`] ago (another
    /// replica may still be sealing with it from its cached keyring).
    pub async fn destroy_key(&self, meta: &RequestMeta, key_id: &str) -> Result<(), ApiError> {
        self.run(Op::KeyDestroy, meta, async |scope| {
            self.require_sys(meta)?;
            self.keyring
                .reload()
                .await
                .map_err(|e| ApiError::internal(&e))?;
            let Some(doc) = self.keyring.docs().into_iter().find(|d| d.id == key_id) else {
                return Err(ApiError::new(
                    ErrorCode::KeyNotFound,
                    "no data key with that id",
                ));
            };
            if self.keyring.active_id().as_deref() == Some(key_id) {
                return Err(ApiError::new(
                    ErrorCode::KeyActive,
                    "the active data key cannot be destroyed; rotate first",
                ));
            }
            if !doc.legacy {
                // A key without `retired_at` is mid-rotation: as fresh as can be.
                let retired_ms = doc.retired_at.map_or(i64::MAX, |t| t.timestamp_millis());
                let age_ms = BsonDateTime::now().timestamp_millis().saturating_sub(retired_ms);
                let grace_ms = i64::try_from(self.destroy_grace().as_millis()).unwrap_or(i64::MAX);
                if age_ms < grace_ms {
                    let wait = u64::try_from((grace_ms - age_ms.max(0)) / 1000 + 1).unwrap_or(1);
                    let mut e = ApiError::new(
                        ErrorCode::KeyRecentlyRetired,
                        format!(
                            "the key was retired less than {} s ago; replicas may still seal with it",
                            grace_ms / 1000
                        ),
                    );
                    e.retry_after = Some(wait);
                    return Err(e);
                }
            }
            let in_use = || {
                ApiError::new(
                    ErrorCode::KeyInUse,
                    "stored versions are still sealed under this key; rewrap first",
                )
            };
            if secrets::any_sealed_with(self.db(), key_id).await? {
                return Err(in_use());
            }
            self.pending(meta, scope).await?;
            key_store::remove(self.db(), key_id).await?;
            // Check again: a write that sealed under it meanwhile keeps it alive.
            if secrets::any_sealed_with(self.db(), key_id).await? {
                key_store::insert(self.db(), &doc).await?;
                tracing::warn!(key_id = %key_id, "a version was sealed under a key being destroyed; it was kept");
                return Err(in_use());
            }
            let _ = self.keyring.reload().await;
            tracing::info!(key_id = %key_id, "data key destroyed");
            Ok(())
        })
        .await
    }

    /// How long after retirement a data key may still be in use: two keyring
    /// refreshes (every replica has reloaded) plus the longest request.
    pub fn destroy_grace(&self) -> std::time::Duration {
        self.keyring.refresh_interval() * 2 + LONGEST_REQUEST
    }

    /// Re-seals versions not under the active key, up to `max_documents`
    /// documents per call. Resumable (each call starts over and skips what is
    /// done) and safe beside other rewrappers and writers: each document is
    /// replaced only if nothing wrote to it since it was read.
    pub async fn rewrap(
        &self,
        meta: &RequestMeta,
        max_documents: u64,
    ) -> Result<RewrapReport, ApiError> {
        self.run(Op::KeyRewrap, meta, async |_| {
            self.require_sys(meta)?;
            let mut report = self.rewrap_pass(max_documents).await?;
            report.active_key_id = self.keyring.active_id().unwrap_or_default();
            tracing::info!(
                rewrapped = report.versions_rewrapped,
                remaining = report.versions_remaining,
                "rewrap pass finished"
            );
            Ok(report)
        })
        .await
    }

    async fn rewrap_pass(&self, max_documents: u64) -> Result<RewrapReport, ApiError> {
        let mut report = RewrapReport::default();
        let mut after: Option<String> = None;
        let mut changed_docs = 0;
        loop {
            let batch = secrets::scan(self.db(), after.as_deref(), REWRAP_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            for doc in batch {
                report.documents_scanned += 1;
                let active = self.keyring.active_id().unwrap_or_default();
                let stale = doc.versions.iter().filter(|v| is_stale(v, &active)).count() as u64;
                if stale == 0 {
                    continue;
                }
                if changed_docs >= max_documents {
                    report.versions_remaining += stale;
                    continue;
                }
                changed_docs += 1;
                match self.rewrap_doc(&doc).await? {
                    Some(n) => report.versions_rewrapped += n,
                    None => {
                        report.documents_skipped += 1;
                        report.versions_remaining += stale;
                    }
                }
            }
        }
        Ok(report)
    }

    /// `Some(versions rewrapped)`, or `None` when the document changed meanwhile.
    async fn rewrap_doc(&self, doc: &SecretDoc) -> Result<Option<u64>, ApiError> {
        let mut versions: Vec<VersionDoc> = Vec::with_capacity(doc.versions.len());
        let mut n = 0;
        for v in &doc.versions {
            let active_id = self.keyring.active_id().unwrap_or_default();
            if !is_stale(v, &active_id) {
                versions.push(v.clone());
                continue;
            }
            // Opened under its own record's AAD (either format), sealed under the
            // same record's current-format AAD with the active key: nothing moves
            // between records.
            let at = RecordRef::of_doc(doc);
            let plaintext = self.open(at, v).await?;
            let mut sealed = self.seal_version(at, v.version, &plaintext, &v.created_by)?;
            sealed.created_at = v.created_at;
            versions.push(sealed);
            n += 1;
        }
        let replaced =
            secrets::replace_versions(self.db(), &doc.id, doc.rev, doc.current_version, &versions)
                .await?;
        Ok(replaced.then_some(n))
    }
}

/// A version that rewrap re-seals: under another key than the active one,
/// under the first associated-data format (which does not bind project and
/// path), or without a leak fingerprint (written before there were any).
fn is_stale(v: &VersionDoc, active_key_id: &str) -> bool {
    v.key_id != active_key_id || v.aad != Some(AAD_FORMAT) || v.fp.is_none()
}

impl Vault {
    /// Sets the keyring gauges of `/metrics` from what this replica holds.
    pub fn refresh_key_metrics(&self) {
        let metrics = &crate::metrics::METRICS;
        let active = self.keyring.active_id();
        for doc in self.keyring.docs() {
            if Some(&doc.id) == active.as_ref() {
                let age = chrono::Utc::now() - utc(doc.created_at);
                metrics
                    .keyring_active_key_age
                    .set(age.num_milliseconds().max(0) as f64 / 1000.0);
            }
            metrics
                .keyring_seals
                .get_or_create(&crate::metrics::KeyLabels { key_id: doc.id })
                .set(doc.seals);
        }
    }
}
