//! The secret operations, shared by every interface (HTTP, NATS, CLI through
//! HTTP): authenticate, authorise, validate, seal or open, store, audit. This
//! is the one door to storage: transports never see a store or database type.
//!
//! Every operation runs inside [`Vault::run`], the audited-operation wrapper:
//! the body uses `?` and refines its [`Scope`] (what the audit record says it
//! touched) as it learns it; the wrapper writes exactly one audit record,
//! fails closed when a success cannot be recorded (undoing what the body asked
//! it to undo), and takes a failure's outcome from its error code.

pub mod access;
pub mod alerts;
pub mod audit_query;
pub mod event_stream;
pub mod events;
pub mod keys;
pub mod named;
pub mod names;
pub mod policies;
pub mod projects;
pub mod rotation;
pub mod scan_match;
pub mod seed;
pub mod service_tokens;
pub mod watch;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mongodb::bson::DateTime;
use mongodb::Database;
use zeroize::Zeroizing;

use crate::auth::identity::ServiceRegistry;
use crate::auth::limiter::{
    clip, FailureLimiter, LimitKey, Refusal, Refused, ACTOR_MAX_CHARS, FIELD_MAX_CHARS,
};
use crate::auth::settings::Bootstrap;
use crate::auth::Action;
use crate::crypto::{record_aad, record_aad_v1, CryptoError, Keyring, AAD_FORMAT};
use crate::error::{ApiError, ErrorCode, Outcome};
use crate::store::audit::AuditRecord;
use crate::store::audit_sink::AuditSink;
use crate::store::events::EventDoc;
use crate::store::group_commit::GroupCommit;
use crate::store::secrets::{self as secret_store, SecretDoc, VersionDoc};
use crate::store::StoreError;
use names::SecretKey;

/// The caller and its administrative rights (see `Vault::rights`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    pub service: String,
    /// `admin` on `sys`: keys, service tokens, access requests, policies.
    pub sys_admin: bool,
    /// `admin` on `audit`: the whole audit trail.
    pub audit_admin: bool,
}

/// Every audited operation, named as its audit records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Authenticate,
    AuthTest,
    Create,
    Fetch,
    Read,
    Update,
    Delete,
    Restore,
    Versions,
    List,
    ProjectCreate,
    ProjectList,
    AuditRead,
    KeyRotate,
    KeyStatus,
    KeyDestroy,
    KeyRewrap,
    NatsRequest,
    NatsAcl,
    /// A stub recorded for a secret asked for before it exists.
    StubCreate,
    AccessRequest,
    AccessRequestList,
    AccessGrant,
    AccessDeny,
    PolicyList,
    PolicyRead,
    PolicyPut,
    PolicyDelete,
    ServiceRoles,
    AccessExpire,
    TokenRegister,
    TokenList,
    TokenApprove,
    TokenDeny,
    TokenRevoke,
    /// A `WatchSecret` stream opened (one record per stream, not per change).
    Watch,
    /// A scanner asked which managed secrets its findings are.
    ScanMatch,
    AuditSummary,
    /// An alert raised (see `alerts`): written by the replica that raised it.
    Alert,
    /// A `GET /api/events` stream opened (one record per stream, not per event).
    WatchEvents,
    /// A rotation schedule set, read or removed.
    RotationPut,
    RotationRead,
    RotationDelete,
    /// One rotation, manual or scheduled, with its tries (see `rotation`).
    Rotate,
    /// Its steps, each a state change of its own: a pending version written,
    /// read once by the verifier with its read token, discarded, promoted,
    /// rolled back.
    RotationStage,
    RotationVerifyRead,
    RotationDiscard,
    RotationPromote,
    RotationRollback,
    /// `secret_expiring` published for a secret whose expiry nears.
    ExpiryWarning,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Authenticate => "authenticate",
            Op::AuthTest => "auth_test",
            Op::Create => "create",
            Op::Fetch => "fetch",
            Op::Read => "read",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Restore => "restore",
            Op::Versions => "versions",
            Op::List => "list",
            Op::ProjectCreate => "project_create",
            Op::ProjectList => "project_list",
            Op::AuditRead => "audit_read",
            Op::KeyRotate => "key_rotate",
            Op::KeyStatus => "key_status",
            Op::KeyDestroy => "key_destroy",
            Op::KeyRewrap => "key_rewrap",
            Op::NatsRequest => "nats_request",
            Op::NatsAcl => "nats_acl",
            Op::StubCreate => "stub_create",
            Op::AccessRequest => "access_request",
            Op::AccessRequestList => "access_request_list",
            Op::AccessGrant => "access_grant",
            Op::AccessDeny => "access_deny",
            Op::PolicyList => "policy_list",
            Op::PolicyRead => "policy_read",
            Op::PolicyPut => "policy_put",
            Op::PolicyDelete => "policy_delete",
            Op::ServiceRoles => "service_roles",
            Op::AccessExpire => "access_expire",
            Op::TokenRegister => "token_register",
            Op::TokenList => "token_list",
            Op::TokenApprove => "token_approve",
            Op::TokenDeny => "token_deny",
            Op::TokenRevoke => "token_revoke",
            Op::Watch => "watch",
            Op::ScanMatch => "scan_match",
            Op::AuditSummary => "audit_summary",
            Op::Alert => "alert",
            Op::WatchEvents => "watch_events",
            Op::RotationPut => "rotation_put",
            Op::RotationRead => "rotation_read",
            Op::RotationDelete => "rotation_delete",
            Op::Rotate => "rotate",
            Op::RotationStage => "rotation_stage",
            Op::RotationVerifyRead => "rotation_verify_read",
            Op::RotationDiscard => "rotation_discard",
            Op::RotationPromote => "rotation_promote",
            Op::RotationRollback => "rotation_rollback",
            Op::ExpiryWarning => "expiry_warning",
        }
    }
}

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

/// What to take back when a success cannot be audited.
#[derive(Debug, Clone)]
enum Undo {
    RemoveSecret(String),
    RemoveAccessRequest(String),
}

fn count_operation(meta: &RequestMeta, op: Op, outcome: Outcome) {
    if !crate::metrics::enabled() {
        return;
    }
    crate::metrics::METRICS
        .operations
        .get_or_create(&crate::metrics::OperationLabels {
            channel: meta.channel,
            operation: op.as_str(),
            outcome: outcome.as_str(),
        })
        .inc();
}

fn count_authentication(meta: &RequestMeta, ok: bool) {
    if !crate::metrics::enabled() {
        return;
    }
    crate::metrics::METRICS
        .authentications
        .get_or_create(&crate::metrics::AuthLabels {
            channel: meta.channel,
            result: if ok { "success" } else { "failure" },
        })
        .inc();
}

/// What one operation's audit record says: the operation and what it touched.
#[derive(Debug)]
pub struct Scope {
    op: Op,
    secret_id: Option<String>,
    project: Option<String>,
    path: Option<String>,
    version: Option<i64>,
    target: Option<String>,
    undo: Option<Undo>,
    /// The id of the `pending` record written before a change (see `Vault::pending`).
    pending: Option<String>,
    /// Transitions to publish once the operation's record is stored.
    events: Vec<&'static str>,
    /// Published once the record of a failed operation is stored (`rotation_failed`).
    failure_events: Vec<&'static str>,
    /// Event numbers reserved while the operation ran (see `insert_new` and
    /// `pending_with_number`):
    /// its events get them, and any left over is filled with a placeholder.
    event_numbers: Vec<crate::store::events::ReservedNumber>,
}

impl Scope {
    fn new(op: Op) -> Self {
        Self {
            op,
            secret_id: None,
            project: None,
            path: None,
            version: None,
            target: None,
            undo: None,
            pending: None,
            events: Vec::new(),
            failure_events: Vec::new(),
            event_numbers: Vec::new(),
        }
    }

    /// The operation turned out to be another (a NATS `set` that creates).
    pub fn op(&mut self, op: Op) {
        self.op = op;
    }

    pub fn key(&mut self, key: &SecretKey) {
        self.project = Some(key.project().to_string());
        self.path = Some(key.path().to_string());
    }

    pub fn project(&mut self, project: Option<&str>) {
        self.project = project.map(str::to_string);
    }

    pub fn path(&mut self, path: Option<&str>) {
        self.path = path.map(str::to_string);
    }

    pub fn secret_id(&mut self, id: &str) {
        self.secret_id = Some(id.to_string());
    }

    pub fn version(&mut self, version: Option<i64>) {
        self.version = version;
    }

    /// What a non-secret operation acted on (`service_token:<id>`).
    pub fn target(&mut self, target: String) {
        self.target = Some(target);
    }

    fn undo(&mut self, undo: Undo) {
        self.undo = Some(undo);
    }

    /// Publishes `kind` (see `events`) once the operation succeeded and is audited.
    pub fn event(&mut self, kind: &'static str) {
        self.events.push(kind);
    }

    /// Publishes `kind` if the operation fails, once its record is stored.
    pub fn event_on_failure(&mut self, kind: &'static str) {
        self.failure_events.push(kind);
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

/// Where every stored audit record is also sent (the NATS bus), best effort.
pub type AuditPublisher = Box<dyn Fn(Vec<u8>) + Send + Sync>;

#[derive(Clone)]
pub struct Vault {
    db: Database,
    audit_sink: AuditSink,
    /// Group-commits new secrets (creates), like the audit records.
    secret_inserts: GroupCommit<crate::store::secrets::SecretDoc>,
    /// Reserves change events' numbers ahead of the events (creates, and the
    /// changes that write a `pending` record first: `pending_with_number`).
    event_numbers: crate::store::events::NumberReserve,
    /// Coalesces concurrent point reads into one query (see `store::read_batch`).
    reads: crate::store::read_batch::ReadBatch,
    keyring: Arc<Keyring>,
    registry: Arc<ServiceRegistry>,
    policies: Arc<policies::LivePolicies>,
    limiter: Arc<FailureLimiter>,
    limits: Arc<Limits>,
    audit_publisher: Arc<std::sync::OnceLock<AuditPublisher>>,
    /// Seals list cursors (derived from the master key: every replica accepts them).
    cursor_key: Arc<crate::crypto::Cipher>,
    events: tokio::sync::broadcast::Sender<events::Event>,
    /// Registered service tokens: limiter, cache and use counts of this replica.
    tokens: Arc<service_tokens::TokenBook>,
    /// Bounds the open `WatchSecret` streams of this replica.
    watch_slots: Arc<tokio::sync::Semaphore>,
    /// Keys the leak fingerprints of stored values (see `scan_match`).
    fingerprint_key: Arc<zeroize::Zeroizing<[u8; 32]>>,
    /// Failed-access and anomaly counts of this replica (see `alerts`).
    alerts: Arc<alerts::Alerts>,
    /// Stored secret events and the `GET /api/events` streams of this replica.
    event_hub: Arc<event_stream::EventHub>,
    /// Derives the event ids' key (see `with_event_settings`).
    event_id_key: Arc<zeroize::Zeroizing<[u8; 32]>>,
    /// Rotation settings and the receivers' HTTP client (see `rotation`).
    rotation: Arc<rotation::RotationState>,
}

/// A value handed in by a caller: text or base64 (exactly one).
pub enum Value<'a> {
    Text(&'a str),
    Base64(&'a str),
}

impl<'a> Value<'a> {
    /// Exactly one of `value` (text) and `value_b64` (base64).
    pub fn one_of(value: Option<&'a str>, value_b64: Option<&'a str>) -> Result<Self, ApiError> {
        match (value, value_b64) {
            (Some(v), None) => Ok(Value::Text(v)),
            (None, Some(b)) => Ok(Value::Base64(b)),
            _ => Err(ApiError::new(
                ErrorCode::InvalidValue,
                "give exactly one of `value` (text) and `value_b64` (base64)",
            )),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::database_unavailable()
            }
            StoreError::Other(cause) => Self::internal(&cause),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        Self::internal(&format_args!("decryption failed: {e}"))
    }
}

impl Vault {
    pub fn new(
        db: Database,
        keyring: Arc<Keyring>,
        registry: ServiceRegistry,
        policies: Bootstrap,
        limiter: FailureLimiter,
        limits: Limits,
    ) -> Result<Self, crate::crypto::KeyringError> {
        let cursor_key = Arc::new(keyring.derive("list-cursor")?);
        let fingerprint_key = Arc::new(keyring.derive_bytes("leak-fingerprint")?);
        let event_id_key = Arc::new(keyring.derive_bytes("event-id")?);
        Ok(Self {
            event_hub: Arc::new(event_stream::EventHub::new(
                Default::default(),
                &event_id_key,
            )),
            event_id_key,
            events: tokio::sync::broadcast::channel(events::BACKLOG).0,
            cursor_key,
            audit_sink: AuditSink::spawn(&db),
            secret_inserts: GroupCommit::spawn(crate::store::secrets::collection(&db)),
            event_numbers: crate::store::events::NumberReserve::spawn(&db),
            reads: crate::store::read_batch::ReadBatch::spawn(crate::store::secrets::collection(
                &db,
            )),
            db,
            keyring,
            registry: Arc::new(registry),
            policies: Arc::new(policies::LivePolicies::new(policies)),
            limiter: Arc::new(limiter),
            limits: Arc::new(limits),
            audit_publisher: Arc::default(),
            tokens: Arc::new(service_tokens::TokenBook::new(Default::default())),
            watch_slots: watch::slots(),
            fingerprint_key,
            alerts: Arc::new(alerts::Alerts::new(Default::default())),
            rotation: Arc::new(rotation::RotationState::new(Default::default())),
        })
    }

    /// Registration limits for self-registered service tokens.
    pub fn with_token_settings(mut self, settings: service_tokens::TokenSettings) -> Self {
        self.tokens = Arc::new(service_tokens::TokenBook::new(settings));
        self
    }

    /// The alert thresholds (`ALERT_*`); the flush task starts with `spawn_alerts`.
    pub fn with_alerts(mut self, settings: alerts::AlertSettings) -> Self {
        self.alerts = Arc::new(alerts::Alerts::new(settings));
        self
    }

    /// Event retention and the bound on open event streams.
    pub fn with_event_settings(mut self, settings: event_stream::EventSettings) -> Self {
        self.event_hub = Arc::new(event_stream::EventHub::new(settings, &self.event_id_key));
        self
    }

    /// Rotation, expiry and scheduler settings.
    pub fn with_rotation_settings(mut self, settings: rotation::RotationSettings) -> Self {
        self.rotation = Arc::new(rotation::RotationState::new(settings));
        self
    }

    fn db(&self) -> &Database {
        &self.db
    }

    /// Also hands every stored audit record (JSON) to `publish`.
    pub fn publish_audit_with(&self, publish: AuditPublisher) {
        let _ = self.audit_publisher.set(publish);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Readiness: the database answers a ping and this replica can open the
    /// keyring (it is not left on the old key during a master-key change).
    pub async fn ready(&self) -> Result<(), ApiError> {
        crate::store::ping(self.db()).await?;
        if !self.keyring.is_healthy() {
            return Err(ApiError::new(
                ErrorCode::KeyringUnavailable,
                "this replica cannot open the keyring: restart it with the current master key",
            ));
        }
        Ok(())
    }

    /// The audited-operation wrapper (see the module comment).
    pub(crate) async fn run<T>(
        &self,
        op: Op,
        meta: &RequestMeta,
        body: impl AsyncFnOnce(&mut Scope) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut scope = Scope::new(op);
        let started = std::time::Instant::now();
        let result = self.run_inner(meta, &mut scope, body).await;
        if crate::metrics::enabled() {
            crate::metrics::METRICS
                .operation_duration
                .get_or_create(&crate::metrics::ChannelOperationLabels {
                    channel: meta.channel,
                    operation: scope.op.as_str(),
                })
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn run_inner<T>(
        &self,
        meta: &RequestMeta,
        scope: &mut Scope,
        body: impl AsyncFnOnce(&mut Scope) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match body(scope).await {
            Ok(value) => {
                let now = chrono::Utc::now();
                // Stored with the record, before the answer: a client that saw
                // the answer finds the event.
                let events = self.event_docs(meta, scope, now);
                if let Err(e) = self.audit_success(meta, scope, events).await {
                    // Fail closed: without its audit record the operation did not happen.
                    if let Some(undo) = scope.undo.take() {
                        self.undo(undo).await;
                    }
                    return Err(e.into());
                }
                self.publish_events(meta, scope, now);
                count_operation(meta, scope.op, Outcome::Success);
                if matches!(scope.op, Op::Read | Op::Fetch) {
                    self.alerts.read(meta.actor(), meta.client_ip.as_deref());
                }
                Ok(value)
            }
            Err(e) => {
                self.audit_failure(meta, scope, &e).await;
                scope.events = std::mem::take(&mut scope.failure_events);
                let now = chrono::Utc::now();
                // Also fills the numbers reserved for the events of a success.
                let events = self.event_docs(meta, scope, now);
                self.store_events(scope, events).await;
                if !scope.events.is_empty() {
                    self.publish_events(meta, scope, now);
                }
                Err(e)
            }
        }
    }

    /// Listens to change events (see `events`).
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<events::Event> {
        self.events.subscribe()
    }

    fn publish_events(&self, meta: &RequestMeta, scope: &Scope, ts: chrono::DateTime<chrono::Utc>) {
        for kind in &scope.events {
            // No listener is not an error: events are a copy, the audit trail is the record.
            crate::metrics::METRICS
                .events_published
                .get_or_create(&crate::metrics::KindLabels { kind })
                .inc();
            let _ = self.events.send(events::Event {
                kind,
                ts,
                actor: meta.actor().to_string(),
                project: scope.project.clone(),
                path: scope.path.clone(),
                secret_id: scope.secret_id.clone(),
                version: scope.version,
                request_id: meta.request_id.clone(),
                alert: None,
            });
        }
    }

    /// An operation a transport refused before it reached the vault (a body
    /// that does not parse, a bad name): audited like any failed operation.
    pub async fn refuse(&self, op: Op, meta: &RequestMeta, err: ApiError) -> ApiError {
        self.audit_failure(meta, &Scope::new(op), &err).await;
        err
    }

    /// Passes `Ok` through; refuses `op` with the error otherwise.
    pub async fn check<T>(
        &self,
        op: Op,
        meta: &RequestMeta,
        parsed: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match parsed {
            Ok(v) => Ok(v),
            Err(e) => Err(self.refuse(op, meta, e).await),
        }
    }

    async fn undo(&self, undo: Undo) {
        match undo {
            Undo::RemoveAccessRequest(id) => {
                if let Err(e) = crate::store::access_requests::remove(self.db(), &id).await {
                    tracing::warn!(error = %e, "could not remove an unaudited access request");
                }
            }
            Undo::RemoveSecret(id) => {
                let Err(e) = secret_store::remove(self.db(), &id).await else {
                    return;
                };
                // The create stands without its audit record: raise the alarm,
                // and mark the document so an operator (and any audit review) finds it.
                let marked = secret_store::mark_unaudited(self.db(), &id).await;
                tracing::error!(
                    alarm = "unaudited_create",
                    secret_id = %id,
                    error = %e,
                    marked = marked.is_ok(),
                    "ALARM: a create could not be audited nor undone; the document is marked `unaudited`"
                );
            }
        }
    }

    /// Writes the operation's record as `pending` before it changes something
    /// that cannot be undone (a new version, a delete, a restore, a key change),
    /// so no change is ever applied without a record: if this write fails the
    /// change is not made; if the final outcome cannot be written afterwards,
    /// the record stays `pending` (the change may have been applied) and the
    /// caller is told to retry. The wrapper settles this same record, so an
    /// operation still has exactly one record.
    pub(super) async fn pending(
        &self,
        meta: &RequestMeta,
        scope: &mut Scope,
    ) -> Result<(), ApiError> {
        if !self.limits.audit_enabled || scope.pending.is_some() {
            return Ok(());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut record = self.audit_record(meta, scope, Outcome::Pending, None, None);
        record.id = Some(id.clone());
        self.store_audit(record).await?;
        scope.pending = Some(id);
        Ok(())
    }

    async fn audit_failure(&self, meta: &RequestMeta, scope: &Scope, err: &ApiError) {
        let outcome = err.code.outcome();
        count_operation(meta, scope.op, outcome);
        if let (ErrorCode::Forbidden, Some(actor)) = (err.code, &meta.actor) {
            self.alerts.denied(actor);
        }
        if let Err(e) = self.audit(meta, scope, outcome, Some(err.code)).await {
            tracing::warn!(error = %e, "could not audit a failed request");
        }
    }

    /// Checks `X-Service` / `X-Token` (or an approved registered token, see
    /// [`service_tokens`]) and sets `meta.actor`. Every failure gets
    /// the same 401 and an audit record with the claimed name. Repeated failures
    /// for one claimed service from one address get 429: the limiter's key is the
    /// pair, so behind a shared ingress address one service's failures never lock
    /// out another. A request without an address (NATS) is never locked out,
    /// since anyone on the bus could lock an agent out; tokens must be strong
    /// instead (`ServiceRegistry::from_env`). Refusals are audited once per
    /// window with a count (`refuse_authentication`). A success is recorded by
    /// the operation that follows.
    pub async fn authenticate(
        &self,
        meta: &mut RequestMeta,
        service: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        let key = meta
            .client_ip
            .as_deref()
            .map(|address| LimitKey::new(service, address));
        let claimed: Option<String> = service.map(|s| clip(s, ACTOR_MAX_CHARS).to_string());
        if let Some(Err(wait)) = key.as_ref().map(|k| self.limiter.check(k)) {
            meta.actor = claimed;
            let err = ApiError::too_many_failures(wait.as_secs().saturating_add(1));
            return Err(self.refuse_authentication(meta, err).await);
        }
        // Environment identities first (they win on conflict), then approved
        // registered tokens (`X-Token` alone, or with the matching `X-Service`).
        let verified = match (service, token) {
            (Some(s), Some(t)) => match self.registry.verify(s, t) {
                Some(name) => Some(name.to_string()),
                None => self.registered_service(Some(s), t).await?,
            },
            (None, Some(t)) => self.registered_service(None, t).await?,
            _ => None,
        };
        match verified {
            Some(name) => {
                meta.actor = Some(name);
                count_authentication(meta, true);
                Ok(())
            }
            None => {
                let registered = token.is_some_and(|t| self.registered_token(t));
                if let (Some(key), false) = (&key, registered) {
                    self.limiter.fail(key);
                }
                meta.actor = claimed;
                Err(self
                    .refuse_authentication(meta, ApiError::unauthorized())
                    .await)
            }
        }
    }

    /// `Ok` when the caller may do `action` on `resource`; a 403 naming `shown_as` otherwise.
    fn require(
        &self,
        meta: &RequestMeta,
        action: Action,
        resource: &str,
        shown_as: &str,
    ) -> Result<(), ApiError> {
        if self.may(meta, action, resource) {
            Ok(())
        } else {
            Err(ApiError::forbidden(meta.actor(), shown_as))
        }
    }

    fn may(&self, meta: &RequestMeta, action: Action, resource: &str) -> bool {
        self.policies.is_allowed(meta.actor(), action, resource)
    }

    /// Who the caller is: `POST /api/secrets/test`, NATS `status`.
    pub async fn whoami(&self, meta: &RequestMeta) -> Result<String, ApiError> {
        self.run(Op::AuthTest, meta, async |_| Ok(meta.actor().to_string()))
            .await
    }

    /// Who the caller is and which administrative rights it holds, so a client
    /// (the console) shows only what the caller may use: `GET /api/identity`.
    pub async fn rights(&self, meta: &RequestMeta) -> Result<Rights, ApiError> {
        self.run(Op::AuthTest, meta, async |_| {
            Ok(Rights {
                service: meta.actor().to_string(),
                sys_admin: self.may(meta, Action::Admin, "sys"),
                audit_admin: self.may(meta, Action::Admin, "audit"),
            })
        })
        .await
    }

    /// Writes one audit record (see `audit_counted`).
    async fn audit(
        &self,
        meta: &RequestMeta,
        scope: &Scope,
        outcome: Outcome,
        error_code: Option<ErrorCode>,
    ) -> Result<(), StoreError> {
        self.audit_counted(meta, scope, outcome, error_code, None)
            .await
    }

    /// Decodes and size-checks a caller's value.
    fn decode_value(&self, value: Value<'_>, field: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let empty = || {
            ApiError::new(
                ErrorCode::EmptySecret,
                format!("`{field}` must not be empty"),
            )
        };
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
                    ApiError::new(
                        ErrorCode::InvalidBase64,
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
        ApiError::new(
            ErrorCode::SecretTooLarge,
            format!(
                "the decoded secret must be at most {} bytes",
                self.limits.max_secret_bytes
            ),
        )
    }

    /// The active data key's id.
    pub fn active_key_id(&self) -> Option<String> {
        self.keyring.active_id()
    }

    /// Seals `plaintext` as `version` of the record `at` under the active data key.
    fn seal_version(
        &self,
        at: RecordRef<'_>,
        version: i64,
        plaintext: &[u8],
        actor: &str,
    ) -> Result<VersionDoc, ApiError> {
        let (key_id, cipher) = self
            .keyring
            .active()
            .map_err(|e| ApiError::internal(&format_args!("cannot seal: {e}")))?;
        let aad = record_aad(at.project, at.path, at.id, version, &key_id);
        let sealed = cipher.seal(plaintext, &aad)?;
        let mut doc = VersionDoc::new(
            version,
            &sealed.nonce,
            sealed.ciphertext,
            &key_id,
            actor,
            AAD_FORMAT,
        );
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(plaintext).into();
        doc.fp = Some(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: self.fingerprint(&digest),
        });
        Ok(doc)
    }

    /// The leak fingerprint of a value given as its SHA-256: keyed, so the
    /// database holds nothing a guess can be checked against without the
    /// master key; over the digest, so a scanner can ask without sending
    /// the candidate itself.
    fn fingerprint(&self, sha256: &[u8; 32]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.fingerprint_key[..])
            .expect("HMAC takes any key length");
        mac.update(sha256);
        mac.finalize().into_bytes().to_vec()
    }

    fn new_doc(&self, id: &str, project: &str, path: &str, first: VersionDoc) -> SecretDoc {
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
            state: None,
            requested_by: Vec::new(),
        }
    }

    /// Opens one stored version of the record `at`; any failure is a generic
    /// 500 with the cause logged (under the request id).
    async fn open(
        &self,
        at: RecordRef<'_>,
        version: &VersionDoc,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let id = at.id;
        let Some(cipher) = self.keyring.cipher_for(&version.key_id).await else {
            return Err(ApiError::internal(&format_args!(
                "secret {id} version {} is sealed under unknown key {}",
                version.version, version.key_id
            )));
        };
        let aad = match version.aad {
            Some(AAD_FORMAT) => {
                record_aad(at.project, at.path, id, version.version, &version.key_id)
            }
            None => record_aad_v1(id, version.version, &version.key_id),
            Some(other) => {
                return Err(ApiError::internal(&format_args!(
                    "secret {id} version {} has unknown associated-data format {other}",
                    version.version
                )))
            }
        };
        cipher
            .open(&version.nonce.bytes, &version.ciphertext.bytes, &aad)
            .map_err(|e| {
                ApiError::internal(&format_args!(
                    "secret {id} version {} failed to decrypt: {e}",
                    version.version
                ))
            })
    }

    /// Opens the version a read asked for, after checking it is that version:
    /// `wanted` (a `?version=N`) or else the one `current_version` names. A
    /// document whose newest versions were removed must not serve an older
    /// value as current.
    async fn open_checked(
        &self,
        at: RecordRef<'_>,
        current_version: i64,
        wanted: Option<i64>,
        version: &VersionDoc,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let expected = wanted.unwrap_or(current_version);
        if version.version != expected {
            return Err(ApiError::internal(&format_args!(
                "integrity: secret {} holds version {} where version {expected} was expected",
                at.id, version.version
            )));
        }
        self.open(at, version).await
    }
}

/// The record a ciphertext belongs to: what its associated data binds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    pub project: &'a str,
    pub path: &'a str,
    pub id: &'a str,
}

impl<'a> RecordRef<'a> {
    pub fn of<V>(doc: &'a crate::store::secrets::SecretView<V>) -> Self {
        Self {
            project: &doc.project,
            path: &doc.path,
            id: &doc.id,
        }
    }

    pub fn of_doc(doc: &'a SecretDoc) -> Self {
        Self {
            project: &doc.project,
            path: &doc.path,
            id: &doc.id,
        }
    }
}

/// A stored time as the vault's callers see it.
pub(crate) fn utc(t: DateTime) -> chrono::DateTime<chrono::Utc> {
    t.to_chrono()
}

impl Vault {
    /// Writes one audit record; `count` when it stands for several refused
    /// requests. Every string field is bounded here, in one place: the actor to
    /// [`ACTOR_MAX_CHARS`], the others to [`FIELD_MAX_CHARS`] characters.
    async fn audit_counted(
        &self,
        meta: &RequestMeta,
        scope: &Scope,
        outcome: Outcome,
        error_code: Option<ErrorCode>,
        count: Option<u64>,
    ) -> Result<(), StoreError> {
        if !self.limits.audit_enabled {
            return Ok(());
        }
        let mut record = self.audit_record(meta, scope, outcome, error_code, count);
        if let Some(id) = &scope.pending {
            record.id = Some(id.clone());
            crate::store::audit::settle(self.db(), &record).await?;
            self.publish_audit(&record);
            return Ok(());
        }
        self.store_audit(record).await
    }

    /// One audit record, every string field cut to its bound.
    fn audit_record(
        &self,
        meta: &RequestMeta,
        scope: &Scope,
        outcome: Outcome,
        error_code: Option<ErrorCode>,
        count: Option<u64>,
    ) -> AuditRecord {
        let bounded =
            |v: &Option<String>, max: usize| v.as_deref().map(|s| clip(s, max).to_string());
        let field = |v: &Option<String>| bounded(v, FIELD_MAX_CHARS);
        AuditRecord {
            id: None,
            ts: DateTime::now(),
            action: scope.op.as_str().to_string(),
            outcome: outcome.as_str().to_string(),
            channel: meta.channel.to_string(),
            actor: bounded(&meta.actor, ACTOR_MAX_CHARS),
            secret_id: field(&scope.secret_id),
            project: field(&scope.project),
            path: field(&scope.path),
            version: scope.version,
            target: field(&scope.target),
            client_ip: field(&meta.client_ip),
            user_agent: field(&meta.user_agent),
            request_id: field(&meta.request_id),
            error_code: error_code.map(|c| c.as_str().to_string()),
            count: count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            alert: None,
        }
    }

    /// Audits a success with its change events: in one write with the
    /// record when the record is new (see `store::audit_sink`), after it when
    /// the record was written `pending` or audit records are off. A record
    /// that cannot be stored fails the operation; an event that cannot be
    /// stored is logged (the change stands, audited).
    async fn audit_success(
        &self,
        meta: &RequestMeta,
        scope: &Scope,
        events: Vec<EventDoc>,
    ) -> Result<(), StoreError> {
        if !self.limits.audit_enabled || scope.pending.is_some() {
            if let Err(e) = self.audit(meta, scope, Outcome::Success, None).await {
                // Not stored: the numbers reserved for them are filled instead.
                let fill = events
                    .iter()
                    .filter(|d| d.seq != 0)
                    .map(|d| crate::store::events::placeholder(d.seq))
                    .collect();
                self.store_events(scope, fill).await;
                return Err(e);
            }
            self.store_events(scope, events).await;
            return Ok(());
        }
        let record = self.audit_record(meta, scope, Outcome::Success, None, None);
        self.store_audit_with(record, events, &scope.events).await
    }

    /// Stores a record (group-committed), then publishes a copy.
    async fn store_audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.store_audit_with(record, Vec::new(), &[]).await
    }

    async fn store_audit_with(
        &self,
        record: AuditRecord,
        events: Vec<EventDoc>,
        kinds: &[&'static str],
    ) -> Result<(), StoreError> {
        let published = self
            .audit_publisher
            .get()
            .map(|_| serde_json::to_vec(&record));
        let written = if events.is_empty() {
            self.audit_sink.write(record).await
        } else {
            let written = self.audit_sink.write_with_events(record, events).await;
            if let (Ok(()), Err(e)) = (&written.record, &written.events) {
                event_stream::events_lost(e, kinds);
            }
            written.record
        };
        written?;
        if let (Some(publish), Some(Ok(json))) = (self.audit_publisher.get(), published) {
            // Best effort, after the record is stored: the bus is a copy, not the trail.
            publish(json);
        }
        Ok(())
    }

    fn publish_audit(&self, record: &AuditRecord) {
        if let (Some(publish), Ok(json)) = (self.audit_publisher.get(), serde_json::to_vec(record))
        {
            publish(json);
        }
    }

    /// Audits a refused authentication (401 or 429) without letting a flood of
    /// them fill the trail: per (claimed service, address or channel) the first
    /// refusal of a window is written at once, later ones are only counted, and
    /// the next record (or the periodic flush) carries the count.
    async fn refuse_authentication(&self, meta: &RequestMeta, err: ApiError) -> ApiError {
        count_authentication(meta, false);
        self.alerts
            .auth_failed(meta.actor.as_deref(), meta.client_ip.as_deref());
        if !self.limits.audit_enabled {
            return err;
        }
        let origin = meta.client_ip.as_deref().unwrap_or(meta.channel);
        let key = LimitKey::new(meta.actor.as_deref(), origin);
        let sample = Refused {
            actor: meta.actor.clone(),
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            channel: meta.channel,
            code: err.code,
        };
        if let Refusal::Record(count) = self.limiter.refused(&key, sample) {
            self.audit_refusal(meta, err.code, count).await;
        }
        self.start_refusal_flush();
        err
    }

    async fn audit_refusal(&self, meta: &RequestMeta, code: ErrorCode, count: u64) {
        let scope = Scope::new(Op::Authenticate);
        let written = self
            .audit_counted(meta, &scope, code.outcome(), Some(code), Some(count))
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not audit a refused authentication");
        }
    }

    /// Once per process: writes the counted refusals of every window that ended.
    fn start_refusal_flush(&self) {
        if !self.limiter.claim_flusher() {
            return;
        }
        let vault = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vault.limiter.window());
            loop {
                tick.tick().await;
                for (r, count) in vault.limiter.due_refusals() {
                    let meta = RequestMeta {
                        actor: r.actor,
                        client_ip: r.client_ip,
                        user_agent: r.user_agent,
                        request_id: r.request_id,
                        channel: r.channel,
                    };
                    vault.audit_refusal(&meta, r.code, count).await;
                }
            }
        });
    }
}
