//! Project/path-addressed secrets with version history (Vault KV v2 style).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mongodb::bson::DateTime;
use zeroize::Zeroizing;

use super::names::{check_path, check_project};
use super::{RequestMeta, Target, Value, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::ApiError;
use crate::store::secrets::{self, InsertError, Locator, SecretDoc, SecretView, VersionMeta};

/// A new named secret as a caller describes it.
pub struct NewSecret<'a> {
    pub project: &'a str,
    pub path: &'a str,
    pub value: Value<'a>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kind: Option<String>,
}

/// One version of a secret with its value.
pub struct SecretRecord {
    pub id: String,
    pub project: String,
    pub path: String,
    pub value: Zeroizing<Vec<u8>>,
    pub version: i64,
    pub current_version: i64,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kind: Option<String>,
    pub created_at: DateTime,
    pub created_by: String,
    pub updated_at: DateTime,
    pub updated_by: String,
}

/// A page of secrets without values.
pub struct Page {
    pub items: Vec<SecretView<VersionMeta>>,
    pub next_cursor: Option<String>,
}

const MAX_TAGS: usize = 32;
const CAS_ATTEMPTS: u64 = 40;
pub const MAX_LIST_LIMIT: i64 = 500;

fn check_metadata(
    description: &Option<String>,
    tags: &[String],
    kind: &Option<String>,
) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_metadata", m.to_string());
    if description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(bad("`description` must be at most 1024 characters"));
    }
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(bad("`tags` must be at most 32 tags of 1-64 characters"));
    }
    if kind.as_ref().is_some_and(|k| k.is_empty() || k.len() > 64) {
        return Err(bad("`type` must be 1-64 characters"));
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("secret_not_found", "no secret at that project and path")
}

impl Vault {
    /// Stores a new document; the write stands only once it is audited.
    pub(crate) async fn persist_new(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        doc: &SecretDoc,
    ) -> Result<(), ApiError> {
        let target = Target {
            secret_id: Some(&doc.id),
            version: Some(1),
            ..Target::path(&doc.project, &doc.path)
        };
        if let Err(e) = secrets::insert(self.db(), doc).await {
            let err = match e {
                InsertError::Exists => match secrets::is_deleted(self.db(), &doc.project, &doc.path).await {
                    Ok(true) => ApiError::conflict(
                        "secret_deleted",
                        "a deleted secret holds this path; restore it (POST .../restore) or wait until it is purged",
                    ),
                    Ok(false) => ApiError::conflict("secret_exists", "a secret already exists at this project and path"),
                    Err(e) => e.into(),
                },
                InsertError::Store(s) => s.into(),
            };
            return Err(self.fail(op, meta, err, target).await);
        }
        if let Err(e) = self.audit_success(op, meta, target).await {
            // Fail closed: without its audit record the create did not happen.
            if let Err(undo) = secrets::remove(self.db(), &doc.id).await {
                tracing::error!(secret_id = %doc.id, error = %undo, "could not undo unaudited create");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn check_names(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        project: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        if let Err(e) = check_project(project).and_then(|_| check_path(path)) {
            return Err(self.fail(op, meta, e, Target::default()).await);
        }
        Ok(())
    }

    async fn authorize_path(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        action: Action,
        project: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        self.check_names(op, meta, project, path).await?;
        let resource = secret_resource(project, path);
        self.authorize(
            op,
            meta,
            action,
            &resource,
            &format!("{project}:{path}"),
            Target::path(project, path),
        )
        .await
    }

    pub async fn create_named(
        &self,
        meta: &RequestMeta,
        new: NewSecret<'_>,
    ) -> Result<SecretRecord, ApiError> {
        const OP: &str = "create";
        self.authorize_path(OP, meta, Action::Write, new.project, new.path)
            .await?;
        let target = Target::path(new.project, new.path);
        let checked = check_metadata(&new.description, &new.tags, &new.kind)
            .and_then(|_| self.decode_value(new.value, "value"));
        let plaintext = self.or_fail(OP, meta, target, checked).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let first = self
            .or_fail(
                OP,
                meta,
                target,
                self.seal_version(&id, 1, &plaintext, meta.actor()),
            )
            .await?;
        let mut doc = self.new_doc(&id, new.project, new.path, first);
        doc.description = new.description;
        doc.tags = new.tags;
        doc.kind = new.kind;
        self.persist_new(OP, meta, &doc).await?;
        Ok(SecretRecord {
            id: doc.id,
            project: doc.project,
            path: doc.path,
            value: plaintext,
            version: 1,
            current_version: 1,
            description: doc.description,
            tags: doc.tags,
            kind: doc.kind,
            created_at: doc.created_at,
            created_by: doc.created_by,
            updated_at: doc.updated_at,
            updated_by: doc.updated_by,
        })
    }

    pub async fn get(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
        version: Option<i64>,
    ) -> Result<SecretRecord, ApiError> {
        const OP: &str = "read";
        self.authorize_path(OP, meta, Action::Read, project, path)
            .await?;
        let target = Target {
            version,
            ..Target::path(project, path)
        };
        let found =
            match secrets::find_live(self.db(), Locator::Path { project, path }, version).await {
                Ok(Some(found)) => found,
                Ok(None) => return Err(self.fail(OP, meta, not_found(), target).await),
                Err(e) => return Err(self.fail(OP, meta, e.into(), target).await),
            };
        let Some(v) = found.versions.first() else {
            let e = ApiError::not_found(
                "version_not_found",
                "that version does not exist (or is no longer kept)",
            );
            return Err(self
                .fail(
                    OP,
                    meta,
                    e,
                    Target {
                        secret_id: Some(&found.id),
                        ..target
                    },
                )
                .await);
        };
        let target = Target {
            secret_id: Some(&found.id),
            version: Some(v.version),
            ..target
        };
        let value = self
            .or_fail(OP, meta, target, self.open(&found.id, v).await)
            .await?;
        self.audit_success(OP, meta, target).await?;
        Ok(SecretRecord {
            value,
            version: v.version,
            updated_at: v.created_at,
            updated_by: v.created_by.clone(),
            id: found.id,
            project: found.project,
            path: found.path,
            current_version: found.current_version,
            description: found.description,
            tags: found.tags,
            kind: found.kind,
            created_at: found.created_at,
            created_by: found.created_by,
        })
    }

    /// Adds a new version. With `expected_version`, only if it is still current
    /// (409 otherwise); without, after whatever version is current, retrying on races.
    pub async fn update(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
        value: Value<'_>,
        expected_version: Option<i64>,
    ) -> Result<SecretRecord, ApiError> {
        const OP: &str = "update";
        self.authorize_path(OP, meta, Action::Write, project, path)
            .await?;
        let target = Target::path(project, path);
        let plaintext = self
            .or_fail(OP, meta, target, self.decode_value(value, "value"))
            .await?;
        for attempt in 0..CAS_ATTEMPTS {
            let current =
                match secrets::find_live(self.db(), Locator::Path { project, path }, None).await {
                    Ok(Some(found)) => found,
                    Ok(None) => return Err(self.fail(OP, meta, not_found(), target).await),
                    Err(e) => return Err(self.fail(OP, meta, e.into(), target).await),
                };
            let base = current.current_version;
            if let Some(expected) = expected_version.filter(|e| *e != base) {
                let e = ApiError::conflict(
                    "version_conflict",
                    format!("expected version {expected} but the current version is {base}"),
                );
                return Err(self
                    .fail(
                        OP,
                        meta,
                        e,
                        Target {
                            secret_id: Some(&current.id),
                            ..target
                        },
                    )
                    .await);
            }
            let next = base + 1;
            let target = Target {
                secret_id: Some(&current.id),
                version: Some(next),
                ..target
            };
            let version = self
                .or_fail(
                    OP,
                    meta,
                    target,
                    self.seal_version(&current.id, next, &plaintext, meta.actor()),
                )
                .await?;
            match secrets::append_version(
                self.db(),
                &current.id,
                base,
                &version,
                self.limits().max_versions,
            )
            .await
            {
                Ok(true) => {}
                Ok(false) if expected_version.is_some() => {
                    let e = ApiError::conflict(
                        "version_conflict",
                        format!("version {base} was superseded by a concurrent update"),
                    );
                    return Err(self.fail(OP, meta, e, target).await);
                }
                Ok(false) => {
                    // Lost a race to another writer: back off a little, with jitter, and go again.
                    let jitter =
                        rand::Rng::gen_range(&mut rand::thread_rng(), 0..=attempt.min(20) + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                    continue;
                }
                Err(e) => return Err(self.fail(OP, meta, e.into(), target).await),
            }
            // Audit failure after the write: the version stands (it cannot be
            // removed without racing other writers) and the caller is told to retry.
            self.audit_success(OP, meta, target).await?;
            return Ok(SecretRecord {
                id: current.id,
                project: current.project,
                path: current.path,
                value: plaintext,
                version: next,
                current_version: next,
                description: current.description,
                tags: current.tags,
                kind: current.kind,
                created_at: current.created_at,
                created_by: current.created_by,
                updated_at: version.created_at,
                updated_by: version.created_by,
            });
        }
        let e = ApiError::conflict("version_conflict", "too many concurrent updates; retry");
        Err(self.fail(OP, meta, e, target).await)
    }

    pub async fn delete(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        const OP: &str = "delete";
        self.authorize_path(OP, meta, Action::Delete, project, path)
            .await?;
        let target = Target::path(project, path);
        let days = i64::from(self.limits().delete_recovery_days);
        let purge_at =
            DateTime::from_millis(DateTime::now().timestamp_millis() + days * 86_400_000);
        match secrets::soft_delete(self.db(), project, path, purge_at).await {
            Ok(Some(id)) => {
                self.audit_success(
                    OP,
                    meta,
                    Target {
                        secret_id: Some(&id),
                        ..target
                    },
                )
                .await
            }
            Ok(None) => Err(self.fail(OP, meta, not_found(), target).await),
            Err(e) => Err(self.fail(OP, meta, e.into(), target).await),
        }
    }

    pub async fn restore(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        const OP: &str = "restore";
        self.authorize_path(OP, meta, Action::Delete, project, path)
            .await?;
        let target = Target::path(project, path);
        match secrets::restore(self.db(), project, path).await {
            Ok(Some(id)) => {
                self.audit_success(
                    OP,
                    meta,
                    Target {
                        secret_id: Some(&id),
                        ..target
                    },
                )
                .await
            }
            Ok(None) => {
                let e = ApiError::not_found(
                    "deleted_secret_not_found",
                    "no deleted secret at that project and path (or it was purged)",
                );
                Err(self.fail(OP, meta, e, target).await)
            }
            Err(e) => Err(self.fail(OP, meta, e.into(), target).await),
        }
    }

    pub async fn versions(
        &self,
        meta: &RequestMeta,
        project: &str,
        path: &str,
    ) -> Result<SecretView<VersionMeta>, ApiError> {
        const OP: &str = "versions";
        self.authorize_path(OP, meta, Action::List, project, path)
            .await?;
        let target = Target::path(project, path);
        match secrets::versions(self.db(), project, path).await {
            Ok(Some(view)) => {
                self.audit_success(
                    OP,
                    meta,
                    Target {
                        secret_id: Some(&view.id),
                        ..target
                    },
                )
                .await?;
                Ok(view)
            }
            Ok(None) => Err(self.fail(OP, meta, not_found(), target).await),
            Err(e) => Err(self.fail(OP, meta, e.into(), target).await),
        }
    }

    /// Secrets the caller may `list`, in stable `(project, path)` order.
    pub async fn list(
        &self,
        meta: &RequestMeta,
        project: Option<&str>,
        prefix: Option<&str>,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page, ApiError> {
        const OP: &str = "list";
        let target = Target {
            project,
            path: prefix,
            ..Target::default()
        };
        let checked = (|| {
            if let Some(p) = project {
                check_project(p)?;
            }
            if !(1..=MAX_LIST_LIMIT).contains(&limit) {
                return Err(ApiError::bad_request(
                    "invalid_limit",
                    format!("`limit` must be 1-{MAX_LIST_LIMIT}"),
                ));
            }
            cursor.map(decode_cursor).transpose()
        })();
        let mut after = self.or_fail(OP, meta, target, checked).await?;
        let mut items = Vec::new();
        let mut exhausted = false;
        // Bounded: a caller that may list little of a large project gets short pages.
        for _ in 0..20 {
            let after_ref = after.as_ref().map(|(p, q)| (p.as_str(), q.as_str()));
            let batch = self
                .or_fail(
                    OP,
                    meta,
                    target,
                    secrets::list_page(self.db(), project, prefix, after_ref, limit).await,
                )
                .await?;
            exhausted = (batch.len() as i64) < limit;
            for item in batch {
                after = Some((item.project.clone(), item.path.clone()));
                if self.may(
                    meta,
                    Action::List,
                    &secret_resource(&item.project, &item.path),
                ) {
                    items.push(item);
                    if items.len() as i64 == limit {
                        break;
                    }
                }
            }
            if exhausted || items.len() as i64 == limit {
                break;
            }
        }
        let more = !exhausted || items.len() as i64 == limit;
        let next_cursor = more
            .then(|| after.map(|(p, q)| encode_cursor(&p, &q)))
            .flatten();
        self.audit_success(OP, meta, target).await?;
        Ok(Page { items, next_cursor })
    }
}

fn encode_cursor(project: &str, path: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{project}\n{path}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "`cursor` is not one this service returned",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (project, path) = text.split_once('\n').ok_or_else(bad)?;
    Ok((project.to_string(), path.to_string()))
}
