//! Self-registered service tokens: registration (no identity needed), admin
//! approval (`admin` on `sys`), and authentication by an approved token.
//!
//! Only a token's SHA-256 is stored or cached. States: `pending` → `approved`
//! | `denied`, `approved` → `revoked`; each move is a compare-and-set on the
//! state in MongoDB, so of two admins acting at once one wins and the other
//! gets 409 `invalid_transition`.
//!
//! Authentication looks a presented token up by its hash and caches the answer
//! (approved or not) per replica for [`CACHE_TTL`]: a revocation (or approval)
//! takes effect on every replica within that bound plus one database read.
//! Uses (`last_used_at`, `access_count`) are counted in memory and written
//! every [`USAGE_FLUSH`] (`$inc` / `$max`), never once per request; a replica
//! that dies loses at most that long of counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, DateTime as BsonDateTime};
use sha2::{Digest, Sha256};

use super::{utc, Op, RequestMeta, Vault};
use crate::auth::identity::{estimated_entropy_bits, MIN_TOKEN_BITS};
use crate::auth::limiter::{clip, FailureLimiter, LimitKey, ACTOR_MAX_CHARS};
use crate::auth::settings::valid_service_name;
use crate::auth::Action;
use crate::error::{ApiError, ErrorCode};
use crate::store::service_tokens::{self as store, ServiceTokenDoc};

/// How long a replica trusts its cached answer for a token: the bound on how
/// late a revocation takes effect on another replica.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// How often counted uses are written.
pub const USAGE_FLUSH: Duration = Duration::from_secs(5);
/// Most tokens cached per replica (answers for unknown tokens included).
const CACHE_MAX: usize = 10_000;
/// Longest `service_version` accepted.
const VERSION_MAX_CHARS: usize = 64;

/// `REGISTER_PER_MINUTE` and `MAX_PENDING_TOKENS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// Registrations per client address per minute (and the burst); 0 = unlimited.
    pub register_per_minute: u32,
    /// Registrations that may await approval at once.
    pub max_pending: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            register_per_minute: 10,
            max_pending: 1000,
        }
    }
}

/// Where a registered token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Pending,
    Approved,
    Denied,
    Revoked,
}

impl TokenState {
    pub const ALL: [TokenState; 4] = [
        TokenState::Pending,
        TokenState::Approved,
        TokenState::Denied,
        TokenState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Pending => "pending",
            TokenState::Approved => "approved",
            TokenState::Denied => "denied",
            TokenState::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What an admin does to a registered token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAction {
    Approve,
    Deny,
    Revoke,
}

impl TokenAction {
    pub const ALL: [TokenAction; 3] =
        [TokenAction::Approve, TokenAction::Deny, TokenAction::Revoke];

    /// The only state it applies to, and the state it leads to.
    pub fn transition(self) -> (TokenState, TokenState) {
        match self {
            TokenAction::Approve => (TokenState::Pending, TokenState::Approved),
            TokenAction::Deny => (TokenState::Pending, TokenState::Denied),
            TokenAction::Revoke => (TokenState::Approved, TokenState::Revoked),
        }
    }

    fn op(self) -> Op {
        match self {
            TokenAction::Approve => Op::TokenApprove,
            TokenAction::Deny => Op::TokenDeny,
            TokenAction::Revoke => Op::TokenRevoke,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenAction::Approve => "approve",
            TokenAction::Deny => "deny",
            TokenAction::Revoke => "revoke",
        }
    }
}

/// A registered token as admins see it (never the token or its hash).
pub struct ServiceToken {
    pub id: String,
    pub service_name: String,
    pub service_version: String,
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub approved: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub access_count: i64,
}

impl From<ServiceTokenDoc> for ServiceToken {
    fn from(d: ServiceTokenDoc) -> Self {
        Self {
            id: d.id,
            service_name: d.service_name,
            service_version: d.service_version,
            state: d.state,
            requested_at: utc(d.requested_at),
            approved: d.approved,
            approved_at: d.approved_at.map(utc),
            approved_by: d.approved_by,
            last_used_at: d.last_used_at.map(utc),
            access_count: d.access_count,
        }
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStatus {
    PendingApproval,
    Approved,
    Denied,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::PendingApproval => "pending_approval",
            RegistrationStatus::Approved => "approved",
            RegistrationStatus::Denied => "denied",
        }
    }
}

pub struct Registration {
    pub status: RegistrationStatus,
    pub message: String,
}

/// What a service sends to register.
pub struct RegisterInput<'a> {
    pub service_name: &'a str,
    pub service_version: &'a str,
    pub token: &'a str,
}

/// A cached answer for one token hash: the token's id and service when approved.
#[derive(Clone)]
struct Cached {
    approved: Option<(String, String)>,
    /// Registered in any state: a pending, denied or revoked token is not a guess.
    registered: bool,
    fetched: Instant,
}

/// Per-replica state: the registration limiter, the token cache and the use counts.
pub(crate) struct TokenBook {
    settings: TokenSettings,
    limiter: FailureLimiter<()>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Token id → (uses not yet written, latest use).
    usage: Mutex<HashMap<String, (i64, BsonDateTime)>>,
    flusher: AtomicBool,
}

impl TokenBook {
    pub fn new(settings: TokenSettings) -> Self {
        Self {
            settings,
            limiter: FailureLimiter::new(
                settings.register_per_minute,
                settings.register_per_minute,
            ),
            cache: Mutex::default(),
            usage: Mutex::default(),
            flusher: AtomicBool::new(false),
        }
    }

    fn cached(&self, hash: &str) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|c| c.fetched.elapsed() < CACHE_TTL)
            .cloned()
    }

    fn remember(&self, hash: String, approved: Option<(String, String)>, registered: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.fetched.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            hash,
            Cached {
                approved,
                registered,
                fetched: Instant::now(),
            },
        );
    }

    /// Drops this replica's answer for a token whose state just changed here.
    fn forget(&self, hash: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    fn count_use(&self, id: &str) {
        let now = BsonDateTime::now();
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let entry = usage.entry(id.to_string()).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
    }

    fn take_usage(&self) -> HashMap<String, (i64, BsonDateTime)> {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Lowercase hex SHA-256: what is stored, indexed and cached instead of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn status_of(state: &str) -> Registration {
    match TokenState::parse(state) {
        Some(TokenState::Approved) => Registration {
            status: RegistrationStatus::Approved,
            message: "the token is approved: authenticate with `X-Token`".into(),
        },
        Some(TokenState::Pending) => Registration {
            status: RegistrationStatus::PendingApproval,
            message: "the token awaits an administrator's approval".into(),
        },
        Some(TokenState::Revoked) => Registration {
            status: RegistrationStatus::Denied,
            message: "the token was revoked; register a new one".into(),
        },
        Some(TokenState::Denied) | None => Registration {
            status: RegistrationStatus::Denied,
            message: "the token was denied; register a new one".into(),
        },
    }
}

fn check_registration(input: &RegisterInput<'_>) -> Result<(), ApiError> {
    let version_ok = !input.service_version.is_empty()
        && input.service_version.chars().count() <= VERSION_MAX_CHARS
        && !input.service_version.chars().any(char::is_control);
    if !valid_service_name(input.service_name) || !version_ok {
        return Err(ApiError::new(
            ErrorCode::InvalidServiceName,
            "`service_name` must be 1-64 letters, digits, `-`, `_` or `.`, and `service_version` 1-64 printable characters",
        ));
    }
    let bits = estimated_entropy_bits(input.token);
    if bits < MIN_TOKEN_BITS {
        return Err(ApiError::new(
            ErrorCode::WeakToken,
            format!(
                "the token is too weak: about {bits:.0} bits of estimated entropy, at least {MIN_TOKEN_BITS:.0} needed; \
                 generate one with `openssl rand -hex 32`"
            ),
        ));
    }
    Ok(())
}

impl Vault {
    /// `POST /api/service-tokens/register`: anyone may ask; an admin decides.
    /// Registering the same token again answers its current state and stores
    /// nothing new. Audited with the claimed name as actor.
    pub async fn register_token(
        &self,
        meta: &RequestMeta,
        input: RegisterInput<'_>,
    ) -> Result<Registration, ApiError> {
        let mut meta = meta.clone();
        meta.actor = Some(clip(input.service_name, ACTOR_MAX_CHARS).to_string());
        let meta = &meta;
        self.run(Op::TokenRegister, meta, async |scope| {
            self.limit_registration(meta)?;
            check_registration(&input)?;
            let hash = token_hash(input.token);
            if let Some(existing) = store::find_by_hash(self.db(), &hash).await? {
                scope.target(format!("service_token:{}", existing.id));
                return Ok(status_of(&existing.state));
            }
            let pending = store::count_in_state(self.db(), TokenState::Pending.as_str()).await?;
            if pending >= self.tokens.settings.max_pending {
                let mut e = ApiError::new(
                    ErrorCode::TooManyPendingTokens,
                    "too many registrations await approval; retry later",
                );
                e.retry_after = Some(60);
                return Err(e);
            }
            let doc = ServiceTokenDoc {
                id: uuid::Uuid::new_v4().to_string(),
                service_name: input.service_name.to_string(),
                token_hash: hash.clone(),
                service_version: input.service_version.to_string(),
                requested_at: BsonDateTime::now(),
                approved: false,
                approved_at: None,
                approved_by: None,
                last_used_at: None,
                access_count: 0,
                state: TokenState::Pending.as_str().to_string(),
            };
            scope.target(format!("service_token:{}", doc.id));
            if store::insert(self.db(), &doc).await? {
                scope.event("token_registered");
                return Ok(status_of(&doc.state));
            }
            // Registered by a concurrent request (here or on another replica).
            let existing = store::find_by_hash(self.db(), &hash)
                .await?
                .ok_or_else(|| ApiError::internal(&"a registered token vanished"))?;
            scope.target(format!("service_token:{}", existing.id));
            Ok(status_of(&existing.state))
        })
        .await
    }

    /// Per client address (requests without one, NATS, are not limited here).
    fn limit_registration(&self, meta: &RequestMeta) -> Result<(), ApiError> {
        let Some(address) = meta.client_ip.as_deref() else {
            return Ok(());
        };
        let key = LimitKey::new(None, address);
        if let Err(wait) = self.tokens.limiter.check(&key) {
            let mut e = ApiError::new(
                ErrorCode::TooManyRegistrations,
                "too many token registrations from this address; retry later",
            );
            e.retry_after = Some(wait.as_secs().saturating_add(1));
            return Err(e);
        }
        self.tokens.limiter.fail(&key);
        Ok(())
    }

    /// Registered tokens, oldest first, optionally in one state (admin on `sys`).
    pub async fn list_tokens(
        &self,
        meta: &RequestMeta,
        state: Option<TokenState>,
    ) -> Result<Vec<ServiceToken>, ApiError> {
        self.run(Op::TokenList, meta, async |_| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            let docs = store::list(self.db(), state.map(TokenState::as_str)).await?;
            Ok(docs.into_iter().map(ServiceToken::from).collect())
        })
        .await
    }

    /// Approves, denies or revokes (admin on `sys`): a compare-and-set on the state.
    pub async fn transition_token(
        &self,
        meta: &RequestMeta,
        id: &str,
        action: TokenAction,
    ) -> Result<ServiceToken, ApiError> {
        self.run(action.op(), meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            scope.target(format!("service_token:{id}"));
            let not_found = || {
                ApiError::new(
                    ErrorCode::ServiceTokenNotFound,
                    "no registered service token with that id",
                )
            };
            if uuid::Uuid::parse_str(id).is_err() {
                return Err(not_found());
            }
            let (from, to) = action.transition();
            self.pending(meta, scope).await?;
            let mut set = doc! {};
            if action == TokenAction::Approve {
                set.insert("approved", true);
                set.insert("approved_at", BsonDateTime::now());
                set.insert("approved_by", meta.actor());
            } else if action == TokenAction::Revoke {
                set.insert("approved", false);
            }
            let moved = store::transition(self.db(), id, from.as_str(), to.as_str(), set).await?;
            if let Some(doc) = moved {
                // This replica at once; the others within `CACHE_TTL`.
                self.tokens.forget(&doc.token_hash);
                scope.event(match action {
                    TokenAction::Approve => "token_approved",
                    TokenAction::Deny => "token_denied",
                    TokenAction::Revoke => "token_revoked",
                });
                return Ok(ServiceToken::from(doc));
            }
            match store::find(self.db(), id).await? {
                None => Err(not_found()),
                Some(doc) => Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    format!(
                        "cannot {} a token that is {} (only a {} token)",
                        action.as_str(),
                        doc.state,
                        from.as_str()
                    ),
                )),
            }
        })
        .await
    }

    /// The service an approved registered token stands for, or `None`.
    /// `claimed` (an `X-Service`) must name that same service. A name that has
    /// an environment token (`TOKEN_<name>`) belongs to that identity, and a
    /// service disabled in config.yaml stays disabled: their registered tokens
    /// authenticate as nothing.
    pub(super) async fn registered_service(
        &self,
        claimed: Option<&str>,
        token: &str,
    ) -> Result<Option<String>, ApiError> {
        let hash = token_hash(token);
        let approved = match self.tokens.cached(&hash) {
            Some(c) => c.approved,
            None => {
                let found = store::find_by_hash(self.db(), &hash).await?;
                let registered = found.is_some();
                let approved = found
                    .filter(|d| d.state == TokenState::Approved.as_str())
                    .map(|d| (d.id, d.service_name));
                self.tokens.remember(hash, approved.clone(), registered);
                approved
            }
        };
        let Some((id, name)) = approved else {
            return Ok(None);
        };
        if claimed.is_some_and(|c| c != name) || self.registry.owns(&name) {
            return Ok(None);
        }
        self.tokens.count_use(&id);
        self.start_usage_flush();
        Ok(Some(name))
    }

    /// Whether `token` is registered in any state, as `registered_service` just
    /// looked it up: a service polling while its registration is pending is not
    /// guessing, so its 401s do not count towards the failure limiter.
    pub(super) fn registered_token(&self, token: &str) -> bool {
        self.tokens
            .cached(&token_hash(token))
            .is_some_and(|c| c.registered)
    }

    /// Once per process: writes the counted uses every [`USAGE_FLUSH`].
    fn start_usage_flush(&self) {
        if self.tokens.flusher.swap(true, Ordering::AcqRel) {
            return;
        }
        let vault = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH);
            loop {
                tick.tick().await;
                vault.flush_token_usage().await;
            }
        });
    }

    /// Writes the uses counted so far (each token's count added, its latest use kept).
    pub async fn flush_token_usage(&self) {
        for (id, (count, last)) in self.tokens.take_usage() {
            if let Err(e) = store::record_use(self.db(), &id, count, last).await {
                tracing::warn!(error = %e, token_id = %id, "could not record service-token use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_and_approved_tokens_move() {
        for action in TokenAction::ALL {
            let (from, to) = action.transition();
            assert_ne!(from, to);
            assert!(matches!(from, TokenState::Pending | TokenState::Approved));
        }
        for state in TokenState::ALL {
            assert_eq!(TokenState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TokenState::parse("nope"), None);
    }

    #[test]
    fn the_hash_is_hex_sha256_and_never_the_token() {
        let h = token_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn weak_tokens_and_bad_names_are_refused() {
        let strong = "9f".repeat(32);
        let ok = RegisterInput {
            service_name: "billing",
            service_version: "1.2.3",
            token: &strong,
        };
        assert!(check_registration(&ok).is_ok());
        let weak = RegisterInput {
            token: "a-token-long-enough",
            ..ok
        };
        assert_eq!(
            check_registration(&weak).unwrap_err().code,
            ErrorCode::WeakToken
        );
        for (name, version) in [("", "1"), ("bad name", "1"), ("ok", ""), ("ok", "a\nb")] {
            let bad = RegisterInput {
                service_name: name,
                service_version: version,
                token: &strong,
            };
            assert_eq!(
                check_registration(&bad).unwrap_err().code,
                ErrorCode::InvalidServiceName,
                "{name:?} {version:?}"
            );
        }
    }
}
