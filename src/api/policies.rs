//! `/api/policies` and `/api/services/{name}/roles`: policies and role
//! bindings managed at run time, beside the read-only ones of config.yaml.
//! Every route needs `admin` on `sys`.

use actix_web::{delete, get, put, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{PolicyList, PolicyRequest, PolicyResponse, RolesRequest, RolesResponse};
use crate::error::ApiError;
use crate::vault::Op;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(get_one)
        .service(put_one)
        .service(delete_one)
        .service(put_roles);
}

/// List policies
///
/// config.yaml's (`source: config`) and the run-time ones (`source: runtime`).
#[utoipa::path(
    tag = "policies",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = PolicyList),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/policies")]
async fn list(Caller(meta): Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let found = state.vault.list_policies(&meta).await?;
    Ok(HttpResponse::Ok().json(PolicyList {
        items: found.into_iter().map(PolicyResponse::from).collect(),
    }))
}

/// Read a policy
#[utoipa::path(
    tag = "policies",
    params(("name" = String, Path, description = "The policy name")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = PolicyResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/policies/{name}")]
async fn get_one(
    Caller(meta): Caller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = state.vault.policy(&meta, &name).await?;
    Ok(HttpResponse::Ok().json(PolicyResponse::from(found)))
}

/// Create or replace a run-time policy
///
/// Checked exactly like a config.yaml policy; a 400 names every problem.
/// Every replica applies it within a second.
#[utoipa::path(
    tag = "policies",
    params(("name" = String, Path, description = "The policy name")),
    request_body = PolicyRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = PolicyResponse),
        (status = 400, description = "Bad body or policy", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 409, description = "A config.yaml policy", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[put("/api/policies/{name}")]
async fn put_one(
    Caller(meta): Caller,
    name: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let shape = "an object with `permissions` (a list of `effect`, `actions`, `resources`) and an optional `description`";
    let r: PolicyRequest = read_body(&state, &meta, Op::PolicyPut, &req, body, shape).await?;
    let saved = state.vault.put_policy(&meta, &name, r.into()).await?;
    Ok(HttpResponse::Ok().json(PolicyResponse::from(saved)))
}

/// Delete a run-time policy
///
/// Bindings that name it then add nothing.
#[utoipa::path(
    tag = "policies",
    params(("name" = String, Path, description = "The policy name")),
    security(("service" = [], "token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
        (status = 409, description = "A config.yaml policy", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[delete("/api/policies/{name}")]
async fn delete_one(
    Caller(meta): Caller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.vault.delete_policy(&meta, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Set a service's run-time roles
///
/// Each role must name a policy (config.yaml or run-time); an empty list
/// removes them. The roles add to what config.yaml and the environment grant.
#[utoipa::path(
    tag = "policies",
    params(("name" = String, Path, description = "The service name")),
    request_body = RolesRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RolesResponse),
        (status = 400, description = "Bad body, service name or unknown role", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Needs `admin` on `sys`", body = ErrorBody),
        (status = 409, description = "A config.yaml service", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[put("/api/services/{name}/roles")]
async fn put_roles(
    Caller(meta): Caller,
    name: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let shape = "an object with `roles` (a list of policy names)";
    let r: RolesRequest = read_body(&state, &meta, Op::ServiceRoles, &req, body, shape).await?;
    let saved = state.vault.put_service_roles(&meta, &name, r.roles).await?;
    Ok(HttpResponse::Ok().json(RolesResponse::from(saved)))
}
