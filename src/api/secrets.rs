//! Path-addressed secrets: `/api/secrets`, `/api/secrets/{project}/{path...}`.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::identity::Caller;
use super::{read_json, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::vault::named::{NewSecret, SecretRecord};
use crate::vault::{Target, Value};

#[derive(Deserialize, ToSchema)]
pub struct CreateSecretRequest {
    /// Project name: 1-64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
    #[schema(example = "newsbot")]
    pub project: String,
    /// `/`-separated segments of `A-Z a-z 0-9 _ - .`; no empty, `.` or `..` segments.
    #[schema(example = "prod/api-key")]
    pub path: String,
    /// The value as text. Give exactly one of `value` and `value_b64`.
    pub value: Option<String>,
    /// The value as standard base64, for binary values.
    pub value_b64: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateSecretRequest {
    /// The new value as text. Give exactly one of `value` and `value_b64`.
    pub value: Option<String>,
    /// The new value as standard base64.
    pub value_b64: Option<String>,
    /// Only update if this is still the current version (compare-and-set); 409 otherwise.
    pub expected_version: Option<i64>,
}

/// A secret version with its value.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretResponse {
    pub id: String,
    pub project: String,
    pub path: String,
    /// The value as text, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as standard base64 (always present).
    pub value_b64: String,
    /// The version returned.
    pub version: i64,
    pub current_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tags: Vec<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
    /// Who wrote this version.
    pub updated_by: String,
}

impl From<SecretRecord> for SecretResponse {
    fn from(r: SecretRecord) -> Self {
        Self {
            value: std::str::from_utf8(&r.value).ok().map(str::to_string),
            value_b64: STANDARD.encode(r.value.as_slice()),
            id: r.id,
            project: r.project,
            path: r.path,
            version: r.version,
            current_version: r.current_version,
            description: r.description,
            tags: r.tags,
            kind: r.kind,
            created_at: r.created_at.to_chrono(),
            created_by: r.created_by,
            updated_at: r.updated_at.to_chrono(),
            updated_by: r.updated_by,
        }
    }
}

/// A secret without its value.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretSummary {
    pub id: String,
    pub project: String,
    pub path: String,
    /// The current version.
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tags: Vec<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub id: String,
    pub project: String,
    pub path: String,
    pub current_version: i64,
    /// Kept versions, newest first (up to `MAX_VERSIONS`).
    pub versions: Vec<VersionInfo>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuthTestResponse {
    #[schema(example = "ok")]
    pub status: String,
    pub message: String,
}

#[derive(Deserialize, IntoParams)]
pub struct SecretPath {
    /// Project name.
    pub project: String,
    /// Secret path; may contain `/`.
    pub path: String,
}

#[derive(Deserialize, IntoParams)]
pub struct VersionQuery {
    /// A kept older version instead of the current one.
    pub version: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only paths starting with this.
    pub prefix: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const CREATE_SHAPE: &str = "an object with `project`, `path` and `value` (or `value_b64`)";
const UPDATE_SHAPE: &str =
    "an object with `value` (or `value_b64`) and optional `expected_version`";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(auth_test)
        .service(list)
        .service(create)
        .service(versions)
        .service(restore)
        .service(get_secret)
        .service(update)
        .service(delete_secret);
}

fn one_value<'a>(
    value: &'a Option<String>,
    value_b64: &'a Option<String>,
) -> Result<Value<'a>, ApiError> {
    match (value, value_b64) {
        (Some(v), None) => Ok(Value::Text(v)),
        (None, Some(b)) => Ok(Value::Base64(b)),
        _ => Err(ApiError::bad_request(
            "invalid_value",
            "give exactly one of `value` (text) and `value_b64` (base64)",
        )),
    }
}

/// Check credentials
///
/// Answers when `X-Service` and `X-Token` are valid.
#[utoipa::path(
    tag = "secrets",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = AuthTestResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/secrets/test")]
async fn auth_test(
    Caller(meta): Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state
        .vault
        .audit_success("auth_test", &meta, Target::default())
        .await?;
    Ok(HttpResponse::Ok().json(AuthTestResponse {
        status: "ok".into(),
        message: format!("Authentication successful for service '{}'", meta.actor()),
    }))
}

/// Create a named secret
///
/// Version 1 of a new secret at `project`/`path`. Needs `write` on `secret:<project>:<path>`.
#[utoipa::path(
    tag = "secrets",
    request_body = CreateSecretRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 201, description = "Created", body = SecretResponse),
        (status = 400, description = "Bad JSON, project, path, value or metadata", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 409, description = "A secret (or a deleted one) exists at that path", body = ErrorBody),
        (status = 413, description = "Value or body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/secrets")]
async fn create(
    Caller(meta): Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let parsed = read_json::<CreateSecretRequest>(&req, body, state.max_body_bytes, CREATE_SHAPE)
        .await
        .and_then(|r| {
            one_value(&r.value, &r.value_b64)?;
            Ok(r)
        });
    let r = match parsed {
        Ok(r) => r,
        Err(e) => {
            return Err(state
                .vault
                .fail("create", &meta, e, Target::default())
                .await)
        }
    };
    let value = one_value(&r.value, &r.value_b64)?;
    let new = NewSecret {
        project: &r.project,
        path: &r.path,
        value,
        description: r.description.clone(),
        tags: r.tags.clone(),
        kind: r.kind.clone(),
    };
    let record = state.vault.create_named(&meta, new).await?;
    Ok(HttpResponse::Created().json(SecretResponse::from(record)))
}

/// Read a secret
///
/// The current version, or `?version=N`. Needs `read`.
#[utoipa::path(
    tag = "secrets",
    params(SecretPath, VersionQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = SecretResponse),
        (status = 400, description = "Bad project, path or version", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret or version", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/secrets/{project}/{path:.*}")]
async fn get_secret(
    Caller(meta): Caller,
    at: web::Path<SecretPath>,
    query: web::Query<VersionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let record = state
        .vault
        .get(&meta, &at.project, &at.path, query.version)
        .await?;
    Ok(HttpResponse::Ok().json(SecretResponse::from(record)))
}

/// Write a new version
///
/// Keeps the last `MAX_VERSIONS`. With `expected_version`, a compare-and-set. Needs `write`.
#[utoipa::path(
    tag = "secrets",
    params(SecretPath),
    request_body = UpdateSecretRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, description = "The new version", body = SecretResponse),
        (status = 400, description = "Bad JSON, path or value", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "`expected_version` is not current", body = ErrorBody),
        (status = 413, description = "Value or body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[patch("/api/secrets/{project}/{path:.*}")]
async fn update(
    Caller(meta): Caller,
    at: web::Path<SecretPath>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let parsed = read_json::<UpdateSecretRequest>(&req, body, state.max_body_bytes, UPDATE_SHAPE)
        .await
        .and_then(|r| {
            one_value(&r.value, &r.value_b64)?;
            Ok(r)
        });
    let r = match parsed {
        Ok(r) => r,
        Err(e) => {
            let target = Target::path(&at.project, &at.path);
            return Err(state.vault.fail("update", &meta, e, target).await);
        }
    };
    let value = one_value(&r.value, &r.value_b64)?;
    let record = state
        .vault
        .update(&meta, &at.project, &at.path, value, r.expected_version)
        .await?;
    Ok(HttpResponse::Ok().json(SecretResponse::from(record)))
}

/// Delete a secret (recoverable)
///
/// Hidden from reads and lists at once; `POST .../restore` brings it back within
/// `DELETE_RECOVERY_DAYS`, after which it is purged. Needs `delete`.
#[utoipa::path(
    tag = "secrets",
    params(SecretPath),
    security(("service" = [], "token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad project or path", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[delete("/api/secrets/{project}/{path:.*}")]
async fn delete_secret(
    Caller(meta): Caller,
    at: web::Path<SecretPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.vault.delete(&meta, &at.project, &at.path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Restore a deleted secret
///
/// Needs `delete`.
#[utoipa::path(
    tag = "secrets",
    params(SecretPath),
    security(("service" = [], "token" = [])),
    responses(
        (status = 204, description = "Restored"),
        (status = 400, description = "Bad project or path", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No deleted secret there (or already purged)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/secrets/{project}/{path:.*}/restore")]
async fn restore(
    Caller(meta): Caller,
    at: web::Path<SecretPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.vault.restore(&meta, &at.project, &at.path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a secret's versions
///
/// Metadata only, newest first. Needs `list`.
#[utoipa::path(
    tag = "secrets",
    params(SecretPath),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = VersionList),
        (status = 400, description = "Bad project or path", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/secrets/{project}/{path:.*}/versions")]
async fn versions(
    Caller(meta): Caller,
    at: web::Path<SecretPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let view = state.vault.versions(&meta, &at.project, &at.path).await?;
    Ok(HttpResponse::Ok().json(VersionList {
        id: view.id,
        project: view.project,
        path: view.path,
        current_version: view.current_version,
        versions: view
            .versions
            .into_iter()
            .map(|v| VersionInfo {
                version: v.version,
                created_at: v.created_at.to_chrono(),
                created_by: v.created_by,
            })
            .collect(),
    }))
}

/// List secrets
///
/// Values redacted; only secrets the caller may `list`; stable cursor pagination
/// in (project, path) order.
#[utoipa::path(
    tag = "secrets",
    params(ListQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = SecretList),
        (status = 400, description = "Bad project, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/secrets")]
async fn list(
    Caller(meta): Caller,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = state
        .vault
        .list(
            &meta,
            q.project.as_deref(),
            q.prefix.as_deref(),
            q.limit.unwrap_or(50),
            q.cursor.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(SecretList {
        items: page
            .items
            .into_iter()
            .map(|s| SecretSummary {
                id: s.id,
                project: s.project,
                path: s.path,
                version: s.current_version,
                description: s.description,
                tags: s.tags,
                kind: s.kind,
                updated_at: s.updated_at.to_chrono(),
                updated_by: s.updated_by,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
