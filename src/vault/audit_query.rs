//! Reading the audit trail. A service holding `admin` on `audit` reads all of
//! it. Any other service reads the access log of one secret on which it holds
//! `admin` (`secret:<project>:<path>`), naming it with `project` and `path`:
//! the query then runs on the `(project, path, ts)` index, so it stays bounded
//! by that secret's own history. Both get the totals of successful and failed
//! accesses among all the records matching the query.

use chrono::{DateTime, Utc};

use super::names::SecretKey;
use super::{utc, Op, RequestMeta, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::{ApiError, ErrorCode};
pub use crate::store::audit::AuditTotals;
use crate::store::audit::{self, AuditFilter, AuditRecord, OutcomeFilter};

pub const MAX_AUDIT_LIMIT: i64 = 1000;
pub const DEFAULT_AUDIT_LIMIT: i64 = 100;

/// Which audit records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only records before this time.
    pub until: Option<DateTime<Utc>>,
    /// One operation (the record's `action`).
    pub action: Option<String>,
    /// An outcome (`success`, `denied`, ...) or `failed` (any but `success` and `pending`).
    pub outcome: Option<String>,
    pub limit: i64,
}

/// The outcomes a record can have, and `failed` for all the failed ones.
const OUTCOMES: [&str; 8] = [
    "failed",
    "pending",
    "success",
    "invalid",
    "denied",
    "not_found",
    "conflict",
    "error",
];

/// Longest `action` a query may name (the longest operation name is far shorter).
const ACTION_MAX_CHARS: usize = 40;

/// An operation's name as records carry it: lowercase letters and `_`.
fn action_filter(action: Option<String>) -> Result<Option<String>, ApiError> {
    match action {
        Some(a)
            if a.is_empty()
                || a.len() > ACTION_MAX_CHARS
                || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "`action` must be an operation name: 1-{ACTION_MAX_CHARS} lowercase letters or `_`"
                ),
            ))
        }
        other => Ok(other),
    }
}

fn outcome_filter(outcome: Option<String>) -> Result<Option<OutcomeFilter>, ApiError> {
    match outcome.as_deref() {
        None => Ok(None),
        Some("failed") => Ok(Some(OutcomeFilter::Failed)),
        Some(o) if OUTCOMES.contains(&o) => Ok(Some(OutcomeFilter::Is(o.to_string()))),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`outcome` must be one of {}", OUTCOMES.join(", ")),
        )),
    }
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
    /// What an operation on something other than a secret acted on (`service_token:<id>`).
    pub target: Option<String>,
    /// On an `alert` record: the rule that fired and what it counted.
    pub alert: Option<AuditAlert>,
}

/// What an `alert` record says (see `vault::alerts`).
pub struct AuditAlert {
    pub rule: String,
    pub subject_kind: String,
    pub subject: String,
    pub address: Option<String>,
    pub count: i64,
    pub threshold: i64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
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
            target: r.target,
            alert: r.alert.map(|a| AuditAlert {
                rule: a.rule,
                subject_kind: a.subject_kind,
                subject: a.subject,
                address: a.address,
                count: a.count,
                threshold: a.threshold,
                window_start: utc(a.window_start),
                window_end: utc(a.window_end),
            }),
        }
    }
}

/// One page of records, newest first, and the totals over every matching record.
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    pub totals: AuditTotals,
}

impl Vault {
    pub async fn read_audit(
        &self,
        meta: &RequestMeta,
        query: AuditQuery,
    ) -> Result<AuditPage, ApiError> {
        self.run(Op::AuditRead, meta, async |scope| {
            scope.project(query.project.as_deref());
            scope.path(query.path.as_deref());
            self.may_read_audit(meta, &query)?;
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
                until: query.until.map(mongodb::bson::DateTime::from_chrono),
                action: action_filter(query.action)?,
                outcome: outcome_filter(query.outcome)?,
                limit: query.limit,
            };
            let records = audit::query(self.db(), &filter).await?;
            let totals = audit::totals(self.db(), &filter).await?;
            Ok(AuditPage {
                records: records.into_iter().map(AuditEntry::from).collect(),
                totals,
            })
        })
        .await
    }

    /// `admin` on `audit`, or on the one secret the query names.
    fn may_read_audit(&self, meta: &RequestMeta, query: &AuditQuery) -> Result<(), ApiError> {
        if self.may(meta, Action::Admin, "audit") {
            return Ok(());
        }
        match (&query.project, &query.path) {
            (Some(project), Some(path)) => {
                // Checked names: no `*` or `:` can widen what the grant is matched against.
                let key = SecretKey::new(project, path)?;
                self.require(
                    meta,
                    Action::Admin,
                    &secret_resource(key.project(), key.path()),
                    &format!("{}:{}", key.project(), key.path()),
                )
            }
            _ => Err(ApiError::forbidden(meta.actor(), "audit")),
        }
    }
}

/// Accesses per secret and per actor (`GET /api/audit/summary`).
pub struct AuditSummary {
    pub per_secret: Vec<audit::SummaryRow>,
    pub per_actor: Vec<audit::SummaryRow>,
    /// More groups than the summary reads: the rows are partial.
    pub truncated: bool,
}

impl Vault {
    /// Totals of successful and failed accesses per secret and per actor among
    /// the records matching `query` (its `limit` and `outcome` are ignored).
    /// Who may: as for `read_audit`.
    pub async fn audit_summary(
        &self,
        meta: &RequestMeta,
        query: AuditQuery,
    ) -> Result<AuditSummary, ApiError> {
        self.run(Op::AuditSummary, meta, async |scope| {
            scope.project(query.project.as_deref());
            scope.path(query.path.as_deref());
            self.may_read_audit(meta, &query)?;
            let filter = AuditFilter {
                project: query.project,
                path: query.path,
                actor: query.actor,
                since: query.since.map(mongodb::bson::DateTime::from_chrono),
                until: query.until.map(mongodb::bson::DateTime::from_chrono),
                action: None,
                outcome: None,
                limit: 0,
            };
            let (per_secret, per_actor, truncated) = audit::summary(self.db(), &filter).await?;
            Ok(AuditSummary {
                per_secret,
                per_actor,
                truncated,
            })
        })
        .await
    }
}
