//! Reading the audit trail: services holding `admin` on `audit` only.

use super::{RequestMeta, Target, Vault};
use crate::auth::Action;
use crate::error::ApiError;
use crate::store::audit::{self, AuditFilter, AuditRecord};

pub const MAX_AUDIT_LIMIT: i64 = 1000;

impl Vault {
    pub async fn read_audit(
        &self,
        meta: &RequestMeta,
        filter: AuditFilter,
    ) -> Result<Vec<AuditRecord>, ApiError> {
        const OP: &str = "audit_read";
        let target = Target {
            project: filter.project.as_deref(),
            path: filter.path.as_deref(),
            ..Target::default()
        };
        self.authorize(OP, meta, Action::Admin, "audit", "audit", target)
            .await?;
        if !(1..=MAX_AUDIT_LIMIT).contains(&filter.limit) {
            let e = ApiError::bad_request(
                "invalid_limit",
                format!("`limit` must be 1-{MAX_AUDIT_LIMIT}"),
            );
            return Err(self.fail(OP, meta, e, target).await);
        }
        let records = self
            .or_fail(OP, meta, target, audit::query(self.db(), &filter).await)
            .await?;
        self.audit_success(OP, meta, target).await?;
        Ok(records)
    }
}
