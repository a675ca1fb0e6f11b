//! `/api/projects`: register and list projects.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{CreateProjectRequest, ProjectList, ProjectResponse};
use crate::error::ApiError;
use crate::vault::names::ProjectName;
use crate::vault::Op;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create).service(list);
}

/// Register a project
///
/// Needs `write` on `project:<name>`, or any grant on a secret inside the
/// project (`secret:<name>:...`), unless `write` on it is explicitly denied.
#[utoipa::path(
    tag = "projects",
    request_body = CreateProjectRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 201, body = ProjectResponse),
        (status = 400, description = "Bad JSON or name", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Denied", body = ErrorBody),
        (status = 409, description = "A project with that name exists", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/projects")]
async fn create(
    Caller(meta): Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let shape = "an object with `name` and optional `description`";
    let r: CreateProjectRequest =
        read_body(&state, &meta, Op::ProjectCreate, &req, body, shape).await?;
    let name = ProjectName::parse(&r.name);
    let name = state.vault.check(Op::ProjectCreate, &meta, name).await?;
    let project = state
        .vault
        .create_project(&meta, &name, r.description)
        .await?;
    Ok(HttpResponse::Created().json(ProjectResponse::from(project)))
}

/// List projects
///
/// Those on which the caller holds `list` (`project:<name>`).
#[utoipa::path(
    tag = "projects",
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ProjectList),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/projects")]
async fn list(Caller(meta): Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.vault.list_projects(&meta).await?;
    Ok(HttpResponse::Ok().json(ProjectList {
        items: items.into_iter().map(ProjectResponse::from).collect(),
    }))
}
