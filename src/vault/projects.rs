//! Projects: a registry of names with descriptions. Secrets may live in a
//! project before it is registered (as Vault paths do); registering documents it.
//! Registering needs `write` on `project:<name>` or any grant inside the
//! project (`PolicyEngine::may_register_project`).

use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;

use super::names::ProjectName;
use super::{utc, Op, RequestMeta, Vault};
use crate::auth::{project_resource, Action};
use crate::error::{ApiError, ErrorCode};
use crate::store::projects::{self, ProjectDoc};

/// A registered project.
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<ProjectDoc> for Project {
    fn from(p: ProjectDoc) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            created_at: utc(p.created_at),
            created_by: p.created_by,
        }
    }
}

impl Vault {
    pub async fn create_project(
        &self,
        meta: &RequestMeta,
        name: &ProjectName,
        description: Option<String>,
    ) -> Result<Project, ApiError> {
        self.run(Op::ProjectCreate, meta, async |scope| {
            check_description(&description)?;
            scope.project(Some(name.as_str()));
            // A service granted anything inside a project may register it (the
            // myVault tutorial's `newsbot-api`, granted `newsbot:prod/`).
            if !self
                .policies
                .may_register_project(meta.actor(), name.as_str())
            {
                return Err(ApiError::forbidden(
                    meta.actor(),
                    &format!("project {}", name.as_str()),
                ));
            }
            let doc = ProjectDoc {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.as_str().to_string(),
                description,
                created_at: BsonDateTime::now(),
                created_by: meta.actor().to_string(),
            };
            if !projects::insert(self.db(), &doc).await? {
                return Err(ApiError::new(
                    ErrorCode::ProjectExists,
                    "a project with that name exists",
                ));
            }
            Ok(Project::from(doc))
        })
        .await
    }

    /// The projects the caller may `list`.
    pub async fn list_projects(&self, meta: &RequestMeta) -> Result<Vec<Project>, ApiError> {
        self.run(Op::ProjectList, meta, async |_| {
            let all = projects::list(self.db()).await?;
            Ok(all
                .into_iter()
                .filter(|p| self.may(meta, Action::List, &project_resource(&p.name)))
                .map(Project::from)
                .collect())
        })
        .await
    }
}

fn check_description(d: &Option<String>) -> Result<(), ApiError> {
    if d.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::new(
            ErrorCode::InvalidMetadata,
            "`description` must be at most 1024 characters",
        ));
    }
    Ok(())
}
