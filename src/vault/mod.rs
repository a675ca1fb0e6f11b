//! The secret operations, shared by every interface (HTTP, NATS): authenticate,
//! authorise, validate, seal or open, store, audit. An operation succeeds only
//! once its audit record is written.

pub mod audit_query;
pub mod keys;
pub mod named;
pub mod names;
pub mod projects;
pub mod seed;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mongodb::bson::DateTime;
use mongodb::Database;
use zeroize::Zeroizing;

use crate::auth::identity::ServiceRegistry;
use crate::auth::limiter::FailureLimiter;
use crate::auth::policy::PolicyEngine;
use crate::auth::Action;
use crate::crypto::{record_aad, Keyring};
use crate::error::ApiError;
use crate::store::audit::AuditRecord;
use crate::store::audit_sink::AuditSink;
use crate::store::secrets::{SecretDoc, VersionDoc};
use crate::store::StoreError;

/// Who is asking, from where: everything an audit record needs besides the operation.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub channel: &'static str,
}

impl RequestMeta {
    /// The authenticated service; operations are only reached after authentication.
    pub fn actor(&self) -> &str {
        self.actor.as_deref().unwrap_or("anonymous")
    }
}

/// What an audit record says the operation touched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub secret_id: Option<&'a str>,
    pub project: Option<&'a str>,
    pub path: Option<&'a str>,
    pub version: Option<i64>,
}

impl<'a> Target<'a> {
    pub fn path(project: &'a str, path: &'a str) -> Self {
        Self {
            project: Some(project),
            path: Some(path),
            ..Self::default()
        }
    }

    pub fn id(id: &'a str) -> Self {
        Self {
            secret_id: Some(id),
            ..Self::default()
        }
    }
}

fn outcome_of(err: &ApiError) -> &'static str {
    match err.status.as_u16() {
        400 | 413 | 415 => "invalid",
        401 | 403 | 429 => "denied",
        404 => "not_found",
        409 => "conflict",
        _ => "error",
    }
}

/// Settings of the secret operations.
#[derive(Debug, Clone)]
pub struct Limits {
    pub audit_enabled: bool,
    pub max_secret_bytes: usize,
    pub max_versions: usize,
    pub delete_recovery_days: u32,
    pub default_project: String,
}

#[derive(Clone)]
pub struct Vault {
    db: Database,
    audit_sink: AuditSink,
    keyring: Arc<Keyring>,
    registry: Arc<ServiceRegistry>,
    policies: Arc<PolicyEngine>,
    limiter: Arc<FailureLimiter>,
    limits: Arc<Limits>,
    /// Where every audit record is also published (NATS), when configured.
    audit_publisher: Arc<std::sync::OnceLock<(async_nats::Client, String)>>,
}

/// A value handed in by a caller: text or base64 (exactly one).
pub enum Value<'a> {
    Text(&'a str),
    Base64(&'a str),
}

impl Vault {
    pub fn new(
        db: Database,
        keyring: Arc<Keyring>,
        registry: ServiceRegistry,
        policies: PolicyEngine,
        limiter: FailureLimiter,
        limits: Limits,
    ) -> Self {
        Self {
            audit_sink: AuditSink::spawn(&db),
            db,
            keyring,
            registry: Arc::new(registry),
            policies: Arc::new(policies),
            limiter: Arc::new(limiter),
            limits: Arc::new(limits),
            audit_publisher: Arc::default(),
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Also publishes every audit record on `subject`.
    pub fn publish_audit_to(&self, client: async_nats::Client, subject: String) {
        let _ = self.audit_publisher.set((client, subject));
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks `X-Service` / `X-Token` and sets `meta.actor`. Every failure gets
    /// the same 401 and an audit record with the claimed name; repeated failures
    /// from one address get 429.
    pub async fn authenticate(
        &self,
        meta: &mut RequestMeta,
        service: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        let client = meta.client_ip.clone().unwrap_or_default();
        let claimed: Option<String> = service.map(|s| s.chars().take(128).collect());
        if let Err(wait) = self.limiter.check(&client) {
            meta.actor = claimed;
            let err = ApiError::too_many_failures(wait.as_secs().saturating_add(1));
            return Err(self
                .fail("authenticate", meta, err, Target::default())
                .await);
        }
        let verified = match (service, token) {
            (Some(s), Some(t)) => self.registry.verify(s, t).map(str::to_string),
            _ => None,
        };
        match verified {
            Some(name) => {
                meta.actor = Some(name);
                Ok(())
            }
            None => {
                self.limiter.fail(&client);
                meta.actor = claimed;
                Err(self
                    .fail(
                        "authenticate",
                        meta,
                        ApiError::unauthorized(),
                        Target::default(),
                    )
                    .await)
            }
        }
    }

    /// Allows or denies (403, audited) `action` on `resource`.
    pub async fn authorize(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        action: Action,
        resource: &str,
        shown_as: &str,
        target: Target<'_>,
    ) -> Result<(), ApiError> {
        if self.policies.is_allowed(meta.actor(), action, resource) {
            return Ok(());
        }
        let err = ApiError::forbidden(meta.actor(), shown_as);
        Err(self.fail(op, meta, err, target).await)
    }

    pub fn may(&self, meta: &RequestMeta, action: Action, resource: &str) -> bool {
        self.policies.is_allowed(meta.actor(), action, resource)
    }

    /// Passes `Ok` through; audits an `Err` as a failure of `op` and hands it back.
    pub async fn or_fail<T, E: Into<ApiError>>(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        target: Target<'_>,
        result: Result<T, E>,
    ) -> Result<T, ApiError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(op, meta, e.into(), target).await),
        }
    }

    /// Audits a failed operation and hands its error back.
    pub async fn fail(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        err: ApiError,
        target: Target<'_>,
    ) -> ApiError {
        let outcome = outcome_of(&err);
        if let Err(audit_err) = self.audit(op, meta, outcome, Some(err.code), target).await {
            tracing::warn!(error = %audit_err, "could not audit a failed request");
        }
        err
    }

    /// Writes the success record; the operation fails when it cannot be written.
    pub async fn audit_success(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        target: Target<'_>,
    ) -> Result<(), ApiError> {
        self.audit(op, meta, "success", None, target)
            .await
            .map_err(ApiError::from)
    }

    async fn audit(
        &self,
        op: &'static str,
        meta: &RequestMeta,
        outcome: &'static str,
        error_code: Option<&str>,
        t: Target<'_>,
    ) -> Result<(), StoreError> {
        if !self.limits.audit_enabled {
            return Ok(());
        }
        let record = AuditRecord {
            ts: DateTime::now(),
            action: op.to_string(),
            outcome: outcome.to_string(),
            channel: meta.channel.to_string(),
            actor: meta.actor.clone(),
            secret_id: t.secret_id.map(str::to_string),
            project: t.project.map(str::to_string),
            path: t.path.map(str::to_string),
            version: t.version,
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            error_code: error_code.map(str::to_string),
        };
        let published = self.audit_publisher.get().map(|(client, subject)| {
            (client.clone(), subject.clone(), serde_json::to_vec(&record))
        });
        self.audit_sink.write(record).await?;
        if let Some((client, subject, Ok(json))) = published {
            // Best effort, after the record is stored: the bus is a copy, not the trail.
            tokio::spawn(async move {
                if let Err(e) = client.publish(subject, json.into()).await {
                    tracing::warn!(error = %e, "could not publish an audit record to NATS");
                }
            });
        }
        Ok(())
    }

    /// Decodes and size-checks a caller's value.
    pub fn decode_value(
        &self,
        value: Value<'_>,
        field: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let empty =
            || ApiError::bad_request("empty_secret", format!("`{field}` must not be empty"));
        let plaintext = match value {
            Value::Text(t) => Zeroizing::new(t.as_bytes().to_vec()),
            Value::Base64(b) => {
                if b.is_empty() {
                    return Err(empty());
                }
                // Refuse before decoding what cannot fit anyway.
                if b.len() / 4 * 3 > self.limits.max_secret_bytes + 2 {
                    return Err(self.too_large());
                }
                Zeroizing::new(STANDARD.decode(b).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_base64",
                        format!("`{field}` must be standard base64 with padding (RFC 4648)"),
                    )
                })?)
            }
        };
        if plaintext.is_empty() {
            return Err(empty());
        }
        if plaintext.len() > self.limits.max_secret_bytes {
            return Err(self.too_large());
        }
        Ok(plaintext)
    }

    fn too_large(&self) -> ApiError {
        ApiError::too_large(
            "secret_too_large",
            format!(
                "the decoded secret must be at most {} bytes",
                self.limits.max_secret_bytes
            ),
        )
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Seals `plaintext` as `version` of secret `id` under the active data key.
    pub(crate) fn seal_version(
        &self,
        id: &str,
        version: i64,
        plaintext: &[u8],
        actor: &str,
    ) -> Result<VersionDoc, ApiError> {
        let (key_id, cipher) = self
            .keyring
            .active()
            .map_err(|e| ApiError::internal(&format_args!("cannot seal: {e}")))?;
        let sealed = cipher.seal(plaintext, &record_aad(id, version, &key_id))?;
        Ok(VersionDoc::new(
            version,
            &sealed.nonce,
            sealed.ciphertext,
            &key_id,
            actor,
        ))
    }

    pub(crate) fn new_doc(
        &self,
        id: &str,
        project: &str,
        path: &str,
        first: VersionDoc,
    ) -> SecretDoc {
        let now = first.created_at;
        let actor = first.created_by.clone();
        SecretDoc {
            id: id.to_string(),
            project: project.to_string(),
            path: path.to_string(),
            versions: vec![first],
            current_version: 1,
            description: None,
            tags: Vec::new(),
            kind: None,
            created_at: now,
            created_by: actor.clone(),
            updated_at: now,
            updated_by: actor,
            deleted_at: None,
            purge_at: None,
            rev: None,
        }
    }

    /// Opens one stored version; any failure is a generic 500 with the cause logged.
    pub(crate) async fn open(
        &self,
        id: &str,
        version: &VersionDoc,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let Some(cipher) = self.keyring.cipher_for(&version.key_id).await else {
            return Err(ApiError::internal(&format_args!(
                "secret {id} version {} is sealed under unknown key {}",
                version.version, version.key_id
            )));
        };
        let aad = record_aad(id, version.version, &version.key_id);
        cipher
            .open(&version.nonce.bytes, &version.ciphertext.bytes, &aad)
            .map_err(|e| {
                ApiError::internal(&format_args!(
                    "secret {id} version {} failed to decrypt: {e}",
                    version.version
                ))
            })
    }
}
