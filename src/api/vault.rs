//! The seed-compatible UUID endpoints: `/vault/secret/create` and `/vault/secret/fetch`.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::identity::Caller;
use super::{read_json, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::vault::Target;

#[derive(Deserialize, ToSchema)]
pub struct CreateRequest {
    /// The secret, standard base64 (RFC 4648, padded).
    #[schema(example = "aHVudGVyMg==")]
    pub secret: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateResponse {
    /// The new secret's id (UUID v4).
    pub secret_id: String,
}

#[derive(Deserialize, ToSchema)]
pub struct FetchRequest {
    /// The id returned by create (or the `id` of a path-addressed secret).
    pub secret_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    /// The secret, base64 exactly as created.
    pub secret: String,
}

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
        (status = 201, description = "Secret stored", body = CreateResponse),
        (status = 400, description = "Body not JSON, field missing, secret empty or not base64", body = ErrorBody),
        (status = 401, description = "Missing or invalid X-Service / X-Token", body = ErrorBody),
        (status = 403, description = "The service may not write here", body = ErrorBody),
        (status = 413, description = "Secret or body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 500, description = "Internal error (details are logged, not returned)", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
#[post("/vault/secret/create")]
async fn create(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    create_secret(caller, req, body, state).await
}

/// Store a new secret (trailing-slash alias)
#[utoipa::path(
    tag = "vault",
    request_body = CreateRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 201, description = "Secret stored", body = CreateResponse),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 413, description = "Secret or body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/vault/secret/create/")]
async fn create_slash(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    create_secret(caller, req, body, state).await
}

async fn create_secret(
    Caller(meta): Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let parsed = read_json::<CreateRequest>(&req, body, state.max_body_bytes, CREATE_SHAPE).await;
    let request = match parsed {
        Ok(r) => zeroize::Zeroizing::new(r.secret),
        Err(e) => {
            return Err(state
                .vault
                .fail("create", &meta, e, Target::default())
                .await)
        }
    };
    let secret_id = state.vault.create(&request, &meta).await?;
    Ok(HttpResponse::Created().json(CreateResponse { secret_id }))
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
        (status = 400, description = "Body not JSON, field missing, or `secret_id` not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid X-Service / X-Token", body = ErrorBody),
        (status = 403, description = "The service may not read this secret", body = ErrorBody),
        (status = 404, description = "No secret with that id", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 500, description = "Internal error, e.g. a record that fails to authenticate", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
#[post("/vault/secret/fetch")]
async fn fetch(
    Caller(meta): Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let parsed = read_json::<FetchRequest>(&req, body, state.max_body_bytes, FETCH_SHAPE).await;
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return Err(state.vault.fail("fetch", &meta, e, Target::default()).await),
    };
    let secret = state.vault.fetch(&request.secret_id, &meta).await?;
    Ok(HttpResponse::Ok().json(FetchResponse {
        secret: secret.as_str().to_owned(),
    }))
}
