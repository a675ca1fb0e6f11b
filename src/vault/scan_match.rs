//! Which managed secrets a scanner's findings are (`POST /api/scan/match`).
//!
//! Every stored version carries a keyed fingerprint: HMAC-SHA256, under a
//! key derived from the master key, of SHA-256 of the value. A scanner sends
//! only SHA-256 digests of what it found (never the candidates); the vault
//! keys them the same way and answers which secrets' kept versions they are,
//! limited to secrets the caller may `list` (others are not revealed).
//! One audited operation (`scan_match`) per call.

use std::collections::HashMap;

use super::{Op, RequestMeta, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::{ApiError, ErrorCode};
use crate::store::secrets;

/// Digests per call.
pub const MAX_DIGESTS: usize = 1000;
/// Secrets one call may report.
const MAX_HITS: i64 = 1000;

/// One finding that is a managed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanMatch {
    /// The digest as sent (lower-case hex).
    pub sha256: String,
    pub project: String,
    pub path: String,
    pub version: i64,
    /// The secret's current version (a live leak: rotate it).
    pub current: bool,
    /// The secret is deleted (restorable until purged).
    pub deleted: bool,
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    if hex_digest.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

impl Vault {
    pub async fn scan_match(
        &self,
        meta: &RequestMeta,
        digests: &[String],
    ) -> Result<Vec<ScanMatch>, ApiError> {
        self.run(Op::ScanMatch, meta, async |_| {
            if digests.len() > MAX_DIGESTS {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("`sha256` holds at most {MAX_DIGESTS} digests"),
                ));
            }
            let mut by_fingerprint: HashMap<Vec<u8>, String> = HashMap::new();
            for d in digests {
                let lower = d.to_ascii_lowercase();
                let Some(bytes) = parse_digest(&lower) else {
                    return Err(ApiError::new(
                        ErrorCode::InvalidField,
                        "each `sha256` item is 64 hexadecimal characters (SHA-256 of a candidate)",
                    ));
                };
                by_fingerprint.insert(self.fingerprint(&bytes), lower);
            }
            if by_fingerprint.is_empty() {
                return Ok(Vec::new());
            }
            let fps: Vec<Vec<u8>> = by_fingerprint.keys().cloned().collect();
            let hits = secrets::find_fingerprints(self.db(), &fps, MAX_HITS).await?;
            let mut matches = Vec::new();
            for hit in hits {
                if !self.may(
                    meta,
                    Action::List,
                    &secret_resource(&hit.project, &hit.path),
                ) {
                    continue;
                }
                for v in &hit.versions {
                    let Some(sha256) = v.fp.as_ref().and_then(|fp| by_fingerprint.get(&fp.bytes))
                    else {
                        continue;
                    };
                    matches.push(ScanMatch {
                        sha256: sha256.clone(),
                        project: hit.project.clone(),
                        path: hit.path.clone(),
                        version: v.version,
                        current: v.version == hit.current_version && hit.deleted_at.is_none(),
                        deleted: hit.deleted_at.is_some(),
                    });
                }
            }
            matches.sort_by(|a, b| {
                (&a.project, &a.path, b.version).cmp(&(&b.project, &b.path, a.version))
            });
            Ok(matches)
        })
        .await
    }
}
