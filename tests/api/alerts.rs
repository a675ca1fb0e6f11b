//! Failed-access alerts and anomalies (`vault::alerts`): each rule fires once
//! per window across replicas, with its fields, over NATS and the webhook, in
//! the audit trail and the log; never with a token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{spawn_app_with, Identity, TestApp};
use crate::nats::NatsServer;

const DEADLINE: Duration = Duration::from_secs(20);
const PROXY: &str = "127.0.0.1/32";

/// Polls `check` until it gives a value, failing after `DEADLINE`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every `alert` audit record of the app's database.
async fn alert_records(app: &TestApp) -> Vec<Document> {
    app.audit_logs()
        .find(doc! { "action": "alert" })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

/// The alert records of `rule` about `subject`.
async fn alerts_about(app: &TestApp, rule: &str, subject: &str) -> Vec<Document> {
    alert_records(app)
        .await
        .into_iter()
        .filter(|r| {
            let a = r.get_document("alert").expect("alert detail");
            a.get_str("rule") == Ok(rule) && a.get_str("subject") == Ok(subject)
        })
        .collect()
}

/// The shared count of `rule` for `subject` (every window summed).
async fn shared_count(app: &TestApp, rule: &str, kind: &str, subject: &str) -> i64 {
    let (prefix, suffix) = (format!("{rule}|"), format!("|{kind}|{subject}"));
    let docs: Vec<Document> = app
        .db
        .collection::<Document>("alert_counts")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    docs.iter()
        .filter(|d| {
            let id = d.get_str("_id").unwrap_or("");
            id.starts_with(&prefix) && id.ends_with(&suffix)
        })
        .map(|d| {
            d.get_i64("n")
                .or_else(|_| d.get_i32("n").map(i64::from))
                .unwrap_or(0)
        })
        .sum()
}

async fn wait_for_count(app: &TestApp, rule: &str, kind: &str, subject: &str, n: i64) {
    eventually(&format!("{rule} {kind} {subject} counted {n}"), || async {
        (shared_count(app, rule, kind, subject).await == n).then_some(())
    })
    .await;
}

/// A request with a wrong token for `service` from `address`.
async fn fail_auth(app: &TestApp, service: &str, token: &str, address: &str) {
    let res = app
        .http
        .post(format!("{}/api/secrets/test", app.address))
        .header("x-service", service)
        .header("x-token", token)
        .header("x-forwarded-for", address)
        .send()
        .await
        .expect("sent");
    assert!(
        [401, 429].contains(&res.status().as_u16()),
        "refused: {}",
        res.status()
    );
}

/// Each alert's (rule, subject kind, subject, window start) appears once.
fn assert_once_per_window(records: &[Document]) {
    let mut seen = std::collections::HashSet::new();
    for r in records {
        let a = r.get_document("alert").expect("alert");
        let key = (
            a.get_str("rule").expect("rule").to_string(),
            a.get_str("subject_kind").expect("kind").to_string(),
            a.get_str("subject").expect("subject").to_string(),
            a.get_datetime("window_start")
                .expect("start")
                .timestamp_millis(),
        );
        assert!(
            seen.insert(key.clone()),
            "raised twice: {key:?} in {records:?}"
        );
    }
}

/// Collects what a tiny HTTP server receives: every POSTed body, as JSON.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, sink.clone()));
        }
    });
    (url, received)
}

/// Answers every request on one (keep-alive) connection with 200.
async fn serve_connection(mut stream: tokio::net::TcpStream, sink: Arc<Mutex<Vec<Value>>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let body: Vec<u8> = data[end + 4..end + 4 + length].to_vec();
                data.drain(..end + 4 + length);
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().expect("lock").push(v);
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(ok).await.is_err() {
                    return;
                }
                continue;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// The alert events a webhook received, of `rule` about `subject`.
fn posted(received: &Mutex<Vec<Value>>, rule: &str, subject: &str) -> Vec<Value> {
    received
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e["kind"] == "alert" && e["rule"] == rule && e["subject"] == subject)
        .cloned()
        .collect()
}

/// A log writer for this test's thread: the flush task runs on the test's
/// runtime (started by `Application::build`), so its warnings land here.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).to_string()
    }
}

#[tokio::test]
async fn failed_authentications_alert_once_per_window_by_service_and_by_address() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = NatsServer::start();
    let app = spawn_app_with(&[
        ("NATS_URL", &server.url()),
        ("TRUSTED_PROXIES", PROXY),
        ("ALERT_AUTH_FAILURES", "5"),
        ("ALERT_WINDOW", "1h"),
    ])
    .await;
    let nc = async_nats::connect(server.url()).await.expect("connect");
    let mut events = nc.subscribe("vault.events.alert").await.expect("subscribe");
    nc.flush().await.expect("flush");
    let guess = format!("guessed-token-{}", uuid::Uuid::new_v4().simple());
    let address = "198.51.100.23";

    // At the threshold: counted (across flushes), no alert.
    for _ in 0..5 {
        fail_auth(&app, "billing", &guess, address).await;
    }
    wait_for_count(&app, "auth_failures", "service", "billing", 5).await;
    wait_for_count(&app, "auth_failures", "address", address, 5).await;
    assert!(alert_records(&app).await.is_empty(), "5 is not more than 5");

    // One more: an alert for the service and one for the address.
    fail_auth(&app, "billing", &guess, address).await;
    let by_service = eventually("the service's alert", || async {
        alerts_about(&app, "auth_failures", "billing").await.pop()
    })
    .await;
    let by_address = eventually("the address's alert", || async {
        alerts_about(&app, "auth_failures", address).await.pop()
    })
    .await;
    let detail = by_service.get_document("alert").expect("detail");
    assert_eq!(by_service.get_str("outcome"), Ok("success"));
    assert_eq!(by_service.get_str("channel"), Ok("system"));
    assert!(by_service.get("actor").is_none(), "no actor: {by_service}");
    assert_eq!(detail.get_str("subject_kind"), Ok("service"));
    assert_eq!(detail.get_i64("count"), Ok(6));
    assert_eq!(detail.get_i64("threshold"), Ok(5));
    let (start, end) = (
        detail
            .get_datetime("window_start")
            .expect("start")
            .timestamp_millis(),
        detail
            .get_datetime("window_end")
            .expect("end")
            .timestamp_millis(),
    );
    assert_eq!(
        (end - start, start % 3_600_000),
        (3_600_000, 0),
        "an aligned hour"
    );
    let address_detail = by_address.get_document("alert").expect("detail");
    assert_eq!(address_detail.get_str("subject_kind"), Ok("address"));
    assert_eq!(by_address.get_str("client_ip"), Ok(address));

    // More failures in the window: counted, no second alert.
    for _ in 0..4 {
        fail_auth(&app, "billing", &guess, address).await;
    }
    wait_for_count(&app, "auth_failures", "service", "billing", 10).await;
    let records = alert_records(&app).await;
    assert_once_per_window(&records);
    assert!(records.len() <= 4, "at most two windows: {records:?}");

    // NATS: one event per alert, with the fields, without the token.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an alert on NATS in time")
            .expect("message");
        assert_eq!(msg.subject.as_str(), "vault.events.alert");
        let text = String::from_utf8(msg.payload.to_vec()).expect("utf8");
        assert!(!text.contains(&guess), "{text}");
        seen.push(serde_json::from_str::<Value>(&text).expect("json"));
    }
    let service_event = seen
        .iter()
        .find(|e| e["subject"] == "billing")
        .expect("the service's event");
    assert_eq!(service_event["kind"], "alert");
    assert_eq!(service_event["rule"], "auth_failures");
    assert_eq!(service_event["subject_kind"], "service");
    assert_eq!(service_event["count"], 6);
    assert_eq!(service_event["threshold"], 5);
    assert!(service_event["window_start"].is_string() && service_event["window_end"].is_string());
    assert!(seen
        .iter()
        .any(|e| e["subject"] == address && e["subject_kind"] == "address"));

    // Nothing of the token anywhere: audit trail, log.
    let trail: Vec<Document> = app
        .audit_logs()
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    let trail = format!("{trail:?}");
    assert!(!trail.contains(&guess) && !trail.contains("guessed-token"));
    let logged = log.text();
    assert!(
        logged.contains("alert: auth_failures"),
        "the warning: {logged}"
    );
    assert!(logged.contains("WARN"), "{logged}");
    assert!(!logged.contains(&guess), "{logged}");
}

#[tokio::test]
async fn failures_split_across_two_replicas_alert_once() {
    let (url, received) = webhook_receiver().await;
    let settings = [
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", "whsec-alerts-test"),
        ("TRUSTED_PROXIES", PROXY),
        ("ALERT_AUTH_FAILURES", "5"),
        ("ALERT_WINDOW", "1h"),
    ];
    let a = spawn_app_with(&settings).await;
    let mut shared = settings.to_vec();
    shared.extend([
        ("MONGO_DB", a.db_name.as_str()),
        ("MASTER_KEY", a.master_key.as_str()),
    ]);
    let b = spawn_app_with(&shared).await;
    let guess = "not-the-token-3f9a1c";

    // Three on A, three on B: neither alone is over 5, together they are.
    for _ in 0..3 {
        fail_auth(&a, "payments", guess, "203.0.113.40").await;
    }
    wait_for_count(&a, "auth_failures", "service", "payments", 3).await;
    assert!(alert_records(&a).await.is_empty());
    for _ in 0..3 {
        fail_auth(&b, "payments", guess, "203.0.113.41").await;
    }
    let record = eventually("the alert", || async {
        alerts_about(&a, "auth_failures", "payments").await.pop()
    })
    .await;
    assert_eq!(
        record
            .get_document("alert")
            .expect("detail")
            .get_i64("count"),
        Ok(6)
    );
    // A sees more than 5 too now: it must not raise the window again.
    for _ in 0..2 {
        fail_auth(&a, "payments", guess, "203.0.113.40").await;
    }
    wait_for_count(&a, "auth_failures", "service", "payments", 8).await;
    let event = eventually("the webhook's alert", || async {
        posted(&received, "auth_failures", "payments").pop()
    })
    .await;
    assert_eq!(event["subject_kind"], "service");
    assert_eq!(event["count"], 6);
    let records = alerts_about(&a, "auth_failures", "payments").await;
    assert_once_per_window(&records);
    assert!(records.len() <= 2, "{records:?}");
    // Each address alone stayed at or under the threshold.
    for address in ["203.0.113.40", "203.0.113.41"] {
        assert!(alerts_about(&a, "auth_failures", address).await.is_empty());
    }
    for e in received.lock().expect("lock").iter() {
        assert!(!e.to_string().contains(guess), "{e}");
    }
}

/// A service that may read the audit trail (`GET /api/audit`).
const AUDITOR: &str = r#"
policies:
  - name: auditor
    permissions:
      - effect: allow
        actions: [admin]
        resources: ["audit"]
services:
  - name: auditor
    roles: [auditor]
"#;

#[tokio::test]
async fn denials_of_one_service_alert_once_in_the_window() {
    let (url, received) = webhook_receiver().await;
    let reader = Identity::new("reporter");
    let auditor = Identity::new("auditor");
    let app = crate::helpers::spawn_app_with_config(
        AUDITOR,
        &[
            ("WEBHOOK_URL", url.as_str()),
            ("WEBHOOK_SECRET", "whsec-alerts-test"),
            ("TOKEN_reporter", &reader.token),
            ("ALLOW_reporter", "reports:"),
            ("TOKEN_auditor", &auditor.token),
            ("ALERT_DENIALS", "3"),
            ("ALERT_WINDOW", "1h"),
        ],
    )
    .await;
    let deny = || async {
        let res =
            crate::helpers::call(&app, &reader, Method::GET, "/api/secrets/billing/db", None).await;
        assert_eq!(res.status, 403, "{}", res.text);
    };
    for _ in 0..3 {
        deny().await;
    }
    wait_for_count(&app, "denials", "service", "reporter", 3).await;
    assert!(alert_records(&app).await.is_empty(), "3 is not more than 3");
    deny().await;
    let event = eventually("the webhook's alert", || async {
        posted(&received, "denials", "reporter").pop()
    })
    .await;
    assert_eq!(event["subject_kind"], "service");
    assert_eq!(event["actor"], "reporter");
    assert_eq!(
        (event["count"].clone(), event["threshold"].clone()),
        (json!(4), json!(3))
    );
    deny().await;
    wait_for_count(&app, "denials", "service", "reporter", 5).await;
    let records = alerts_about(&app, "denials", "reporter").await;
    assert_once_per_window(&records);
    assert!(!records.is_empty() && records.len() <= 2);
    // The audit API shows what the alert record says.
    let listed = crate::helpers::call(
        &app,
        &auditor,
        Method::GET,
        "/api/audit?action=alert&limit=50",
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let body = listed.json();
    let alert = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["action"] == "alert")
        .unwrap_or_else(|| panic!("an alert record in {body}"))["alert"]
        .clone();
    assert_eq!(
        (&alert["rule"], &alert["subject_kind"], &alert["subject"]),
        (&json!("denials"), &json!("service"), &json!("reporter"))
    );
    assert_eq!(
        (&alert["count"], &alert["threshold"]),
        (&json!(4), &json!(3))
    );
    assert!(alert["window_start"].as_str().is_some() && alert["window_end"].as_str().is_some());
    let text = received
        .lock()
        .expect("lock")
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!text.contains(&reader.token), "{text}");
}

/// Reads the secret `id` as `who` from `address` (through the trusted proxy).
async fn read_from(app: &TestApp, who: &Identity, id: &str, address: &str) {
    let res = app
        .request_as(Some(who), Method::POST, "/vault/secret/fetch")
        .header("x-forwarded-for", address)
        .json(&json!({ "secret_id": id }))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
}

/// When `service` was last recorded reading from `address` (ms), if ever.
async fn pair_seen(app: &TestApp, service: &str, address: &str) -> Option<i64> {
    let id = format!("pair|{}|{service}|{address}", service.len());
    app.db
        .collection::<Document>("alert_addresses")
        .find_one(doc! { "_id": id })
        .await
        .expect("find")
        .and_then(|d| d.get_datetime("seen_at").ok().map(|t| t.timestamp_millis()))
}

#[tokio::test]
async fn a_read_from_a_new_address_alerts_but_a_services_first_address_does_not() {
    let server = NatsServer::start();
    let settings = [
        ("NATS_URL", server.url()),
        ("TRUSTED_PROXIES", PROXY.to_string()),
        ("ALERT_BASELINE_DAYS", "30".to_string()),
    ];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = spawn_app_with(&settings).await;
    let nc = async_nats::connect(server.url()).await.expect("connect");
    let mut events = nc.subscribe("vault.events.alert").await.expect("subscribe");
    nc.flush().await.expect("flush");
    let id = a.create(b"address-test-value").await;
    let tester = a.identity.clone();

    // The first address starts the baseline; reading from it again is usual.
    read_from(&a, &tester, &id, "192.0.2.10").await;
    read_from(&a, &tester, &id, "192.0.2.10").await;
    eventually("the first address recorded", || async {
        pair_seen(&a, "tester", "192.0.2.10").await
    })
    .await;
    assert!(
        alert_records(&a).await.is_empty(),
        "a first address is no anomaly"
    );

    // A second address is new for a service with a baseline.
    read_from(&a, &tester, &id, "192.0.2.77").await;
    let record = eventually("the new-address alert", || async {
        alerts_about(&a, "new_address", "tester").await.pop()
    })
    .await;
    let detail = record.get_document("alert").expect("detail");
    assert_eq!(detail.get_str("address"), Ok("192.0.2.77"));
    assert_eq!(detail.get_str("subject_kind"), Ok("service"));
    assert_eq!(record.get_str("client_ip"), Ok("192.0.2.77"));
    let window = detail
        .get_datetime("window_end")
        .expect("end")
        .timestamp_millis()
        - detail
            .get_datetime("window_start")
            .expect("start")
            .timestamp_millis();
    assert_eq!(window, 30 * 86_400_000, "the baseline's days");
    let msg = tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("the alert on NATS in time")
        .expect("message");
    let event: Value = serde_json::from_slice(&msg.payload).expect("json");
    assert_eq!(
        (
            event["rule"].clone(),
            event["subject"].clone(),
            event["address"].clone()
        ),
        (json!("new_address"), json!("tester"), json!("192.0.2.77"))
    );
    assert!(!String::from_utf8_lossy(&msg.payload).contains(&tester.token));

    // Another replica sees that address for the first time: known, no alert.
    let mut shared = settings.clone();
    shared.extend([
        ("MONGO_DB", a.db_name.as_str()),
        ("MASTER_KEY", a.master_key.as_str()),
    ]);
    shared.push(("TOKEN_tester", tester.token.as_str()));
    let b = spawn_app_with(&shared).await;
    let before = pair_seen(&a, "tester", "192.0.2.77")
        .await
        .expect("recorded");
    read_from(&b, &tester, &id, "192.0.2.77").await;
    eventually("the second replica's record", || async {
        (pair_seen(&a, "tester", "192.0.2.77").await > Some(before)).then_some(())
    })
    .await;
    assert_eq!(alerts_about(&a, "new_address", "tester").await.len(), 1);

    // Another service's first address is not an anomaly either.
    let other = Identity::new("other");
    let c = spawn_app_with(&[
        ("MONGO_DB", a.db_name.as_str()),
        ("MASTER_KEY", a.master_key.as_str()),
        ("TRUSTED_PROXIES", PROXY),
        ("TOKEN_other", other.token.as_str()),
        ("ALLOW_other", "*"),
    ])
    .await;
    read_from(&c, &other, &id, "192.0.2.77").await;
    eventually("the other service's first address", || async {
        pair_seen(&a, "other", "192.0.2.77").await
    })
    .await;
    assert!(alerts_about(&a, "new_address", "other").await.is_empty());
}

/// Waits while the clock is within 10 s of a minute's end, so a short burst
/// stays in one minute.
async fn away_from_a_minute_boundary() {
    eventually("a quiet part of the minute", || async {
        (chrono::Utc::now().timestamp() % 60 < 50).then_some(())
    })
    .await;
}

/// A read history as the replicas write it: `reads` in `minutes` minutes of the previous hour.
async fn seed_history(app: &TestApp, service: &str, reads: i64, minutes: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let hour = now - now % 3_600_000 - 3_600_000;
    app.db
        .collection::<Document>("alert_counts")
        .insert_one(doc! {
            "_id": format!("read_hour|{hour}|{service}"),
            "n": reads,
            "minutes": minutes,
            "expires_at": mongodb::bson::DateTime::from_millis(now + 86_400_000),
        })
        .await
        .expect("seed");
}

async fn fetch_as(app: &TestApp, who: &Identity, id: &str) -> u16 {
    let res = crate::helpers::call(
        app,
        who,
        Method::POST,
        "/vault/secret/fetch",
        Some(json!({ "secret_id": id })),
    )
    .await;
    res.status
}

/// Reads counted for `service` in every minute so far.
async fn reads_counted(app: &TestApp, service: &str) -> i64 {
    let suffix = format!("|{service}");
    let docs: Vec<Document> = app
        .db
        .collection::<Document>("alert_counts")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    docs.iter()
        .filter(|d| {
            let id = d.get_str("_id").unwrap_or("");
            id.starts_with("read_minute|") && id.ends_with(&suffix)
        })
        .map(|d| d.get_i64("n").unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_read_burst_far_above_the_usual_rate_alerts_and_quiet_services_do_not() {
    let (url, received) = webhook_receiver().await;
    let (quiet, sparse) = (Identity::new("quiet"), Identity::new("sparse"));
    let app = spawn_app_with(&[
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", "whsec-alerts-test"),
        ("ALERT_RATE_FACTOR", "5"),
        ("ALERT_RATE_MIN_PER_MINUTE", "10"),
        ("ALERT_WINDOW", "1h"),
        ("TOKEN_quiet", &quiet.token),
        ("ALLOW_quiet", "*"),
        ("TOKEN_sparse", &sparse.token),
        ("ALLOW_sparse", "*"),
    ])
    .await;
    let id = app.create(b"rate-test-value").await;
    // Usual: one read a minute (tester), 0.1 a minute (sparse); quiet has no history.
    seed_history(&app, "tester", 60, 60).await;
    seed_history(&app, "sparse", 6, 60).await;

    // Below the floor: more than 5 × 0.1, fewer than 10.
    away_from_a_minute_boundary().await;
    for _ in 0..9 {
        assert_eq!(fetch_as(&app, &sparse, &id).await, 200);
    }
    // No usual rate yet: however many, no alert.
    for _ in 0..30 {
        assert_eq!(fetch_as(&app, &quiet, &id).await, 200);
    }
    eventually("the quiet reads counted", || async {
        (reads_counted(&app, "quiet").await == 30 && reads_counted(&app, "sparse").await == 9)
            .then_some(())
    })
    .await;
    assert!(alert_records(&app).await.is_empty(), "no alert yet");

    // Far above one a minute: twenty reads in one minute.
    away_from_a_minute_boundary().await;
    let reads = 20;
    for _ in 0..reads {
        assert_eq!(fetch_as(&app, &app.identity, &id).await, 200);
    }
    let record = eventually("the read_rate alert", || async {
        alerts_about(&app, "read_rate", "tester").await.pop()
    })
    .await;
    let detail = record.get_document("alert").expect("detail");
    let (count, threshold) = (
        detail.get_i64("count").expect("count"),
        detail.get_i64("threshold").expect("threshold"),
    );
    assert!(
        threshold >= 9 && count > threshold && count <= reads,
        "{detail}"
    );
    let minute = detail
        .get_datetime("window_end")
        .expect("end")
        .timestamp_millis()
        - detail
            .get_datetime("window_start")
            .expect("start")
            .timestamp_millis();
    assert_eq!(minute, 60_000);
    let event = eventually("the webhook's alert", || async {
        posted(&received, "read_rate", "tester").pop()
    })
    .await;
    assert_eq!(event["subject_kind"], "service");
    // More reads in the window: no second alert.
    for _ in 0..10 {
        assert_eq!(fetch_as(&app, &app.identity, &id).await, 200);
    }
    eventually("every read counted", || async {
        (reads_counted(&app, "tester").await == reads + 10).then_some(())
    })
    .await;
    let records = alerts_about(&app, "read_rate", "tester").await;
    assert_once_per_window(&records);
    assert!(records.len() <= 2);
    for service in ["quiet", "sparse"] {
        assert!(
            alerts_about(&app, "read_rate", service).await.is_empty(),
            "{service}"
        );
    }
}
