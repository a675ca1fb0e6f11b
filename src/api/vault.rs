//! The seed-compatible UUID endpoints: `/vault/secret/create` and `/vault/secret/fetch`.

use actix_web::{post, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::{SeedError, SeedErrorBody};
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{CreateRequest, CreateResponse, FetchRequest, FetchResponse};
use crate::error::ApiError;
use crate::vault::Op;

const CREATE_SHAPE: &str = "an object with a base64 string field `secret`";
const FETCH_SHAPE: &str = "an object with a UUID string field `secret_id`";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create).service(create_slash).service(fetch);
}

/// Store a new secret
///
/// Encrypts the base64 `secret` with AES-256-GCM and stores it under a new UUID
/// (project `default`, path = the UUID). Needs `write` on `secret:default:<uuid>`.
#[utoipa::path(
    tag = "vault",
    request_body = CreateRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, description = "Secret stored", body = CreateResponse),
        (status = 400, description = "Body not JSON, field missing, secret empty or not base64", body = SeedErrorBody),
        (status = 401, description = "Missing or invalid X-Service / X-Token", body = SeedErrorBody),
        (status = 403, description = "The service may not write here", body = SeedErrorBody),
        (status = 413, description = "Secret or body too large", body = SeedErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = SeedErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = SeedErrorBody),
        (status = 500, description = "Internal error (details are logged, not returned)", body = SeedErrorBody),
        (status = 503, description = "Database unavailable; retry after `Retry-After` seconds", body = SeedErrorBody),
    )
)]
#[post("/vault/secret/create")]
async fn create(
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    create_secret(caller, req, body, state).await
}

/// Store a new secret (trailing-slash alias)
#[utoipa::path(
    tag = "vault",
    request_body = CreateRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, description = "Secret stored", body = CreateResponse),
        (status = 400, description = "Bad input", body = SeedErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = SeedErrorBody),
        (status = 403, description = "Denied", body = SeedErrorBody),
        (status = 413, description = "Secret or body too large", body = SeedErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = SeedErrorBody),
        (status = 429, description = "Too many failed authentications", body = SeedErrorBody),
        (status = 500, description = "Internal error", body = SeedErrorBody),
        (status = 503, description = "Database unavailable", body = SeedErrorBody),
    )
)]
#[post("/vault/secret/create/")]
async fn create_slash(
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    create_secret(caller, req, body, state).await
}

async fn create_secret(
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    let Caller(meta) = caller?;
    let r: CreateRequest = read_body(&state, &meta, Op::Create, &req, body, CREATE_SHAPE).await?;
    let secret = zeroize::Zeroizing::new(r.secret);
    let secret_id = state.vault.create(&secret, &meta).await?;
    // The seed service answered 200, and its clients check for it.
    Ok(HttpResponse::Ok().json(CreateResponse { secret_id }))
}

/// Fetch a secret by id
///
/// Decrypts and returns the secret's current value as base64. Needs `read` on the secret.
#[utoipa::path(
    tag = "vault",
    request_body = FetchRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, description = "The secret", body = FetchResponse),
        (status = 400, description = "Body not JSON, field missing, or `secret_id` not a UUID", body = SeedErrorBody),
        (status = 401, description = "Missing or invalid X-Service / X-Token", body = SeedErrorBody),
        (status = 403, description = "The service may not read this secret", body = SeedErrorBody),
        (status = 404, description = "No secret with that id", body = SeedErrorBody),
        (status = 413, description = "Body too large", body = SeedErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = SeedErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = SeedErrorBody),
        (status = 500, description = "Internal error, e.g. a record that fails to authenticate", body = SeedErrorBody),
        (status = 503, description = "Database unavailable; retry after `Retry-After` seconds", body = SeedErrorBody),
    )
)]
#[post("/vault/secret/fetch")]
async fn fetch(
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SeedError> {
    let Caller(meta) = caller?;
    let r: FetchRequest = read_body(&state, &meta, Op::Fetch, &req, body, FETCH_SHAPE).await?;
    let secret = state.vault.fetch(&r.secret_id, &meta).await?;
    Ok(HttpResponse::Ok().json(FetchResponse {
        secret: secret.as_str().to_owned(),
    }))
}
