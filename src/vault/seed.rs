//! The seed-compatible UUID operations. Secrets created here live in the
//! default project under their UUID as path, so the same policies govern them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::names::SecretKey;
use super::{Op, RecordRef, RequestMeta, Value, Vault};
use crate::auth::Action;
use crate::error::{ApiError, ErrorCode};
use crate::store::secrets::{self, Locator};

impl Vault {
    /// Decodes, seals and stores a new secret; returns its id.
    pub async fn create(&self, secret_b64: &str, meta: &RequestMeta) -> Result<String, ApiError> {
        self.run(Op::Create, meta, async |scope| {
            let id = super::named::new_id();
            let key = SecretKey::new(&self.limits().default_project, &id)?;
            scope.key(&key);
            scope.secret_id(&id);
            self.require_on(meta, Action::Write, &key)?;
            let plaintext = self.decode_value(Value::Base64(secret_b64), "secret")?;
            let doc = self.sealed_doc(meta, &id, &key, &plaintext)?;
            self.insert_new(scope, &doc).await?;
            Ok(id)
        })
        .await
    }

    /// Returns the current value of a secret (UUID- or path-addressed), base64-encoded.
    pub async fn fetch(
        &self,
        secret_id: &str,
        meta: &RequestMeta,
    ) -> Result<Zeroizing<String>, ApiError> {
        self.run(Op::Fetch, meta, async |scope| {
            let id = parse_secret_id(secret_id)?;
            scope.secret_id(&id);
            let found = secrets::find_live(self.db(), &self.reads, Locator::Id(&id), None)
                .await?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::SecretNotFound, "no secret with that id")
                })?;
            scope.project(Some(&found.project));
            scope.path(Some(&found.path));
            scope.version(Some(found.current_version));
            // The caller named only a UUID: a refusal must not tell it where
            // that secret lives.
            if !self.may_read(meta, &found.project, &found.path).await? {
                return Err(ApiError::denied(format!(
                    "Service '{}' does not have access to this secret",
                    meta.actor()
                )));
            }
            self.refuse_expired(found.expires_at)?;
            let Some(version) = found.versions.last() else {
                return Err(ApiError::internal(&format_args!(
                    "secret {id} has no versions"
                )));
            };
            let at = RecordRef::of(&found);
            let plaintext = self
                .open_checked(at, found.current_version, None, version)
                .await?;
            Ok(Zeroizing::new(STANDARD.encode(plaintext.as_slice())))
        })
        .await
    }
}

/// Accepts a UUID in any standard spelling; returns its canonical hyphenated form.
pub fn parse_secret_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::new(ErrorCode::InvalidSecretId, "`secret_id` must be a UUID"))
}
