//! `GET /api/audit`: the audit trail, for services holding `admin` on `audit`.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::identity::Caller;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::store::audit::{AuditFilter, AuditRecord};

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339 time; only records at or after it.
    pub since: Option<DateTime<Utc>>,
    /// 1-1000, default 100. Newest first.
    pub limit: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
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
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        Self {
            ts: r.ts.to_chrono(),
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
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditEntry>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(read);
}

/// Read the audit trail
///
/// Newest first. Needs `admin` on `audit`.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AuditList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
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
    let filter = AuditFilter {
        project: q.project,
        path: q.path,
        actor: q.actor,
        since: q.since.map(mongodb::bson::DateTime::from_chrono),
        limit: q.limit.unwrap_or(100),
    };
    let records = state.vault.read_audit(&meta, filter).await?;
    Ok(HttpResponse::Ok().json(AuditList {
        records: records.into_iter().map(AuditEntry::from).collect(),
    }))
}
