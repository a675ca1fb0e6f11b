//! The seed-compatible UUID operations. Secrets created here live in the
//! default project under their UUID as path, so the same policies govern them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{RequestMeta, Target, Value, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::ApiError;
use crate::store::secrets::{self, Locator};

impl Vault {
    /// Decodes, seals and stores a new secret; returns its id.
    pub async fn create(&self, secret_b64: &str, meta: &RequestMeta) -> Result<String, ApiError> {
        const OP: &str = "create";
        let project = self.limits().default_project.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let target = Target {
            secret_id: Some(&id),
            ..Target::path(&project, &id)
        };
        let resource = secret_resource(&project, &id);
        self.authorize(
            OP,
            meta,
            Action::Write,
            &resource,
            &format!("{project}:{id}"),
            target,
        )
        .await?;
        let plaintext = self
            .or_fail(
                OP,
                meta,
                target,
                self.decode_value(Value::Base64(secret_b64), "secret"),
            )
            .await?;
        let first = self
            .or_fail(
                OP,
                meta,
                target,
                self.seal_version(&id, 1, &plaintext, meta.actor()),
            )
            .await?;
        let doc = self.new_doc(&id, &project, &id, first);
        self.persist_new(OP, meta, &doc).await?;
        Ok(id)
    }

    /// Returns the current value of a secret (UUID- or path-addressed), base64-encoded.
    pub async fn fetch(
        &self,
        secret_id: &str,
        meta: &RequestMeta,
    ) -> Result<Zeroizing<String>, ApiError> {
        const OP: &str = "fetch";
        let id = self
            .or_fail(OP, meta, Target::default(), parse_secret_id(secret_id))
            .await?;
        let found = match secrets::find_live(self.db(), Locator::Id(&id), None).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                let e = ApiError::not_found("secret_not_found", "no secret with that id");
                return Err(self.fail(OP, meta, e, Target::id(&id)).await);
            }
            Err(e) => return Err(self.fail(OP, meta, e.into(), Target::id(&id)).await),
        };
        let target = Target {
            secret_id: Some(&found.id),
            version: Some(found.current_version),
            ..Target::path(&found.project, &found.path)
        };
        let resource = secret_resource(&found.project, &found.path);
        let shown = format!("{}:{}", found.project, found.path);
        self.authorize(OP, meta, Action::Read, &resource, &shown, target)
            .await?;
        let Some(version) = found.versions.last() else {
            let e = ApiError::internal(&format_args!("secret {id} has no versions"));
            return Err(self.fail(OP, meta, e, target).await);
        };
        let plaintext = self
            .or_fail(OP, meta, target, self.open(&found.id, version).await)
            .await?;
        self.audit_success(OP, meta, target).await?;
        Ok(Zeroizing::new(STANDARD.encode(plaintext.as_slice())))
    }
}

/// Accepts a UUID in any standard spelling; returns its canonical hyphenated form.
pub fn parse_secret_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request("invalid_secret_id", "`secret_id` must be a UUID"))
}
