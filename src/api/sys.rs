//! `/api/sys`: key rotation, rewrap and status (admin on `sys`).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::AppState;
use crate::dto::{KeyInfo, KeyList, RewrapResponse, RotateResponse};
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
pub struct RewrapQuery {
    /// Documents to re-seal in this call (default 10000); call again while `versions_remaining` > 0.
    pub max_documents: Option<u64>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(rotate)
        .service(rewrap)
        .service(keys)
        .service(destroy);
}

/// Rotate the data key
///
/// A new data key becomes active for new seals; old keys keep decrypting.
#[utoipa::path(
    tag = "sys",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RotateResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/sys/rotate")]
async fn rotate(
    Caller(meta): Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let active_key_id = state.vault.rotate_key(&meta).await?;
    Ok(HttpResponse::Ok().json(RotateResponse { active_key_id }))
}

/// Re-seal old versions under the active key
///
/// Resumable and safe beside other replicas doing the same.
#[utoipa::path(
    tag = "sys",
    params(RewrapQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RewrapResponse),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 500, description = "A version failed to decrypt (logged)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/sys/rewrap")]
async fn rewrap(
    Caller(meta): Caller,
    query: web::Query<RewrapQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let max = query.max_documents.unwrap_or(10_000).max(1);
    let report = state.vault.rewrap(&meta, max).await?;
    Ok(HttpResponse::Ok().json(RewrapResponse::from(report)))
}

/// List data keys
///
/// Each key's state and how many stored versions it still seals.
#[utoipa::path(
    tag = "sys",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = KeyList),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/sys/keys")]
async fn keys(Caller(meta): Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (active_key_id, keys) = state.vault.key_status(&meta).await?;
    Ok(HttpResponse::Ok().json(KeyList {
        active_key_id,
        keys: keys.into_iter().map(KeyInfo::from).collect(),
    }))
}

/// Destroy an unused data key
///
/// Refused (409) for the active key or a key that still seals any version.
#[utoipa::path(
    tag = "sys",
    params(("key_id" = String, Path, description = "The data key id")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 204, description = "Destroyed"),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "Active or still in use", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[delete("/api/sys/keys/{key_id}")]
async fn destroy(
    Caller(meta): Caller,
    key_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.vault.destroy_key(&meta, &key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
