//! The NATS request/reply interface for agents. Every replica subscribes to the
//! request subject (and each ACL subject) in one queue group, so the bus spreads
//! requests over the replicas. Same identities, policies, audit and error codes
//! as HTTP; the HTTP side does not depend on it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

pub mod settings;

pub use settings::{parse_acl, NatsSettings, OPERATIONS};

use crate::dto::{SecretList, SecretResponse};
use crate::error::{ApiError, ErrorCode};
use crate::vault::named::{missing_only, ListQuery, DEFAULT_LIST_LIMIT};
use crate::vault::names::{ProjectName, SecretKey};
use crate::vault::{Op, RequestMeta, Vault};

/// One request on the bus.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    operation: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    expected_version: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Serialize)]
struct Failure<'a> {
    status: &'static str,
    code: &'static str,
    message: &'a str,
}

/// Counters for requests the bridge could not answer.
#[derive(Default, Debug)]
pub struct NatsStats {
    pub dropped_without_reply: AtomicU64,
    pub busy: AtomicU64,
}

struct Bridge {
    vault: Vault,
    settings: NatsSettings,
    stats: Arc<NatsStats>,
    /// Bounds the requests this replica works on at once.
    in_flight: Arc<tokio::sync::Semaphore>,
}

fn error_reply(e: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&Failure {
        status: "error",
        code: e.code.as_str(),
        message: &e.message,
    })
    .unwrap_or_default()
}

fn to_json(v: impl Serialize) -> Result<Json, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(&e))
}

/// The vault operation a NATS operation name stands for, for refusals.
fn op_of(operation: &str) -> Op {
    match operation {
        "get" => Op::Read,
        // A key that does not parse names no existing secret: a `set` of it is a create.
        "set" => Op::Create,
        "delete" => Op::Delete,
        "list" => Op::List,
        "rotate" => Op::KeyRotate,
        "status" => Op::AuthTest,
        _ => Op::NatsRequest,
    }
}

impl Bridge {
    /// Whether `operation` may be asked on `subject`. Without `nats.acl` every
    /// subject allows every operation; with it, a subject it does not list
    /// (the request subject included) allows none.
    fn allows(&self, subject: &str, operation: &str) -> bool {
        if self.settings.acl.is_empty() {
            return true;
        }
        self.settings
            .acl
            .iter()
            .find(|(s, _)| s == subject)
            .is_some_and(|(_, ops): &(String, BTreeSet<String>)| ops.contains(operation))
    }

    async fn handle(&self, subject: &str, payload: &[u8]) -> Vec<u8> {
        let mut meta = RequestMeta {
            actor: None,
            client_ip: None,
            user_agent: Some("nats".into()),
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            channel: "nats",
        };
        match self.answer(subject, payload, &mut meta).await {
            Ok(data) => serde_json::to_vec(&json!({ "status": "success", "data": data }))
                .unwrap_or_default(),
            Err(e) => error_reply(&e),
        }
    }

    async fn answer(
        &self,
        subject: &str,
        payload: &[u8],
        meta: &mut RequestMeta,
    ) -> Result<Json, ApiError> {
        let v = &self.vault;
        if payload.len() > self.settings.max_payload {
            let e = ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the message must be at most {} bytes",
                    self.settings.max_payload
                ),
            );
            return Err(v.refuse(Op::NatsRequest, meta, e).await);
        }
        let req: Request = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                let err = if e.is_data() {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        "the request has a missing, unknown or mistyped field",
                    )
                } else {
                    ApiError::new(ErrorCode::InvalidJson, "the message is not valid JSON")
                };
                return Err(v.refuse(Op::NatsRequest, meta, err).await);
            }
        };
        // No client address on the bus, so no lockout (`Vault::authenticate`).
        meta.client_ip = None;
        v.authenticate(meta, req.service.as_deref(), req.token.as_deref())
            .await?;
        let op = req.operation.as_str();
        if !OPERATIONS.contains(&op) {
            let e = ApiError::new(
                ErrorCode::UnknownOperation,
                format!("`operation` must be one of {}", OPERATIONS.join(", ")),
            );
            return Err(v.refuse(Op::NatsRequest, meta, e).await);
        }
        if !self.allows(subject, op) {
            let e = ApiError::denied(format!(
                "operation '{op}' is not allowed on subject '{subject}'"
            ));
            return Err(v.refuse(Op::NatsAcl, meta, e).await);
        }
        self.dispatch(op, &req, meta).await
    }

    async fn dispatch(
        &self,
        op: &str,
        req: &Request,
        meta: &RequestMeta,
    ) -> Result<Json, ApiError> {
        let v = &self.vault;
        let refused = op_of(op);
        let key = || match req.key.as_deref() {
            Some(k) => SecretKey::parse(k),
            None => Err(ApiError::new(
                ErrorCode::MissingField,
                "`key` must be `<project>/<path>`",
            )),
        };
        match op {
            "get" => {
                let key = v.check(refused, meta, key()).await?;
                let record = v
                    .get(meta, &key, req.version, req.description.as_deref())
                    .await?;
                to_json(SecretResponse::from(record))
            }
            "set" => {
                let key = v.check(refused, meta, key()).await?;
                let value = (req.value.as_deref(), req.value_b64.as_deref());
                let record = v.put(meta, &key, value, req.expected_version).await?;
                to_json(SecretResponse::from(record))
            }
            "delete" => {
                let key = v.check(refused, meta, key()).await?;
                v.delete(meta, &key).await?;
                Ok(json!({ "deleted": key.to_string() }))
            }
            "list" => {
                // `project` or `project/prefix`; nothing for everything the caller may list.
                let spec = req.key.as_deref().unwrap_or("");
                let (project, prefix) = match spec.split_once('/') {
                    Some((p, rest)) => (Some(p), Some(rest)),
                    None if spec.is_empty() => (None, None),
                    None => (Some(spec), None),
                };
                let parsed = project
                    .map(ProjectName::parse)
                    .transpose()
                    .and_then(|p| Ok((p, missing_only(req.state.as_deref())?)));
                let (project, missing) = v.check(refused, meta, parsed).await?;
                let query = ListQuery {
                    missing,
                    project,
                    prefix,
                    limit: req.limit.unwrap_or(DEFAULT_LIST_LIMIT),
                    cursor: req.cursor.as_deref(),
                    contains: None,
                };
                to_json(SecretList::from(v.list(meta, query).await?))
            }
            "rotate" => Ok(json!({ "active_key_id": v.rotate_key(meta).await? })),
            _ => {
                let caller = v.whoami(meta).await?;
                Ok(json!({
                    "service": "secret-manager",
                    "status": "healthy",
                    "caller": caller,
                    "dropped_without_reply": self.stats.dropped_without_reply.load(Ordering::Relaxed),
                    "busy": self.stats.busy.load(Ordering::Relaxed),
                }))
            }
        }
    }
}

async fn connect(s: &NatsSettings) -> Result<async_nats::Client, async_nats::ConnectError> {
    use secrecy::ExposeSecret as _;
    let mut options = async_nats::ConnectOptions::new()
        .name("secret-manager")
        .retry_on_initial_connect()
        .max_reconnects(None::<usize>);
    if let (Some(user), Some(password)) = (&s.user, &s.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_string());
    }
    if let Some(creds) = &s.creds_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Authentication, e)
        })?;
    }
    if s.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &s.ca_file {
        options = options.add_root_certificates(ca.into());
    }
    options.connect(&s.url).await
}

/// Connects (in the background; reconnecting by itself) and serves requests
/// until the process ends; publishes audit records when `audit_subject` is set.
pub async fn spawn(vault: Vault, settings: NatsSettings) -> Result<(), String> {
    let client = connect(&settings).await.map_err(|e| format!("NATS: {e}"))?;
    let mut subjects: Vec<String> = vec![settings.request_subject.clone()];
    for (s, _) in &settings.acl {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    if let Some(subject) = settings.audit_subject.clone() {
        let client = client.clone();
        vault.publish_audit_with(Box::new(move |json| {
            let (client, subject) = (client.clone(), subject.clone());
            tokio::spawn(async move {
                if let Err(e) = client.publish(subject, json.into()).await {
                    tracing::warn!(error = %e, "could not publish an audit record to NATS");
                }
            });
        }));
    }
    publish_events(&vault, client.clone());
    let stats = Arc::new(NatsStats::default());
    let in_flight = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight));
    let bridge = Arc::new(Bridge {
        vault,
        settings,
        stats,
        in_flight,
    });
    for subject in subjects {
        let mut sub = client
            .queue_subscribe(subject.clone(), bridge.settings.queue_group.clone())
            .await
            .map_err(|e| format!("NATS subscribe {subject}: {e}"))?;
        tracing::info!(subject = %subject, "NATS bridge subscribed");
        let (bridge, client) = (bridge.clone(), client.clone());
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply.clone() else {
                    let n = bridge
                        .stats
                        .dropped_without_reply
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    crate::metrics::METRICS
                        .nats_refused
                        .get_or_create(&crate::metrics::ReasonLabels { reason: "no_reply" })
                        .inc();
                    tracing::warn!(subject = %msg.subject, dropped = n, "NATS request without a reply inbox dropped");
                    continue;
                };
                let Ok(permit) = bridge.in_flight.clone().try_acquire_owned() else {
                    // Saturated: say so at once rather than queue without bound.
                    bridge.stats.busy.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::METRICS
                        .nats_refused
                        .get_or_create(&crate::metrics::ReasonLabels { reason: "busy" })
                        .inc();
                    let e = ApiError::new(
                        ErrorCode::Busy,
                        "this replica is at its limit of requests in flight; retry shortly",
                    );
                    if let Err(e) = client.publish(reply, error_reply(&e).into()).await {
                        tracing::warn!(error = %e, "NATS reply failed");
                    }
                    continue;
                };
                let (bridge, client, subject) = (bridge.clone(), client.clone(), subject.clone());
                tokio::spawn(async move {
                    let in_flight = &crate::metrics::METRICS.nats_in_flight;
                    in_flight.inc();
                    let answer = bridge.handle(&subject, &msg.payload).await;
                    in_flight.dec();
                    drop(permit);
                    if let Err(e) = client.publish(reply, answer.into()).await {
                        tracing::warn!(error = %e, "NATS reply failed");
                    }
                });
            }
            tracing::warn!(subject = %subject, "NATS subscription ended");
        });
    }
    Ok(())
}

/// Publishes every change event on `vault.events.<kind>`, so approvers hear of
/// pending work at once.
fn publish_events(vault: &Vault, client: async_nats::Client) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = vault.subscribe_events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    let Ok(json) = serde_json::to_vec(&event) else {
                        continue;
                    };
                    let subject = format!("{EVENTS_PREFIX}.{}", event.kind);
                    if let Err(e) = client.publish(subject, json.into()).await {
                        tracing::warn!(error = %e, "could not publish an event to NATS");
                    }
                    if let Some((subject, json)) = secret_subject(&event) {
                        if let Err(e) = client.publish(subject, json.into()).await {
                            tracing::warn!(error = %e, "could not publish a secret event to NATS");
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        lost = n,
                        "NATS event publishing fell behind; events were dropped"
                    )
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// Change events go to `vault.events.<kind>`.
pub const EVENTS_PREFIX: &str = "vault.events";

/// Events naming a project and a path also go to `vault.events.secret.<project>`.
pub const SECRET_EVENTS_PREFIX: &str = "vault.events.secret";

/// `vault.events.secret.<project>` and the event as `GET /api/events` sends
/// it (`dto::SecretEvent`), for an event that names a project and a path.
/// A `.` in a project name separates subject tokens (`a.b` →
/// `vault.events.secret.a.b`); a name that would leave an empty token (a
/// trailing `.`, or `..`) is not a valid subject and gets none.
fn secret_subject(event: &crate::vault::events::Event) -> Option<(String, Vec<u8>)> {
    let data = crate::dto::SecretEvent::of(event)?;
    if data.project.split('.').any(str::is_empty) {
        return None;
    }
    let json = serde_json::to_vec(&data).ok()?;
    Some((format!("{SECRET_EVENTS_PREFIX}.{}", data.project), json))
}
