//! `/api/access-requests`: reads that policy denied, for admins (`admin` on
//! `sys`) to grant (optionally for a limited time) or deny.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{AccessRequestList, AccessRequestResponse, ApproveRequest};
use crate::error::ApiError;
use crate::vault::Op;

#[derive(Deserialize, IntoParams)]
pub struct StatusQuery {
    /// `pending`, `granted`, `denied` or `expired`; all when absent.
    pub status: Option<String>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list).service(approve).service(deny);
}

/// List access requests
///
/// Newest first. Needs `admin` on `sys`.
#[utoipa::path(
    tag = "access",
    params(StatusQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AccessRequestList),
        (status = 400, description = "Bad status", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/access-requests")]
async fn list(
    Caller(meta): Caller,
    query: web::Query<StatusQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .vault
        .access_requests(&meta, query.status.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(AccessRequestList {
        items: found.into_iter().map(AccessRequestResponse::from).collect(),
    }))
}

/// The optional body of an approval; none means a grant without end.
async fn approval(
    state: &AppState,
    meta: &crate::vault::RequestMeta,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<ApproveRequest, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if !chunked && declared.unwrap_or(0) == 0 {
        return Ok(ApproveRequest::default());
    }
    let shape = "an optional object with `expires_in` (seconds)";
    read_body(state, meta, Op::AccessGrant, req, body, shape).await
}

/// Grant an access request
///
/// The service may then read that one secret, for `expires_in` seconds when
/// given. Needs `admin` on `sys`; only a pending request can be granted.
#[utoipa::path(
    tag = "access",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = ApproveRequest, description = "Optional"),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AccessRequestResponse),
        (status = 400, description = "Bad body or `expires_in`", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/access-requests/{id}/approve")]
async fn approve(
    Caller(meta): Caller,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let r = approval(&state, &meta, &req, body).await?;
    let decided = state
        .vault
        .decide_access_request(&meta, &id, true, r.expires_in)
        .await?;
    Ok(HttpResponse::Ok().json(AccessRequestResponse::from(decided)))
}

/// Deny an access request
///
/// Needs `admin` on `sys`; only a pending request can be denied.
#[utoipa::path(
    tag = "access",
    params(("id" = String, Path, description = "The request id")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AccessRequestResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/access-requests/{id}/deny")]
async fn deny(
    Caller(meta): Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let decided = state
        .vault
        .decide_access_request(&meta, &id, false, None)
        .await?;
    Ok(HttpResponse::Ok().json(AccessRequestResponse::from(decided)))
}
