//! The NATS request/reply interface for agents. Every replica subscribes to the
//! request subject (and each ACL subject) in one queue group, so the bus spreads
//! requests over the replicas. Same identities, policies, audit and error codes
//! as HTTP; the HTTP side does not depend on it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

pub mod settings;

use crate::error::ApiError;
use crate::store::secrets::{self, Locator};
use crate::vault::named::{NewSecret, SecretRecord, MAX_LIST_LIMIT};
use crate::vault::{RequestMeta, Target, Value, Vault};
pub use settings::{parse_acl, NatsSettings, OPERATIONS};

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
}

#[derive(Serialize)]
struct Failure<'a> {
    status: &'static str,
    code: &'a str,
    message: &'a str,
}

/// Counters for requests the bridge could not answer.
#[derive(Default, Debug)]
pub struct NatsStats {
    pub dropped_without_reply: AtomicU64,
}

struct Bridge {
    vault: Vault,
    settings: NatsSettings,
    stats: Arc<NatsStats>,
}

fn error_reply(e: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&Failure {
        status: "error",
        code: e.code,
        message: &e.message,
    })
    .unwrap_or_default()
}

fn record_json(r: SecretRecord) -> Json {
    json!({
        "id": r.id,
        "project": r.project,
        "path": r.path,
        "value": std::str::from_utf8(&r.value).ok(),
        "value_b64": STANDARD.encode(r.value.as_slice()),
        "version": r.version,
        "current_version": r.current_version,
        "updated_at": r.updated_at.to_chrono(),
        "updated_by": r.updated_by,
    })
}

fn split_key(key: Option<&str>) -> Result<(&str, &str), ApiError> {
    key.and_then(|k| k.split_once('/'))
        .ok_or_else(|| ApiError::bad_request("missing_field", "`key` must be `<project>/<path>`"))
}

impl Bridge {
    fn allowed_ops(&self, subject: &str) -> Option<&BTreeSet<String>> {
        self.settings
            .acl
            .iter()
            .find(|(s, _)| s == subject)
            .map(|(_, ops)| ops)
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
            let e = ApiError::too_large(
                "payload_too_large",
                format!(
                    "the message must be at most {} bytes",
                    self.settings.max_payload
                ),
            );
            return Err(v.fail("nats_request", meta, e, Target::default()).await);
        }
        let req: Request = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                let err = if e.is_data() {
                    ApiError::bad_request(
                        "invalid_request",
                        "the request has a missing, unknown or mistyped field",
                    )
                } else {
                    ApiError::bad_request("invalid_json", "the message is not valid JSON")
                };
                return Err(v.fail("nats_request", meta, err, Target::default()).await);
            }
        };
        // Limit guessing per claimed service: there is no client address on the bus.
        meta.client_ip = Some(format!("nats:{}", req.service.as_deref().unwrap_or("-")));
        v.authenticate(meta, req.service.as_deref(), req.token.as_deref())
            .await?;
        let op = req.operation.as_str();
        if !OPERATIONS.contains(&op) {
            let e = ApiError::bad_request(
                "unknown_operation",
                format!("`operation` must be one of {}", OPERATIONS.join(", ")),
            );
            return Err(v.fail("nats_request", meta, e, Target::default()).await);
        }
        if let Some(ops) = self.allowed_ops(subject) {
            if !ops.contains(op) {
                let e = ApiError::denied(format!(
                    "operation '{op}' is not allowed on subject '{subject}'"
                ));
                return Err(v.fail("nats_acl", meta, e, Target::default()).await);
            }
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
        let value = || match (&req.value, &req.value_b64) {
            (Some(t), None) => Ok(Value::Text(t)),
            (None, Some(b)) => Ok(Value::Base64(b)),
            _ => Err(ApiError::bad_request(
                "invalid_value",
                "give exactly one of `value` and `value_b64`",
            )),
        };
        let invalid =
            |e: ApiError| async move { v.fail(op_name(op), meta, e, Target::default()).await };
        match op {
            "get" => {
                let (project, path) = match split_key(req.key.as_deref()) {
                    Ok(k) => k,
                    Err(e) => return Err(invalid(e).await),
                };
                Ok(record_json(v.get(meta, project, path, req.version).await?))
            }
            "set" => {
                let (project, path) = match split_key(req.key.as_deref()) {
                    Ok(k) => k,
                    Err(e) => return Err(invalid(e).await),
                };
                let val = match value() {
                    Ok(val) => val,
                    Err(e) => return Err(invalid(e).await),
                };
                let exists = secrets::find_live(v.db(), Locator::Path { project, path }, None)
                    .await
                    .map_err(ApiError::from)?
                    .is_some();
                if exists {
                    return Ok(record_json(
                        v.update(meta, project, path, val, req.expected_version)
                            .await?,
                    ));
                }
                let new = NewSecret {
                    project,
                    path,
                    value: val,
                    description: None,
                    tags: Vec::new(),
                    kind: None,
                };
                match v.create_named(meta, new).await {
                    Ok(r) => Ok(record_json(r)),
                    // Created by someone else meanwhile: write a new version instead.
                    Err(e) if e.code == "secret_exists" => Ok(record_json(
                        v.update(meta, project, path, value()?, req.expected_version)
                            .await?,
                    )),
                    Err(e) => Err(e),
                }
            }
            "delete" => {
                let (project, path) = match split_key(req.key.as_deref()) {
                    Ok(k) => k,
                    Err(e) => return Err(invalid(e).await),
                };
                v.delete(meta, project, path).await?;
                Ok(json!({ "deleted": format!("{project}/{path}") }))
            }
            "list" => {
                let key = req.key.as_deref().unwrap_or("");
                let (project, prefix) = match key.split_once('/') {
                    Some((p, rest)) => (Some(p), Some(rest)),
                    None if key.is_empty() => (None, None),
                    None => (Some(key), None),
                };
                let limit = req.limit.unwrap_or(50).clamp(1, MAX_LIST_LIMIT);
                let page = v
                    .list(meta, project, prefix, limit, req.cursor.as_deref())
                    .await?;
                let items: Vec<Json> = page
                    .items
                    .into_iter()
                    .map(|s| {
                        json!({
                            "id": s.id, "project": s.project, "path": s.path, "version": s.current_version,
                            "updated_at": s.updated_at.to_chrono(), "updated_by": s.updated_by,
                        })
                    })
                    .collect();
                Ok(json!({ "items": items, "next_cursor": page.next_cursor }))
            }
            "rotate" => Ok(json!({ "active_key_id": v.rotate_key(meta).await? })),
            _ => {
                v.audit_success("nats_status", meta, Target::default())
                    .await?;
                Ok(json!({
                    "service": "secret-manager",
                    "status": "healthy",
                    "caller": meta.actor(),
                    "dropped_without_reply": self.stats.dropped_without_reply.load(Ordering::Relaxed),
                }))
            }
        }
    }
}

fn op_name(op: &str) -> &'static str {
    match op {
        "get" => "read",
        "set" => "update",
        "delete" => "delete",
        "list" => "list",
        _ => "nats_request",
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
/// until the process ends. Returns the client for audit publishing.
pub async fn spawn(vault: Vault, settings: NatsSettings) -> Result<async_nats::Client, String> {
    let client = connect(&settings).await.map_err(|e| format!("NATS: {e}"))?;
    let mut subjects: Vec<String> = vec![settings.request_subject.clone()];
    for (s, _) in &settings.acl {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    let stats = Arc::new(NatsStats::default());
    let bridge = Arc::new(Bridge {
        vault,
        settings,
        stats,
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
                    tracing::warn!(subject = %msg.subject, dropped = n, "NATS request without a reply inbox dropped");
                    continue;
                };
                let (bridge, client, subject) = (bridge.clone(), client.clone(), subject.clone());
                tokio::spawn(async move {
                    let answer = bridge.handle(&subject, &msg.payload).await;
                    if let Err(e) = client.publish(reply, answer.into()).await {
                        tracing::warn!(error = %e, "NATS reply failed");
                    }
                });
            }
            tracing::warn!(subject = %subject, "NATS subscription ended");
        });
    }
    Ok(client)
}
