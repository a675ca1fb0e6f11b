//! Typed configuration from environment variables: the composition root.
//!
//! Every variable is read as text through `envy`, then parsed here so that each
//! problem names its variable. All problems are collected and reported at once;
//! secret values are never echoed. Secret settings (`X` or `X_FILE`) all go
//! through [`crate::settings::secret`]. The settings types belong to the modules
//! that use them (`StoreSettings`, `NatsSettings`, `LogFormat`, ...); this module
//! builds them, and only start-up, the CLI and tests import it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::crypto::MasterKey;
use crate::nats::NatsSettings;
use crate::settings;
use crate::store::{StoreSettings, WriteAcknowledgement};
pub use crate::telemetry::LogFormat;

/// Raw environment, every field optional text. Secret settings are not here:
/// they are read by name through [`settings::secret`].
#[derive(Deserialize, Default)]
struct RawEnv {
    host: Option<String>,
    port: Option<String>,
    workers: Option<String>,
    mongo_db: Option<String>,
    mongo_timeout_ms: Option<String>,
    mongo_max_pool_size: Option<String>,
    key_rotation_days: Option<String>,
    key_max_seals: Option<String>,
    keyring_refresh_secs: Option<String>,
    max_secret_bytes: Option<String>,
    audit_enabled: Option<String>,
    audit_ttl_days: Option<String>,
    trust_proxy_headers: Option<String>,
    trusted_proxies: Option<String>,
    log_format: Option<String>,
    shutdown_timeout_secs: Option<String>,
    config_file: Option<String>,
    max_versions: Option<String>,
    delete_recovery_days: Option<String>,
    default_project: Option<String>,
    auth_failure_burst: Option<String>,
    auth_failure_per_minute: Option<String>,
    register_per_minute: Option<String>,
    max_pending_tokens: Option<String>,
    nats_url: Option<String>,
    nats_user: Option<String>,
    nats_creds_file: Option<String>,
    nats_tls: Option<String>,
    nats_ca_file: Option<String>,
    nats_request_subject: Option<String>,
    nats_queue_group: Option<String>,
    nats_audit_subject: Option<String>,
    nats_max_in_flight: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    docs_enabled: Option<String>,
    metrics_enabled: Option<String>,
    metrics_db_commands: Option<String>,
    grpc_port: Option<String>,
    grpc_enabled: Option<String>,
    mongo_write_concern: Option<String>,
    alert_auth_failures: Option<String>,
    alert_denials: Option<String>,
    alert_window: Option<String>,
    alert_baseline_days: Option<String>,
    alert_rate_factor: Option<String>,
    alert_rate_min_per_minute: Option<String>,
    events_retention: Option<String>,
    events_max_streams: Option<String>,
    expiry_warning_days: Option<String>,
    allow_expired_reads: Option<String>,
    rotation_scheduler: Option<String>,
    rotation_lease_secs: Option<String>,
    rotation_scan_ms: Option<String>,
    rotation_retry_ms: Option<String>,
}

/// The validated configuration of one service instance.
#[derive(Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub workers: Option<usize>,
    pub store: StoreSettings,
    pub master_key: MasterKey,
    pub master_key_previous: Option<MasterKey>,
    pub keyring: crate::crypto::KeyringSettings,
    pub max_secret_bytes: usize,
    pub audit_enabled: bool,
    pub audit_ttl_days: u32,
    pub trust_proxy_headers: bool,
    /// `TRUSTED_PROXIES` and the `TRUST_PROXY_HEADERS` shorthand.
    pub trusted_proxies: crate::api::TrustedProxies,
    pub log_format: LogFormat,
    pub shutdown_timeout_secs: u64,
    pub auth: AuthSettings,
    pub max_versions: usize,
    pub delete_recovery_days: u32,
    pub default_project: String,
    pub auth_failure_burst: u32,
    pub auth_failure_per_minute: u32,
    /// Self-registration of service tokens: rate and pending cap.
    pub service_tokens: crate::vault::service_tokens::TokenSettings,
    /// Failed-access alerts and anomalies (`ALERT_*`).
    pub alerts: crate::vault::alerts::AlertSettings,
    pub nats: Option<NatsSettings>,
    /// Where change events are POSTed (`WEBHOOK_URL`), when set.
    pub webhook: Option<crate::webhook::WebhookSettings>,
    /// Rotation, expiry and the scheduler (`EXPIRY_WARNING_DAYS`, `ALLOW_EXPIRED_READS`,
    /// `ROTATION_*`; `WEBHOOK_SECRET` signs the verify and health requests).
    pub rotation: crate::vault::rotation::RotationSettings,
    /// `METRICS_TOKEN(_FILE)`: a bearer token `GET /metrics` then requires.
    pub metrics_token: Option<secrecy::SecretString>,
    pub http: HttpSettings,
    /// The gRPC port (`GRPC_PORT`, default 9000; 0 picks a free one), or
    /// `None` when `GRPC_ENABLED=false`.
    pub grpc_port: Option<u16>,
    /// `EVENTS_RETENTION`, `EVENTS_MAX_STREAMS`: `GET /api/events`.
    pub events: crate::vault::event_stream::EventSettings,
    /// Start-up warnings (logged by `Application::build`): settings given in
    /// both the environment and `config.yaml` with different values. The
    /// environment wins. Never a secret value.
    pub warnings: Vec<String>,
}

/// How the HTTP side serves: TLS or plain, API documentation on or off.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// HTTPS on the same port when set; plain HTTP otherwise.
    pub tls: Option<TlsFiles>,
    /// Serve `/docs/` (Swagger UI) and `/openapi.json`.
    pub docs_enabled: bool,
    /// `METRICS_ENABLED`: record the per-request metrics and serve `/metrics`.
    pub metrics_enabled: bool,
    /// `METRICS_DB_COMMANDS`: also time every MongoDB command (opt-in).
    pub metrics_db_commands: bool,
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: PEM files read at start-up.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mongo_db", &self.store.db)
            .field("master_key_id", &self.master_key.key_id())
            .finish_non_exhaustive()
    }
}

/// All configuration problems found, one line each, each naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Reads configuration from explicit `(NAME, value)` pairs (tests, tools).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let raw: RawEnv = envy::from_iter(pairs.clone())
            .map_err(|e| ConfigError(vec![format!("configuration could not be read: {e}")]))?;
        Self::from_raw(raw, &pairs)
    }

    fn from_raw(mut raw: RawEnv, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let (config_path, config_required) = match raw.config_file.as_deref().map(str::trim) {
            None | Some("") => (PathBuf::from("config.yaml"), false),
            Some(path) => (PathBuf::from(path), true),
        };
        let auth = crate::auth::settings::load(&config_path, config_required, env, &mut errors);
        let nats_acl = crate::nats::settings::parse_acl(&auth.nats_acl, &auth.source, &mut errors);
        // First, because the NATS message limit follows from it.
        let max_secret_bytes = Parser {
            errors: &mut errors,
        }
        .bounded(
            "MAX_SECRET_BYTES",
            raw.max_secret_bytes.take(),
            65_536,
            1,
            16 * 1024 * 1024,
        );
        let max_payload = max_secret_bytes.map_or(0, body_limit);
        let nats = nats_settings(&raw, env, nats_acl, max_payload, &mut errors);
        let webhook = webhook_settings(env, &mut errors);
        // Also without `WEBHOOK_URL`: it signs rotation's verify and health requests.
        let signing_secret = match &webhook {
            Some(w) => Some(w.secret.clone()),
            None => collect(&mut errors, settings::secret(env, "WEBHOOK_SECRET"))
                .flatten()
                .map(|s| s.value),
        };
        let metrics_token = collect(&mut errors, settings::secret(env, "METRICS_TOKEN"))
            .flatten()
            .map(|s| s.value);
        let http = http_settings(&mut raw, &mut errors);
        let alerts = alert_settings(&mut raw, &mut errors);
        let grpc_port = grpc_port(&raw, &mut errors);
        let write_concern = collect(
            &mut errors,
            WriteAcknowledgement::parse(raw.mongo_write_concern.as_deref()),
        )
        .unwrap_or_default();
        let mut p = Parser {
            errors: &mut errors,
        };
        let host = p.parse("HOST", raw.host, "0.0.0.0".parse().ok(), "an IP address");
        let env_set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        let (port_in_env, ttl_in_env, enabled_in_env) = (
            env_set(&raw.port),
            env_set(&raw.audit_ttl_days),
            env_set(&raw.audit_enabled),
        );
        let port = p.parse(
            "PORT",
            raw.port,
            Some(auth.port.unwrap_or(8000u16)),
            "a port number 0-65535",
        );
        let workers = match raw.workers.filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(w) => p.bounded("WORKERS", Some(w), 1, 1, 256),
        };
        let mongo_timeout_ms =
            p.bounded("MONGO_TIMEOUT_MS", raw.mongo_timeout_ms, 2000, 50, 60_000);
        let mongo_max_pool_size = p.bounded(
            "MONGO_MAX_POOL_SIZE",
            raw.mongo_max_pool_size,
            100,
            1,
            10_000,
        );
        let max_versions = p.bounded("MAX_VERSIONS", raw.max_versions, 10, 1, 100);
        let delete_recovery_days =
            p.bounded("DELETE_RECOVERY_DAYS", raw.delete_recovery_days, 7, 0, 3650);
        let auth_failure_burst =
            p.bounded("AUTH_FAILURE_BURST", raw.auth_failure_burst, 10, 0, 100_000);
        let auth_failure_per_minute = p.bounded(
            "AUTH_FAILURE_PER_MINUTE",
            raw.auth_failure_per_minute,
            10,
            0,
            100_000,
        );
        let service_tokens = crate::vault::service_tokens::TokenSettings {
            register_per_minute: p
                .bounded(
                    "REGISTER_PER_MINUTE",
                    raw.register_per_minute,
                    10,
                    0,
                    100_000,
                )
                .unwrap_or(10),
            max_pending: p
                .bounded(
                    "MAX_PENDING_TOKENS",
                    raw.max_pending_tokens,
                    1000,
                    1,
                    1_000_000,
                )
                .unwrap_or(1000),
        };
        let rotation = crate::vault::rotation::RotationSettings {
            allow_expired_reads: p
                .boolean("ALLOW_EXPIRED_READS", raw.allow_expired_reads.take(), false)
                .unwrap_or(false),
            expiry_warning_days: p
                .bounded(
                    "EXPIRY_WARNING_DAYS",
                    raw.expiry_warning_days.take(),
                    7,
                    0,
                    365,
                )
                .unwrap_or(7),
            scheduler: p
                .boolean("ROTATION_SCHEDULER", raw.rotation_scheduler.take(), true)
                .unwrap_or(true),
            lease: Duration::from_secs(
                p.bounded(
                    "ROTATION_LEASE_SECS",
                    raw.rotation_lease_secs.take(),
                    10,
                    3,
                    300,
                )
                .unwrap_or(10),
            ),
            scan: Duration::from_millis(
                p.bounded(
                    "ROTATION_SCAN_MS",
                    raw.rotation_scan_ms.take(),
                    1000,
                    100,
                    60_000,
                )
                .unwrap_or(1000),
            ),
            retry: Duration::from_millis(
                p.bounded(
                    "ROTATION_RETRY_MS",
                    raw.rotation_retry_ms.take(),
                    1000,
                    10,
                    60_000,
                )
                .unwrap_or(1000),
            ),
            signing_secret: None,
        };
        let audit_enabled = p.boolean(
            "AUDIT_ENABLED",
            raw.audit_enabled,
            auth.audit_enabled.unwrap_or(true),
        );
        let raw_ttl = raw
            .audit_ttl_days
            .or_else(|| auth.audit_ttl_days.map(|d| d.to_string()));
        let audit_ttl_days = p.bounded_msg(
            "AUDIT_TTL_DAYS",
            raw_ttl,
            0,
            0,
            36_500,
            "a whole number of days",
        );
        let mut warnings = Vec::new();
        let file = &auth.source;
        overridden(
            &mut warnings,
            ("PORT", port_in_env),
            (file, "application.port", auth.port),
            port,
        );
        overridden(
            &mut warnings,
            ("AUDIT_TTL_DAYS", ttl_in_env),
            (
                file,
                "audit.retention_days` / `audit.ttl_days",
                auth.audit_ttl_days,
            ),
            audit_ttl_days,
        );
        overridden(
            &mut warnings,
            ("AUDIT_ENABLED", enabled_in_env),
            (file, "audit.enabled", auth.audit_enabled),
            audit_enabled,
        );
        let trust_proxy_headers = p.boolean("TRUST_PROXY_HEADERS", raw.trust_proxy_headers, false);
        let trusted_proxies = collect(
            p.errors,
            crate::api::TrustedProxies::parse(
                raw.trusted_proxies.as_deref(),
                trust_proxy_headers.unwrap_or(false),
            ),
        );
        let events = event_settings(&mut p, raw.events_retention, raw.events_max_streams);
        let shutdown_timeout_secs = p.bounded(
            "SHUTDOWN_TIMEOUT_SECS",
            raw.shutdown_timeout_secs,
            8,
            1,
            3600,
        );
        let log_format = match raw.log_format.as_deref().map(str::trim) {
            None | Some("") | Some("json") => Some(LogFormat::Json),
            Some("pretty") => Some(LogFormat::Pretty),
            Some(other) => {
                errors.push(format!(
                    "`LOG_FORMAT` must be `json` or `pretty` (got `{other}`)"
                ));
                None
            }
        };
        let default_project = raw.default_project.unwrap_or_else(|| "default".into());
        if !crate::vault::names::valid_project(&default_project) {
            errors.push(format!(
                "`DEFAULT_PROJECT` must be a valid project name (got `{default_project}`)"
            ));
        }
        let mongo_db = raw.mongo_db.unwrap_or_else(|| "vault".into());
        if !valid_db_name(&mongo_db) {
            errors.push(format!(
                "`MONGO_DB` must be 1-63 characters of letters, digits, `_` or `-` (got `{mongo_db}`)"
            ));
        }
        let mongo_uri = collect(&mut errors, load_mongo_uri(env));
        let master_key = match collect(&mut errors, load_master_key(env, "MASTER_KEY")) {
            Some(None) => {
                errors.push(
                    "`MASTER_KEY` or `MASTER_KEY_FILE` is required (generate one with `secret-manager keygen`)"
                        .into(),
                );
                None
            }
            found => found.flatten(),
        };
        let master_key_previous =
            collect(&mut errors, load_master_key(env, "MASTER_KEY_PREVIOUS")).flatten();
        let mut p = Parser {
            errors: &mut errors,
        };
        let keyring = match (
            p.bounded("KEY_ROTATION_DAYS", raw.key_rotation_days, 30, 1, 3650),
            p.bounded(
                "KEY_MAX_SEALS",
                raw.key_max_seals,
                1u64 << 30,
                1,
                1u64 << 32,
            ),
            p.bounded("KEYRING_REFRESH_SECS", raw.keyring_refresh_secs, 5, 1, 3600),
        ) {
            (Some(rotation_days), Some(max_seals), Some(refresh)) => {
                Some(crate::crypto::KeyringSettings {
                    rotation_days,
                    max_seals,
                    refresh: Duration::from_secs(refresh),
                })
            }
            _ => None,
        };
        match (
            host,
            port,
            mongo_timeout_ms,
            mongo_max_pool_size,
            max_secret_bytes,
            audit_enabled,
            audit_ttl_days,
            trust_proxy_headers,
            shutdown_timeout_secs,
            log_format,
            (master_key, mongo_uri),
            (max_versions, delete_recovery_days),
            (auth_failure_burst, auth_failure_per_minute),
            keyring,
        ) {
            (
                Some(host),
                Some(port),
                Some(timeout_ms),
                Some(pool),
                Some(max_secret_bytes),
                Some(audit_enabled),
                Some(audit_ttl_days),
                Some(trust_proxy_headers),
                Some(shutdown_timeout_secs),
                Some(log_format),
                (Some(master_key), Some(mongo_uri)),
                (Some(max_versions), Some(delete_recovery_days)),
                (Some(auth_failure_burst), Some(auth_failure_per_minute)),
                Some(keyring),
            ) if errors.is_empty() => Ok(Config {
                trusted_proxies: trusted_proxies.unwrap_or_default(),
                nats,
                webhook,
                rotation: crate::vault::rotation::RotationSettings {
                    signing_secret,
                    ..rotation
                },
                metrics_token,
                master_key_previous,
                keyring,
                auth,
                max_versions,
                delete_recovery_days,
                default_project,
                auth_failure_burst,
                auth_failure_per_minute,
                service_tokens,
                alerts,
                host,
                port,
                workers,
                store: StoreSettings {
                    uri: mongo_uri,
                    db: mongo_db,
                    timeout: Duration::from_millis(timeout_ms),
                    max_pool_size: pool,
                    write_concern,
                },
                master_key,
                max_secret_bytes,
                audit_enabled,
                audit_ttl_days,
                trust_proxy_headers,
                log_format,
                shutdown_timeout_secs,
                http,
                grpc_port,
                events: events.unwrap_or_default(),
                warnings,
            }),
            _ => Err(ConfigError(errors)),
        }
    }

    /// The largest request body accepted: a base64 secret of the maximum size plus room for JSON.
    pub fn max_body_bytes(&self) -> usize {
        body_limit(self.max_secret_bytes)
    }
}

/// The largest request body (HTTP) or message (NATS) for secrets of up to `max_secret_bytes`.
fn body_limit(max_secret_bytes: usize) -> usize {
    max_secret_bytes.div_ceil(3) * 4 + 4096
}

/// Records a warning when the environment variable `env` is set and its value
/// differs from the one `config.yaml` gives for `setting`: the environment wins.
fn overridden<T: PartialEq + std::fmt::Display>(
    warnings: &mut Vec<String>,
    (env, in_env): (&str, bool),
    (file, setting, in_file): (&str, &str, Option<T>),
    effective: Option<T>,
) {
    if let (true, Some(in_file), Some(effective)) = (in_env, in_file, effective) {
        if in_file != effective {
            warnings.push(format!(
                "`{env}` ({effective}) overrides `{setting}` ({in_file}) in {file}: the environment wins"
            ));
        }
    }
}

/// `EVENTS_RETENTION` (1 minute to 90 days, default 24h) and
/// `EVENTS_MAX_STREAMS` (1 to 100,000, default 1024).
fn event_settings(
    p: &mut Parser<'_>,
    retention: Option<String>,
    max_streams: Option<String>,
) -> Option<crate::vault::event_stream::EventSettings> {
    let default = crate::vault::event_stream::EventSettings::default();
    let retention = collect(
        p.errors,
        settings::duration(
            "EVENTS_RETENTION",
            retention.as_deref(),
            default.retention,
            (Duration::from_secs(60), Duration::from_secs(90 * 86_400)),
        ),
    );
    let max_streams = p.bounded(
        "EVENTS_MAX_STREAMS",
        max_streams,
        default.max_streams,
        1,
        100_000,
    );
    Some(crate::vault::event_stream::EventSettings {
        retention: retention?,
        max_streams: max_streams?,
    })
}

/// The value, or `None` after recording the problem.
fn collect<T>(errors: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

struct Parser<'a> {
    errors: &'a mut Vec<String>,
}

impl Parser<'_> {
    fn parse<T: std::str::FromStr>(
        &mut self,
        name: &str,
        value: Option<String>,
        default: Option<T>,
        what: &str,
    ) -> Option<T> {
        match value.as_deref().map(str::trim) {
            None | Some("") => default,
            Some(v) => match v.parse() {
                Ok(t) => Some(t),
                Err(_) => {
                    self.errors
                        .push(format!("`{name}` must be {what} (got `{v}`)"));
                    None
                }
            },
        }
    }

    fn bounded<T>(
        &mut self,
        name: &str,
        value: Option<String>,
        default: T,
        min: T,
        max: T,
    ) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let what = format!("a whole number from {min} to {max}");
        self.bounded_msg(name, value, default, min, max, &what)
    }

    fn bounded_msg<T>(
        &mut self,
        name: &str,
        value: Option<String>,
        default: T,
        min: T,
        max: T,
        what: &str,
    ) -> Option<T>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let shown = value.clone();
        let v = self.parse(name, value, Some(default), what)?;
        if v < min || v > max {
            let got = shown.unwrap_or_default();
            self.errors
                .push(format!("`{name}` must be {what} (got `{}`)", got.trim()));
            return None;
        }
        Some(v)
    }

    fn boolean(&mut self, name: &str, value: Option<String>, default: bool) -> Option<bool> {
        collect(
            self.errors,
            settings::boolean(name, value.as_deref(), default),
        )
    }
}

/// The `ALERT_*` thresholds; a problem is recorded and the default kept.
fn alert_settings(
    raw: &mut RawEnv,
    errors: &mut Vec<String>,
) -> crate::vault::alerts::AlertSettings {
    let d = crate::vault::alerts::AlertSettings::default();
    let mut p = Parser { errors };
    let auth_failures = p
        .bounded(
            "ALERT_AUTH_FAILURES",
            raw.alert_auth_failures.take(),
            d.auth_failures,
            0,
            1_000_000,
        )
        .unwrap_or(d.auth_failures);
    let denials = p
        .bounded(
            "ALERT_DENIALS",
            raw.alert_denials.take(),
            d.denials,
            0,
            1_000_000,
        )
        .unwrap_or(d.denials);
    let baseline_days = p
        .bounded(
            "ALERT_BASELINE_DAYS",
            raw.alert_baseline_days.take(),
            d.baseline_days,
            0,
            3650,
        )
        .unwrap_or(d.baseline_days);
    let rate_min_per_minute = p
        .bounded(
            "ALERT_RATE_MIN_PER_MINUTE",
            raw.alert_rate_min_per_minute.take(),
            d.rate_min_per_minute,
            1,
            1_000_000,
        )
        .unwrap_or(d.rate_min_per_minute);
    let rate_factor = match raw.alert_rate_factor.take().as_deref().map(str::trim) {
        None | Some("") => d.rate_factor,
        Some(text) => match text.parse::<f64>() {
            Ok(k) if k == 0.0 || (k > 1.0 && k <= 1000.0) => k,
            _ => {
                errors.push(format!(
                    "`ALERT_RATE_FACTOR` must be a number above 1 and at most 1000, or 0 to turn the rule off (got `{text}`)"
                ));
                d.rate_factor
            }
        },
    };
    let window = match raw.alert_window.take().as_deref().map(str::trim) {
        None | Some("") => d.window,
        Some(text) => match parse_window(text) {
            Some(w) => w,
            None => {
                errors.push(format!(
                    "`ALERT_WINDOW` must be a duration from 1 s to 24 h: seconds, or a whole number with `s`, `m` or `h` (got `{text}`)"
                ));
                d.window
            }
        },
    };
    crate::vault::alerts::AlertSettings {
        auth_failures,
        denials,
        window,
        baseline_days,
        rate_factor,
        rate_min_per_minute,
    }
}

/// `300`, `300s`, `5m` or `1h`, from 1 s to 24 h.
fn parse_window(text: &str) -> Option<Duration> {
    let (number, unit) = match text.char_indices().last()? {
        (i, 's') => (&text[..i], 1),
        (i, 'm') => (&text[..i], 60),
        (i, 'h') => (&text[..i], 3600),
        _ => (text, 1),
    };
    let secs = number.trim().parse::<u64>().ok()?.checked_mul(unit)?;
    (1..=86_400)
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

/// `WEBHOOK_URL` (http or https) and its signing key `WEBHOOK_SECRET(_FILE)`,
/// required with it.
fn webhook_settings(
    env: &[(String, String)],
    errors: &mut Vec<String>,
) -> Option<crate::webhook::WebhookSettings> {
    let url = env
        .iter()
        .find(|(k, _)| k == "WEBHOOK_URL")
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errors.push("`WEBHOOK_URL` must start with `http://` or `https://`".into());
    }
    let secret = collect(errors, settings::secret(env, "WEBHOOK_SECRET")).flatten();
    let Some(secret) = secret else {
        errors.push(
            "`WEBHOOK_URL` needs `WEBHOOK_SECRET` or `WEBHOOK_SECRET_FILE` (the signing key)"
                .into(),
        );
        return None;
    };
    Some(crate::webhook::WebhookSettings {
        url: url.to_string(),
        secret: secret.value,
    })
}

/// The NATS bridge's settings, when `NATS_URL` turns it on.
fn nats_settings(
    raw: &RawEnv,
    env: &[(String, String)],
    acl: Vec<(String, std::collections::BTreeSet<String>)>,
    max_payload: usize,
    errors: &mut Vec<String>,
) -> Option<NatsSettings> {
    let url = raw
        .nats_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())?;
    if !(url.starts_with("nats://") || url.starts_with("tls://")) {
        errors.push("`NATS_URL` must start with `nats://` or `tls://`".into());
    }
    let password = collect(errors, settings::secret(env, "NATS_PASSWORD"))
        .flatten()
        .map(|p| p.value);
    // A `tls://` URL always means TLS; `NATS_TLS` can require it for `nats://` too.
    let tls_required = collect(
        errors,
        settings::boolean("NATS_TLS", raw.nats_tls.as_deref(), false),
    )
    .unwrap_or(false)
        || url.starts_with("tls://");
    let max_in_flight = Parser { errors }
        .bounded(
            "NATS_MAX_IN_FLIGHT",
            raw.nats_max_in_flight.clone(),
            256,
            1,
            100_000,
        )
        .unwrap_or(256);
    let non_empty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(NatsSettings {
        max_in_flight,
        url: url.to_string(),
        user: non_empty(&raw.nats_user),
        password,
        creds_file: non_empty(&raw.nats_creds_file),
        tls_required,
        ca_file: non_empty(&raw.nats_ca_file),
        request_subject: non_empty(&raw.nats_request_subject)
            .unwrap_or_else(|| "vault.requests".into()),
        queue_group: non_empty(&raw.nats_queue_group).unwrap_or_else(|| "secret-manager".into()),
        audit_subject: non_empty(&raw.nats_audit_subject),
        acl,
        max_payload,
    })
}

/// `GRPC_PORT` (default 9000) unless `GRPC_ENABLED=false`.
fn grpc_port(raw: &RawEnv, errors: &mut Vec<String>) -> Option<u16> {
    let enabled = collect(
        errors,
        settings::boolean("GRPC_ENABLED", raw.grpc_enabled.as_deref(), true),
    )?;
    let port = match raw.grpc_port.as_deref().map(str::trim) {
        None | Some("") => Some(DEFAULT_GRPC_PORT),
        Some(text) => text.parse::<u16>().ok().or_else(|| {
            errors.push(format!(
                "`GRPC_PORT` must be a port number 0-65535 (got `{text}`)"
            ));
            None
        }),
    };
    port.filter(|_| enabled)
}

/// Where gRPC listens unless `GRPC_PORT` says otherwise.
pub const DEFAULT_GRPC_PORT: u16 = 9000;

/// `TLS_CERT_FILE` + `TLS_KEY_FILE` (both or neither) and `DOCS_ENABLED`.
fn http_settings(raw: &mut RawEnv, errors: &mut Vec<String>) -> HttpSettings {
    let path = |v: Option<String>| {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let tls = match (
        path(raw.tls_cert_file.take()),
        path(raw.tls_key_file.take()),
    ) {
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => {
            errors.push(
                "set both `TLS_CERT_FILE` and `TLS_KEY_FILE` to serve HTTPS, or neither".into(),
            );
            None
        }
    };
    let docs_enabled = collect(
        errors,
        settings::boolean("DOCS_ENABLED", raw.docs_enabled.as_deref(), true),
    )
    .unwrap_or(true);
    let metrics_enabled = collect(
        errors,
        settings::boolean("METRICS_ENABLED", raw.metrics_enabled.as_deref(), true),
    )
    .unwrap_or(true);
    let metrics_db_commands = collect(
        errors,
        settings::boolean(
            "METRICS_DB_COMMANDS",
            raw.metrics_db_commands.as_deref(),
            false,
        ),
    )
    .unwrap_or(false);
    HttpSettings {
        tls,
        docs_enabled,
        metrics_enabled,
        metrics_db_commands,
    }
}

fn valid_db_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `MONGO_URI` or `MONGO_URI_FILE` (it may hold a password); a local server when neither is set.
fn load_mongo_uri(env: &[(String, String)]) -> Result<SecretString, String> {
    let Some(setting) = settings::secret(env, "MONGO_URI")? else {
        return Ok(SecretString::from("mongodb://127.0.0.1:27017"));
    };
    let text = setting.value.expose_secret();
    if text.starts_with("mongodb://") || text.starts_with("mongodb+srv://") {
        Ok(setting.value)
    } else {
        Err(format!(
            "{} must start with `mongodb://` or `mongodb+srv://`",
            setting.origin()
        ))
    }
}

/// The master key in `name` or `name_FILE`, if set. Errors name the variable, never the value.
fn load_master_key(env: &[(String, String)], name: &str) -> Result<Option<MasterKey>, String> {
    let Some(setting) = settings::secret(env, name)? else {
        return Ok(None);
    };
    MasterKey::parse(setting.value.expose_secret())
        .map(Some)
        .map_err(|why| format!("{} is invalid: {why}", setting.origin()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_given() {
        let c = with(&[("MASTER_KEY", KEY_B64)]).expect("valid");
        assert_eq!(c.port, 8000);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.store.db, "vault");
        assert_eq!(c.store.uri.expose_secret(), "mongodb://127.0.0.1:27017");
        assert_eq!(c.max_secret_bytes, 65_536);
        assert!(c.audit_enabled);
        assert_eq!(c.audit_ttl_days, 0);
        assert!(!c.trust_proxy_headers);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            c.shutdown_timeout_secs < 10,
            "must fit Swarm's 10 s grace period"
        );
    }

    #[test]
    fn alert_settings_have_defaults_parse_units_and_name_each_bad_variable() {
        let c = with(&[("MASTER_KEY", KEY_B64)]).expect("valid");
        assert_eq!(c.alerts.window, Duration::from_secs(300));
        assert_eq!((c.alerts.auth_failures, c.alerts.denials), (20, 20));
        let c = with(&[
            ("MASTER_KEY", KEY_B64),
            ("ALERT_WINDOW", "2m"),
            ("ALERT_RATE_FACTOR", "2.5"),
            ("ALERT_AUTH_FAILURES", "0"),
        ])
        .expect("valid");
        assert_eq!(c.alerts.window, Duration::from_secs(120));
        assert_eq!(c.alerts.rate_factor, 2.5);
        assert_eq!(c.alerts.auth_failures, 0);
        for (window, secs) in [("45", 45), ("45s", 45), ("1h", 3600), ("24h", 86_400)] {
            assert_eq!(
                parse_window(window),
                Some(Duration::from_secs(secs)),
                "{window}"
            );
        }
        let bad = [
            ("ALERT_WINDOW", "0", "`ALERT_WINDOW` must be a duration"),
            ("ALERT_WINDOW", "25h", "`ALERT_WINDOW` must be a duration"),
            (
                "ALERT_WINDOW",
                "5 minutes",
                "`ALERT_WINDOW` must be a duration",
            ),
            (
                "ALERT_AUTH_FAILURES",
                "-1",
                "`ALERT_AUTH_FAILURES` must be a whole number",
            ),
            (
                "ALERT_DENIALS",
                "many",
                "`ALERT_DENIALS` must be a whole number",
            ),
            (
                "ALERT_BASELINE_DAYS",
                "4000",
                "`ALERT_BASELINE_DAYS` must be a whole number",
            ),
            (
                "ALERT_RATE_FACTOR",
                "1",
                "`ALERT_RATE_FACTOR` must be a number above 1",
            ),
            (
                "ALERT_RATE_FACTOR",
                "NaN",
                "`ALERT_RATE_FACTOR` must be a number above 1",
            ),
            (
                "ALERT_RATE_MIN_PER_MINUTE",
                "0",
                "`ALERT_RATE_MIN_PER_MINUTE` must be a whole number",
            ),
        ];
        let mut all = vec![("MASTER_KEY", KEY_B64)];
        for (name, value, expected) in bad {
            let err = with(&[("MASTER_KEY", KEY_B64), (name, value)])
                .map(|_| ())
                .expect_err(name);
            assert!(err.to_string().contains(expected), "{name}={value}: {err}");
            if !all.iter().any(|(n, _)| *n == name) {
                all.push((name, value));
            }
        }
        // Every bad variable is reported at once.
        let err = with(&all).map(|_| ()).expect_err("all bad").to_string();
        for name in [
            "ALERT_WINDOW",
            "ALERT_DENIALS",
            "ALERT_RATE_FACTOR",
            "ALERT_BASELINE_DAYS",
        ] {
            assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
        }
    }

    #[test]
    fn each_bad_variable_is_named_and_all_are_reported_together() {
        let cases = [
            ("PORT", "http", "`PORT` must be a port number"),
            ("PORT", "70000", "`PORT` must be a port number"),
            ("HOST", "localhost:1", "`HOST` must be an IP address"),
            (
                "AUDIT_TTL_DAYS",
                "abc",
                "`AUDIT_TTL_DAYS` must be a whole number of days",
            ),
            (
                "AUDIT_TTL_DAYS",
                "-1",
                "`AUDIT_TTL_DAYS` must be a whole number of days",
            ),
            (
                "AUDIT_ENABLED",
                "maybe",
                "`AUDIT_ENABLED` must be `true` or `false`",
            ),
            (
                "MAX_SECRET_BYTES",
                "0",
                "`MAX_SECRET_BYTES` must be a whole number from 1",
            ),
            (
                "LOG_FORMAT",
                "xml",
                "`LOG_FORMAT` must be `json` or `pretty`",
            ),
            ("MONGO_URI", "postgres://x", "`MONGO_URI` must start with"),
            (
                "MONGO_URI_FILE",
                "/nonexistent",
                "`MONGO_URI_FILE` could not be read",
            ),
            ("MONGO_DB", "a/b", "`MONGO_DB` must be"),
            ("SHUTDOWN_TIMEOUT_SECS", "0", "`SHUTDOWN_TIMEOUT_SECS`"),
        ];
        for (name, value, expected) in cases {
            let err = with(&[("MASTER_KEY", KEY_B64), (name, value)])
                .expect_err(&format!("{name}={value} should be rejected"));
            let text = err.to_string();
            assert!(text.contains(expected), "{name}={value}: got {text}");
        }
        let err = with(&[("PORT", "x"), ("AUDIT_TTL_DAYS", "y")]).expect_err("three problems");
        assert_eq!(err.0.len(), 3, "port, ttl and the missing key: {err}");
    }

    #[test]
    fn master_key_problems_name_the_variable_and_never_echo_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{KEY_B64}\n")).expect("write");
        let file = file.to_str().expect("utf8");
        let secretish = "c2VjcmV0LXZhbHVlLXRoYXQtaXMtbm90LTMy";
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[], "`MASTER_KEY` or `MASTER_KEY_FILE` is required"),
            (
                &[("MASTER_KEY", KEY_B64), ("MASTER_KEY_FILE", file)],
                "not both",
            ),
            (&[("MASTER_KEY", secretish)], "`MASTER_KEY` is invalid"),
            (
                &[("MASTER_KEY", "base64:!!!notbase64!!!")],
                "`MASTER_KEY` is invalid",
            ),
            (
                &[("MASTER_KEY_FILE", "/nonexistent/key")],
                "`MASTER_KEY_FILE` could not be read",
            ),
        ];
        for (pairs, expected) in cases {
            let text = with(pairs).expect_err("must fail").to_string();
            assert!(text.contains(expected), "{pairs:?}: {text}");
            assert!(!text.contains(secretish), "value echoed: {text}");
            assert!(!text.contains("notbase64"), "value echoed: {text}");
        }
        let from_file = with(&[("MASTER_KEY_FILE", file)]).expect("file key with newline");
        let inline = with(&[("MASTER_KEY", KEY_B64)]).expect("inline key");
        assert_eq!(from_file.master_key.key_id(), inline.master_key.key_id());
    }

    #[test]
    fn every_secret_setting_refuses_both_forms_naming_both_and_not_the_value() {
        for name in [
            "MONGO_URI",
            "MASTER_KEY_PREVIOUS",
            "NATS_PASSWORD",
            "TOKEN_svc",
        ] {
            let file_var = format!("{name}_FILE");
            let err = with(&[
                ("CONFIG_FILE", "/dev/null"),
                ("MASTER_KEY", KEY_B64),
                ("NATS_URL", "nats://127.0.0.1:4222"),
                ("ALLOWED_SERVICES", "svc"),
                (name, "mongodb://hunter2-inline-value"),
                (&file_var, "/run/secrets/x"),
            ])
            .expect_err(name)
            .to_string();
            let expected = format!("set only one of `{name}` and `{file_var}`, not both");
            assert!(err.contains(&expected), "{name}: {err}");
            assert!(!err.contains("hunter2"), "value echoed: {err}");
        }
    }

    #[test]
    fn secret_files_lose_their_trailing_newline_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = dir.path().join("uri");
        std::fs::write(&uri, "mongodb://app:hunter2@db:27017\r\n").expect("write");
        let password = dir.path().join("password");
        std::fs::write(&password, " spaced password \n").expect("write");
        let c = with(&[
            ("MASTER_KEY", KEY_B64),
            ("MONGO_URI_FILE", uri.to_str().expect("utf8")),
            ("NATS_URL", "nats://127.0.0.1:4222"),
            ("NATS_PASSWORD_FILE", password.to_str().expect("utf8")),
        ])
        .expect("valid");
        assert_eq!(
            c.store.uri.expose_secret(),
            "mongodb://app:hunter2@db:27017"
        );
        let nats = c.nats.as_ref().expect("NATS on");
        let nats_password = nats.password.as_ref().expect("password");
        assert_eq!(nats_password.expose_secret(), " spaced password ");
        assert_eq!(nats.max_payload, c.max_body_bytes());
        std::fs::write(&uri, " mongodb://db:27017\n").expect("write");
        let err = with(&[
            ("MASTER_KEY", KEY_B64),
            ("MONGO_URI_FILE", uri.to_str().expect("utf8")),
        ])
        .expect_err("leading space is part of the value");
        assert!(
            err.to_string().contains("`MONGO_URI_FILE` (")
                && err.to_string().contains("must start with"),
            "{err}"
        );
    }

    #[test]
    fn nats_tls_is_a_boolean_and_a_tls_url_always_requires_tls() {
        let tls = |url: &str, value: &str| {
            with(&[
                ("MASTER_KEY", KEY_B64),
                ("NATS_URL", url),
                ("NATS_TLS", value),
            ])
            .map(|c| c.nats.expect("NATS on").tls_required)
            .map_err(|e| e.to_string())
        };
        assert_eq!(tls("nats://h:4222", "yes"), Ok(true));
        assert_eq!(tls("nats://h:4222", "OFF"), Ok(false));
        assert_eq!(tls("nats://h:4222", ""), Ok(false));
        assert_eq!(tls("tls://h:4222", "false"), Ok(true));
        let err = tls("nats://h:4222", "maybe").expect_err("not a boolean");
        assert!(
            err.contains("`NATS_TLS` must be `true` or `false` (got `maybe`)"),
            "{err}"
        );
    }

    #[test]
    fn mongo_write_concern_defaults_to_majority_and_refuses_other_values_naming_it() {
        let concern = |value: &str| {
            with(&[("MASTER_KEY", KEY_B64), ("MONGO_WRITE_CONCERN", value)])
                .map(|c| c.store.write_concern)
                .map_err(|e| e.to_string())
        };
        assert_eq!(concern(""), Ok(WriteAcknowledgement::Majority));
        assert_eq!(concern("Majority"), Ok(WriteAcknowledgement::Majority));
        assert_eq!(concern("2"), Ok(WriteAcknowledgement::Nodes(2)));
        let wc = WriteAcknowledgement::Majority.write_concern();
        assert_eq!(wc.journal, Some(true), "journaled");
        assert_eq!(wc.w, Some(mongodb::options::Acknowledgment::Majority));
        for bad in ["0", "-1", "all", "1.5", "51"] {
            let err = concern(bad).expect_err(bad);
            assert!(
                err.contains("`MONGO_WRITE_CONCERN` must be `majority` or a number of members")
                    && err.contains(&format!("(got `{bad}`)")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn grpc_listens_on_9000_by_default_and_can_be_moved_or_switched_off() {
        let grpc = |pairs: &[(&str, &str)]| {
            let mut all = vec![("MASTER_KEY", KEY_B64)];
            all.extend_from_slice(pairs);
            with(&all).map(|c| c.grpc_port).map_err(|e| e.to_string())
        };
        assert_eq!(grpc(&[]), Ok(Some(DEFAULT_GRPC_PORT)));
        assert_eq!(DEFAULT_GRPC_PORT, 9000);
        assert_eq!(grpc(&[("GRPC_PORT", "9100")]), Ok(Some(9100)));
        assert_eq!(grpc(&[("GRPC_ENABLED", "false")]), Ok(None));
        let err = grpc(&[("GRPC_PORT", "grpc")]).expect_err("not a port");
        assert!(
            err.contains("`GRPC_PORT` must be a port number 0-65535 (got `grpc`)"),
            "{err}"
        );
        let err = grpc(&[("GRPC_ENABLED", "maybe")]).expect_err("not a boolean");
        assert!(err.contains("`GRPC_ENABLED` must be"), "{err}");
    }

    #[test]
    fn tls_needs_both_files_and_docs_can_be_switched_off() {
        let plain = with(&[("MASTER_KEY", KEY_B64)]).expect("valid");
        assert!(plain.http.tls.is_none());
        assert!(plain.http.docs_enabled, "docs on by default");
        let tls = with(&[
            ("MASTER_KEY", KEY_B64),
            ("TLS_CERT_FILE", "/run/secrets/cert.pem"),
            ("TLS_KEY_FILE", "/run/secrets/key.pem"),
            ("DOCS_ENABLED", "false"),
        ])
        .expect("valid");
        let files = tls.http.tls.expect("TLS on");
        assert_eq!(files.cert_file, PathBuf::from("/run/secrets/cert.pem"));
        assert_eq!(files.key_file, PathBuf::from("/run/secrets/key.pem"));
        assert!(!tls.http.docs_enabled);
        for one in ["TLS_CERT_FILE", "TLS_KEY_FILE"] {
            let err = with(&[("MASTER_KEY", KEY_B64), (one, "/run/secrets/x.pem")])
                .expect_err(one)
                .to_string();
            assert!(
                err.contains("set both `TLS_CERT_FILE` and `TLS_KEY_FILE`"),
                "{one}: {err}"
            );
        }
        let err = with(&[("MASTER_KEY", KEY_B64), ("DOCS_ENABLED", "maybe")])
            .expect_err("not a boolean")
            .to_string();
        assert!(
            err.contains("`DOCS_ENABLED` must be `true` or `false` (got `maybe`)"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_does_not_contain_the_key_or_uri_credentials() {
        let c = with(&[
            ("MASTER_KEY", KEY_B64),
            ("MONGO_URI", "mongodb://admin:hunter2@db:27017"),
        ])
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains(KEY_B64));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn a_bad_trusted_proxy_cidr_is_a_configuration_error_naming_the_variable() {
        let err = with(&[
            ("MASTER_KEY", KEY_B64),
            ("TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/99"),
        ])
        .expect_err("bad CIDR");
        assert!(err.to_string().contains("`TRUSTED_PROXIES`"), "{err}");
        assert!(err.to_string().contains("`10.0.0.0/99`"), "{err}");
        let c = with(&[("MASTER_KEY", KEY_B64), ("TRUSTED_PROXIES", "10.0.0.0/8")]).expect("valid");
        assert_ne!(c.trusted_proxies, crate::api::TrustedProxies::default());
    }

    #[test]
    fn config_yaml_gives_defaults_and_the_environment_wins_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            "application: {title: myVault, version: '0.1.0', port: 8100}\naudit: {enabled: true, log_access: true, retention_days: 90}\n",
        )
        .expect("write");
        let file = file.to_str().expect("utf8");
        let from_file = with(&[("MASTER_KEY", KEY_B64), ("CONFIG_FILE", file)]).expect("valid");
        assert_eq!(from_file.port, 8100);
        assert_eq!(from_file.audit_ttl_days, 90);
        assert!(from_file.warnings.is_empty(), "{:?}", from_file.warnings);
        let agreeing = with(&[
            ("MASTER_KEY", KEY_B64),
            ("CONFIG_FILE", file),
            ("PORT", "8100"),
        ])
        .expect("valid");
        assert!(agreeing.warnings.is_empty(), "{:?}", agreeing.warnings);
        let env = with(&[
            ("MASTER_KEY", KEY_B64),
            ("CONFIG_FILE", file),
            ("PORT", "9000"),
            ("AUDIT_TTL_DAYS", "7"),
            ("AUDIT_ENABLED", "false"),
        ])
        .expect("valid");
        assert_eq!(
            (env.port, env.audit_ttl_days, env.audit_enabled),
            (9000, 7, false)
        );
        let expected = [
            format!("`PORT` (9000) overrides `application.port` (8100) in {file}: the environment wins"),
            format!("`AUDIT_TTL_DAYS` (7) overrides `audit.retention_days` / `audit.ttl_days` (90) in {file}: the environment wins"),
            format!("`AUDIT_ENABLED` (false) overrides `audit.enabled` (true) in {file}: the environment wins"),
        ];
        assert_eq!(env.warnings, expected);
    }
}
