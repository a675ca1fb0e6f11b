//! Change events: every workflow transition is published on NATS
//! (`vault.events.<kind>`) and POSTed to `WEBHOOK_URL`, signed; never a value.

use std::time::Duration;

use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::call as send;
use crate::helpers::{spawn_app_with, spawn_app_with_config, Identity};
use crate::nats::NatsServer;

const ADMIN_YAML: &str = "policies: [{name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}]\nservices: [{name: admin, roles: [ops]}]";

/// Secret writes (`secret_created`, ...) have their own test; workflow tests skip them.
fn is_write(subject: &str) -> bool {
    subject.starts_with("vault.events.secret_")
}

/// The next workflow event (not a secret write).
async fn next_event(events: &mut async_nats::Subscriber) -> (String, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("event");
        if is_write(&msg.subject) {
            continue;
        }
        let text = String::from_utf8(msg.payload.to_vec()).expect("utf8");
        return (msg.subject.to_string(), text);
    }
}

#[tokio::test]
async fn transitions_are_published_on_nats_without_values() {
    let server = NatsServer::start();
    let (admin, reader) = (Identity::new("admin"), Identity::new("report-job"));
    let app = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("NATS_URL", &server.url()),
            ("TOKEN_admin", &admin.token),
            ("TOKEN_report-job", &reader.token),
            ("ALLOW_report-job", "reports:"),
        ],
    )
    .await;
    let nc = async_nats::connect(server.url()).await.expect("connect");
    let mut events = nc.subscribe("vault.events.>").await.expect("subscribe");
    nc.flush().await.expect("flush");
    // The bridge connects in the background: the first event proves it is up.
    let created = send(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/db", "value": "db-pw-77" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);

    // An authorised miss records a stub; a create fills it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (subject, body) = loop {
        send(
            &app,
            &app.identity,
            Method::GET,
            "/api/secrets/billing/prod/new",
            None,
        )
        .await;
        match tokio::time::timeout(Duration::from_millis(300), events.next()).await {
            Ok(Some(msg)) if is_write(&msg.subject) => {}
            Ok(Some(msg)) => {
                break (
                    msg.subject.to_string(),
                    String::from_utf8(msg.payload.to_vec()).expect("utf8"),
                )
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "no event arrived"),
        }
    };
    assert_eq!(subject, "vault.events.stub_created", "{body}");
    let event: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (event["project"].clone(), event["path"].clone()),
        (json!("billing"), json!("prod/new"))
    );
    assert_eq!(event["actor"], "tester");
    send(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/new", "value": "filled-88" })),
    )
    .await;
    let (subject, body) = next_event(&mut events).await;
    assert_eq!(subject, "vault.events.stub_filled", "{body}");
    assert!(!body.contains("filled-88"));

    // A denied read opens a request; an admin grants it.
    send(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    let (subject, body) = next_event(&mut events).await;
    assert_eq!(subject, "vault.events.access_requested", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["actor"],
        "report-job"
    );
    let pending = send(
        &app,
        &admin,
        Method::GET,
        "/api/access-requests?status=pending",
        None,
    )
    .await;
    let id = pending.json()["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    send(
        &app,
        &admin,
        Method::POST,
        &format!("/api/access-requests/{id}/approve"),
        None,
    )
    .await;
    let (subject, body) = next_event(&mut events).await;
    assert_eq!(subject, "vault.events.access_granted", "{body}");
    for secret in ["db-pw-77", &reader.token, &admin.token, &app.identity.token] {
        assert!(!body.contains(secret));
    }
}

#[tokio::test]
async fn secret_writes_are_published_with_their_version_never_the_value() {
    let server = NatsServer::start();
    let app = spawn_app_with(&[("NATS_URL", &server.url())]).await;
    let nc = async_nats::connect(server.url()).await.expect("connect");
    let mut events = nc.subscribe("vault.events.>").await.expect("subscribe");
    nc.flush().await.expect("flush");
    let id = &app.identity;
    // The bridge connects in the background: write until the first event arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut path = 0;
    let first = loop {
        path += 1;
        let created = send(
            &app,
            id,
            Method::POST,
            "/api/secrets",
            Some(
                json!({ "project": "ops", "path": format!("probe{path}"), "value": "probe-value" }),
            ),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text);
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await
        {
            break msg;
        }
        assert!(tokio::time::Instant::now() < deadline, "no event arrived");
    };
    assert_eq!(first.subject.as_str(), "vault.events.secret_created");

    let at = "/api/secrets/ops/db";
    let steps = [
        (
            Method::POST,
            "/api/secrets".to_string(),
            Some(json!({ "project": "ops", "path": "db", "value": "v-one-1" })),
        ),
        (
            Method::PATCH,
            at.to_string(),
            Some(json!({ "value": "v-two-2" })),
        ),
        (Method::DELETE, at.to_string(), None),
        (Method::POST, format!("{at}/restore"), None),
    ];
    for (method, url, body) in steps {
        let res = send(&app, id, method, &url, body).await;
        assert!(res.status < 300, "{}", res.text);
    }
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("event");
        let text = String::from_utf8(msg.payload.to_vec()).expect("utf8");
        assert!(
            !text.contains("v-one-1") && !text.contains("v-two-2"),
            "{text}"
        );
        let event: Value = serde_json::from_str(&text).expect("json");
        if event["path"] != "db" {
            continue; // a late probe
        }
        seen.push((msg.subject.to_string(), event["version"].clone()));
    }
    assert_eq!(
        seen,
        [
            ("vault.events.secret_created".to_string(), json!(1)),
            ("vault.events.secret_updated".to_string(), json!(2)),
            ("vault.events.secret_deleted".to_string(), Value::Null),
            ("vault.events.secret_restored".to_string(), Value::Null),
        ]
    );
}

/// One HTTP request as a tiny server received it: headers (lower-case) and body.
async fn receive_one(listener: tokio::net::TcpListener) -> (Vec<(String, String)>, Vec<u8>) {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_string();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            let body = data[end + 4..end + 4 + length].to_vec();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("answer");
            return (headers, body);
        }
    }
}

#[tokio::test]
async fn transitions_are_posted_to_the_webhook_signed_with_its_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let secret = format!("whsec{}", uuid::Uuid::new_v4().simple());
    let received = tokio::spawn(receive_one(listener));
    let app = spawn_app_with_config(
        ADMIN_YAML,
        &[("WEBHOOK_URL", &url), ("WEBHOOK_SECRET", &secret)],
    )
    .await;

    send(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets/p/wanted",
        None,
    )
    .await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the webhook is called in time")
        .expect("join");

    let event: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(event["kind"], "stub_created");
    assert_eq!(event["path"], "wanted");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    let signature = header("x-signature");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=<unix>,v1=<hex>");
    let t: i64 = t.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60, "fresh");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&body);
    assert_eq!(
        v1,
        hex::encode(mac.finalize().into_bytes()),
        "signed with WEBHOOK_SECRET"
    );
    assert!(!String::from_utf8_lossy(&body).contains(&secret));
}

#[test]
fn a_webhook_url_needs_its_signing_secret() {
    let err = secret_manager::config::Config::from_pairs([
        ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
        ("CONFIG_FILE", "/dev/null"),
        ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
    ])
    .map(|_| ())
    .expect_err("no secret");
    assert!(err.to_string().contains("`WEBHOOK_SECRET`"), "{err}");
    let err = secret_manager::config::Config::from_pairs([
        ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
        ("CONFIG_FILE", "/dev/null"),
        ("WEBHOOK_URL", "ftp://x"),
        ("WEBHOOK_SECRET", "s"),
    ])
    .map(|_| ())
    .expect_err("bad scheme");
    assert!(
        err.to_string().contains("`WEBHOOK_URL` must start with"),
        "{err}"
    );
}
