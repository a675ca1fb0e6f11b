//! Path-addressed secrets: `/api/secrets`, `/api/secrets/{project}/{path...}`.

use actix_web::{delete, get, patch, post, web, FromRequest as _, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{
    AuthTestResponse, CreateSecretRequest, IdentityResponse, SecretList, SecretListQuery,
    SecretResponse, UpdateSecretRequest, VersionList,
};
use crate::error::ApiError;
use crate::vault::named::{
    missing_only, ListQuery as VaultListQuery, MetadataChange, NewSecret, DEFAULT_LIST_LIMIT,
};
use crate::vault::names::{ProjectName, SecretKey};
use crate::vault::rotation::Stage;
use crate::vault::{Op, RequestMeta, Value};

#[derive(Deserialize, IntoParams)]
pub struct SecretAddress {
    /// Project name.
    pub project: String,
    /// Secret path; may contain `/`.
    pub path: String,
}

impl SecretAddress {
    /// The checked key, or a refusal of `op` (audited).
    pub(super) async fn key(
        &self,
        state: &AppState,
        meta: &RequestMeta,
        op: Op,
    ) -> Result<SecretKey, ApiError> {
        let key = SecretKey::new(&self.project, &self.path);
        state.vault.check(op, meta, key).await
    }
}

#[derive(Deserialize, IntoParams)]
pub struct VersionQuery {
    /// A kept older version instead of the current one.
    pub version: Option<i64>,
    /// What you need it for: kept on the stub recorded when the secret does not exist yet.
    pub description: Option<String>,
    /// A staging label instead: `current`, `pending` or `previous` (see rotation).
    pub stage: Option<String>,
}

const CREATE_SHAPE: &str = "an object with `project`, `path` and `value` (or `value_b64`)";
const UPDATE_SHAPE: &str =
    "an object with `value` (or `value_b64`) and optional `expected_version`";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(auth_test)
        .service(identity)
        .service(list)
        .service(create)
        .service(versions)
        .service(restore)
        .service(get_secret)
        .service(update)
        .service(delete_secret);
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
    let actor = state.vault.whoami(&meta).await?;
    Ok(HttpResponse::Ok().json(AuthTestResponse {
        status: "ok".into(),
        message: format!("Authentication successful for service '{actor}'"),
    }))
}

/// Who am I
///
/// The authenticated service and whether it holds `admin` on `sys` and on
/// `audit`; the console shows only the views these allow. Audited as a
/// credential check.
#[utoipa::path(
    tag = "secrets",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = IdentityResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/identity")]
async fn identity(
    Caller(meta): Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rights = state.vault.rights(&meta).await?;
    Ok(HttpResponse::Ok().json(IdentityResponse {
        service: rights.service,
        sys_admin: rights.sys_admin,
        audit_admin: rights.audit_admin,
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
    let r: CreateSecretRequest =
        read_body(&state, &meta, Op::Create, &req, body, CREATE_SHAPE).await?;
    let parsed = SecretKey::new(&r.project, &r.path).and_then(|key| {
        let value = Value::one_of(r.value.as_deref(), r.value_b64.as_deref())?;
        Ok((key, value))
    });
    let (key, value) = state.vault.check(Op::Create, &meta, parsed).await?;
    let new = NewSecret {
        key,
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
/// The current version, or `?version=N`, or `?stage=pending|previous`. Needs
/// `read`. A rotation's verifier reads the pending version with
/// `?stage=pending` and its single-use `X-Read-Token` instead of a service identity.
#[utoipa::path(
    tag = "secrets",
    params(SecretAddress, VersionQuery),
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = SecretResponse),
        (status = 400, description = "Bad project, path or version", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 404, description = "No such secret or version", body = ErrorBody),
        (status = 410, description = "The secret has expired", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/secrets/{project}/{path:.*}")]
async fn get_secret(
    req: HttpRequest,
    at: web::Path<SecretAddress>,
    query: web::Query<VersionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let read_token = req
        .headers()
        .get(super::rotation::READ_TOKEN_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    if let Some(token) = read_token {
        return super::rotation::read_with_token(&req, &at, &query, token, &state).await;
    }
    let Caller(meta) = Caller::extract(&req).await?;
    let key = at.key(&state, &meta, Op::Read).await?;
    let record = match query.stage.as_deref() {
        None => {
            state
                .vault
                .get(&meta, &key, query.version, query.description.as_deref())
                .await?
        }
        Some(stage) => {
            let stage = Stage::parse(stage).and_then(|s| match query.version {
                Some(_) => Err(ApiError::new(
                    crate::error::ErrorCode::InvalidQuery,
                    "give `version` or `stage`, not both",
                )),
                None => Ok(s),
            });
            let stage = state.vault.check(Op::Read, &meta, stage).await?;
            state.vault.get_stage(&meta, &key, stage).await?
        }
    };
    Ok(HttpResponse::Ok().json(SecretResponse::from(record)))
}

/// Write a new version
///
/// Keeps the last `MAX_VERSIONS`. With `expected_version`, a compare-and-set. Needs `write`.
#[utoipa::path(
    tag = "secrets",
    params(SecretAddress),
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
    at: web::Path<SecretAddress>,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::Update).await?;
    let r: UpdateSecretRequest =
        read_body(&state, &meta, Op::Update, &req, body, UPDATE_SHAPE).await?;
    let value = Value::one_of(r.value.as_deref(), r.value_b64.as_deref());
    let value = state.vault.check(Op::Update, &meta, value).await?;
    let metadata = MetadataChange {
        description: r.description,
        tags: r.tags,
        kind: r.kind,
    };
    let record = state
        .vault
        .update(&meta, &key, value, r.expected_version, metadata)
        .await?;
    Ok(HttpResponse::Ok().json(SecretResponse::from(record)))
}

/// Delete a secret (recoverable)
///
/// Hidden from reads and lists at once; `POST .../restore` brings it back within
/// `DELETE_RECOVERY_DAYS`, after which it is purged. Needs `delete`.
#[utoipa::path(
    tag = "secrets",
    params(SecretAddress),
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
    at: web::Path<SecretAddress>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::Delete).await?;
    state.vault.delete(&meta, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Restore a deleted secret
///
/// Needs `delete`.
#[utoipa::path(
    tag = "secrets",
    params(SecretAddress),
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
    at: web::Path<SecretAddress>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::Restore).await?;
    state.vault.restore(&meta, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a secret's versions
///
/// Metadata only, newest first. Needs `list`.
#[utoipa::path(
    tag = "secrets",
    params(SecretAddress),
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
    at: web::Path<SecretAddress>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = at.key(&state, &meta, Op::Versions).await?;
    let history = state.vault.versions(&meta, &key).await?;
    Ok(HttpResponse::Ok().json(VersionList::from(history)))
}

/// List secrets
///
/// Values redacted; only secrets the caller may `list`; stable cursor pagination
/// in (project, path) order.
#[utoipa::path(
    tag = "secrets",
    params(SecretListQuery),
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
    query: web::Query<SecretListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let parsed = q
        .project
        .as_deref()
        .map(ProjectName::parse)
        .transpose()
        .and_then(|p| Ok((p, missing_only(q.state.as_deref())?)));
    let (project, missing) = state.vault.check(Op::List, &meta, parsed).await?;
    let page = state
        .vault
        .list(
            &meta,
            VaultListQuery {
                missing,
                project,
                prefix: q.prefix.as_deref(),
                contains: q.contains.as_deref().filter(|c| !c.is_empty()),
                limit: q.limit.unwrap_or(DEFAULT_LIST_LIMIT),
                cursor: q.cursor.as_deref(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(SecretList::from(page)))
}
