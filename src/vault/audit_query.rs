//! Reading the audit trail: services holding `admin` on `audit` only.

use chrono::{DateTime, Utc};

use super::{utc, Op, RequestMeta, Vault};
use crate::auth::Action;
use crate::error::{ApiError, ErrorCode};
use crate::store::audit::{self, AuditFilter, AuditRecord};

pub const MAX_AUDIT_LIMIT: i64 = 1000;
pub const DEFAULT_AUDIT_LIMIT: i64 = 100;

/// Which audit records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// One audit record as callers see it.
pub struct AuditEntry {
    pub ts: DateTime<Utc>,
    pub action: String,
    pub outcome: String,
    pub channel: String,
    pub actor: Option<String>,
    pub secret_id: Option<String>,
    pub project: Option<String>,
    pub path: Option<String>,
    pub version: Option<i64>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    /// How many refused requests this record stands for (refusals are aggregated).
    pub count: Option<i64>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        Self {
            ts: utc(r.ts),
            action: r.action,
            outcome: r.outcome,
            channel: r.channel,
            actor: r.actor,
            secret_id: r.secret_id,
            project: r.project,
            path: r.path,
            version: r.version,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            error_code: r.error_code,
            count: r.count,
        }
    }
}

impl Vault {
    pub async fn read_audit(
        &self,
        meta: &RequestMeta,
        query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        self.run(Op::AuditRead, meta, async |scope| {
            scope.project(query.project.as_deref());
            scope.path(query.path.as_deref());
            self.require(meta, Action::Admin, "audit", "audit")?;
            if !(1..=MAX_AUDIT_LIMIT).contains(&query.limit) {
                return Err(ApiError::new(
                    ErrorCode::InvalidLimit,
                    format!("`limit` must be 1-{MAX_AUDIT_LIMIT}"),
                ));
            }
            let filter = AuditFilter {
                project: query.project,
                path: query.path,
                actor: query.actor,
                since: query.since.map(mongodb::bson::DateTime::from_chrono),
                limit: query.limit,
            };
            let records = audit::query(self.db(), &filter).await?;
            Ok(records.into_iter().map(AuditEntry::from).collect())
        })
        .await
    }
}
