//! Prometheus metrics (`GET /metrics`, OpenMetrics text): one registry per
//! process, histograms (not summaries) so replicas aggregate. A leaf: the
//! transports, the vault and the stores record into it; nothing here knows them.
//! Labels are bounded sets (route templates, never paths; channel, operation,
//! outcome, error code): no value, token, name of a secret or caller ends up here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `http`, `nats` or `grpc`.
    pub channel: &'static str,
    pub operation: &'static str,
    /// The audit outcome: `success`, `denied`, `invalid`, `not_found`, `conflict`, `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelOperationLabels {
    pub channel: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub channel: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `busy` (at `NATS_MAX_IN_FLIGHT`) or `no_reply` (no reply inbox).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    /// One of `DB_COMMANDS`, or `other`.
    pub command: &'static str,
    pub outcome: &'static str,
}

/// The MongoDB commands the service sends, by the driver's name; anything
/// else is counted as `other`, so the label set stays bounded.
pub const DB_COMMANDS: [&str; 12] = [
    "find",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "aggregate",
    "getMore",
    "count",
    "killCursors",
    "createIndexes",
    "ping",
    "hello",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// `auth_failures`, `denials`, `new_address`, `read_rate` (see `vault::alerts`).
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    /// `success`, `rolled_back` or `failed` (see `vault::rotation`).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `pending`, `granted`, `denied`, `expired` (see `store::access_requests`).
    pub state: &'static str,
}

/// The outcomes a rotation ends with.
pub const ROTATION_OUTCOMES: [&str; 3] = ["success", "rolled_back", "failed"];
/// The states of an access request.
pub const ACCESS_REQUEST_STATES: [&str; 4] = ["pending", "granted", "denied", "expired"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub http_request_duration: Family<HttpLabels, Histogram>,
    pub operations: Family<OperationLabels, Counter>,
    pub operation_duration: Family<ChannelOperationLabels, Histogram>,
    pub authentications: Family<AuthLabels, Counter>,
    pub audit_batch_size: Histogram,
    pub read_batch_size: Histogram,
    pub audit_write_duration: Histogram,
    pub audit_write_failures: Counter,
    pub events_published: Family<KindLabels, Counter>,
    pub watch_streams_open: Gauge,
    pub nats_in_flight: Gauge,
    pub nats_refused: Family<ReasonLabels, Counter>,
    /// Set at each scrape from the keyring this replica holds.
    pub keyring_active_key_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub keyring_seals: Family<KeyLabels, Gauge>,
    pub alerts: Family<RuleLabels, Counter>,
    pub rotations: Family<RotationLabels, Counter>,
    /// Set at each scrape from the `access_requests` collection (all replicas).
    pub access_requests: Family<StateLabels, Gauge>,
    pub db_command_duration: Family<DbLabels, Histogram>,
}

fn seconds_buckets() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("secret_manager");
        let http_request_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route template, method and status",
            http_request_duration.clone(),
        );
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "operations",
            "Audited vault operations by channel, operation and outcome (denied = authorisation refusals)",
            operations.clone(),
        );
        let operation_duration = Family::<ChannelOperationLabels, Histogram>::new_with_constructor(
            seconds_buckets as fn() -> _,
        );
        registry.register(
            "operation_duration_seconds",
            "Time of one audited vault operation (its record included), by channel and operation: every transport",
            operation_duration.clone(),
        );
        let authentications = Family::<AuthLabels, Counter>::default();
        registry.register(
            "authentications",
            "Authentication attempts by channel and result",
            authentications.clone(),
        );
        let audit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "audit_batch_size",
            "Audit records per insert_many",
            audit_batch_size.clone(),
        );
        let read_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "read_batch_size",
            "Point reads of secrets answered by one coalesced find",
            read_batch_size.clone(),
        );
        let audit_write_duration = seconds_buckets();
        registry.register(
            "audit_write_duration_seconds",
            "Time of one audit insert_many",
            audit_write_duration.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written (each also failed its request)",
            audit_write_failures.clone(),
        );
        let events_published = Family::<KindLabels, Counter>::default();
        registry.register(
            "events_published",
            "Change events published, by kind",
            events_published.clone(),
        );
        let watch_streams_open = Gauge::default();
        registry.register(
            "watch_streams_open",
            "Open gRPC WatchSecret streams on this replica",
            watch_streams_open.clone(),
        );
        let nats_in_flight = Gauge::default();
        registry.register(
            "nats_requests_in_flight",
            "NATS requests being handled on this replica",
            nats_in_flight.clone(),
        );
        let nats_refused = Family::<ReasonLabels, Counter>::default();
        // Served at 0 before the first refusal (a family without children shows nothing).
        for reason in ["busy", "no_reply"] {
            nats_refused
                .get_or_create(&ReasonLabels { reason })
                .inc_by(0);
        }
        registry.register(
            "nats_requests_refused",
            "NATS requests answered `busy` or dropped for want of a reply inbox",
            nats_refused.clone(),
        );
        let keyring_active_key_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "keyring_active_key_age_seconds",
            "Age of the active data key",
            keyring_active_key_age.clone(),
        );
        let keyring_seals = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "keyring_seals",
            "Seals made under each data key (as flushed to the keyring by the replicas)",
            keyring_seals.clone(),
        );
        let rotations = Family::<RotationLabels, Counter>::default();
        for outcome in ROTATION_OUTCOMES {
            rotations
                .get_or_create(&RotationLabels { outcome })
                .inc_by(0);
        }
        registry.register(
            "rotations",
            "Rotations run by this replica (the scheduler's and POST .../rotate), by outcome",
            rotations.clone(),
        );
        let access_requests = Family::<StateLabels, Gauge>::default();
        for state in ACCESS_REQUEST_STATES {
            access_requests.get_or_create(&StateLabels { state }).set(0);
        }
        registry.register(
            "access_requests",
            "Access requests stored, by state (read from the database at each scrape)",
            access_requests.clone(),
        );
        let alerts = Family::<RuleLabels, Counter>::default();
        // Served at 0 before the first alert (a family without children shows nothing).
        for rule in ALERT_RULES {
            alerts.get_or_create(&RuleLabels { rule }).inc_by(0);
        }
        registry.register(
            "alerts",
            "Alerts raised by this replica (each once across the replicas), by rule",
            alerts.clone(),
        );
        let db_command_duration =
            Family::<DbLabels, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register(
            "db_command_duration_seconds",
            "MongoDB commands by name and outcome, as the driver times them (round trip included)",
            db_command_duration.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "The running version", build_info.clone());
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Self {
            registry,
            http_request_duration,
            operations,
            operation_duration,
            authentications,
            audit_batch_size,
            read_batch_size,
            audit_write_duration,
            audit_write_failures,
            events_published,
            watch_streams_open,
            nats_in_flight,
            nats_refused,
            keyring_active_key_age,
            keyring_seals,
            alerts,
            rotations,
            access_requests,
            db_command_duration,
        }
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn http_request(&self, route: String, method: &str, status: u16, took: Duration) {
        if !enabled() {
            return;
        }
        self.http_request_duration
            .get_or_create(&HttpLabels {
                route,
                method: method.to_string(),
                status,
            })
            .observe(took.as_secs_f64());
    }
}

/// The alert rules (`vault::alerts::Rule`; a unit test there keeps both equal).
pub const ALERT_RULES: [&str; 4] = ["auth_failures", "denials", "new_address", "read_rate"];

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// `METRICS_ENABLED`: whether the per-request metrics are recorded and
/// `GET /metrics` serves them. Process-wide (one service per process); off
/// only to measure what recording costs (`scripts/bench_metrics.sh`).
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `METRICS_DB_COMMANDS`: time every MongoDB command through the driver's
/// command monitoring (opt-in: see `store::connect`). Process-wide.
static DB_COMMANDS_ON: AtomicBool = AtomicBool::new(false);

pub fn set_db_commands(on: bool) {
    DB_COMMANDS_ON.store(on, Ordering::Relaxed);
}

pub fn db_commands() -> bool {
    enabled() && DB_COMMANDS_ON.load(Ordering::Relaxed)
}

/// Times one MongoDB command (the driver's command monitoring, see `store::connect`).
pub fn db_command(name: &str, ok: bool, took: Duration) {
    let command = DB_COMMANDS
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or("other");
    METRICS
        .db_command_duration
        .get_or_create(&DbLabels {
            command,
            outcome: if ok { "success" } else { "failure" },
        })
        .observe(took.as_secs_f64());
}

/// The names `GET /metrics` serves (README lists them; a test checks both).
pub const NAMES: &[&str] = &[
    "secret_manager_http_request_duration_seconds",
    "secret_manager_operations_total",
    "secret_manager_operation_duration_seconds",
    "secret_manager_authentications_total",
    "secret_manager_audit_batch_size",
    "secret_manager_read_batch_size",
    "secret_manager_audit_write_duration_seconds",
    "secret_manager_audit_write_failures_total",
    "secret_manager_events_published_total",
    "secret_manager_watch_streams_open",
    "secret_manager_nats_requests_in_flight",
    "secret_manager_nats_requests_refused_total",
    "secret_manager_keyring_active_key_age_seconds",
    "secret_manager_keyring_seals",
    "secret_manager_build_info",
    "secret_manager_alerts_total",
    "secret_manager_rotations_total",
    "secret_manager_access_requests",
    // Only with `METRICS_DB_COMMANDS=true`.
    "secret_manager_db_command_duration_seconds",
];
