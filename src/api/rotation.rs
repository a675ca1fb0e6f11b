//! Rotation: `/api/secrets/{project}/{path...}/rotation` (the schedule) and
//! `/rotate` (now). Parses and maps only; the vault does the rest.

use actix_web::http::header;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::secrets::{SecretAddress, VersionQuery};
use super::{read_body, request_meta, AppState};
use crate::dto::SecretResponse;
use crate::error::{ApiError, ErrorCode};
use crate::vault::rotation::{
    GeneratorInput, Rotated, RotationInput, RotationOutcome, RotationView, Stage,
};
use crate::vault::{Op, Value};

/// The verifier's single-use read token.
pub const READ_TOKEN_HEADER: &str = "x-read-token";

const PUT_SHAPE: &str = "an object with optional `every` or `cron`, `window`, `generator` {`kind`, `length`, `charset`}, `verify_url`, `health_url`, `expires_after` or `expires_at`";
const ROTATE_SHAPE: &str =
    "an empty body, or an object with `value` (text) or `value_b64` (base64)";

/// A rotation schedule. Without `every` and `cron`: every 90 days.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    /// A period such as `90d`, `12h` (1h-3650d).
    pub every: Option<String>,
    /// Five-field cron pattern in UTC (at most hourly), instead of `every`.
    pub cron: Option<String>,
    /// A random delay after each due time, at most 24h and shorter than the period.
    pub window: Option<String>,
    pub generator: Option<GeneratorRequest>,
    /// POSTed `{"project","path","version","stage":"verify","read_token"}` (signed); a 2xx within 10 s passes.
    pub verify_url: Option<String>,
    /// POSTed `{"project","path","version","stage":"health"}` (signed) after promotion; failure rolls back.
    pub health_url: Option<String>,
    /// Each promotion sets the secret's expiry this far ahead (1h-3650d).
    pub expires_after: Option<String>,
    /// A fixed expiry (RFC 3339), instead of `expires_after`.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How new values are made. Default: `password`, 32 characters.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorRequest {
    /// `password`, `token` (URL-safe characters) or `bytes`.
    pub kind: String,
    /// 8-4096 characters (bytes for `bytes`); default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// For `password`: 2-256 distinct printable ASCII characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RotationOutcomeResponse {
    pub time: DateTime<Utc>,
    /// `success`, `failed` or `rolled_back`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_version: Option<i64>,
    /// `manual` or `schedule`.
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A schedule with its next due time and recent outcomes (newest first).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RotationResponse {
    pub project: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub generator: GeneratorRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub next_rotation_at: DateTime<Utc>,
    pub last_rotation: Option<RotationOutcomeResponse>,
    pub history: Vec<RotationOutcomeResponse>,
}

/// Rotate now with the caller's value instead of the generator (optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    pub value: Option<String>,
    pub value_b64: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RotateResponse {
    pub project: String,
    pub path: String,
    /// The new current version.
    pub version: i64,
    /// The version it replaced (now `previous`).
    pub previous_version: i64,
    /// Tries it took (at most 3).
    pub tries: u32,
}

fn outcome(o: RotationOutcome) -> RotationOutcomeResponse {
    RotationOutcomeResponse {
        time: o.time,
        outcome: o.outcome,
        from_version: o.from_version,
        to_version: o.to_version,
        trigger: o.trigger,
        reason: o.reason,
    }
}

impl From<RotationView> for RotationResponse {
    fn from(v: RotationView) -> Self {
        Self {
            project: v.project,
            path: v.path,
            every: v.every,
            cron: v.cron,
            window: v.window,
            generator: GeneratorRequest {
                kind: v.generator.kind,
                length: Some(v.generator.length),
                charset: v.generator.charset,
            },
            verify_url: v.verify_url,
            health_url: v.health_url,
            expires_after: v.expires_after,
            expires_at: v.expires_at,
            next_rotation_at: v.next_rotation_at,
            last_rotation: v.last_rotation.map(outcome),
            history: v.history.into_iter().map(outcome).collect(),
        }
    }
}

impl From<Rotated> for RotateResponse {
    fn from(r: Rotated) -> Self {
        Self {
            project: r.project,
            path: r.path,
            version: r.version,
            previous_version: r.previous_version,
            tries: r.tries,
        }
    }
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(put_rotation)
        .service(get_rotation)
        .service(delete_rotation)
        .service(rotate);
}

/// Set a rotation schedule
///
/// Replaces the schedule (its history is kept). `expires_after` / `expires_at`
/// set the secret's expiry. Needs `write`.
#[utoipa::path(
    tag = "rotation",
    params(SecretAddress),
    request_body = RotationRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RotationResponse),
        (status = 400, description = "Bad JSON, path or schedule", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[put("/api/secrets/{project}/{path:.*}/rotation")]
async fn put_rotation(
    Caller(meta): Caller,
    at: web::Path<SecretAddress>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::RotationPut).await?;
    let r: RotationRequest =
        read_body(&state, &meta, Op::RotationPut, &req, body, PUT_SHAPE).await?;
    let input = RotationInput {
        every: r.every,
        cron: r.cron,
        window: r.window,
        generator: r.generator.map(|g| GeneratorInput {
            kind: g.kind,
            length: g.length,
            charset: g.charset,
        }),
        verify_url: r.verify_url,
        health_url: r.health_url,
        expires_after: r.expires_after,
        expires_at: r.expires_at,
    };
    let view = state.vault.rotation_put(&meta, &key, input).await?;
    Ok(HttpResponse::Ok().json(RotationResponse::from(view)))
}

/// Show a rotation schedule
///
/// With `next_rotation_at`, `last_rotation` and the last 20 outcomes. Needs `list`.
#[utoipa::path(
    tag = "rotation",
    params(SecretAddress),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RotationResponse),
        (status = 400, description = "Bad project or path", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret, or no schedule", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/secrets/{project}/{path:.*}/rotation")]
async fn get_rotation(
    Caller(meta): Caller,
    at: web::Path<SecretAddress>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::RotationRead).await?;
    let view = state.vault.rotation_get(&meta, &key).await?;
    Ok(HttpResponse::Ok().json(RotationResponse::from(view)))
}

/// Stop rotating
///
/// Removes the schedule and the secret's expiry. Needs `write`.
#[utoipa::path(
    tag = "rotation",
    params(SecretAddress),
    security(("service" = [], "token" = [])),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, description = "Bad project or path", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret, or no schedule", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[delete("/api/secrets/{project}/{path:.*}/rotation")]
async fn delete_rotation(
    Caller(meta): Caller,
    at: web::Path<SecretAddress>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::RotationDelete).await?;
    state.vault.rotation_delete(&meta, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate now
///
/// Stage, verify, promote, check health (rolling back on failure), up to
/// three tries; answers when done. The schedule's generator and receivers
/// apply (without a schedule: a 32-character password, no receivers), or
/// the caller's `value` / `value_b64`. Needs `write`.
#[utoipa::path(
    tag = "rotation",
    params(SecretAddress),
    request_body(content = Option<RotateRequest>),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = RotateResponse),
        (status = 400, description = "Bad JSON, path or value", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "Another rotation is in progress", body = ErrorBody),
        (status = 413, description = "Value or body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 502, description = "The rotation failed (verify or health receiver refused)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/secrets/{project}/{path:.*}/rotate")]
async fn rotate(
    Caller(meta): Caller,
    at: web::Path<SecretAddress>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::Rotate).await?;
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let empty = declared == Some(0)
        || (declared.is_none() && !headers.contains_key(header::TRANSFER_ENCODING));
    let r: RotateRequest = if empty {
        RotateRequest::default()
    } else {
        read_body(&state, &meta, Op::Rotate, &req, body, ROTATE_SHAPE).await?
    };
    let value = match (r.value.as_deref(), r.value_b64.as_deref()) {
        (None, None) => Ok(None),
        (v, b) => Value::one_of(v, b).map(Some),
    };
    let value = state.vault.check(Op::Rotate, &meta, value).await?;
    let done = state.vault.rotate_now(&meta, &key, value).await?;
    Ok(HttpResponse::Ok().json(RotateResponse::from(done)))
}

/// `GET ...?stage=pending` with `X-Read-Token` (see `Vault::read_with_token`).
pub(super) async fn read_with_token(
    req: &HttpRequest,
    at: &SecretAddress,
    query: &VersionQuery,
    token: &str,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let mut meta = request_meta(req, &state.proxies);
    let key = at.key(state, &meta, Op::RotationVerifyRead).await?;
    let stage = match (query.stage.as_deref().map(Stage::parse), query.version) {
        (Some(Ok(Stage::Pending)), None) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "a read token reads only `?stage=pending`",
        )),
    };
    state
        .vault
        .check(Op::RotationVerifyRead, &meta, stage)
        .await?;
    let record = state.vault.read_with_token(&mut meta, &key, token).await?;
    Ok(HttpResponse::Ok().json(SecretResponse::from(record)))
}
