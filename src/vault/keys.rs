//! Key operations (admin on `sys`): rotate, rewrap, status, destroy.

use mongodb::bson::DateTime;

use super::{RequestMeta, Target, Vault};
use crate::auth::Action;
use crate::error::ApiError;
use crate::store::keyring as key_store;
use crate::store::secrets::{self, SecretDoc, VersionDoc};

/// One data key as the status report shows it.
pub struct KeyStatus {
    pub key_id: String,
    pub state: String,
    pub legacy: bool,
    pub created_at: DateTime,
    pub retired_at: Option<DateTime>,
    pub seals: i64,
    /// Stored versions (live or deleted secrets) still sealed under it.
    pub versions: u64,
}

/// Progress of one rewrap call.
#[derive(Debug, Default, Clone, Copy)]
pub struct RewrapReport {
    pub documents_scanned: u64,
    pub versions_rewrapped: u64,
    /// Documents changed by someone else mid-way; a later pass takes them.
    pub documents_skipped: u64,
    /// Versions not yet under the active key after this call.
    pub versions_remaining: u64,
}

const REWRAP_BATCH: i64 = 100;

impl Vault {
    async fn authorize_sys(&self, op: &'static str, meta: &RequestMeta) -> Result<(), ApiError> {
        self.authorize(op, meta, Action::Admin, "sys", "sys", Target::default())
            .await
    }

    pub async fn rotate_key(&self, meta: &RequestMeta) -> Result<String, ApiError> {
        const OP: &str = "key_rotate";
        self.authorize_sys(OP, meta).await?;
        let id = match self.keyring().rotate().await {
            Ok(id) => id,
            Err(e) => {
                return Err(self
                    .fail(OP, meta, ApiError::internal(&e), Target::default())
                    .await)
            }
        };
        self.audit_success(OP, meta, Target::default()).await?;
        Ok(id)
    }

    pub async fn key_status(
        &self,
        meta: &RequestMeta,
    ) -> Result<(Option<String>, Vec<KeyStatus>), ApiError> {
        const OP: &str = "key_status";
        self.authorize_sys(OP, meta).await?;
        if let Err(e) = self.keyring().reload().await {
            return Err(self
                .fail(OP, meta, ApiError::internal(&e), Target::default())
                .await);
        }
        let counts = self
            .or_fail(
                OP,
                meta,
                Target::default(),
                secrets::versions_per_key(self.db()).await,
            )
            .await?;
        let active = self.keyring().active_id();
        let keys = self
            .keyring()
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
                created_at: d.created_at,
                retired_at: d.retired_at,
                seals: d.seals,
            })
            .collect();
        self.audit_success(OP, meta, Target::default()).await?;
        Ok((active, keys))
    }

    /// Destroys a data key that no stored version uses; never the active one.
    pub async fn destroy_key(&self, meta: &RequestMeta, key_id: &str) -> Result<(), ApiError> {
        const OP: &str = "key_destroy";
        self.authorize_sys(OP, meta).await?;
        let known = self.keyring().docs().iter().any(|d| d.id == key_id);
        let err = if !known {
            Some(ApiError::not_found(
                "key_not_found",
                "no data key with that id",
            ))
        } else if self.keyring().active_id().as_deref() == Some(key_id) {
            Some(ApiError::conflict(
                "key_active",
                "the active data key cannot be destroyed; rotate first",
            ))
        } else {
            match secrets::any_sealed_with(self.db(), key_id).await {
                Ok(true) => Some(ApiError::conflict(
                    "key_in_use",
                    "stored versions are still sealed under this key; rewrap first",
                )),
                Ok(false) => None,
                Err(e) => Some(e.into()),
            }
        };
        if let Some(e) = err {
            return Err(self.fail(OP, meta, e, Target::default()).await);
        }
        if let Err(e) = key_store::remove(self.db(), key_id).await {
            return Err(self.fail(OP, meta, e.into(), Target::default()).await);
        }
        let _ = self.keyring().reload().await;
        tracing::info!(key_id = %key_id, "data key destroyed");
        self.audit_success(OP, meta, Target::default()).await
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
        const OP: &str = "key_rewrap";
        self.authorize_sys(OP, meta).await?;
        match self.rewrap_pass(max_documents).await {
            Ok(report) => {
                self.audit_success(OP, meta, Target::default()).await?;
                tracing::info!(
                    rewrapped = report.versions_rewrapped,
                    remaining = report.versions_remaining,
                    "rewrap pass finished"
                );
                Ok(report)
            }
            Err(e) => Err(self.fail(OP, meta, e, Target::default()).await),
        }
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
                let active = self.keyring().active_id().unwrap_or_default();
                let stale = doc.versions.iter().filter(|v| v.key_id != active).count() as u64;
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
            let active_id = self.keyring().active_id().unwrap_or_default();
            if v.key_id == active_id {
                versions.push(v.clone());
                continue;
            }
            // Opened under its own record's AAD, sealed under the same record's
            // AAD with the new key id: nothing moves between records.
            let plaintext = self.open(&doc.id, v).await?;
            let mut sealed = self.seal_version(&doc.id, v.version, &plaintext, &v.created_by)?;
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
