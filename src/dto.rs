//! Wire types: the JSON bodies of the HTTP API, shared by its handlers, the
//! NATS bridge (which answers with the same shapes) and the CLI (which
//! deserializes them). Conversions from the vault's own types live here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::settings::PermissionEntry;
use crate::vault::access::AccessRequest;
use crate::vault::audit_query::AuditEntry as VaultAuditEntry;
use crate::vault::keys::{KeyStatus, RewrapReport};
use crate::vault::named::{SecretRecord, SecretSummary as VaultSummary, VersionHistory};
use crate::vault::policies::{Policy, PolicySpec, ServiceRoles};
use crate::vault::projects::Project;
use crate::vault::service_tokens::{Registration, ServiceToken};

/// The header naming the calling service.
pub const SERVICE_HEADER: &str = "x-service";
/// The header carrying the calling service's token.
pub const TOKEN_HEADER: &str = "x-token";

// ---- seed-compatible UUID endpoints ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateRequest {
    /// The secret, standard base64 (RFC 4648, padded).
    #[schema(example = "aHVudGVyMg==")]
    pub secret: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateResponse {
    /// The new secret's id (a time-ordered UUID, version 7).
    pub secret_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FetchRequest {
    /// The id returned by create (or the `id` of a path-addressed secret).
    pub secret_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    /// The secret, base64 exactly as created.
    pub secret: String,
}

// ---- path-addressed secrets ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateSecretRequest {
    /// Project name: 1-64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
    #[schema(example = "newsbot")]
    pub project: String,
    /// `/`-separated segments of `A-Z a-z 0-9 _ - .`; no empty, `.` or `..` segments.
    #[schema(example = "prod/api-key")]
    pub path: String,
    /// The value as text. Give exactly one of `value` and `value_b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as standard base64, for binary values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UpdateSecretRequest {
    /// The new value as text. Give exactly one of `value` and `value_b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The new value as standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// Only update if this is still the current version (compare-and-set); 409 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// A new description (`""` removes it); absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New tags (replacing the old ones); absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// A new type (`""` removes it); absent: unchanged.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A secret version with its value.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretResponse {
    pub id: String,
    pub project: String,
    pub path: String,
    /// The value as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as standard base64 (always present).
    pub value_b64: String,
    /// The version returned.
    pub version: i64,
    pub current_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
    /// Who wrote this version.
    pub updated_by: String,
}

impl From<SecretRecord> for SecretResponse {
    fn from(r: SecretRecord) -> Self {
        Self {
            value: std::str::from_utf8(&r.value).ok().map(str::to_string),
            value_b64: STANDARD.encode(r.value.as_slice()),
            id: r.id,
            project: r.project,
            path: r.path,
            version: r.version,
            current_version: r.current_version,
            description: r.description,
            tags: r.tags,
            kind: r.kind,
            created_at: r.created_at,
            created_by: r.created_by,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        }
    }
}

/// A secret without its value.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretSummary {
    pub id: String,
    /// `<project>/<path>`: what NATS `get` and the CLI take.
    pub key: String,
    pub project: String,
    pub path: String,
    /// The current version.
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// `missing` for a stub (`?state=missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For a stub: the services that asked for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_by: Vec<String>,
}

impl From<VaultSummary> for SecretSummary {
    fn from(s: VaultSummary) -> Self {
        Self {
            state: s.state,
            requested_by: s.requested_by,
            key: format!("{}/{}", s.project, s.path),
            id: s.id,
            project: s.project,
            path: s.path,
            version: s.current_version,
            description: s.description,
            tags: s.tags,
            kind: s.kind,
            updated_at: s.updated_at,
            updated_by: s.updated_by,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<crate::vault::named::Page> for SecretList {
    fn from(page: crate::vault::named::Page) -> Self {
        Self {
            items: page.items.into_iter().map(SecretSummary::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// The query of `GET /api/secrets` (the CLI sends it; every field optional).
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
pub struct SecretListQuery {
    /// Only this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Page size, 1-500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `missing`: the stubs (secrets asked for that have no value yet) instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only paths containing this (taken literally, at most 512 characters);
    /// combines with `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub id: String,
    pub project: String,
    pub path: String,
    pub current_version: i64,
    /// Kept versions, newest first (up to `MAX_VERSIONS`).
    pub versions: Vec<VersionInfo>,
}

impl From<VersionHistory> for VersionList {
    fn from(h: VersionHistory) -> Self {
        Self {
            id: h.id,
            project: h.project,
            path: h.path,
            current_version: h.current_version,
            versions: h
                .versions
                .into_iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    created_at: v.created_at,
                    created_by: v.created_by,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuthTestResponse {
    #[schema(example = "ok")]
    pub status: String,
    pub message: String,
}

/// `GET /api/identity`: the caller and its administrative rights.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct IdentityResponse {
    #[schema(example = "deployer")]
    pub service: String,
    /// Holds `admin` on `sys` (keys, service tokens, access requests, policies).
    pub sys_admin: bool,
    /// Holds `admin` on `audit` (the whole audit trail).
    pub audit_admin: bool,
}

// ---- projects ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    #[schema(example = "newsbot")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProjectResponse {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<Project> for ProjectResponse {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            created_at: p.created_at,
            created_by: p.created_by,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub items: Vec<ProjectResponse>,
}

// ---- audit summary ----

/// Accesses of one secret, or by one actor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub total: u64,
    pub success: u64,
    pub failed: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditSummaryResponse {
    /// Per secret, by project and path.
    pub per_secret: Vec<SummaryRow>,
    /// Per actor (the service, or the claimed name of a refused one).
    pub per_actor: Vec<SummaryRow>,
    /// More than 20,000 groups matched: the rows are partial; narrow the query.
    pub truncated: bool,
}

impl From<crate::vault::audit_query::AuditSummary> for AuditSummaryResponse {
    fn from(s: crate::vault::audit_query::AuditSummary) -> Self {
        let row = |r: crate::store::audit::SummaryRow, secret: bool| {
            let (a, b) = r.key;
            SummaryRow {
                total: r.totals.success + r.totals.failed,
                success: r.totals.success,
                failed: r.totals.failed,
                project: secret.then(|| a.clone()),
                path: secret.then_some(b),
                actor: (!secret).then_some(a),
            }
        };
        Self {
            per_secret: s.per_secret.into_iter().map(|r| row(r, true)).collect(),
            per_actor: s.per_actor.into_iter().map(|r| row(r, false)).collect(),
            truncated: s.truncated,
        }
    }
}

// ---- scan ----

/// SHA-256 digests (hex) of what a scanner found; never the candidates.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanMatchRequest {
    /// 64 hex characters each; at most 1000.
    pub sha256: Vec<String>,
}

/// A finding that is a managed secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanMatchItem {
    pub sha256: String,
    pub project: String,
    pub path: String,
    pub version: i64,
    /// The secret's current version: a live leak, rotate it.
    pub current: bool,
    pub deleted: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ScanMatchResponse {
    pub matches: Vec<ScanMatchItem>,
}

impl From<crate::vault::scan_match::ScanMatch> for ScanMatchItem {
    fn from(m: crate::vault::scan_match::ScanMatch) -> Self {
        Self {
            sha256: m.sha256,
            project: m.project,
            path: m.path,
            version: m.version,
            current: m.current,
            deleted: m.deleted,
        }
    }
}

// ---- service tokens ----

/// The Secrets Service specification's `RegisterToken`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RegisterTokenRequest {
    /// The name the service will authenticate as: 1-64 of `A-Z a-z 0-9 - _ .`.
    #[schema(example = "billing")]
    pub service_name: String,
    #[schema(example = "1.4.2")]
    pub service_version: String,
    /// The token the service will send as `X-Token`, at least 128 bits of
    /// estimated entropy (`openssl rand -hex 32`). Only its SHA-256 is stored.
    pub token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RegisterTokenResponse {
    /// `pending_approval`, `approved` or `denied`.
    #[schema(example = "pending_approval")]
    pub status: String,
    pub message: String,
}

impl From<Registration> for RegisterTokenResponse {
    fn from(r: Registration) -> Self {
        Self {
            status: r.status.as_str().to_string(),
            message: r.message,
        }
    }
}

/// A registered service token (never the token nor its hash).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ServiceTokenInfo {
    pub id: String,
    pub service_name: String,
    pub service_version: String,
    /// `pending`, `approved`, `denied` or `revoked`.
    #[schema(example = "pending")]
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Written every few seconds, not per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    pub access_count: i64,
}

impl From<ServiceToken> for ServiceTokenInfo {
    fn from(t: ServiceToken) -> Self {
        Self {
            id: t.id,
            service_name: t.service_name,
            service_version: t.service_version,
            state: t.state,
            requested_at: t.requested_at,
            approved: t.approved,
            approved_at: t.approved_at,
            approved_by: t.approved_by,
            last_used_at: t.last_used_at,
            access_count: t.access_count,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ServiceTokenList {
    pub items: Vec<ServiceTokenInfo>,
}

#[derive(Serialize, Deserialize, IntoParams)]
pub struct ServiceTokenQuery {
    /// Only tokens in this state: `pending`, `approved`, `denied` or `revoked`.
    pub state: Option<String>,
}

// ---- keys ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RotateResponse {
    /// The new active data key.
    pub active_key_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RewrapResponse {
    pub active_key_id: String,
    pub documents_scanned: u64,
    pub versions_rewrapped: u64,
    pub documents_skipped: u64,
    pub versions_remaining: u64,
}

impl From<RewrapReport> for RewrapResponse {
    fn from(r: RewrapReport) -> Self {
        Self {
            active_key_id: r.active_key_id,
            documents_scanned: r.documents_scanned,
            versions_rewrapped: r.versions_rewrapped,
            documents_skipped: r.documents_skipped,
            versions_remaining: r.versions_remaining,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    pub key_id: String,
    /// `active` or `retired`.
    pub state: String,
    /// The entry that holds a master key used before the keyring existed.
    pub legacy: bool,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// Seals made under the key (flushed every few seconds).
    pub seals: i64,
    /// Stored versions still sealed under the key.
    pub versions: u64,
}

impl From<KeyStatus> for KeyInfo {
    fn from(k: KeyStatus) -> Self {
        Self {
            key_id: k.key_id,
            state: k.state,
            legacy: k.legacy,
            created_at: k.created_at,
            retired_at: k.retired_at,
            seals: k.seals,
            versions: k.versions,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub active_key_id: Option<String>,
    pub keys: Vec<KeyInfo>,
}

// ---- audit ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub ts: DateTime<Utc>,
    pub action: String,
    pub outcome: String,
    pub channel: String,
    pub actor: Option<String>,
    pub secret_id: Option<String>,
    pub project: Option<String>,
    pub path: Option<String>,
    pub version: Option<i64>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    /// How many refused requests this record stands for (refusals are aggregated).
    pub count: Option<i64>,
    /// What an operation on something other than a secret acted on (`service_token:<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// On an `alert` record: the rule that fired and what it counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AuditAlert>,
}

/// What an `alert` audit record says: which rule fired, about whom, over what window.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditAlert {
    /// `auth_failures`, `denials`, `new_address` or `read_rate`.
    pub rule: String,
    /// `service` or `address`.
    pub subject_kind: String,
    pub subject: String,
    /// `new_address`: the address the service read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What was counted in the window.
    pub count: i64,
    /// The alert fired because `count` exceeded this.
    pub threshold: i64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

impl From<VaultAuditEntry> for AuditEntry {
    fn from(r: VaultAuditEntry) -> Self {
        Self {
            ts: r.ts,
            action: r.action,
            outcome: r.outcome,
            channel: r.channel,
            actor: r.actor,
            secret_id: r.secret_id,
            project: r.project,
            path: r.path,
            version: r.version,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            error_code: r.error_code,
            count: r.count,
            target: r.target,
            alert: r.alert.map(|a| AuditAlert {
                rule: a.rule,
                subject_kind: a.subject_kind,
                subject: a.subject,
                address: a.address,
                count: a.count,
                threshold: a.threshold,
                window_start: a.window_start,
                window_end: a.window_end,
            }),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditEntry>,
    /// Accesses among all records matching the query (not only this page).
    #[serde(default)]
    pub totals: AuditTotals,
}

/// Successful and failed accesses (an aggregated refusal counts as the
/// requests it stands for; unsettled `pending` records count as neither).
#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct AuditTotals {
    pub success: u64,
    pub failed: u64,
}

impl From<crate::vault::audit_query::AuditTotals> for AuditTotals {
    fn from(t: crate::vault::audit_query::AuditTotals) -> Self {
        Self {
            success: t.success,
            failed: t.failed,
        }
    }
}

// ---- health ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "healthy")]
    pub status: String,
    #[schema(example = "secret-manager")]
    pub service: String,
}

// ---- access requests ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccessRequestResponse {
    pub id: String,
    pub service_name: String,
    pub project: String,
    pub path: String,
    /// `pending`, `granted`, `denied` or `expired`.
    pub status: String,
    pub requested_at: DateTime<Utc>,
    /// Denied reads while it was pending.
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Reads made under the grant.
    pub access_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<AccessRequest> for AccessRequestResponse {
    fn from(r: AccessRequest) -> Self {
        Self {
            id: r.id,
            service_name: r.service_name,
            project: r.project,
            path: r.path,
            status: r.status,
            requested_at: r.requested_at,
            attempts: r.attempts,
            granted_at: r.granted_at,
            granted_by: r.granted_by,
            decided_by: r.decided_by,
            expires_at: r.expires_at,
            access_count: r.access_count,
            last_accessed_at: r.last_accessed_at,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AccessRequestList {
    pub items: Vec<AccessRequestResponse>,
}

/// The optional body of `POST /api/access-requests/{id}/approve`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Seconds the grant lasts (1 to a year); without it, until revoked by policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

// ---- policies managed at run time ----

/// One permission of a policy, as config.yaml writes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionBody {
    /// `allow` or `deny`.
    #[schema(example = "allow")]
    pub effect: String,
    /// Any of `read`, `write`, `delete`, `list`, `admin`.
    pub actions: Vec<String>,
    /// `secret:<project>:<path>`, `project:<name>`, `audit`, `sys` or `*`; `*` matches any run.
    pub resources: Vec<String>,
}

/// The body of `PUT /api/policies/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<PermissionBody>,
}

impl From<PolicyRequest> for PolicySpec {
    fn from(r: PolicyRequest) -> Self {
        Self {
            description: r.description,
            permissions: r
                .permissions
                .into_iter()
                .map(|p| PermissionEntry {
                    effect: p.effect,
                    actions: p.actions,
                    resources: p.resources,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyResponse {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<PermissionBody>,
    /// `config` (read-only through the API) or `runtime`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

impl From<Policy> for PolicyResponse {
    fn from(p: Policy) -> Self {
        Self {
            name: p.name,
            description: p.description,
            permissions: p
                .permissions
                .into_iter()
                .map(|e| PermissionBody {
                    effect: e.effect,
                    actions: e.actions,
                    resources: e.resources,
                })
                .collect(),
            source: p.source.to_string(),
            updated_at: p.updated_at,
            updated_by: p.updated_by,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    pub items: Vec<PolicyResponse>,
}

/// The body of `PUT /api/services/{name}/roles`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    /// Policy names (config.yaml or run-time); empty removes the run-time roles.
    pub roles: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolesResponse {
    pub service: String,
    pub roles: Vec<String>,
}

impl From<ServiceRoles> for RolesResponse {
    fn from(r: ServiceRoles) -> Self {
        Self {
            service: r.service,
            roles: r.roles,
        }
    }
}

// ---- change events ----

/// A secret change event as `GET /api/events` (`data:`) and NATS
/// `vault.events.secret.<project>` carry it: names and a version, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretEvent {
    /// `secret_created`, `secret_updated`, `secret_deleted`, `secret_restored`,
    /// `stub_created`, ... (any event naming a project and a path).
    #[schema(example = "secret_updated")]
    pub kind: String,
    pub project: String,
    pub path: String,
    /// The version written; absent when the event has none (a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// RFC 3339, UTC, whole seconds.
    #[schema(example = "2026-11-30T02:00:00Z")]
    pub ts: String,
    /// The service that caused it.
    pub actor: String,
}

impl SecretEvent {
    fn time(ts: &DateTime<Utc>) -> String {
        ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// The event as streamed; `None` when it names no project and path.
    pub fn of(e: &crate::vault::events::Event) -> Option<Self> {
        Some(Self {
            kind: e.kind.to_string(),
            project: e.project.clone()?,
            path: e.path.clone()?,
            version: e.version,
            ts: Self::time(&e.ts),
            actor: e.actor.clone(),
        })
    }

    pub fn of_stored(e: &crate::vault::event_stream::StreamEvent) -> Self {
        Self {
            kind: e.kind.clone(),
            project: e.project.clone(),
            path: e.path.clone(),
            version: e.version,
            ts: Self::time(&e.ts),
            actor: e.actor.clone(),
        }
    }
}
