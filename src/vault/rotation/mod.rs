//! Secret rotation: schedules, staging labels, verification, automatic
//! rollback, expiry, and one scheduler across replicas (`scheduler`).
//!
//! A secret's document carries staging labels beside `current_version`:
//! `pending_version` (written, not yet served), `previous_version` (the one
//! before current) and `failed_versions`. Readers always get `current`
//! (`store::secrets::find_live`); `?stage=pending|previous` reads the others.
//!
//! One rotation (`Op::Rotate`, one audit record) makes up to three tries;
//! each try is a sequence of state changes, each its own audited operation:
//! 1. `rotation_stage`: the new value becomes `pending` (event `secret_pending`);
//! 2. with a `verify_url`: a signed POST carrying a single-use `read_token`
//!    (60 s, only that pending version); a 2xx within 10 s passes, anything
//!    else discards the pending version (`rotation_discard`, marked `failed`);
//! 3. `rotation_promote`: pending → current, old current → previous
//!    (event `secret_promoted`);
//! 4. with a `health_url`: a signed POST; a non-2xx or no answer within 4 s
//!    rolls back at once (`rotation_rollback`: previous → current, the new
//!    version marked `failed`; event `secret_rolled_back`).
//!
//! A pending version left by a rotation that could not finish (its process
//! died, or the database was down so even its discard failed) is replaced by
//! the next try of the same rotation, by a newer scheduler leader (higher
//! fencing token), or by anyone once it is older than `PENDING_STALE_SECS`;
//! the replaced version is marked `failed`.
//!
//! Tries are spaced by a backoff; when all fail the rotation's record is
//! `rotation_failed` and so is its event. Every write is a compare-and-set
//! on what the try read and on the scheduler's fencing token (see
//! `store::rotation`).

pub mod scheduler;
pub mod spec;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::named::SecretRecord;
use super::names::SecretKey;
use super::{utc, Op, RecordRef, RequestMeta, Scope, Value, Vault};
use crate::auth::Action;
use crate::error::{ApiError, ErrorCode};
use crate::store::rotation::{self as store, HistoryEntry, PendingToken, Schedule, Staged};
use spec::{Generator, Period};

/// How long a verifier's read token lives.
pub const READ_TOKEN_SECS: i64 = 60;
/// How long the verifier has to answer.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the health check has: a failure rolls back within 5 s of promotion.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(4);
/// Tries per rotation.
pub const TRIES: u32 = 3;
/// A pending version older than this (from a rotation that died) may be replaced.
const PENDING_STALE_SECS: i64 = 120;
/// After a failed scheduled rotation, the next try is at most this far away.
const RETRY_AFTER_FAILURE: chrono::Duration = chrono::Duration::hours(1);
/// A rotation is due this long before the secret expires (or the window, if longer).
const EXPIRY_LEAD: chrono::Duration = chrono::Duration::hours(1);

/// Settings of rotation, expiry and the scheduler.
#[derive(Clone)]
pub struct RotationSettings {
    /// `ALLOW_EXPIRED_READS`: serve expired secrets anyway.
    pub allow_expired_reads: bool,
    /// `EXPIRY_WARNING_DAYS`: `secret_expiring` this many days before.
    pub expiry_warning_days: u32,
    /// `ROTATION_SCHEDULER`: take part in the scheduler election.
    pub scheduler: bool,
    /// `ROTATION_LEASE_SECS`: the scheduler lease's length (renewed every third).
    pub lease: Duration,
    /// `ROTATION_SCAN_MS`: how often the leader looks for due rotations.
    pub scan: Duration,
    /// `ROTATION_RETRY_MS`: the backoff before the second try (doubled for the third).
    pub retry: Duration,
    /// `WEBHOOK_SECRET`: signs the verify and health requests.
    pub signing_secret: Option<SecretString>,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            allow_expired_reads: false,
            expiry_warning_days: 7,
            scheduler: true,
            lease: Duration::from_secs(10),
            scan: Duration::from_secs(1),
            retry: Duration::from_secs(1),
            signing_secret: None,
        }
    }
}

impl std::fmt::Debug for RotationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationSettings")
            .field("allow_expired_reads", &self.allow_expired_reads)
            .field("expiry_warning_days", &self.expiry_warning_days)
            .field("scheduler", &self.scheduler)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The settings and the receivers' HTTP client (no redirects followed).
pub struct RotationState {
    pub settings: RotationSettings,
    client: reqwest::Client,
    /// This replica's scheduler identity and fencing token (0: not the leader).
    pub(crate) leader: Arc<scheduler::Leader>,
}

impl RotationState {
    pub fn new(settings: RotationSettings) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            settings,
            client,
            leader: Arc::new(scheduler::Leader::new()),
        }
    }
}

/// What a caller gives to set a schedule (text, checked by the vault).
#[derive(Debug, Clone, Default)]
pub struct RotationInput {
    pub every: Option<String>,
    pub cron: Option<String>,
    pub window: Option<String>,
    pub generator: Option<GeneratorInput>,
    pub verify_url: Option<String>,
    pub health_url: Option<String>,
    pub expires_after: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct GeneratorInput {
    pub kind: String,
    pub length: Option<i64>,
    pub charset: Option<String>,
}

/// A schedule as shown to callers.
#[derive(Debug, Clone)]
pub struct RotationView {
    pub project: String,
    pub path: String,
    pub every: Option<String>,
    pub cron: Option<String>,
    pub window: Option<String>,
    pub generator: store::GeneratorDoc,
    pub verify_url: Option<String>,
    pub health_url: Option<String>,
    pub expires_after: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub next_rotation_at: DateTime<Utc>,
    pub last_rotation: Option<RotationOutcome>,
    pub history: Vec<RotationOutcome>,
}

/// One rotation's outcome.
#[derive(Debug, Clone)]
pub struct RotationOutcome {
    pub time: DateTime<Utc>,
    pub outcome: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub trigger: String,
    pub reason: Option<String>,
}

/// A finished rotation.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub project: String,
    pub path: String,
    pub version: i64,
    pub previous_version: i64,
    pub tries: u32,
}

/// Which staging label a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Current,
    Pending,
    Previous,
}

impl Stage {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "current" => Ok(Stage::Current),
            "pending" => Ok(Stage::Pending),
            "previous" => Ok(Stage::Previous),
            _ => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "`stage` must be `current`, `pending` or `previous`",
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Pending => "pending",
            Stage::Previous => "previous",
        }
    }
}

/// Who may act: a manual rotation takes the lease's fencing token as it is;
/// the scheduler's leader holds its own and stops when it loses the lease.
#[derive(Clone)]
pub(crate) enum Fence {
    Manual(i64),
    Leader(Arc<scheduler::Leader>, i64),
}

impl Fence {
    fn epoch(&self) -> i64 {
        match self {
            Fence::Manual(e) | Fence::Leader(_, e) => *e,
        }
    }

    fn holds(&self) -> bool {
        match self {
            Fence::Manual(_) => true,
            Fence::Leader(l, e) => l.holds(*e),
        }
    }
}

/// Why a try failed.
struct Failure {
    reason: String,
    /// Another try may succeed.
    retry: bool,
    /// The scheduler lease was lost: leave the schedule to the next leader.
    lost_lease: bool,
    rolled_back: bool,
    in_progress: bool,
}

impl Failure {
    fn retry(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: true,
            lost_lease: false,
            rolled_back: false,
            in_progress: false,
        }
    }

    fn fatal(reason: impl Into<String>) -> Self {
        Self {
            retry: false,
            ..Self::retry(reason)
        }
    }

    fn lost_lease() -> Self {
        Self {
            lost_lease: true,
            ..Self::fatal("this replica lost the scheduler lease; the next leader rotates")
        }
    }
}

/// What one rotation works from.
struct Job<'a> {
    key: &'a SecretKey,
    id: &'a str,
    schedule: Option<&'a Schedule>,
    fence: Fence,
    explicit: Option<&'a Zeroizing<Vec<u8>>>,
    trigger: &'static str,
}

#[derive(Serialize)]
struct ReceiverBody<'a> {
    project: &'a str,
    path: &'a str,
    version: i64,
    stage: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_token: Option<&'a str>,
}

fn bson_time(t: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_chrono(t)
}

/// A stored period as a caller would write it: `90d`, `12h`, `90m`, `45s`.
fn human(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::SecretNotFound,
        "no secret at that project and path",
    )
}

fn outcome_of(e: &HistoryEntry) -> RotationOutcome {
    RotationOutcome {
        time: utc(e.time),
        outcome: e.outcome.clone(),
        from_version: e.from_version,
        to_version: e.to_version,
        trigger: e.trigger.clone(),
        reason: e.reason.clone(),
    }
}

impl RotationView {
    fn of(s: &Schedule) -> Self {
        let history: Vec<RotationOutcome> = s.history.iter().rev().map(outcome_of).collect();
        Self {
            project: s.project.clone(),
            path: s.path.clone(),
            every: s.every_secs.map(human),
            cron: s.cron.clone(),
            window: s.window_secs.map(human),
            generator: s.generator.clone(),
            verify_url: s.verify_url.clone(),
            health_url: s.health_url.clone(),
            expires_after: s.expires_after_secs.map(human),
            expires_at: s.expires_at.map(utc),
            next_rotation_at: utc(s.next_rotation_at),
            last_rotation: history.first().cloned(),
            history,
        }
    }
}

impl Vault {
    pub fn rotation_settings(&self) -> &RotationSettings {
        &self.rotation.settings
    }

    /// 410 `secret_expired` when `expires_at` has passed (unless `ALLOW_EXPIRED_READS`).
    pub(super) fn refuse_expired(&self, expires_at: Option<BsonDateTime>) -> Result<(), ApiError> {
        match expires_at {
            Some(t) if t <= BsonDateTime::now() && !self.rotation.settings.allow_expired_reads => {
                Err(ApiError::new(
                    ErrorCode::SecretExpired,
                    "the secret has expired; rotate it or set a new expiry",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The live secret at `key`.
    async fn staged_at(&self, key: &SecretKey) -> Result<Staged, ApiError> {
        store::load_at(self.db(), key.project(), key.path())
            .await?
            .filter(Staged::is_live)
            .ok_or_else(not_found)
    }

    /// The next due time of a schedule after `now`: the period's, moved by
    /// the window, and early enough to rotate before `expires_at`.
    fn next_due(
        period: &Period,
        window: Option<Duration>,
        expires_at: Option<BsonDateTime>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let due = spec::jitter(period.next_after(now), window);
        match expires_at {
            Some(t) => {
                let lead = chrono::Duration::from_std(window.unwrap_or_default())
                    .unwrap_or_default()
                    .max(EXPIRY_LEAD);
                due.min((utc(t) - lead).max(now))
            }
            None => due,
        }
    }

    fn warn_at(&self, expires_at: BsonDateTime) -> BsonDateTime {
        let days = i64::from(self.rotation.settings.expiry_warning_days);
        let at = expires_at.timestamp_millis() - days * 86_400_000;
        BsonDateTime::from_millis(at.max(BsonDateTime::now().timestamp_millis()))
    }

    /// Sets a secret's rotation schedule: `PUT .../rotation`. Needs `write`.
    pub async fn rotation_put(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        input: RotationInput,
    ) -> Result<RotationView, ApiError> {
        self.run(Op::RotationPut, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Write, key)?;
            let period = Period::parse(input.every.as_deref(), input.cron.as_deref())?;
            let window = spec::window(input.window.as_deref(), &period)?;
            let max_bytes = self.limits().max_secret_bytes;
            let generator = match &input.generator {
                Some(g) => Generator::parse(&g.kind, g.length, g.charset.as_deref(), max_bytes)?,
                None => Generator::default(),
            };
            let verify_url = input.verify_url.as_deref().map(|u| spec::url("verify_url", u)).transpose()?;
            let health_url = input.health_url.as_deref().map(|u| spec::url("health_url", u)).transpose()?;
            if (verify_url.is_some() || health_url.is_some())
                && self.rotation.settings.signing_secret.is_none()
            {
                return Err(ApiError::new(
                    ErrorCode::InvalidRotation,
                    "`verify_url` and `health_url` need `WEBHOOK_SECRET` (their requests are signed with it)",
                ));
            }
            let expires_after = match &input.expires_after {
                Some(text) => {
                    let d = spec::duration("expires_after", text)?;
                    if !(spec::MIN_PERIOD..=spec::MAX_PERIOD).contains(&d) {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRotation,
                            "`expires_after` must be from 1h to 3650d",
                        ));
                    }
                    Some(d)
                }
                None => None,
            };
            let in_range = |t: &DateTime<Utc>| {
                let year = chrono::Datelike::year(t);
                (2000..=9999).contains(&year)
            };
            if input.expires_at.as_ref().is_some_and(|t| !in_range(t)) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRotation,
                    "`expires_at` must be a time in the years 2000-9999",
                ));
            }
            if expires_after.is_some() && input.expires_at.is_some() {
                return Err(ApiError::new(
                    ErrorCode::InvalidRotation,
                    "give `expires_after` or `expires_at`, not both",
                ));
            }
            let staged = self.staged_at(key).await?;
            scope.secret_id(&staged.id);
            let now = Utc::now();
            let expires_at = match (expires_after, input.expires_at) {
                (Some(d), _) => Some(bson_time(now + chrono::Duration::from_std(d).unwrap_or_default())),
                (None, Some(t)) => Some(bson_time(t)),
                (None, None) => None,
            };
            let old = store::get(self.db(), &staged.id).await?;
            let schedule = Schedule {
                id: staged.id.clone(),
                project: staged.project.clone(),
                path: staged.path.clone(),
                every_secs: period.every_secs(),
                cron: period.cron().map(str::to_string),
                window_secs: window.and_then(|w| i64::try_from(w.as_secs()).ok()),
                generator: generator.to_doc(),
                verify_url,
                health_url,
                expires_after_secs: expires_after.and_then(|d| i64::try_from(d.as_secs()).ok()),
                expires_at,
                next_rotation_at: bson_time(Self::next_due(&period, window, expires_at, now)),
                warn_at: expires_at.map(|t| self.warn_at(t)),
                history: old.map(|o| o.history).unwrap_or_default(),
                updated_at: BsonDateTime::now(),
                updated_by: meta.actor().to_string(),
            };
            store::put(self.db(), &schedule).await?;
            store::set_expiry(self.db(), &staged.id, expires_at).await?;
            Ok(RotationView::of(&schedule))
        })
        .await
    }

    /// A secret's schedule and its last outcomes: `GET .../rotation`. Needs `list`.
    pub async fn rotation_get(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
    ) -> Result<RotationView, ApiError> {
        self.run(Op::RotationRead, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::List, key)?;
            let staged = self.staged_at(key).await?;
            scope.secret_id(&staged.id);
            let schedule = store::get(self.db(), &staged.id)
                .await?
                .ok_or_else(no_schedule)?;
            Ok(RotationView::of(&schedule))
        })
        .await
    }

    /// Stops a secret's rotation and removes its expiry: `DELETE .../rotation`. Needs `write`.
    pub async fn rotation_delete(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
    ) -> Result<(), ApiError> {
        self.run(Op::RotationDelete, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Write, key)?;
            let staged = self.staged_at(key).await?;
            scope.secret_id(&staged.id);
            if !store::remove(self.db(), &staged.id).await? {
                return Err(no_schedule());
            }
            store::set_expiry(self.db(), &staged.id, None).await?;
            Ok(())
        })
        .await
    }

    /// Rotates now: `POST .../rotate`, with the schedule's generator and
    /// receivers (or the default generator), or the caller's `value`. Needs `write`.
    pub async fn rotate_now(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        value: Option<Value<'_>>,
    ) -> Result<Rotated, ApiError> {
        self.run(Op::Rotate, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Write, key)?;
            let explicit = value.map(|v| self.decode_value(v, "value")).transpose()?;
            let staged = self.staged_at(key).await?;
            scope.secret_id(&staged.id);
            let schedule = store::get(self.db(), &staged.id).await?;
            let epoch = store::lease(self.db(), store::ROTATION_LEASE)
                .await?
                .map_or(0, |l| l.epoch);
            let job = Job {
                key,
                id: &staged.id,
                schedule: schedule.as_ref(),
                fence: Fence::Manual(epoch),
                explicit: explicit.as_ref(),
                trigger: "manual",
            };
            self.rotate_with_tries(meta, scope, job).await
        })
        .await
    }

    /// Up to `TRIES` tries with backoff; records the outcome on the schedule.
    async fn rotate_with_tries(
        &self,
        meta: &RequestMeta,
        scope: &mut Scope,
        job: Job<'_>,
    ) -> Result<Rotated, ApiError> {
        let mut last = None;
        let mut from = None;
        // The pending version an earlier try of this rotation wrote: when its
        // discard could not be stored (the database down between steps), the
        // next try replaces it instead of waiting for it to go stale.
        let mut own_pending = None;
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(self.rotation.settings.retry * 2u32.pow(attempt - 1)).await;
            }
            match self
                .try_rotation(meta, &job, &mut from, &mut own_pending)
                .await
            {
                Ok(mut done) => {
                    done.tries = attempt + 1;
                    scope.version(Some(done.version));
                    self.record_outcome(
                        &job,
                        "success",
                        Some(done.previous_version),
                        Some(done.version),
                        None,
                    )
                    .await;
                    return Ok(done);
                }
                Err(f) => {
                    tracing::warn!(
                        project = job.key.project(),
                        path = job.key.path(),
                        attempt = attempt + 1,
                        reason = %f.reason,
                        "rotation try failed"
                    );
                    let again = f.retry;
                    last = Some(f);
                    if !again {
                        break;
                    }
                }
            }
        }
        let f = last.unwrap_or_else(|| Failure::fatal("no try was made"));
        if !f.lost_lease {
            let outcome = if f.rolled_back {
                "rolled_back"
            } else {
                "failed"
            };
            self.record_outcome(&job, outcome, from, None, Some(&f.reason))
                .await;
        }
        scope.event_on_failure("rotation_failed");
        let code = if f.in_progress {
            ErrorCode::RotationInProgress
        } else {
            ErrorCode::RotationFailed
        };
        Err(ApiError::new(
            code,
            format!("rotation failed: {}", f.reason),
        ))
    }

    async fn record_outcome(
        &self,
        job: &Job<'_>,
        outcome: &'static str,
        from: Option<i64>,
        to: Option<i64>,
        reason: Option<&str>,
    ) {
        if crate::metrics::enabled() {
            crate::metrics::METRICS
                .rotations
                .get_or_create(&crate::metrics::RotationLabels { outcome })
                .inc();
        }
        let Some(s) = job.schedule else {
            return;
        };
        let now = Utc::now();
        let period = Period::stored(s.every_secs, s.cron.as_deref());
        let window = s
            .window_secs
            .map(|w| Duration::from_secs(u64::try_from(w).unwrap_or(0)));
        let success = outcome == "success";
        // A promotion renews an `expires_after` expiry and ends a fixed one
        // (it belonged to the value replaced); a failure changes nothing.
        let expiry = match (success, s.expires_after_secs) {
            (true, Some(after)) => {
                let at = bson_time(now + chrono::Duration::seconds(after));
                Some(Some((at, self.warn_at(at))))
            }
            (true, None) => Some(None),
            (false, _) => None,
        };
        let expires_at = match expiry {
            Some(e) => e.map(|(at, _)| at),
            None => s.expires_at,
        };
        let mut next = Self::next_due(&period, window, expires_at, now);
        if !success {
            next = next
                .min(now + RETRY_AFTER_FAILURE)
                .max(now + chrono::Duration::minutes(1));
        }
        let entry = HistoryEntry {
            time: bson_time(now),
            outcome: outcome.to_string(),
            from_version: from,
            to_version: to,
            trigger: job.trigger.to_string(),
            reason: reason.map(str::to_string),
        };
        if let Err(e) = store::record(self.db(), job.id, &entry, bson_time(next), expiry).await {
            tracing::warn!(error = %e, "could not record a rotation's outcome on its schedule");
        }
    }

    /// One try: stage, verify, promote, check health (rolling back on failure).
    async fn try_rotation(
        &self,
        meta: &RequestMeta,
        job: &Job<'_>,
        from: &mut Option<i64>,
        own_pending: &mut Option<i64>,
    ) -> Result<Rotated, Failure> {
        if !job.fence.holds() {
            return Err(Failure::lost_lease());
        }
        let db_failure = |e: ApiError| Failure::retry(format!("{}: {}", e.code, e.message));
        let staged = store::load(self.db(), job.id)
            .await
            .map_err(|e| db_failure(e.into()))?
            .filter(Staged::is_live)
            .ok_or_else(|| Failure::fatal("the secret no longer exists"))?;
        let replaces = match staged.pending_version {
            None => None,
            Some(p) => {
                let started = staged.pending_since.map_or(0, |t| t.timestamp_millis());
                let stale = *own_pending == Some(p)
                    || staged.pending_epoch.unwrap_or(0) < job.fence.epoch()
                    || BsonDateTime::now().timestamp_millis() - started > PENDING_STALE_SECS * 1000;
                if !stale {
                    return Err(Failure {
                        in_progress: true,
                        ..Failure::retry(format!("another rotation has version {p} pending"))
                    });
                }
                Some(p)
            }
        };
        let base = staged.current_version;
        *from = Some(base);
        let next = staged.top() + 1;
        let generated;
        let plaintext: &Zeroizing<Vec<u8>> = match job.explicit {
            Some(v) => v,
            None => {
                let max = self.limits().max_secret_bytes;
                let generator = job
                    .schedule
                    .map(|s| Generator::stored(&s.generator, max))
                    .unwrap_or_default();
                generated = generator.generate();
                &generated
            }
        };
        let at = RecordRef {
            project: &staged.project,
            path: &staged.path,
            id: &staged.id,
        };
        let version = self
            .seal_version(at, next, plaintext, meta.actor())
            .map_err(|e| Failure::fatal(e.message))?;
        let versions = kept_versions(&staged, version, self.limits().max_versions);
        let verify_url = job.schedule.and_then(|s| s.verify_url.as_deref());
        let health_url = job.schedule.and_then(|s| s.health_url.as_deref());
        let read_token = verify_url.map(|_| {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes[..]);
            Zeroizing::new(hex::encode(&bytes[..]))
        });
        let token_doc = read_token.as_ref().map(|t| {
            let hash: [u8; 32] = sha2::Sha256::digest(t.as_bytes()).into();
            let expires = BsonDateTime::from_millis(
                BsonDateTime::now().timestamp_millis() + READ_TOKEN_SECS * 1000,
            );
            PendingToken::new(hash, next, expires)
        });
        let epoch = job.fence.epoch();

        // 1. pending
        self.run(Op::RotationStage, meta, async |scope| {
            scope.key(job.key);
            scope.secret_id(job.id);
            scope.version(Some(next));
            let reserved = self.pending_with_number(meta, scope).await?;
            let staged_ok = store::stage(
                self.db(),
                store::Stage {
                    id: job.id,
                    rev: staged.rev,
                    current: base,
                    epoch,
                    versions: &versions,
                    pending: next,
                    token: token_doc,
                    replaces,
                },
            )
            .await?;
            if !staged_ok {
                return Err(ApiError::new(
                    ErrorCode::VersionConflict,
                    "the secret changed (or a newer scheduler acted) before the pending version was written",
                ));
            }
            scope.event_numbers.extend(reserved);
            scope.event("secret_pending");
            Ok(())
        })
        .await
        .map_err(db_failure)?;
        *own_pending = Some(next);

        // 2. verify
        if let (Some(url), Some(token)) = (verify_url, read_token.as_ref()) {
            let body = ReceiverBody {
                project: &staged.project,
                path: &staged.path,
                version: next,
                stage: "verify",
                read_token: Some(token.as_str()),
            };
            if let Err(why) = self.call_receiver(url, &body, VERIFY_TIMEOUT).await {
                self.discard(meta, job, next, epoch).await;
                return Err(Failure::retry(format!("verify_url: {why}")));
            }
        }
        if !job.fence.holds() {
            self.discard(meta, job, next, epoch).await;
            return Err(Failure::lost_lease());
        }

        // 3. promote
        let expires_at = job
            .schedule
            .and_then(|s| s.expires_after_secs)
            .map(|after| bson_time(Utc::now() + chrono::Duration::seconds(after)));
        let promoted = self
            .run(Op::RotationPromote, meta, async |scope| {
                scope.key(job.key);
                scope.secret_id(job.id);
                scope.version(Some(next));
                let reserved = self.pending_with_number(meta, scope).await?;
                if !store::promote(self.db(), job.id, base, next, epoch, meta.actor(), expires_at)
                    .await?
                {
                    return Err(ApiError::new(
                        ErrorCode::VersionConflict,
                        "the secret changed (or a newer scheduler acted) before the pending version was promoted",
                    ));
                }
                scope.event_numbers.extend(reserved);
                scope.event("secret_promoted");
                Ok(())
            })
            .await;
        if let Err(e) = promoted {
            self.discard(meta, job, next, epoch).await;
            return Err(db_failure(e));
        }

        // 4. health, rolling back on failure
        if let Some(url) = health_url {
            let body = ReceiverBody {
                project: &staged.project,
                path: &staged.path,
                version: next,
                stage: "health",
                read_token: None,
            };
            if let Err(why) = self.call_receiver(url, &body, HEALTH_TIMEOUT).await {
                let rolled = self
                    .run(Op::RotationRollback, meta, async |scope| {
                        scope.key(job.key);
                        scope.secret_id(job.id);
                        scope.version(Some(base));
                        let reserved = self.pending_with_number(meta, scope).await?;
                        if !store::rollback(self.db(), job.id, next, base, epoch, meta.actor())
                            .await?
                        {
                            return Err(ApiError::new(
                                ErrorCode::VersionConflict,
                                "the secret changed after the promotion; not rolled back",
                            ));
                        }
                        scope.event_numbers.extend(reserved);
                        scope.event("secret_rolled_back");
                        Ok(())
                    })
                    .await;
                return Err(match rolled {
                    Ok(()) => Failure {
                        rolled_back: true,
                        ..Failure::retry(format!(
                            "health_url: {why}; rolled back to version {base}"
                        ))
                    },
                    Err(e) => Failure::fatal(format!(
                        "health_url: {why}; the rollback failed: {}",
                        e.message
                    )),
                });
            }
        }
        Ok(Rotated {
            project: staged.project.clone(),
            path: staged.path.clone(),
            version: next,
            previous_version: base,
            tries: 0,
        })
    }

    /// A pending version that will not be promoted is marked `failed` (audited).
    async fn discard(&self, meta: &RequestMeta, job: &Job<'_>, version: i64, epoch: i64) {
        let _ = self
            .run(Op::RotationDiscard, meta, async |scope| {
                scope.key(job.key);
                scope.secret_id(job.id);
                scope.version(Some(version));
                if store::discard(self.db(), job.id, version, epoch).await? {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        ErrorCode::VersionConflict,
                        "the pending version was already replaced",
                    ))
                }
            })
            .await;
    }

    /// POSTs `body`, signed like the webhooks, and wants a 2xx within `timeout`.
    async fn call_receiver(
        &self,
        url: &str,
        body: &ReceiverBody<'_>,
        timeout: Duration,
    ) -> Result<(), String> {
        let secret = self
            .rotation
            .settings
            .signing_secret
            .as_ref()
            .ok_or("no WEBHOOK_SECRET to sign with")?;
        let json = Zeroizing::new(serde_json::to_vec(body).map_err(|_| "could not encode")?);
        let t = Utc::now().timestamp();
        let signature = crate::crypto::signature(secret.expose_secret().as_bytes(), t, &json)
            .ok_or("could not sign")?;
        let sent = self
            .rotation
            .client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("x-signature", signature)
            .header("x-rotation-stage", body.stage)
            .body(json.to_vec())
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => Err(format!("answered {}", res.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {}s", timeout.as_secs())),
            Err(_) => Err("unreachable".to_string()),
        }
    }

    /// Reads the `pending` or `previous` version (or `current`): `?stage=`. Needs `read`.
    pub async fn get_stage(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        stage: Stage,
    ) -> Result<SecretRecord, ApiError> {
        self.run(Op::Read, meta, async |scope| {
            scope.key(key);
            scope.target(format!("stage:{}", stage.as_str()));
            self.require_read(meta, key).await?;
            let staged = self.staged_at(key).await?;
            scope.secret_id(&staged.id);
            let version = match stage {
                Stage::Current => Some(staged.current_version),
                Stage::Pending => staged.pending_version,
                Stage::Previous => staged.previous_version,
            }
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::VersionNotFound,
                    format!("the secret has no {} version", stage.as_str()),
                )
            })?;
            scope.version(Some(version));
            if stage != Stage::Pending {
                self.refuse_expired(staged.expires_at)?;
            }
            self.staged_record(staged, version).await
        })
        .await
    }

    /// Reads a pending version with the verifier's single-use read token
    /// (`X-Read-Token`, no service identity), audited as `rotation_verify_read`
    /// with actor `read-token`. A token that is wrong, used or expired is the
    /// same 401 as any bad credential, audited and rate-limited like one
    /// (per client address: `AUTH_FAILURE_BURST`), so guessing cannot flood
    /// the trail.
    pub async fn read_with_token(
        &self,
        meta: &mut RequestMeta,
        key: &SecretKey,
        token: &str,
    ) -> Result<SecretRecord, ApiError> {
        meta.actor = Some("read-token".to_string());
        let limit = meta
            .client_ip
            .as_deref()
            .map(|ip| crate::auth::limiter::LimitKey::new(Some("read-token"), ip));
        if let Some(Err(wait)) = limit.as_ref().map(|k| self.limiter.check(k)) {
            let err = ApiError::too_many_failures(wait.as_secs().saturating_add(1));
            return Err(self.refuse_authentication(meta, err).await);
        }
        let granted = self.take_read_token(key, token).await?;
        let Some((staged, version)) = granted else {
            if let Some(k) = &limit {
                self.limiter.fail(k);
            }
            return Err(self
                .refuse_authentication(meta, ApiError::unauthorized())
                .await);
        };
        let meta = &*meta;
        self.run(Op::RotationVerifyRead, meta, async |scope| {
            scope.key(key);
            scope.secret_id(&staged.id);
            scope.version(Some(version));
            self.staged_record(staged, version).await
        })
        .await
    }

    /// Uses up the read token if it is good for the pending version at `key`.
    async fn take_read_token(
        &self,
        key: &SecretKey,
        token: &str,
    ) -> Result<Option<(Staged, i64)>, ApiError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let Some(staged) = store::load_at(self.db(), key.project(), key.path())
            .await?
            .filter(Staged::is_live)
        else {
            return Ok(None);
        };
        let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let Some((found, pending)) = store::consume_token(self.db(), &staged.id, hash).await?
        else {
            return Ok(None);
        };
        if found.expires_at <= BsonDateTime::now() || pending != Some(found.version) {
            return Ok(None);
        }
        Ok(Some((staged, found.version)))
    }

    async fn staged_record(&self, staged: Staged, version: i64) -> Result<SecretRecord, ApiError> {
        let v = staged
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::VersionNotFound,
                    "that version does not exist (or is no longer kept)",
                )
            })?;
        let at = RecordRef {
            project: &staged.project,
            path: &staged.path,
            id: &staged.id,
        };
        let value = self.open(at, v).await?;
        Ok(SecretRecord {
            value,
            version,
            updated_at: utc(v.created_at),
            updated_by: v.created_by.clone(),
            current_version: staged.current_version,
            id: staged.id,
            project: staged.project,
            path: staged.path,
            description: staged.description,
            tags: staged.tags,
            kind: staged.kind,
            created_at: utc(staged.created_at),
            created_by: staged.created_by,
        })
    }
}

fn no_schedule() -> ApiError {
    ApiError::new(
        ErrorCode::RotationNotFound,
        "the secret has no rotation schedule",
    )
}

/// The kept history with `new` appended: the newest `max` versions, but
/// never dropping the current or previous one.
fn kept_versions(
    staged: &Staged,
    new: crate::store::secrets::VersionDoc,
    max: usize,
) -> Vec<crate::store::secrets::VersionDoc> {
    let mut all = staged.versions.clone();
    all.push(new);
    let keep = |v: &crate::store::secrets::VersionDoc| {
        v.version == staged.current_version || Some(v.version) == staged.previous_version
    };
    let max = max.max(3);
    while all.len() > max {
        match all.iter().position(|v| !keep(v)) {
            Some(i) => {
                all.remove(i);
            }
            None => break,
        }
    }
    all
}
