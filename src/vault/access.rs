//! Access requests: a read that policy denies records a request (one pending
//! per service and secret); an admin (`admin` on `sys`) grants it, for good or
//! for `expires_in` seconds, or denies it. A grant lets that service read that
//! one secret; it is looked up in MongoDB on the denied path only, so every
//! replica honours it (and its expiry) at once.

use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;

use super::names::SecretKey;
use super::{utc, Op, RequestMeta, Undo, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::{ApiError, ErrorCode};
use crate::store::access_requests::{self as store, AccessRequestDoc};

/// One access request as callers see it.
pub struct AccessRequest {
    pub id: String,
    pub service_name: String,
    pub project: String,
    pub path: String,
    /// `pending`, `granted`, `denied` or `expired`.
    pub status: String,
    pub requested_at: DateTime<Utc>,
    pub attempts: i64,
    pub granted_at: Option<DateTime<Utc>>,
    pub granted_by: Option<String>,
    pub decided_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub access_count: i64,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<AccessRequestDoc> for AccessRequest {
    fn from(d: AccessRequestDoc) -> Self {
        let expired = d.status == "granted"
            && d.expires_at
                .is_some_and(|t| t.timestamp_millis() <= BsonDateTime::now().timestamp_millis());
        Self {
            status: if expired { "expired".into() } else { d.status },
            id: d.id,
            service_name: d.service_name,
            project: d.project,
            path: d.path,
            requested_at: utc(d.requested_at),
            attempts: d.attempts,
            granted_at: d.granted_at.map(utc),
            granted_by: d.granted_by,
            decided_by: d.decided_by,
            expires_at: d.expires_at.map(utc),
            access_count: d.access_count,
            last_accessed_at: d.last_accessed_at.map(utc),
        }
    }
}

/// The longest time-limited grant: a year.
pub const MAX_GRANT_SECS: u64 = 366 * 86_400;
const MAX_LIST: i64 = 1000;

impl Vault {
    /// Sets `secret_manager_access_requests{state}` from the database; a
    /// scrape does not wait more than a second for it (the last counts stay).
    pub async fn refresh_access_request_metrics(&self) {
        let counted = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            store::count_by_state(self.db()),
        )
        .await;
        let Ok(Ok(rows)) = counted else {
            tracing::debug!("access request counts not refreshed for this scrape");
            return;
        };
        for state in crate::metrics::ACCESS_REQUEST_STATES {
            let n = rows.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            crate::metrics::METRICS
                .access_requests
                .get_or_create(&crate::metrics::StateLabels { state })
                .set(n);
        }
    }

    /// Whether the caller may read `project/path`: by policy, or by a grant in
    /// force. A refusal records (or adds to) the caller's access request.
    pub(super) async fn may_read(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
    ) -> Result<bool, ApiError> {
        if self.may(meta, Action::Read, &secret_resource(project, path)) {
            return Ok(true);
        }
        if store::use_grant(self.db(), meta.actor(), project, path).await? {
            return Ok(true);
        }
        self.expire_grants(meta, project, path).await;
        self.request_access(meta, project, path).await;
        Ok(false)
    }

    /// `Ok` when the caller may read `key`; the usual 403 otherwise.
    pub(super) async fn require_read(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
    ) -> Result<(), ApiError> {
        if self.may_read(meta, key.project(), key.path()).await? {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                meta.actor(),
                &format!("{}:{}", key.project(), key.path()),
            ))
        }
    }

    /// A grant that ran out becomes `expired` the first time it is needed
    /// afterwards: a transition of its own (audited as `access_expire`, published).
    async fn expire_grants(&self, meta: &RequestMeta, project: &str, path: &str) {
        let expired = match store::expire_due(self.db(), meta.actor(), project, path).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "could not mark expired grants");
                return;
            }
        };
        for id in expired {
            let recorded = self
                .run(Op::AccessExpire, meta, async |scope| {
                    scope.project(Some(project));
                    scope.path(Some(path));
                    scope.event("access_expired");
                    Ok(())
                })
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, request = %id, "could not audit an expired grant");
            }
        }
    }

    /// A new pending request is a transition of its own: audited as
    /// `access_request`. Further denials only count on it.
    async fn request_access(&self, meta: &RequestMeta, project: &str, path: &str) {
        let request = AccessRequestDoc {
            id: uuid::Uuid::new_v4().to_string(),
            service_name: meta.actor().to_string(),
            project: project.to_string(),
            path: path.to_string(),
            status: "pending".into(),
            requested_at: BsonDateTime::now(),
            attempts: 1,
            pending_key: store::pending_key(meta.actor(), project, path),
            granted_at: None,
            granted_by: None,
            decided_at: None,
            decided_by: None,
            expires_at: None,
            access_count: 0,
            last_accessed_at: None,
        };
        match store::record(self.db(), &request).await {
            Ok(false) => {}
            Ok(true) => {
                let recorded = self
                    .run(Op::AccessRequest, meta, async |scope| {
                        scope.project(Some(project));
                        scope.path(Some(path));
                        scope.undo(Undo::RemoveAccessRequest(request.id.clone()));
                        scope.event("access_requested");
                        Ok(())
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::warn!(error = %e, "could not audit an access request; removed it");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record an access request"),
        }
    }

    /// Access requests, newest first (`status`: pending, granted, denied, expired).
    pub async fn access_requests(
        &self,
        meta: &RequestMeta,
        status: Option<&str>,
    ) -> Result<Vec<AccessRequest>, ApiError> {
        self.run(Op::AccessRequestList, meta, async |_| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            if status.is_some_and(|s| !["pending", "granted", "denied", "expired"].contains(&s)) {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "`status` must be pending, granted, denied or expired",
                ));
            }
            let found = store::list(self.db(), status, MAX_LIST).await?;
            Ok(found.into_iter().map(AccessRequest::from).collect())
        })
        .await
    }

    /// Grants (for `expires_in` seconds, or until revoked by policy) or denies
    /// a pending request. Any other transition is 409 `invalid_transition`.
    pub async fn decide_access_request(
        &self,
        meta: &RequestMeta,
        id: &str,
        grant: bool,
        expires_in: Option<u64>,
    ) -> Result<AccessRequest, ApiError> {
        let op = if grant {
            Op::AccessGrant
        } else {
            Op::AccessDeny
        };
        self.run(op, meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            if expires_in.is_some_and(|s| s == 0 || s > MAX_GRANT_SECS) {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("`expires_in` must be 1-{MAX_GRANT_SECS} seconds"),
                ));
            }
            // Ids are UUIDs: anything else (of any length) names no request.
            let found = match uuid::Uuid::parse_str(id) {
                Ok(_) => store::get(self.db(), id).await?,
                Err(_) => None,
            };
            let Some(found) = found else {
                return Err(ApiError::new(
                    ErrorCode::AccessRequestNotFound,
                    "no access request with that id",
                ));
            };
            scope.project(Some(&found.project));
            scope.path(Some(&found.path));
            if found.status != "pending" {
                return Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    format!("the request is {}, not pending", found.status),
                ));
            }
            let expires_at = expires_in.map(|s| {
                let ms = i64::try_from(s)
                    .unwrap_or(i64::MAX / 2_000)
                    .saturating_mul(1000);
                BsonDateTime::from_millis(BsonDateTime::now().timestamp_millis().saturating_add(ms))
            });
            self.pending(meta, scope).await?;
            if !store::decide(self.db(), id, grant, meta.actor(), expires_at).await? {
                return Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    "the request was decided meanwhile",
                ));
            }
            scope.event(if grant {
                "access_granted"
            } else {
                "access_denied"
            });
            let decided = store::get(self.db(), id).await?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AccessRequestNotFound,
                    "no access request with that id",
                )
            })?;
            Ok(AccessRequest::from(decided))
        })
        .await
    }
}
