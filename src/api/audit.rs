//! `GET /api/audit`: the audit trail, for services holding `admin` on `audit`;
//! one secret's access log for a service holding `admin` on that secret.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::AppState;
use crate::dto::{AuditEntry, AuditList, AuditSummaryResponse};
use crate::error::ApiError;
use crate::vault::audit_query::{AuditQuery as Query, DEFAULT_AUDIT_LIMIT};

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    /// One operation (`read`, `create`, `alert`, ...): lowercase letters and `_`, at most 40.
    pub action: Option<String>,
    /// RFC 3339 time; only records at or after it.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339 time; only records before it.
    pub until: Option<DateTime<Utc>>,
    /// `success`, `pending`, `invalid`, `denied`, `not_found`, `conflict`, `error`,
    /// or `failed` (every outcome but `success` and `pending`).
    pub outcome: Option<String>,
    /// 1-1000, default 100. Newest first.
    pub limit: Option<i64>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(summary).service(read);
}

#[derive(Deserialize, IntoParams)]
pub struct SummaryQuery {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339 time; only records at or after it.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339 time; only records before it.
    pub until: Option<DateTime<Utc>>,
}

/// Accesses per secret and per actor
///
/// Total, successful and failed accesses among the matching records, per
/// secret (project and path) and per actor, by an aggregation. For the
/// console and compliance reports. Who may: as for `GET /api/audit`.
#[utoipa::path(
    tag = "audit",
    params(SummaryQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AuditSummaryResponse),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin of the audit trail nor of the secret named", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/audit/summary")]
async fn summary(
    Caller(meta): Caller,
    query: web::Query<SummaryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let query = Query {
        project: q.project,
        path: q.path,
        actor: q.actor,
        since: q.since,
        until: q.until,
        action: None,
        outcome: None,
        limit: DEFAULT_AUDIT_LIMIT,
    };
    let summary = state.vault.audit_summary(&meta, query).await?;
    Ok(HttpResponse::Ok().json(AuditSummaryResponse::from(summary)))
}

/// Read the audit trail
///
/// Newest first, with `totals` of successful and failed accesses among all
/// matching records. Needs `admin` on `audit`; or, to read one secret's access
/// log, `project` and `path` naming it and `admin` on `secret:<project>:<path>`.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AuditList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin of the audit trail nor of the secret named", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/audit")]
async fn read(
    Caller(meta): Caller,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let query = Query {
        project: q.project,
        path: q.path,
        actor: q.actor,
        since: q.since,
        until: q.until,
        action: q.action,
        outcome: q.outcome,
        limit: q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT),
    };
    let page = state.vault.read_audit(&meta, query).await?;
    Ok(HttpResponse::Ok().json(AuditList {
        records: page.records.into_iter().map(AuditEntry::from).collect(),
        totals: page.totals.into(),
    }))
}
