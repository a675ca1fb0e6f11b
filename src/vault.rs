//! The secret operations, shared by every interface: validate, seal or open,
//! store, audit. An operation succeeds only once its audit record is written.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mongodb::bson::DateTime;
use mongodb::Database;
use zeroize::Zeroizing;

use crate::crypto::{record_aad, Cipher};
use crate::error::ApiError;
use crate::store::audit::{self, AuditRecord};
use crate::store::secrets::{self, InsertError, SecretDoc, VersionDoc};
use crate::store::StoreError;

/// Project that holds secrets created through the UUID endpoints.
pub const DEFAULT_PROJECT: &str = "default";
/// Actor recorded for requests without a service identity.
pub const ANONYMOUS: &str = "anonymous";

/// Who is asking, from where: everything an audit record needs besides the operation.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub channel: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Fetch,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Fetch => "fetch",
        }
    }
}

/// What happened, for the audit record.
struct Outcome<'a> {
    outcome: &'static str,
    error_code: Option<&'a str>,
    secret_id: Option<&'a str>,
    project: Option<&'a str>,
    path: Option<&'a str>,
    version: Option<i64>,
}

impl<'a> Outcome<'a> {
    fn failed(err: &'a ApiError, secret_id: Option<&'a str>) -> Self {
        Self {
            outcome: outcome_of(err),
            error_code: Some(err.code),
            secret_id,
            project: None,
            path: None,
            version: None,
        }
    }

    fn success(secret_id: &'a str, project: &'a str, path: &'a str, version: i64) -> Self {
        Self {
            outcome: "success",
            error_code: None,
            secret_id: Some(secret_id),
            project: Some(project),
            path: Some(path),
            version: Some(version),
        }
    }
}

fn outcome_of(err: &ApiError) -> &'static str {
    match err.status.as_u16() {
        400 | 413 | 415 => "invalid",
        401 | 403 => "denied",
        404 => "not_found",
        409 => "conflict",
        _ => "error",
    }
}

#[derive(Clone)]
pub struct Vault {
    db: Database,
    cipher: Cipher,
    audit_enabled: bool,
    max_secret_bytes: usize,
}

impl Vault {
    pub fn new(db: Database, cipher: Cipher, audit_enabled: bool, max_secret_bytes: usize) -> Self {
        Self {
            db,
            cipher,
            audit_enabled,
            max_secret_bytes,
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Decodes, seals and stores a new secret; returns its id.
    pub async fn create(&self, secret_b64: &str, meta: &RequestMeta) -> Result<String, ApiError> {
        let plaintext = match self.decode_secret(secret_b64) {
            Ok(p) => p,
            Err(e) => return Err(self.reject(Action::Create, meta, e, None).await),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let actor = meta.actor.as_deref().unwrap_or(ANONYMOUS);
        let doc = match self.seal_new(&id, DEFAULT_PROJECT, &id, &plaintext, actor) {
            Ok(d) => d,
            Err(e) => return Err(self.reject(Action::Create, meta, e, Some(&id)).await),
        };
        if let Err(e) = secrets::insert(&self.db, &doc).await {
            let err = match e {
                InsertError::Exists => ApiError::internal(&"generated secret id collided"),
                InsertError::Store(s) => s.into(),
            };
            return Err(self.reject(Action::Create, meta, err, Some(&id)).await);
        }
        let outcome = Outcome::success(&id, DEFAULT_PROJECT, &id, 1);
        if let Err(e) = self.audit(Action::Create, meta, outcome).await {
            // Fail closed: without its audit record the create did not happen.
            if let Err(undo) = secrets::remove(&self.db, &id).await {
                tracing::error!(secret_id = %id, error = %undo, "could not undo unaudited create");
            }
            return Err(e.into());
        }
        Ok(id)
    }

    /// Returns the current value of a secret, base64-encoded.
    pub async fn fetch(
        &self,
        secret_id: &str,
        meta: &RequestMeta,
    ) -> Result<Zeroizing<String>, ApiError> {
        let id = match parse_secret_id(secret_id) {
            Ok(id) => id,
            Err(e) => return Err(self.reject(Action::Fetch, meta, e, None).await),
        };
        let found = match secrets::find_current(&self.db, &id).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                let e = ApiError::not_found("secret_not_found", "no secret with that id");
                return Err(self.reject(Action::Fetch, meta, e, Some(&id)).await);
            }
            Err(e) => return Err(self.reject(Action::Fetch, meta, e.into(), Some(&id)).await),
        };
        let Some(version) = found.versions.last() else {
            let e = ApiError::internal(&format_args!("secret {id} has no versions"));
            return Err(self.reject(Action::Fetch, meta, e, Some(&id)).await);
        };
        let plaintext = match self.open(&found.id, version) {
            Ok(p) => p,
            Err(e) => return Err(self.reject(Action::Fetch, meta, e, Some(&id)).await),
        };
        let outcome = Outcome::success(&found.id, &found.project, &found.path, version.version);
        self.audit(Action::Fetch, meta, outcome).await?;
        Ok(Zeroizing::new(STANDARD.encode(plaintext.as_slice())))
    }

    /// Audits a request rejected before it reached an operation (unreadable body)
    /// and hands the error back.
    pub async fn reject_request(
        &self,
        action: Action,
        meta: &RequestMeta,
        err: ApiError,
    ) -> ApiError {
        self.reject(action, meta, err, None).await
    }

    fn decode_secret(&self, secret_b64: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        if secret_b64.is_empty() {
            return Err(ApiError::bad_request(
                "empty_secret",
                "`secret` must not be empty",
            ));
        }
        // Refuse before decoding what cannot fit anyway.
        if secret_b64.len() / 4 * 3 > self.max_secret_bytes + 2 {
            return Err(self.too_large());
        }
        let plaintext = Zeroizing::new(STANDARD.decode(secret_b64).map_err(|_| {
            ApiError::bad_request(
                "invalid_base64",
                "`secret` must be standard base64 with padding (RFC 4648)",
            )
        })?);
        if plaintext.is_empty() {
            return Err(ApiError::bad_request(
                "empty_secret",
                "`secret` must not be empty",
            ));
        }
        if plaintext.len() > self.max_secret_bytes {
            return Err(self.too_large());
        }
        Ok(plaintext)
    }

    fn too_large(&self) -> ApiError {
        ApiError::too_large(
            "secret_too_large",
            format!(
                "the decoded secret must be at most {} bytes",
                self.max_secret_bytes
            ),
        )
    }

    fn seal_new(
        &self,
        id: &str,
        project: &str,
        path: &str,
        plaintext: &[u8],
        actor: &str,
    ) -> Result<SecretDoc, ApiError> {
        let key_id = self.cipher.key_id();
        let sealed = self.cipher.seal(plaintext, &record_aad(id, 1, key_id))?;
        let now = DateTime::now();
        Ok(SecretDoc {
            id: id.to_string(),
            project: project.to_string(),
            path: path.to_string(),
            versions: vec![VersionDoc::new(
                1,
                &sealed.nonce,
                sealed.ciphertext,
                key_id,
                actor,
            )],
            current_version: 1,
            created_at: now,
            created_by: actor.to_string(),
            updated_at: now,
            updated_by: actor.to_string(),
            deleted_at: None,
        })
    }

    fn open(&self, id: &str, version: &VersionDoc) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        if version.key_id != self.cipher.key_id() {
            return Err(ApiError::internal(&format_args!(
                "secret {id} version {} is sealed under unknown key {}",
                version.version, version.key_id
            )));
        }
        let aad = record_aad(id, version.version, &version.key_id);
        self.cipher
            .open(&version.nonce.bytes, &version.ciphertext.bytes, &aad)
            .map_err(|e| {
                ApiError::internal(&format_args!(
                    "secret {id} version {} failed to decrypt: {e}",
                    version.version
                ))
            })
    }

    async fn reject(
        &self,
        action: Action,
        meta: &RequestMeta,
        err: ApiError,
        id: Option<&str>,
    ) -> ApiError {
        if let Err(audit_err) = self.audit(action, meta, Outcome::failed(&err, id)).await {
            tracing::warn!(error = %audit_err, "could not audit a failed request");
        }
        err
    }

    async fn audit(
        &self,
        action: Action,
        meta: &RequestMeta,
        o: Outcome<'_>,
    ) -> Result<(), StoreError> {
        if !self.audit_enabled {
            return Ok(());
        }
        let record = AuditRecord {
            ts: DateTime::now(),
            action: action.as_str().to_string(),
            outcome: o.outcome.to_string(),
            channel: meta.channel.to_string(),
            actor: Some(meta.actor.clone().unwrap_or_else(|| ANONYMOUS.to_string())),
            secret_id: o.secret_id.map(str::to_string),
            project: o.project.map(str::to_string),
            path: o.path.map(str::to_string),
            version: o.version,
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            error_code: o.error_code.map(str::to_string),
        };
        audit::insert(&self.db, &record).await
    }
}

/// Accepts a UUID in any standard spelling; returns its canonical hyphenated form.
fn parse_secret_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request("invalid_secret_id", "`secret_id` must be a UUID"))
}
