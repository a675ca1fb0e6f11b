//! `/api/service-tokens`: self-registration (no identity needed) and its
//! approval, denial and revocation (admin on `sys`).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, request_meta, AppState};
use crate::dto::{
    RegisterTokenRequest, RegisterTokenResponse, ServiceTokenInfo, ServiceTokenList,
    ServiceTokenQuery,
};
use crate::error::{ApiError, ErrorCode};
use crate::vault::service_tokens::{RegisterInput, TokenAction, TokenState};
use crate::vault::{Op, RequestMeta};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register)
        .service(list)
        .service(approve)
        .service(deny)
        .service(revoke);
}

/// Register a service token
///
/// No identity needed. The token (≥ 128 bits of estimated entropy) authenticates
/// as `service_name` once an admin approves it; only its SHA-256 is stored.
/// Registering the same token again answers its current state.
#[utoipa::path(
    tag = "service-tokens",
    request_body = RegisterTokenRequest,
    responses(
        (status = 200, body = RegisterTokenResponse),
        (status = 400, description = "Bad JSON, name or version, or a weak token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address", body = ErrorBody),
        (status = 503, description = "Too many pending registrations, or database unavailable", body = ErrorBody),
    )
)]
#[post("/api/service-tokens/register")]
async fn register(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = request_meta(&req, &state.proxies);
    let shape = "an object with `service_name`, `service_version` and `token`";
    let r: RegisterTokenRequest =
        read_body(&state, &meta, Op::TokenRegister, &req, body, shape).await?;
    let input = RegisterInput {
        service_name: &r.service_name,
        service_version: &r.service_version,
        token: &r.token,
    };
    let registration = state.vault.register_token(&meta, input).await?;
    Ok(HttpResponse::Ok().json(RegisterTokenResponse::from(registration)))
}

/// List registered service tokens
///
/// Oldest first; `?state=` keeps one state. Needs `admin` on `sys`.
#[utoipa::path(
    tag = "service-tokens",
    params(ServiceTokenQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ServiceTokenList),
        (status = 400, description = "Unknown state", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/service-tokens")]
async fn list(
    Caller(meta): Caller,
    query: web::Query<ServiceTokenQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let wanted = match query.state.as_deref() {
        None => Ok(None),
        Some(s) => TokenState::parse(s).map(Some).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                "`state` must be pending, approved, denied or revoked",
            )
        }),
    };
    let wanted = state.vault.check(Op::TokenList, &meta, wanted).await?;
    let items = state.vault.list_tokens(&meta, wanted).await?;
    Ok(HttpResponse::Ok().json(ServiceTokenList {
        items: items.into_iter().map(ServiceTokenInfo::from).collect(),
    }))
}

async fn act(
    meta: RequestMeta,
    id: &str,
    action: TokenAction,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let token = state.vault.transition_token(&meta, id, action).await?;
    Ok(HttpResponse::Ok().json(ServiceTokenInfo::from(token)))
}

/// Approve a pending service token
///
/// `pending` → `approved`. Needs `admin` on `sys`.
#[utoipa::path(
    tag = "service-tokens",
    params(("id" = String, Path, description = "The registration's id")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ServiceTokenInfo),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such registration", body = ErrorBody),
        (status = 409, description = "Not pending (`invalid_transition`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/service-tokens/{id}/approve")]
async fn approve(
    Caller(meta): Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(meta, &id, TokenAction::Approve, &state).await
}

/// Deny a pending service token
///
/// `pending` → `denied`. Needs `admin` on `sys`.
#[utoipa::path(
    tag = "service-tokens",
    params(("id" = String, Path, description = "The registration's id")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ServiceTokenInfo),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such registration", body = ErrorBody),
        (status = 409, description = "Not pending (`invalid_transition`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/service-tokens/{id}/deny")]
async fn deny(
    Caller(meta): Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(meta, &id, TokenAction::Deny, &state).await
}

/// Revoke an approved service token
///
/// `approved` → `revoked`; every replica refuses it within about a second
/// (its token cache). Needs `admin` on `sys`.
#[utoipa::path(
    tag = "service-tokens",
    params(("id" = String, Path, description = "The registration's id")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ServiceTokenInfo),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such registration", body = ErrorBody),
        (status = 409, description = "Not approved (`invalid_transition`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/service-tokens/{id}/revoke")]
async fn revoke(
    Caller(meta): Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(meta, &id, TokenAction::Revoke, &state).await
}
