//! `/api/projects`: register and list projects.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::identity::Caller;
use super::{read_json, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::store::projects::ProjectDoc;
use crate::vault::Target;

#[derive(Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    #[schema(example = "newsbot")]
    pub name: String,
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProjectResponse {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<ProjectDoc> for ProjectResponse {
    fn from(p: ProjectDoc) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            created_at: p.created_at.to_chrono(),
            created_by: p.created_by,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub items: Vec<ProjectResponse>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create).service(list);
}

/// Register a project
///
/// Needs `write` on `project:<name>`.
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
    let r = match read_json::<CreateProjectRequest>(&req, body, state.max_body_bytes, shape).await {
        Ok(r) => r,
        Err(e) => {
            return Err(state
                .vault
                .fail("project_create", &meta, e, Target::default())
                .await)
        }
    };
    let project = state
        .vault
        .create_project(&meta, &r.name, r.description)
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
