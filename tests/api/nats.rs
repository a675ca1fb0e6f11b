//! The NATS request/reply bridge against a real nats-server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt as _;
use mongodb::bson::doc;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, spawn_app_with_config, Identity, TestApp};

/// A nats-server of this test's own, stopped when dropped.
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start_on(port: u16) -> Self {
        Self::try_start(port, None, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// nats-server with the configuration file `config` (when given), its
    /// environment extended by `envs` (the passwords the file refers to), on a
    /// free port. A port taken between choosing and binding it (tests run in
    /// parallel) makes the server exit at start: then it tries another.
    fn start_with(config: Option<&std::path::Path>, envs: &[(&str, &str)]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(crate::helpers::free_port(), config, envs) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("{last}")
    }

    fn try_start(
        port: u16,
        config: Option<&std::path::Path>,
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new("nats-server");
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        cmd.envs(envs.iter().copied());
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = cmd
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it)");
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self { child, port });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                return Err(format!(
                    "nats-server on port {port} exited at start ({status}); config {config:?}: {said}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "nats-server on port {port} did not listen within 15 s"
        ))
    }

    pub(crate) fn start() -> Self {
        Self::start_with(None, &[])
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) async fn client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("test client connects")
}

async fn ask(nc: &async_nats::Client, subject: &str, body: Value) -> Value {
    ask_raw(nc, subject, body.to_string().into_bytes()).await
}

async fn ask_raw(nc: &async_nats::Client, subject: &str, body: Vec<u8>) -> Value {
    let msg = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request(subject.to_string(), body.into()),
    )
    .await
    .expect("answered in time")
    .expect("a reply");
    serde_json::from_slice(&msg.payload).expect("JSON reply")
}

/// Waits until the bridge answers on `subject` (it subscribes in the background).
async fn wait_for_bridge(nc: &async_nats::Client, app: &TestApp, subject: &str) -> Value {
    let body = with_id(app, json!({ "operation": "status" })).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let asked = nc.request(subject.to_string(), body.clone().into_bytes().into());
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok(msg)) => return serde_json::from_slice(&msg.payload).expect("JSON reply"),
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("the bridge never answered on {subject}: {other:?}"),
        }
    }
}

fn with_id(app: &TestApp, mut body: Value) -> Value {
    body["service"] = json!(app.identity.service);
    body["token"] = json!(app.identity.token);
    body
}

fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
}

pub(crate) const SUBJECT: &str = "vault.requests";

#[tokio::test]
async fn every_operation_works_and_is_audited_on_the_nats_channel() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[("NATS_URL", &server.url())]).await;
    let nc = client(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let set = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "set", "key": "agents/openai-key", "value": "sk-1" }),
        ),
    )
    .await;
    assert_eq!(set["status"], "success", "{set}");
    assert_eq!(set["data"]["version"], 1);
    let again = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "set", "key": "agents/openai-key", "value": "sk-2" }),
        ),
    )
    .await;
    assert_eq!(
        again["data"]["version"], 2,
        "set on an existing key writes a new version"
    );
    let bin = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "set", "key": "agents/blob", "value_b64": "AP8=" }),
        ),
    )
    .await;
    assert_eq!(bin["data"]["value_b64"], "AP8=");
    let got = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "get", "key": "agents/openai-key" }),
        ),
    )
    .await;
    assert_eq!(
        (got["data"]["value"].clone(), got["data"]["version"].clone()),
        (json!("sk-2"), json!(2))
    );
    let old = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "get", "key": "agents/openai-key", "version": 1 }),
        ),
    )
    .await;
    assert_eq!(old["data"]["value"], "sk-1");
    let list = ask(
        &nc,
        SUBJECT,
        with_id(&app, json!({ "operation": "list", "key": "agents" })),
    )
    .await;
    let paths: Vec<&str> = list["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["path"].as_str().expect("p"))
        .collect();
    assert_eq!(paths, ["blob", "openai-key"]);
    assert!(!list.to_string().contains("sk-2"), "lists carry no values");
    // Each item's `key` goes straight back into `get`.
    let first_key = list["data"]["items"][1]["key"].as_str().expect("key");
    assert_eq!(first_key, "agents/openai-key");
    let again = ask(
        &nc,
        SUBJECT,
        with_id(&app, json!({ "operation": "get", "key": first_key })),
    )
    .await;
    assert_eq!(again["data"]["value"], "sk-2", "{again}");
    let status = ask(
        &nc,
        SUBJECT,
        with_id(&app, json!({ "operation": "status" })),
    )
    .await;
    assert_eq!(
        (
            status["data"]["status"].clone(),
            status["data"]["caller"].clone()
        ),
        (json!("healthy"), json!("tester"))
    );
    let deleted = ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "delete", "key": "agents/openai-key" }),
        ),
    )
    .await;
    assert_eq!(deleted["status"], "success");
    assert_error(
        &ask(
            &nc,
            SUBJECT,
            with_id(
                &app,
                json!({ "operation": "get", "key": "agents/openai-key" }),
            ),
        )
        .await,
        "secret_not_found",
    );
    assert_error(
        &ask(
            &nc,
            SUBJECT,
            with_id(&app, json!({ "operation": "rotate" })),
        )
        .await,
        "forbidden",
    );

    let records = app
        .audit_logs()
        .count_documents(doc! { "channel": "nats", "actor": "tester" })
        .await
        .expect("count");
    assert!(records >= 10, "every operation audited: {records}");
    let leaked = app
        .audit_logs()
        .count_documents(
            doc! { "$or": [{ "value": { "$exists": true } }, { "token": { "$exists": true } }] },
        )
        .await
        .expect("count");
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn bad_tokens_malformed_and_oversize_messages_get_error_replies_and_serving_continues() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[
        ("NATS_URL", &server.url()),
        ("MAX_SECRET_BYTES", "64"),
        ("AUTH_FAILURE_BURST", "0"),
    ])
    .await;
    let nc = client(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cases: [(&str, Vec<u8>, &str); 8] = [
        (
            "bad token",
            json!({ "operation": "status", "service": "tester", "token": "wrong-token-xxxxxxxx" })
                .to_string()
                .into_bytes(),
            "unauthorized",
        ),
        (
            "no credentials",
            json!({ "operation": "status" }).to_string().into_bytes(),
            "unauthorized",
        ),
        ("not JSON", b"{{{ nope".to_vec(), "invalid_json"),
        (
            "unknown field",
            with_id(
                &app,
                json!({ "operation": "get", "key": "a/b", "colour": "red" }),
            )
            .to_string()
            .into_bytes(),
            "invalid_request",
        ),
        (
            "unknown operation",
            with_id(&app, json!({ "operation": "explode" }))
                .to_string()
                .into_bytes(),
            "unknown_operation",
        ),
        (
            "missing key",
            with_id(&app, json!({ "operation": "get" }))
                .to_string()
                .into_bytes(),
            "missing_field",
        ),
        (
            "missing value",
            with_id(&app, json!({ "operation": "set", "key": "a/b" }))
                .to_string()
                .into_bytes(),
            "invalid_value",
        ),
        (
            "oversize",
            with_id(
                &app,
                json!({ "operation": "set", "key": "a/b", "value": "x".repeat(10_000) }),
            )
            .to_string()
            .into_bytes(),
            "payload_too_large",
        ),
    ];
    for (case, body, code) in cases {
        let reply = ask_raw(&nc, SUBJECT, body).await;
        assert_error(&reply, code);
        assert!(
            !reply.to_string().contains("wrong-token"),
            "{case}: token echoed"
        );
    }
    let ok = ask(
        &nc,
        SUBJECT,
        with_id(&app, json!({ "operation": "status" })),
    )
    .await;
    assert_eq!(ok["status"], "success", "still serving");
}

#[tokio::test]
async fn acl_subjects_limit_operations_on_top_of_policies() {
    let server = NatsServer::start();
    // With `nats.acl`, the request subject needs its own entry like any other.
    let yaml = "nats:\n  acl:\n    - subject: agents.readonly\n      operations: [get, list, status]\n    - subject: vault.requests\n      operations: [get, set, delete, list, rotate, status]\n";
    let app = spawn_app_with_config(yaml, &[("NATS_URL", &server.url())]).await;
    let nc = client(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ask(
        &nc,
        SUBJECT,
        with_id(
            &app,
            json!({ "operation": "set", "key": "p/k", "value": "v" }),
        ),
    )
    .await;

    let denied = ask(
        &nc,
        "agents.readonly",
        with_id(
            &app,
            json!({ "operation": "set", "key": "p/k", "value": "w" }),
        ),
    )
    .await;
    assert_error(&denied, "forbidden");
    assert!(denied["message"]
        .as_str()
        .expect("m")
        .contains("'set' is not allowed on subject 'agents.readonly'"));
    let read = ask(
        &nc,
        "agents.readonly",
        with_id(&app, json!({ "operation": "get", "key": "p/k" })),
    )
    .await;
    assert_eq!(read["data"]["value"], "v");
    let other = Identity::new("stranger");
    let unauth = ask(
        &nc,
        "agents.readonly",
        json!({ "operation": "get", "key": "p/k", "service": other.service, "token": other.token }),
    )
    .await;
    assert_error(&unauth, "unauthorized");
}

#[tokio::test]
async fn bad_acl_operations_refuse_to_start() {
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "nats: {acl: [{subject: a.b, operations: [get, fly]}]}",
    )
    .expect("write");
    let err = secret_manager::config::Config::from_pairs([
        ("MASTER_KEY", "0123456789abcdef0123456789abcdef".to_string()),
        ("CONFIG_FILE", file.path().display().to_string()),
    ])
    .expect_err("invalid");
    assert!(
        err.to_string()
            .contains("nats.acl subject `a.b`: unknown operation `fly`"),
        "{err}"
    );
}

#[tokio::test]
async fn two_replicas_in_one_queue_group_answer_each_request_exactly_once() {
    let server = NatsServer::start();
    let a = spawn_app_with(&[("NATS_URL", &server.url())]).await;
    let b = spawn_app_with(&[
        ("NATS_URL", &server.url()),
        ("MONGO_DB", &a.db_name),
        ("MASTER_KEY", &a.master_key),
        ("TOKEN_tester", &a.identity.token),
    ])
    .await;
    let _ = &b;
    let nc = client(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut replies = nc.subscribe("test.replies.>").await.expect("subscribe");
    for i in 0..40 {
        let body = with_id(&a, json!({ "operation": "status" })).to_string();
        nc.publish_with_reply(SUBJECT, format!("test.replies.{i}"), body.into())
            .await
            .expect("publish");
    }
    nc.flush().await.expect("flush");
    let mut counts = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        *counts.entry(msg.subject.to_string()).or_insert(0) += 1;
        if counts.len() == 40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            while let Ok(Some(extra)) =
                tokio::time::timeout(Duration::from_millis(100), replies.next()).await
            {
                *counts.entry(extra.subject.to_string()).or_insert(0) += 1;
            }
            break;
        }
    }
    assert_eq!(counts.len(), 40, "every request answered");
    assert!(counts.values().all(|n| *n == 1), "exactly once: {counts:?}");
    let audited = a
        .audit_logs()
        .count_documents(doc! { "action": "auth_test", "channel": "nats" })
        .await
        .expect("count");
    assert_eq!(audited, 40, "one replica handled each request");
}

#[tokio::test]
async fn requests_without_a_reply_inbox_are_dropped_and_counted() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[("NATS_URL", &server.url())]).await;
    let nc = client(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        nc.publish(
            SUBJECT,
            with_id(&app, json!({ "operation": "status" }))
                .to_string()
                .into(),
        )
        .await
        .expect("publish");
    }
    nc.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = ask(
        &nc,
        SUBJECT,
        with_id(&app, json!({ "operation": "status" })),
    )
    .await;
    assert_eq!(status["data"]["dropped_without_reply"], 3);
}

#[tokio::test]
async fn the_bridge_reconnects_after_a_server_restart_and_http_never_depends_on_it() {
    let mut server = NatsServer::start();
    let port = server.port;
    let app = spawn_app_with(&[("NATS_URL", &server.url())]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let nc = client(&server).await;
        let ok = ask(
            &nc,
            SUBJECT,
            with_id(&app, json!({ "operation": "status" })),
        )
        .await;
        assert_eq!(ok["status"], "success");
    }
    server.stop();
    assert_eq!(
        app.get("/health/ready").await.status,
        200,
        "HTTP unaffected while NATS is down"
    );
    let id = app.create(b"http-still-works").await;
    assert_eq!(app.fetch(&id).await.status, 200);

    let server = NatsServer::start_on(port);
    let nc = client(&server).await;
    let mut answered = false;
    for _ in 0..60 {
        let body = with_id(&app, json!({ "operation": "status" })).to_string();
        if let Ok(Ok(msg)) =
            tokio::time::timeout(Duration::from_millis(500), nc.request(SUBJECT, body.into())).await
        {
            let v: Value = serde_json::from_slice(&msg.payload).expect("json");
            answered = v["status"] == "success";
            if answered {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answered, "the bridge resubscribed by itself");
}

#[tokio::test]
async fn http_starts_and_serves_when_nats_is_unreachable() {
    let app = spawn_app_with(&[("NATS_URL", "nats://127.0.0.1:1")]).await;
    assert_eq!(app.get("/health/ready").await.status, 200);
    let id = app.create(b"x").await;
    assert_eq!(app.fetch(&id).await.status, 200);
}

#[tokio::test]
async fn audit_records_are_published_to_the_audit_subject_without_values() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[
        ("NATS_URL", &server.url()),
        ("NATS_AUDIT_SUBJECT", "vault.audit"),
    ])
    .await;
    let nc = client(&server).await;
    let mut audit = nc.subscribe("vault.audit").await.expect("subscribe");
    nc.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app.create(b"published-value").await;
    let msg = tokio::time::timeout(Duration::from_secs(5), audit.next())
        .await
        .expect("in time")
        .expect("a record");
    let record: Value = serde_json::from_slice(&msg.payload).expect("json");
    assert_eq!(record["action"], "create");
    assert_eq!(record["secret_id"], id);
    let text = String::from_utf8_lossy(&msg.payload);
    assert!(!text.contains("published-value") && !text.contains(&app.identity.token));
}

/// With `nats.acl` configured, the always-subscribed request subject is not a
/// way around it: a subject the ACL does not list allows no operation.
#[tokio::test]
async fn the_request_subject_honours_the_acl_like_any_other() {
    let server = NatsServer::start();
    let yaml = "nats:\n  acl:\n    - subject: agents.readonly\n      operations: [get, status]\n";
    let app = spawn_app_with_config(yaml, &[("NATS_URL", &server.url())]).await;
    let nc = client(&server).await;
    let status = wait_for_bridge(&nc, &app, "agents.readonly").await;
    assert_eq!(status["status"], "success", "{status}");
    wait_for_bridge(&nc, &app, SUBJECT).await;
    for operation in ["set", "get", "status"] {
        let denied = ask(
            &nc,
            SUBJECT,
            with_id(
                &app,
                json!({ "operation": operation, "key": "p/k", "value": "v" }),
            ),
        )
        .await;
        assert_error(&denied, "forbidden");
    }
}

/// One replica works on at most `NATS_MAX_IN_FLIGHT` requests; the rest are
/// answered `busy` at once instead of queueing without bound.
#[tokio::test]
async fn requests_over_the_in_flight_limit_are_answered_busy() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[("NATS_URL", &server.url()), ("NATS_MAX_IN_FLIGHT", "1")]).await;
    let nc = client(&server).await;
    let ready = wait_for_bridge(&nc, &app, SUBJECT).await;
    assert_eq!(ready["status"], "success", "{ready}");
    let inbox = nc.new_inbox();
    let mut replies = nc.subscribe(format!("{inbox}.*")).await.expect("subscribe");
    nc.flush().await.expect("flush");
    let n = 200;
    for i in 0..n {
        let body = with_id(
            &app,
            json!({ "operation": "set", "key": format!("p/k{i}"), "value": "v" }),
        );
        nc.publish_with_reply(SUBJECT, format!("{inbox}.{i}"), body.to_string().into())
            .await
            .expect("publish");
    }
    nc.flush().await.expect("flush");
    let (mut ok, mut busy) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ok + busy < n {
        let msg = tokio::time::timeout_at(deadline, replies.next())
            .await
            .expect("every request answered in time")
            .expect("reply");
        let reply: Value = serde_json::from_slice(&msg.payload).expect("json");
        match (reply["status"].as_str(), reply["code"].as_str()) {
            (Some("success"), _) => ok += 1,
            (Some("error"), Some("busy")) => busy += 1,
            other => panic!("unexpected reply {other:?}: {reply}"),
        }
    }
    assert!(
        busy > 0,
        "with one permit and {n} requests at once, some are busy"
    );
    assert!(ok > 0, "and some are served");
}

/// deploy/nats-server.conf with passwords of this test's own; with `tls`, a
/// copy of it with a `tls {}` block for the test certificate.
pub(crate) struct SecuredBus {
    pub(crate) server: NatsServer,
    passwords: [(&'static str, String); 3],
    _dir: tempfile::TempDir,
}

impl SecuredBus {
    pub(crate) fn start(tls: Option<&crate::helpers::TestCerts>) -> Self {
        let passwords = [
            (
                "secret-manager",
                format!("pw{}", uuid::Uuid::new_v4().simple()),
            ),
            ("agent-a", format!("pw{}", uuid::Uuid::new_v4().simple())),
            ("agent-b", format!("pw{}", uuid::Uuid::new_v4().simple())),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nats-server.conf");
        let mut text =
            std::fs::read_to_string("deploy/nats-server.conf").expect("deploy/nats-server.conf");
        if let Some(certs) = tls {
            text.push_str(&format!(
                "\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                certs.cert_file(),
                certs.key_file()
            ));
        }
        std::fs::write(&config, text).expect("write config");
        let server = NatsServer::start_with(
            Some(&config),
            &[
                ("NATS_SECRET_MANAGER_PASSWORD", &passwords[0].1),
                ("NATS_AGENT_A_PASSWORD", &passwords[1].1),
                ("NATS_AGENT_B_PASSWORD", &passwords[2].1),
            ],
        );
        Self {
            server,
            passwords,
            _dir: dir,
        }
    }

    pub(crate) fn password(&self, user: &str) -> &str {
        &self
            .passwords
            .iter()
            .find(|(u, _)| *u == user)
            .expect("known user")
            .1
    }

    /// An agent's connection: its own user, its own inbox prefix; every
    /// server event (permission violations among them) goes to the receiver.
    pub(crate) async fn agent(
        &self,
        user: &str,
    ) -> (
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let nc = async_nats::ConnectOptions::new()
            .user_and_password(user.into(), self.password(user).into())
            .custom_inbox_prefix(format!("_INBOX.{user}"))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(self.server.url())
            .await
            .expect("agent connects");
        (nc, rx)
    }
}

/// Waits (bounded) for the server to report a permissions violation.
pub(crate) async fn permission_violation(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the server reports a violation in time")
            .expect("events open");
        if let async_nats::Event::ServerError(e) = &event {
            let text = e.to_string();
            if text.to_lowercase().contains("permissions violation") {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn with_the_deploy_config_agents_get_replies_but_cannot_eavesdrop_on_requests() {
    // Arrange: the repository's nats-server.conf; the service with its own user.
    let bus = SecuredBus::start(None);
    let app = spawn_app_with(&[
        ("NATS_URL", &bus.server.url()),
        ("NATS_USER", "secret-manager"),
        ("NATS_PASSWORD", bus.password("secret-manager")),
        ("NATS_AUDIT_SUBJECT", "vault.audit"),
    ])
    .await;
    let (agent_a, _) = bus.agent("agent-a").await;
    let (eavesdropper, mut events) = bus.agent("agent-b").await;

    // Act: agent-b tries to read the request subject and agent-a's inbox.
    let mut on_requests = eavesdropper
        .subscribe(SUBJECT.to_string())
        .await
        .expect("the client sends SUB");
    eavesdropper.flush().await.expect("flush");
    let refused = permission_violation(&mut events).await;
    let mut on_inbox = eavesdropper
        .subscribe("_INBOX.agent-a.>".to_string())
        .await
        .expect("the client sends SUB");
    eavesdropper.flush().await.expect("flush");
    let refused_inbox = permission_violation(&mut events).await;
    // The service may answer only once it has subscribed; retry until it does.
    let body = with_id(
        &app,
        json!({ "operation": "set", "key": "agents/bus-key", "value": "sk-secret-on-bus" }),
    );
    let mut set = None;
    for _ in 0..50 {
        match agent_a
            .request(SUBJECT.to_string(), body.to_string().into_bytes().into())
            .await
        {
            Ok(msg) => {
                set = Some(serde_json::from_slice::<Value>(&msg.payload).expect("JSON"));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let set = set.expect("agent-a got a reply");
    let got = ask(
        &agent_a,
        SUBJECT,
        with_id(&app, json!({ "operation": "get", "key": "agents/bus-key" })),
    )
    .await;

    // Assert
    assert!(refused.contains(SUBJECT), "{refused}");
    assert!(refused_inbox.contains("_INBOX.agent-a"), "{refused_inbox}");
    assert_eq!(set["status"], "success", "{set}");
    assert_eq!(got["data"]["value"], "sk-secret-on-bus", "{got}");
    let overheard = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! {
            m = on_requests.next() => m,
            m = on_inbox.next() => m,
        }
    })
    .await;
    assert!(
        matches!(overheard, Err(_) | Ok(None)),
        "agent-b must not see agent-a's requests or replies"
    );
    // Nor forge audit records.
    eavesdropper
        .publish("vault.audit".to_string(), "forged".into())
        .await
        .expect("the client sends PUB");
    eavesdropper.flush().await.expect("flush");
    let forged = permission_violation(&mut events).await;
    assert!(forged.contains("vault.audit"), "{forged}");
}

#[tokio::test]
async fn the_service_connects_over_tls_with_nats_ca_file_and_requests_round_trip() {
    let certs = crate::helpers::TestCerts::new();
    let bus = SecuredBus::start(Some(&certs));
    let url = bus.server.url().replacen("nats://", "tls://", 1);
    let app = spawn_app_with(&[
        ("NATS_URL", &url),
        ("NATS_CA_FILE", &certs.ca_file()),
        ("NATS_USER", "secret-manager"),
        ("NATS_PASSWORD", bus.password("secret-manager")),
    ])
    .await;
    let agent = async_nats::ConnectOptions::new()
        .user_and_password("agent-a".into(), bus.password("agent-a").into())
        .custom_inbox_prefix("_INBOX.agent-a")
        .add_root_certificates(certs.ca_file().into())
        .require_tls(true)
        .connect(&url)
        .await
        .expect("agent connects over TLS");
    let body = with_id(&app, json!({ "operation": "status" }));
    let mut reply = None;
    for _ in 0..50 {
        if let Ok(msg) = agent
            .request(SUBJECT.to_string(), body.to_string().into_bytes().into())
            .await
        {
            reply = Some(serde_json::from_slice::<Value>(&msg.payload).expect("JSON"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = reply.expect("a reply over TLS");
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(
        reply["data"]["caller"],
        json!(app.identity.service),
        "{reply}"
    );
}
