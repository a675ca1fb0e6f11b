//! Projects: a registry of names with descriptions. Secrets may live in a
//! project before it is registered (as Vault paths do); registering documents it.

use mongodb::bson::DateTime;

use super::names::check_project;
use super::{RequestMeta, Target, Vault};
use crate::auth::{project_resource, Action};
use crate::error::ApiError;
use crate::store::projects::{self, ProjectDoc};

impl Vault {
    pub async fn create_project(
        &self,
        meta: &RequestMeta,
        name: &str,
        description: Option<String>,
    ) -> Result<ProjectDoc, ApiError> {
        const OP: &str = "project_create";
        let target = Target {
            project: Some(name),
            ..Target::default()
        };
        if let Err(e) = check_project(name).and_then(|_| check_description(&description)) {
            return Err(self.fail(OP, meta, e, Target::default()).await);
        }
        self.authorize(
            OP,
            meta,
            Action::Write,
            &project_resource(name),
            &format!("project {name}"),
            target,
        )
        .await?;
        let doc = ProjectDoc {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            description,
            created_at: DateTime::now(),
            created_by: meta.actor().to_string(),
        };
        match projects::insert(self.db(), &doc).await {
            Ok(true) => {}
            Ok(false) => {
                let e = ApiError::conflict("project_exists", "a project with that name exists");
                return Err(self.fail(OP, meta, e, target).await);
            }
            Err(e) => return Err(self.fail(OP, meta, e.into(), target).await),
        }
        self.audit_success(OP, meta, target).await?;
        Ok(doc)
    }

    /// The projects the caller may `list`.
    pub async fn list_projects(&self, meta: &RequestMeta) -> Result<Vec<ProjectDoc>, ApiError> {
        const OP: &str = "project_list";
        let all = self
            .or_fail(OP, meta, Target::default(), projects::list(self.db()).await)
            .await?;
        let visible = all
            .into_iter()
            .filter(|p| self.may(meta, Action::List, &project_resource(&p.name)))
            .collect();
        self.audit_success(OP, meta, Target::default()).await?;
        Ok(visible)
    }
}

fn check_description(d: &Option<String>) -> Result<(), ApiError> {
    if d.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_metadata",
            "`description` must be at most 1024 characters",
        ));
    }
    Ok(())
}
