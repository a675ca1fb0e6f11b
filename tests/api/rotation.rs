//! Rotation: schedules, staging labels, verification with a single-use read
//! token, automatic rollback, expiry, the scheduler's lease and fencing, and a
//! chaos run. Verify, health and webhook receivers are real HTTP servers on
//! 127.0.0.1 (a few lines over a tokio listener) that the test switches
//! between answering 200, answering 500 and refusing connections.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{b64, call, spawn_app_with, Identity, TestApp};

const SIGNING: &str = "rotation-test-signing-secret-5b1e0c9d7a";

/// How a receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    Down,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    headers: HashMap<String, String>,
    body: Value,
    raw: String,
    /// For a verify call, when the receiver reads with the token: the two
    /// reads' (status, body) and the current value's (status, body) meanwhile.
    reads: Vec<(u16, Value)>,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    /// Starts a receiver; with `app`, a verify call reads the pending value
    /// with its token twice, and the current value as `reader`.
    async fn start(app: Option<(String, Identity)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (m, g) = (mode.clone(), got.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (m, g, app) = (m.clone(), g.clone(), app.clone());
                tokio::spawn(async move {
                    let answer = *m.lock().unwrap();
                    if answer == Mode::Down {
                        // Refused before anything is read: the sender sees a broken connection.
                        drop(sock);
                        return;
                    }
                    let Some((headers, raw)) = read_request(&mut sock).await else {
                        return;
                    };
                    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                    let mut reads = Vec::new();
                    if let (Some((address, reader)), Some(token)) =
                        (&app, body["read_token"].as_str())
                    {
                        let url = format!(
                            "{address}/api/secrets/{}/{}",
                            body["project"].as_str().unwrap_or(""),
                            body["path"].as_str().unwrap_or("")
                        );
                        let client = reqwest::Client::new();
                        for _ in 0..2 {
                            let res = client
                                .get(format!("{url}?stage=pending"))
                                .header("x-read-token", token)
                                .send()
                                .await
                                .expect("read with token");
                            let status = res.status().as_u16();
                            reads.push((status, res.json().await.unwrap_or(Value::Null)));
                        }
                        let res = client
                            .get(&url)
                            .header("x-service", &reader.service)
                            .header("x-token", &reader.token)
                            .send()
                            .await
                            .expect("read current");
                        let status = res.status().as_u16();
                        reads.push((status, res.json().await.unwrap_or(Value::Null)));
                    }
                    g.lock().unwrap().push(Got {
                        headers,
                        body,
                        raw,
                        reads,
                    });
                    let status = if answer == Mode::Ok {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { url, mode, got }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.got().into_iter().map(|g| g.body).collect()
    }
}

async fn read_request(
    sock: &mut tokio::net::TcpStream,
) -> Option<(HashMap<String, String>, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..]).to_string();
    Some((headers, body))
}

/// Checks `X-Signature: t=<unix>,v1=<hex HMAC-SHA256(SIGNING, "<t>.<body>")>`.
fn signed(g: &Got) -> bool {
    use hmac::{Hmac, Mac};
    let Some(sig) = g.headers.get("x-signature") else {
        return false;
    };
    let Some((t, v1)) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SIGNING.as_bytes()).expect("key");
    mac.update(format!("{t}.{}", g.raw).as_bytes());
    hex::encode(mac.finalize().into_bytes()) == v1
}

async fn app_with(events: &Receiver, extra: &[(&str, &str)]) -> TestApp {
    let mut env: Vec<(&str, &str)> = vec![
        ("WEBHOOK_URL", events.url.as_str()),
        ("WEBHOOK_SECRET", SIGNING),
        ("ROTATION_RETRY_MS", "20"),
        ("ROTATION_SCAN_MS", "200"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

async fn create(app: &TestApp, path: &str, value: &str) {
    let res = call(
        app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "rot", "path": path, "value": value })),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
}

async fn read(app: &TestApp, path: &str, query: &str) -> crate::helpers::Response {
    app.get(&format!("/api/secrets/rot/{path}{query}")).await
}

async fn rotate(app: &TestApp, path: &str, body: Option<Value>) -> crate::helpers::Response {
    call(
        app,
        &app.identity,
        Method::POST,
        &format!("/api/secrets/rot/{path}/rotate"),
        body,
    )
    .await
}

async fn put_rotation(app: &TestApp, path: &str, body: Value) -> crate::helpers::Response {
    call(
        app,
        &app.identity,
        Method::PUT,
        &format!("/api/secrets/rot/{path}/rotation"),
        Some(body),
    )
    .await
}

/// Audit records of `action` on `rot/path`, oldest first, once `count` are there (and settled).
async fn audited(
    app: &TestApp,
    path: &str,
    action: &str,
    count: usize,
) -> Vec<mongodb::bson::Document> {
    use futures_util::TryStreamExt as _;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records: Vec<mongodb::bson::Document> = app
            .audit_logs()
            .find(doc! { "project": "rot", "path": path, "action": action })
            .sort(doc! { "ts": 1 })
            .await
            .expect("audit query")
            .try_collect()
            .await
            .expect("audit records");
        let settled = records
            .iter()
            .all(|r| r.get_str("outcome") != Ok("pending"));
        if records.len() >= count && settled {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{count} `{action}` records: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `events` holds an event of `kind` for `rot/path`.
async fn event(events: &Receiver, kind: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = events
            .events()
            .into_iter()
            .find(|e| e["kind"] == kind && e["path"] == path)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no `{kind}` event for {path}: {:?}",
            events.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value_of(res: &crate::helpers::Response) -> String {
    res.json()["value_b64"]
        .as_str()
        .expect("value_b64")
        .to_string()
}

#[tokio::test]
async fn a_manual_rotation_moves_the_staging_labels() {
    let events = Receiver::start(None).await;
    let app = app_with(&events, &[]).await;
    create(&app, "db/password", "first-value").await;

    let res = rotate(&app, "db/password", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(
        (body["version"].as_i64(), body["previous_version"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["tries"], 1);

    // current: a generated 32-character password; previous: the old value.
    let current = read(&app, "db/password", "").await;
    assert_eq!(current.status, 200);
    let generated = current.json()["value"].as_str().expect("text").to_string();
    assert_eq!(generated.len(), 32);
    assert_eq!(current.json()["version"], 2);
    let previous = read(&app, "db/password", "?stage=previous").await;
    assert_eq!(previous.json()["value"], "first-value");
    assert_eq!(previous.json()["version"], 1);
    assert_eq!(previous.json()["current_version"], 2);
    assert_eq!(
        read(&app, "db/password", "?stage=current").await.json()["value"],
        generated.as_str()
    );
    read(&app, "db/password", "?stage=pending")
        .await
        .assert_error(404, "version_not_found");
    read(&app, "db/password", "?stage=next")
        .await
        .assert_error(400, "invalid_query");
    read(&app, "db/password", "?stage=previous&version=1")
        .await
        .assert_error(400, "invalid_query");

    // An explicit value instead of the generator, as text or base64.
    let res = rotate(
        &app,
        "db/password",
        Some(json!({ "value_b64": b64(b"chosen") })),
    )
    .await;
    assert_eq!(res.json()["version"], 3, "{}", res.text);
    assert_eq!(
        read(&app, "db/password", "").await.json()["value"],
        "chosen"
    );
    rotate(
        &app,
        "db/password",
        Some(json!({ "value": "a", "value_b64": "YQ==" })),
    )
    .await
    .assert_error(400, "invalid_value");
    rotate(
        &app,
        "db/password",
        Some(json!({ "value_b64": "not base64!" })),
    )
    .await
    .assert_error(400, "invalid_base64");
    rotate(&app, "db/password", Some(json!({ "nonsense": 1 })))
        .await
        .assert_error(400, "invalid_field");
    rotate(&app, "db/missing", None)
        .await
        .assert_error(404, "secret_not_found");

    // An ordinary write after rotations goes above every version, and the old current is `previous`.
    let res = call(
        &app,
        &app.identity,
        Method::PATCH,
        "/api/secrets/rot/db/password",
        Some(json!({ "value": "patched" })),
    )
    .await;
    assert_eq!(res.json()["version"], 4, "{}", res.text);
    assert_eq!(
        read(&app, "db/password", "?stage=previous").await.json()["value"],
        "chosen"
    );

    // Rights: rotating needs `write`; a reader may read stages but not rotate.
    let reader = Identity::new("reader");
    let app2 = app_with(
        &events,
        &[
            ("TOKEN_reader", &reader.token.clone()),
            ("ALLOW_reader", "nothing:"),
        ],
    )
    .await;
    create(&app2, "x", "v").await;
    call(
        &app2,
        &reader,
        Method::POST,
        "/api/secrets/rot/x/rotate",
        None,
    )
    .await
    .assert_error(403, "forbidden");

    // One `rotate` record per rotation, each step its own record, and events without values.
    // (Bodies refused before the vault are audited without the path.)
    let rotations = audited(&app, "db/password", "rotate", 3).await;
    let outcomes: Vec<&str> = rotations
        .iter()
        .map(|r| r.get_str("outcome").unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["success", "success", "invalid"], "{rotations:?}");
    assert_eq!(
        audited(&app, "db/password", "rotation_stage", 2)
            .await
            .len(),
        2
    );
    assert_eq!(
        audited(&app, "db/password", "rotation_promote", 2)
            .await
            .len(),
        2
    );
    let promoted = event(&events, "secret_promoted", "db/password").await;
    assert_eq!(promoted["version"], 2);
    event(&events, "secret_pending", "db/password").await;
    let all = serde_json::to_string(&events.events()).expect("json");
    assert!(!all.contains(&generated) && !all.contains("first-value") && !all.contains("chosen"));
}

#[tokio::test]
async fn a_schedule_is_set_shown_bounded_and_removed() {
    let events = Receiver::start(None).await;
    let app = app_with(&events, &[]).await;
    create(&app, "api/key", "v1").await;

    let res = put_rotation(&app, "api/key", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(body["every"], "90d", "default 90 days: {body}");
    assert_eq!(
        body["generator"],
        json!({ "kind": "password", "length": 32 })
    );
    let next: chrono::DateTime<chrono::Utc> = body["next_rotation_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    let in_90d = chrono::Utc::now() + chrono::Duration::days(90);
    assert!((next - in_90d).num_seconds().abs() < 60, "{next}");
    assert!(body["last_rotation"].is_null());

    let res = put_rotation(
        &app,
        "api/key",
        json!({ "cron": "0 3 * * 1", "window": "1h", "generator": { "kind": "token", "length": 48 } }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let next: chrono::DateTime<chrono::Utc> = res.json()["next_rotation_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    use chrono::{Datelike as _, Timelike as _};
    assert_eq!(
        (next.weekday(), next.hour()),
        (chrono::Weekday::Mon, 3),
        "{next}"
    );
    let shown = app.get("/api/secrets/rot/api/key/rotation").await;
    assert_eq!(shown.json()["cron"], "0 3 * * 1");
    assert_eq!(shown.json()["window"], "1h");

    // The rotation uses the schedule's generator; the outcome is on the schedule.
    assert_eq!(rotate(&app, "api/key", None).await.status, 200);
    let value = read(&app, "api/key", "").await.json()["value"]
        .as_str()
        .expect("text")
        .to_string();
    assert_eq!(value.len(), 48);
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let shown = app.get("/api/secrets/rot/api/key/rotation").await.json();
    let last = &shown["last_rotation"];
    assert_eq!(
        (
            last["outcome"].as_str(),
            last["from_version"].as_i64(),
            last["to_version"].as_i64(),
            last["trigger"].as_str()
        ),
        (Some("success"), Some(1), Some(2), Some("manual")),
        "{shown}"
    );

    // Every bound, with what it gets.
    let long = "9".repeat(200);
    for (body, why) in [
        (json!({ "every": "30m" }), "under an hour"),
        (json!({ "every": "3651d" }), "over ten years"),
        (json!({ "every": "often" }), "not a duration"),
        (json!({ "every": long }), "too long"),
        (json!({ "cron": "* * * * *" }), "every minute"),
        (json!({ "cron": "0 3 * *" }), "four fields"),
        (json!({ "every": "1d", "cron": "0 3 * * 1" }), "both"),
        (
            json!({ "every": "1d", "window": "1d" }),
            "window as long as the period",
        ),
        (
            json!({ "every": "90d", "window": "25h" }),
            "window over a day",
        ),
        (
            json!({ "generator": { "kind": "password", "length": 7 } }),
            "too short",
        ),
        (
            json!({ "generator": { "kind": "password", "length": 4097 } }),
            "too long",
        ),
        (json!({ "generator": { "kind": "uuid" } }), "unknown kind"),
        (
            json!({ "generator": { "kind": "token", "charset": "ab" } }),
            "charset on token",
        ),
        (
            json!({ "generator": { "kind": "password", "charset": "aa" } }),
            "repeated charset",
        ),
        (json!({ "verify_url": "ftp://127.0.0.1/" }), "not http"),
        (
            json!({ "health_url": "http://user:pw@127.0.0.1/" }),
            "credentials in the URL",
        ),
        (json!({ "expires_after": "10m" }), "expiry under an hour"),
        (
            json!({ "expires_after": "1d", "expires_at": "2030-01-01T00:00:00Z" }),
            "both expiries",
        ),
        (
            json!({ "expires_at": "1969-12-31T00:00:00Z" }),
            "expiry before 2000",
        ),
        (
            json!({ "expires_at": "+10000-01-01T00:00:00Z" }),
            "expiry after 9999",
        ),
    ] {
        let res = put_rotation(&app, "api/key", body.clone()).await;
        assert_eq!(res.status, 400, "{why}: {body} -> {}", res.text);
        assert_eq!(res.json()["error"]["code"], "invalid_rotation", "{why}");
    }
    put_rotation(&app, "api/key", json!({ "every": 5 }))
        .await
        .assert_error(400, "invalid_field");
    put_rotation(&app, "api/key", json!({ "unknown": 5 }))
        .await
        .assert_error(400, "invalid_field");
    put_rotation(&app, "nope", json!({}))
        .await
        .assert_error(404, "secret_not_found");

    // Receivers need the signing key.
    let unsigned = spawn_app_with(&[]).await;
    let res = call(
        &unsigned,
        &unsigned.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "rot", "path": "k", "value": "v" })),
    )
    .await;
    assert_eq!(res.status, 201);
    put_rotation(
        &unsigned,
        "k",
        json!({ "verify_url": "http://127.0.0.1:9/" }),
    )
    .await
    .assert_error(400, "invalid_rotation");

    // `rotation` and `rotate` are sub-resources, not secret names.
    let res = call(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "rot", "path": "a/rotation", "value": "v" })),
    )
    .await;
    res.assert_error(400, "invalid_path");

    // Stop it.
    let res = call(
        &app,
        &app.identity,
        Method::DELETE,
        "/api/secrets/rot/api/key/rotation",
        None,
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.text);
    app.get("/api/secrets/rot/api/key/rotation")
        .await
        .assert_error(404, "rotation_not_found");
    call(
        &app,
        &app.identity,
        Method::DELETE,
        "/api/secrets/rot/api/key/rotation",
        None,
    )
    .await
    .assert_error(404, "rotation_not_found");
    // Two set, twenty refused by the vault (the bodies refused before it carry no path).
    assert_eq!(audited(&app, "api/key", "rotation_put", 22).await.len(), 22);
    assert_eq!(
        audited(&app, "api/key", "rotation_delete", 2).await.len(),
        2
    );
}

#[tokio::test]
async fn the_verifier_reads_the_pending_value_once_and_readers_keep_the_current_one() {
    let events = Receiver::start(None).await;
    let app = app_with(&events, &[]).await;
    // The verifier reads the current value as the default identity too.
    let verify = Receiver::start(Some((app.address.clone(), app.identity.clone()))).await;
    let health = Receiver::start(None).await;
    create(&app, "svc/token", "old-value").await;
    let res = put_rotation(
        &app,
        "svc/token",
        json!({ "every": "30d", "verify_url": verify.url, "health_url": health.url,
                "generator": { "kind": "password", "length": 24, "charset": "abcdef0123456789" } }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);

    let res = rotate(&app, "svc/token", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let now_current = read(&app, "svc/token", "").await;
    let new_value = value_of(&now_current);

    let calls = verify.got();
    assert_eq!(calls.len(), 1);
    let v = &calls[0];
    assert!(signed(v), "signed like the webhooks: {:?}", v.headers);
    assert_eq!(v.body["stage"], "verify");
    assert_eq!(
        (
            v.body["project"].as_str(),
            v.body["path"].as_str(),
            v.body["version"].as_i64()
        ),
        (Some("rot"), Some("svc/token"), Some(2))
    );
    // First use of the token: the pending value, which is what became current.
    assert_eq!(v.reads[0].0, 200, "{:?}", v.reads[0].1);
    assert_eq!(v.reads[0].1["value_b64"].as_str(), Some(new_value.as_str()));
    assert_eq!(v.reads[0].1["version"], 2);
    assert_eq!(
        v.reads[0].1["current_version"], 1,
        "still pending while verified"
    );
    // Second use: refused.
    assert_eq!(v.reads[1].0, 401, "{:?}", v.reads[1].1);
    // A reader meanwhile got the old value.
    assert_eq!(v.reads[2].0, 200);
    assert_eq!(v.reads[2].1["value"], "old-value");
    assert_eq!(v.reads[2].1["version"], 1);
    // Then health was told of version 2.
    let h = health.got();
    assert_eq!(h.len(), 1);
    assert!(signed(&h[0]));
    assert_eq!(
        (h[0].body["stage"].as_str(), h[0].body["version"].as_i64()),
        (Some("health"), Some(2))
    );
    assert!(h[0].body.get("read_token").is_none());

    // A used, unknown or misplaced token reads nothing.
    let token = v.body["read_token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 64);
    let anon = |q: &str, t: &str| {
        app.http
            .get(format!("{}/api/secrets/rot/svc/token{q}", app.address))
            .header("x-read-token", t.to_string())
    };
    TestApp::send(anon("?stage=pending", &token))
        .await
        .assert_error(401, "unauthorized");
    TestApp::send(anon("?stage=pending", "0".repeat(64).as_str()))
        .await
        .assert_error(401, "unauthorized");
    TestApp::send(anon("?stage=pending", &"a".repeat(200)))
        .await
        .assert_error(401, "unauthorized");
    TestApp::send(anon("", &token))
        .await
        .assert_error(400, "invalid_query");
    TestApp::send(anon("?stage=previous", &token))
        .await
        .assert_error(400, "invalid_query");

    // Audited: the one good read with the token as `rotation_verify_read`;
    // the refusals as refused authentications of `read-token` (counted, like
    // any bad credential); no token in any record.
    let token_reads = audited(&app, "svc/token", "rotation_verify_read", 1).await;
    assert_eq!(token_reads.len(), 1);
    assert_eq!(token_reads[0].get_str("outcome"), Ok("success"));
    assert_eq!(token_reads[0].get_str("actor"), Ok("read-token"));
    assert_eq!(token_reads[0].get_i64("version").ok(), Some(2));
    let refusals = {
        use futures_util::TryStreamExt as _;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<mongodb::bson::Document> = app
                .audit_logs()
                .find(doc! { "action": "authenticate", "actor": "read-token" })
                .await
                .expect("query")
                .try_collect()
                .await
                .expect("records");
            if !found.is_empty() || Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(!refusals.is_empty(), "refused token reads are audited");
    assert!(refusals
        .iter()
        .all(|r| r.get_str("error_code") == Ok("unauthorized")));
    let trail = format!("{:?}", audited(&app, "svc/token", "rotate", 1).await)
        + &format!("{token_reads:?}");
    assert!(!trail.contains(&token) && !trail.contains(&new_value));
    let all_events = serde_json::to_string(&events.events()).expect("json");
    assert!(!all_events.contains(&token));
    // Guessing is limited like any credential: after the burst, 429.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            TestApp::send(anon("?stage=pending", &"f".repeat(64)))
                .await
                .status,
        );
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let decoded = String::from_utf8(STANDARD.decode(&new_value).expect("b64")).expect("utf8");
    assert!(!all_events.contains(&decoded));
    assert!(decoded.bytes().all(|b| b"abcdef0123456789".contains(&b)));
}

#[tokio::test]
async fn a_refused_verification_never_becomes_current() {
    let events = Receiver::start(None).await;
    let app = app_with(&events, &[]).await;
    let verify = Receiver::start(Some((app.address.clone(), app.identity.clone()))).await;
    create(&app, "v/secret", "stable").await;
    assert_eq!(
        put_rotation(&app, "v/secret", json!({ "verify_url": verify.url }))
            .await
            .status,
        200
    );

    for (mode, reason) in [(Mode::Fail, "answered 500"), (Mode::Down, "unreachable")] {
        verify.set(mode);
        let res = rotate(&app, "v/secret", None).await;
        let message = res.assert_error(502, "rotation_failed");
        assert!(message.contains(reason), "{message}");
        let current = read(&app, "v/secret", "").await;
        assert_eq!(current.json()["value"], "stable");
        assert_eq!(current.json()["version"], 1);
        read(&app, "v/secret", "?stage=pending")
            .await
            .assert_error(404, "version_not_found");
    }
    // 500: three calls (each read the pending value once); down: none recorded.
    let calls = verify.got();
    assert_eq!(calls.len(), 3);
    let shown = app.get("/api/secrets/rot/v/secret/rotation").await.json();
    assert_eq!(shown["last_rotation"]["outcome"], "failed", "{shown}");
    assert_eq!(shown["history"].as_array().map(Vec::len), Some(2));
    // The discarded pending values are marked failed and were never current.
    let doc = app
        .secrets()
        .find_one(doc! { "project": "rot", "path": "v/secret" })
        .await
        .expect("find")
        .expect("doc");
    let failed = doc.get_array("failed_versions").expect("failed_versions");
    assert_eq!(failed.len(), 6, "{failed:?}");
    assert_eq!(doc.get_i64("current_version").ok(), Some(1));
    let discarded: BTreeSet<String> = calls
        .iter()
        .filter_map(|c| c.reads[0].1["value_b64"].as_str().map(str::to_string))
        .collect();
    assert_eq!(discarded.len(), 3);
    assert!(calls.iter().all(|c| c.reads[2].1["value"] == "stable"));

    // Audited once each as rotation_failed, and published.
    let records = audited(&app, "v/secret", "rotate", 2).await;
    assert!(
        records
            .iter()
            .all(|r| r.get_str("error_code") == Ok("rotation_failed")),
        "{records:?}"
    );
    assert_eq!(
        audited(&app, "v/secret", "rotation_discard", 6).await.len(),
        6
    );
    let failed_event = event(&events, "rotation_failed", "v/secret").await;
    assert!(failed_event.get("value").is_none());

    // Back up: the next rotation succeeds.
    verify.set(Mode::Ok);
    let res = rotate(&app, "v/secret", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["version"], 8, "above every failed version");
    let current = value_of(&read(&app, "v/secret", "").await);
    assert!(!discarded.contains(&current));
}

#[tokio::test]
async fn a_failing_health_check_rolls_back_within_five_seconds() {
    let events = Receiver::start(None).await;
    let app = app_with(&events, &[]).await;
    let health = Receiver::start(None).await;
    create(&app, "h/secret", "known-good").await;
    assert_eq!(
        put_rotation(&app, "h/secret", json!({ "health_url": health.url }))
            .await
            .status,
        200
    );

    health.set(Mode::Fail);
    let res = rotate(&app, "h/secret", None).await;
    let message = res.assert_error(502, "rotation_failed");
    assert!(message.contains("rolled back to version 1"), "{message}");
    let current = read(&app, "h/secret", "").await;
    assert_eq!(
        (
            current.json()["value"].as_str(),
            current.json()["version"].as_i64()
        ),
        (Some("known-good"), Some(1))
    );
    read(&app, "h/secret", "?stage=previous")
        .await
        .assert_error(404, "version_not_found");

    let promotions = audited(&app, "h/secret", "rotation_promote", 3).await;
    let rollbacks = audited(&app, "h/secret", "rotation_rollback", 3).await;
    for (p, r) in promotions.iter().zip(&rollbacks) {
        let ms = r.get_datetime("ts").expect("ts").timestamp_millis()
            - p.get_datetime("ts").expect("ts").timestamp_millis();
        assert!(
            (0..5000).contains(&ms),
            "rolled back {ms} ms after promotion"
        );
        assert_eq!(
            r.get_i64("version").ok(),
            Some(1),
            "the rollback names the restored version"
        );
        assert_eq!(r.get_str("outcome"), Ok("success"));
    }
    let rolled = event(&events, "secret_rolled_back", "h/secret").await;
    assert_eq!(rolled["version"], 1);
    event(&events, "rotation_failed", "h/secret").await;
    let doc = app
        .secrets()
        .find_one(doc! { "project": "rot", "path": "h/secret" })
        .await
        .expect("find")
        .expect("doc");
    assert_eq!(doc.get_array("failed_versions").expect("failed").len(), 3);
    let shown = app.get("/api/secrets/rot/h/secret/rotation").await.json();
    assert_eq!(shown["last_rotation"]["outcome"], "rolled_back", "{shown}");

    health.set(Mode::Ok);
    let res = rotate(&app, "h/secret", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        read(&app, "h/secret", "?stage=previous").await.json()["value"],
        "known-good"
    );
    // One rotation rolled back, one succeeded: so says `/metrics`.
    let outcome = |o: &str| format!("secret_manager_rotations_total{{outcome=\"{o}\"}}");
    assert_eq!(
        crate::helpers::metric(&app, &outcome("rolled_back")).await,
        Some(1.0)
    );
    assert_eq!(
        crate::helpers::metric(&app, &outcome("success")).await,
        Some(1.0)
    );
    assert_eq!(
        crate::helpers::metric(&app, &outcome("failed")).await,
        Some(0.0)
    );
}

#[tokio::test]
async fn expired_secrets_answer_410_warn_once_and_rotate_before_expiry() {
    let events = Receiver::start(None).await;
    // Without the scheduler: expiry alone.
    let quiet = app_with(&events, &[("ROTATION_SCHEDULER", "false")]).await;
    create(&quiet, "gone", "v").await;
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let res = put_rotation(&quiet, "gone", json!({ "expires_at": past })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Every read path: named, by version, a stage, the UUID fetch.
    read(&quiet, "gone", "")
        .await
        .assert_error(410, "secret_expired");
    read(&quiet, "gone", "?version=1")
        .await
        .assert_error(410, "secret_expired");
    read(&quiet, "gone", "?stage=current")
        .await
        .assert_error(410, "secret_expired");
    let id = quiet.get("/api/secrets/rot/gone/versions").await.json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    quiet.fetch(&id).await.assert_error(410, "secret_expired");
    let refused = audited(&quiet, "gone", "read", 3).await;
    assert!(refused
        .iter()
        .all(|r| r.get_str("error_code") == Ok("secret_expired")));
    // Removing the schedule removes the expiry.
    let res = call(
        &quiet,
        &quiet.identity,
        Method::DELETE,
        "/api/secrets/rot/gone/rotation",
        None,
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(read(&quiet, "gone", "").await.status, 200);
    // ALLOW_EXPIRED_READS serves them anyway.
    let lenient = app_with(
        &events,
        &[
            ("ALLOW_EXPIRED_READS", "true"),
            ("ROTATION_SCHEDULER", "false"),
        ],
    )
    .await;
    create(&lenient, "late", "still-here").await;
    put_rotation(&lenient, "late", json!({ "expires_at": past })).await;
    assert_eq!(
        read(&lenient, "late", "").await.json()["value"],
        "still-here"
    );

    let app = app_with(&events, &[("EXPIRY_WARNING_DAYS", "7")]).await;
    // A secret expiring in 3 days: one warning now; rotated an hour before expiry, not now.
    create(&app, "soon", "v1").await;
    let in_3d = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let shown = put_rotation(&app, "soon", json!({ "expires_at": in_3d }))
        .await
        .json();
    let next: chrono::DateTime<chrono::Utc> = shown["next_rotation_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    let expected = chrono::Utc::now() + chrono::Duration::days(3) - chrono::Duration::hours(1);
    assert!((next - expected).num_seconds().abs() < 60, "{next}");
    let warning = event(&events, "secret_expiring", "soon").await;
    assert!(warning.get("value").is_none());

    // A secret already past its expiry, with a schedule: the scheduler rotates
    // it at once; the fixed expiry belonged to the old value.
    create(&app, "old", "stale").await;
    assert_eq!(
        put_rotation(&app, "old", json!({ "expires_at": past, "every": "30d" }))
            .await
            .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = app.get("/api/secrets/rot/old/rotation").await.json();
        if shown["last_rotation"]["outcome"] == "success" {
            assert_eq!(shown["last_rotation"]["trigger"], "schedule");
            assert!(shown.get("expires_at").is_none(), "{shown}");
            let next: chrono::DateTime<chrono::Utc> = shown["next_rotation_at"]
                .as_str()
                .expect("next")
                .parse()
                .expect("time");
            assert!(
                next > chrono::Utc::now() + chrono::Duration::days(29),
                "{next}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not rotated: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = read(&app, "old", "").await;
    assert_eq!(res.json()["version"], 2, "{}", res.text);
    let rotated = audited(&app, "old", "rotate", 1).await;
    assert_eq!(rotated[0].get_str("actor"), Ok("rotation-scheduler"));
    assert_eq!(rotated[0].get_str("channel"), Ok("scheduler"));

    // With `expires_after`, each promotion moves the expiry.
    assert_eq!(
        put_rotation(&app, "old", json!({ "expires_after": "30d" }))
            .await
            .status,
        200
    );
    assert_eq!(rotate(&app, "old", None).await.status, 200);
    let shown = app.get("/api/secrets/rot/old/rotation").await.json();
    let expires: chrono::DateTime<chrono::Utc> = shown["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("time");
    assert!(
        (expires - (chrono::Utc::now() + chrono::Duration::days(30)))
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(read(&app, "old", "").await.status, 200);

    // One warning per expiry: give the scheduler a few more scans.
    let scans = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < scans {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warnings = events
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "secret_expiring" && e["path"] == "soon")
        .count();
    assert_eq!(warnings, 1);
}

#[tokio::test]
async fn settings_are_validated() {
    for (name, value) in [
        ("EXPIRY_WARNING_DAYS", "366"),
        ("ALLOW_EXPIRED_READS", "perhaps"),
        ("ROTATION_SCHEDULER", "2"),
        ("ROTATION_LEASE_SECS", "2"),
        ("ROTATION_SCAN_MS", "10"),
        ("ROTATION_RETRY_MS", "0"),
    ] {
        let e = crate::helpers::test_config(&[(name, value)]).expect_err(name);
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[tokio::test]
async fn a_paused_old_leader_cannot_write_after_a_newer_one() {
    use secret_manager::store::rotation as store;
    let app = spawn_app_with(&[("ROTATION_SCHEDULER", "false")]).await;
    create(&app, "f/secret", "v1").await;
    let db = &app.db;
    let old = store::acquire(db, "fence-test", "old", 10_000)
        .await
        .expect("acquire")
        .expect("free");
    // Not while the lease runs.
    assert!(store::acquire(db, "fence-test", "new", 10_000)
        .await
        .expect("acquire")
        .is_none());
    // The old holder pauses past its lease; a new holder takes it with a higher token.
    db.collection::<mongodb::bson::Document>(store::LEASES)
        .update_one(
            doc! { "_id": "fence-test" },
            doc! { "$set": { "expires_at": mongodb::bson::DateTime::from_millis(0) } },
        )
        .await
        .expect("expire");
    let new = store::acquire(db, "fence-test", "new", 10_000)
        .await
        .expect("acquire")
        .expect("expired");
    assert!(new > old);
    assert!(
        !store::renew(db, "fence-test", "old", old, 10_000)
            .await
            .expect("renew"),
        "the old holder cannot renew"
    );
    assert!(store::renew(db, "fence-test", "new", new, 10_000)
        .await
        .expect("renew"));

    let staged = store::load_at(db, "rot", "f/secret")
        .await
        .expect("load")
        .expect("doc");
    let stage = |epoch: i64,
                 rev: Option<i64>,
                 versions: Vec<secret_manager::store::secrets::VersionDoc>| {
        let id = staged.id.clone();
        async move {
            let mut pending = versions.last().expect("one").clone();
            pending.version = 2;
            let mut all = versions.clone();
            all.push(pending);
            store::stage(
                db,
                store::Stage {
                    id: &id,
                    rev,
                    current: 1,
                    epoch,
                    versions: &all,
                    pending: 2,
                    token: None,
                    replaces: None,
                },
            )
            .await
            .expect("stage")
        }
    };
    // The new leader writes; the old one, waking up with its stale read and token, cannot.
    assert!(stage(new, staged.rev, staged.versions.clone()).await);
    let fresh = store::load(db, &staged.id)
        .await
        .expect("load")
        .expect("doc");
    assert!(
        !stage(old, fresh.rev, fresh.versions.clone()).await,
        "a lower fencing token is refused"
    );
    assert!(!store::promote(db, &staged.id, 1, 2, old, "old", None)
        .await
        .expect("promote"));
    assert!(!store::discard(db, &staged.id, 2, old)
        .await
        .expect("discard"));
    assert!(store::promote(db, &staged.id, 1, 2, new, "new", None)
        .await
        .expect("promote"));
    assert!(!store::rollback(db, &staged.id, 2, 1, old, "old")
        .await
        .expect("rollback"));
    assert!(store::rollback(db, &staged.id, 2, 1, new, "new")
        .await
        .expect("rollback"));
}

/// Many rotations with a failure injected at each step (verify answering 500,
/// verify unreachable, health answering 500, health failing once), while a
/// reader loops: every run ends with a readable `current`, the reader never
/// saw a version that was only ever pending, and every rotation is audited
/// once with its outcome.
#[tokio::test]
async fn chaos_every_rotation_ends_readable_and_audited() {
    const ROUNDS: usize = 100;
    let events = Receiver::start(None).await;
    let app = app_with(
        &events,
        &[("ROTATION_RETRY_MS", "10"), ("ROTATION_SCHEDULER", "false")],
    )
    .await;
    let verify = Receiver::start(Some((app.address.clone(), app.identity.clone()))).await;
    let health = Receiver::start(None).await;
    create(&app, "chaos", "v1").await;
    let res = put_rotation(
        &app,
        "chaos",
        json!({ "verify_url": verify.url, "health_url": health.url }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let reader = {
        let (stop, seen) = (stop.clone(), seen.clone());
        let (http, url, who) = (
            app.http.clone(),
            format!("{}/api/secrets/rot/chaos", app.address),
            app.identity.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let res = http
                    .get(&url)
                    .header("x-service", &who.service)
                    .header("x-token", &who.token)
                    .send()
                    .await
                    .expect("read");
                assert_eq!(res.status().as_u16(), 200, "current is always readable");
                let body: Value = res.json().await.expect("json");
                let version = body["version"].as_i64().expect("version");
                assert_eq!(
                    body["current_version"].as_i64(),
                    Some(version),
                    "a read of current names current"
                );
                seen.lock().unwrap().push((
                    version,
                    body["value_b64"].as_str().expect("b64").to_string(),
                ));
            }
        })
    };

    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..ROUNDS {
        let (v, h) = match round % 5 {
            0 => (Mode::Ok, Mode::Ok),
            1 => (Mode::Fail, Mode::Ok),
            2 => (Mode::Down, Mode::Ok),
            3 => (Mode::Ok, Mode::Fail),
            _ => (Mode::Ok, Mode::Ok),
        };
        verify.set(v);
        health.set(h);
        let flip = round % 5 == 4;
        if flip {
            // Health fails the first try only: rolled back, then promoted on the second.
            health.set(Mode::Fail);
            let health = health.clone();
            let before = health.got().len();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while health.got().len() == before && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                health.set(Mode::Ok);
            });
        }
        let res = rotate(&app, "chaos", None).await;
        match res.status {
            200 => ok += 1,
            502 => {
                res.assert_error(502, "rotation_failed");
                failed += 1;
            }
            other => panic!("round {round}: {other} {}", res.text),
        }
        let current = read(&app, "chaos", "").await;
        assert_eq!(current.status, 200, "round {round}: {}", current.text);
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.await.expect("reader");
    println!("chaos: {ROUNDS} rotations ({ok} promoted, {failed} failed) in {elapsed:?}");
    assert_eq!(ok, ROUNDS * 2 / 5, "the all-ok and the flip rounds succeed");
    assert_eq!(failed, ROUNDS * 3 / 5);

    // Versions only ever pending (discarded after verify) were never read as current.
    let promoted: BTreeSet<i64> = audited(&app, "chaos", "rotation_promote", ROUNDS)
        .await
        .iter()
        .filter(|r| r.get_str("outcome") == Ok("success"))
        .filter_map(|r| r.get_i64("version").ok())
        .collect();
    let discarded: BTreeSet<i64> = audited(&app, "chaos", "rotation_discard", 1)
        .await
        .iter()
        .filter_map(|r| r.get_i64("version").ok())
        .collect();
    assert!(!discarded.is_empty());
    assert!(promoted.is_disjoint(&discarded));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() > ROUNDS,
        "the reader ran throughout ({} reads)",
        seen.len()
    );
    for (version, _) in &seen {
        assert!(
            *version == 1 || promoted.contains(version),
            "read version {version}, never promoted"
        );
    }
    let pending_values: BTreeSet<String> = verify
        .got()
        .iter()
        .filter(|c| {
            c.body["version"]
                .as_i64()
                .is_some_and(|v| discarded.contains(&v))
        })
        .filter_map(|c| c.reads[0].1["value_b64"].as_str().map(str::to_string))
        .collect();
    assert!(!pending_values.is_empty());
    assert!(
        seen.iter().all(|(_, v)| !pending_values.contains(v)),
        "a reader saw a discarded pending value"
    );

    // Every rotation audited once, with its outcome; nothing left pending.
    let records = audited(&app, "chaos", "rotate", ROUNDS).await;
    assert_eq!(records.len(), ROUNDS);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.get_str("outcome") == Ok("success"))
            .count(),
        ok
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.get_str("error_code") == Ok("rotation_failed"))
            .count(),
        failed
    );
    let doc = app
        .secrets()
        .find_one(doc! { "project": "rot", "path": "chaos" })
        .await
        .expect("find")
        .expect("doc");
    assert!(
        doc.get("pending_version").is_none(),
        "no pending version left: {doc:?}"
    );
}

/// A server process, killed (SIGKILL) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two real server processes on one database, once one of them holds the
/// scheduler's lease.
struct LeaderPair {
    pids: [u32; 2],
    /// Which of the two holds the lease, and the other.
    leader: usize,
    survivor: usize,
    /// The leader's fencing token.
    epoch: i64,
    db: mongodb::Database,
    who: Identity,
    /// The survivor's address.
    base: String,
    http: reqwest::Client,
}

impl LeaderPair {
    /// Starts both (with `extra` settings) and waits until one leads.
    async fn start(extra: &[(&str, &str)]) -> ([Option<Killed>; 2], Self) {
        use std::process::{Command, Stdio};
        let db_name = crate::helpers::unique_db_name();
        let master_key = secret_manager::crypto::MasterKey::generate()
            .to_base64()
            .to_string();
        let who = Identity::new("tester");
        let spawn = |port: u16| {
            Command::new(env!("CARGO_BIN_EXE_secret-manager"))
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs([
                    ("CONFIG_FILE", "/dev/null".to_string()),
                    ("HOST", "127.0.0.1".to_string()),
                    ("PORT", port.to_string()),
                    ("GRPC_PORT", "0".to_string()),
                    ("WORKERS", "1".to_string()),
                    ("MONGO_URI", crate::helpers::mongo_uri()),
                    ("MONGO_DB", db_name.clone()),
                    ("MASTER_KEY", master_key.clone()),
                    ("TOKEN_tester", who.token.clone()),
                    ("ALLOW_tester", "*".to_string()),
                    ("ROTATION_SCAN_MS", "200".to_string()),
                ])
                .envs(extra.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map(Killed)
                .expect("binary starts")
        };
        let ports = [crate::helpers::free_port(), crate::helpers::free_port()];
        let servers = [Some(spawn(ports[0])), Some(spawn(ports[1]))];
        let http = reqwest::Client::new();
        for port in ports {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !http
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                assert!(Instant::now() < deadline, "server on {port} did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let pids = [0, 1].map(|i| servers[i].as_ref().expect("running").0.id());
        let mut pair = Self {
            pids,
            leader: 0,
            survivor: 1,
            epoch: 0,
            db: crate::helpers::test_db(&db_name).await,
            who,
            base: String::new(),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let first = loop {
            if let Some(d) = pair.lease().await {
                break d;
            }
            assert!(Instant::now() < deadline, "nobody took the lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        pair.leader = pids
            .iter()
            .position(|p| *p == holder_pid(&first))
            .expect("a server leads");
        pair.survivor = 1 - pair.leader;
        pair.epoch = first.get_i64("epoch").expect("epoch");
        pair.base = format!("http://127.0.0.1:{}", ports[pair.survivor]);
        (servers, pair)
    }

    /// The scheduler's lease document, if anyone holds it.
    async fn lease(&self) -> Option<mongodb::bson::Document> {
        self.db
            .collection::<mongodb::bson::Document>("scheduler_lease")
            .find_one(doc! { "_id": "rotation" })
            .await
            .expect("lease")
    }

    /// A request to the survivor as the test identity.
    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-service", &self.who.service)
            .header("x-token", &self.who.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    }
}

/// The process id in a lease's `holder` (`pid<N>-...`).
fn holder_pid(lease: &mongodb::bson::Document) -> u32 {
    lease
        .get_str("holder")
        .expect("holder")
        .trim_start_matches("pid")
        .split('-')
        .next()
        .expect("pid")
        .parse()
        .expect("number")
}

/// Two real server processes share a database; the scheduler's leader is
/// killed (SIGKILL) and the other takes the lease within 15 s and rotates
/// what is due.
#[tokio::test]
async fn a_killed_scheduler_leader_is_replaced_within_15_seconds() {
    let (mut servers, pair) = LeaderPair::start(&[]).await;
    let (pids, leader, survivor, epoch) = (pair.pids, pair.leader, pair.survivor, pair.epoch);
    let lease = || pair.lease();
    let send = |method: Method, path: &str, body: Option<Value>| pair.send(method, path, body);

    // Kill the leader outright; meanwhile schedule a rotation that is due now.
    let killed_at = Instant::now();
    drop(servers[leader].take());
    let res = send(
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "rot", "path": "failover", "value": "v1" })),
    )
    .await
    .expect("create");
    assert_eq!(res.status().as_u16(), 201);
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let res = send(
        Method::PUT,
        "/api/secrets/rot/failover/rotation",
        Some(json!({ "expires_at": soon })),
    )
    .await
    .expect("put");
    assert_eq!(res.status().as_u16(), 200);

    loop {
        let d = lease().await.expect("lease");
        if holder_pid(&d) == pids[survivor] {
            assert!(
                d.get_i64("epoch").expect("epoch") > epoch,
                "a new fencing token"
            );
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no takeover within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed_at.elapsed();
    loop {
        let shown: Value = send(Method::GET, "/api/secrets/rot/failover/rotation", None)
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if shown["last_rotation"]["outcome"] == "success" {
            assert_eq!(shown["last_rotation"]["trigger"], "schedule");
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "not rotated: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "takeover after {took_over:?}, rotated after {:?}",
        killed_at.elapsed()
    );
    let current: Value = send(Method::GET, "/api/secrets/rot/failover", None)
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(current["version"], 2);
}

/// gRPC `GetSecretVersion` reads a staging label with `stage`.
#[tokio::test]
async fn grpc_reads_a_staging_label() {
    use secret_manager::grpc::pb;
    let app = spawn_app_with(&[("ROTATION_SCHEDULER", "false")]).await;
    create(&app, "g", "first").await;
    assert_eq!(
        rotate(&app, "g", Some(json!({ "value": "second" })))
            .await
            .status,
        200
    );
    let mut grpc = pb::secrets_service_client::SecretsServiceClient::connect(
        app.grpc_address.clone().expect("gRPC"),
    )
    .await
    .expect("connects");
    let ask = |stage: &str, version: i64| {
        let mut req = tonic::Request::new(pb::GetSecretVersionRequest {
            secret_name: "rot/g".into(),
            version,
            token: app.identity.token.clone(),
            stage: stage.into(),
        });
        req.metadata_mut()
            .insert("x-service", app.identity.service.parse().expect("ascii"));
        req
    };
    let previous = grpc
        .get_secret_version(ask("previous", 0))
        .await
        .expect("previous")
        .into_inner();
    assert_eq!(
        (
            previous.value.as_slice(),
            previous.version,
            previous.current_version
        ),
        (&b"first"[..], 1, 2)
    );
    let current = grpc
        .get_secret_version(ask("current", 0))
        .await
        .expect("current")
        .into_inner();
    assert_eq!(current.value, b"second");
    let none = grpc
        .get_secret_version(ask("pending", 0))
        .await
        .expect_err("no pending");
    assert_eq!(none.code(), tonic::Code::NotFound);
    let bad = grpc
        .get_secret_version(ask("later", 0))
        .await
        .expect_err("bad stage");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let both = grpc
        .get_secret_version(ask("current", 1))
        .await
        .expect_err("both");
    assert_eq!(both.code(), tonic::Code::InvalidArgument);
}

/// A verify receiver the test holds: each call reads the pending value with
/// its token (through `read_via`), tells the test (body, pending value as
/// base64), and answers only with the status the test then releases.
struct Gate {
    url: String,
    calls: tokio::sync::mpsc::UnboundedReceiver<(Value, Option<String>)>,
    release: tokio::sync::mpsc::UnboundedSender<u16>,
}

impl Gate {
    async fn start(read_via: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/verify", listener.local_addr().expect("addr"));
        let (call_tx, calls) = tokio::sync::mpsc::unbounded_channel();
        let (release, release_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (call_tx, release_rx, read_via) =
                    (call_tx.clone(), release_rx.clone(), read_via.clone());
                tokio::spawn(async move {
                    let Some((_, raw)) = read_request(&mut sock).await else {
                        return;
                    };
                    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                    let mut pending = None;
                    if let Some(token) = body["read_token"].as_str() {
                        let url = format!(
                            "{read_via}/api/secrets/{}/{}?stage=pending",
                            body["project"].as_str().unwrap_or(""),
                            body["path"].as_str().unwrap_or("")
                        );
                        if let Ok(res) = reqwest::Client::new()
                            .get(url)
                            .header("x-read-token", token)
                            .send()
                            .await
                        {
                            let json: Value = res.json().await.unwrap_or(Value::Null);
                            pending = json["value_b64"].as_str().map(str::to_string);
                        }
                    }
                    let _ = call_tx.send((body, pending));
                    let Some(status) = release_rx.lock().await.recv().await else {
                        return;
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            url,
            calls,
            release,
        }
    }

    /// The next verify call (within 30 s).
    async fn next(&mut self) -> (Value, Option<String>) {
        tokio::time::timeout(Duration::from_secs(30), self.calls.recv())
            .await
            .expect("a verify call within 30 s")
            .expect("the receiver runs")
    }
}

/// What `reader_loop` got: (version, value_b64) of each good read, and the
/// status of each other answer (0: no answer).
type Reads = (Vec<(i64, String)>, Vec<u16>);

/// Reads `url` (current) in a loop until stopped: every 200 must name its
/// version as current; other statuses (the database down) are counted.
/// Returns (version, value_b64) of each good read and the other statuses.
fn reader_loop(
    url: String,
    who: Identity,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let (mut seen, mut other) = (Vec::new(), Vec::new());
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok(res) = http
                .get(&url)
                .header("x-service", &who.service)
                .header("x-token", &who.token)
                .send()
                .await
            else {
                other.push(0);
                continue;
            };
            let status = res.status().as_u16();
            if status != 200 {
                other.push(status);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let body: Value = res.json().await.expect("json");
            let version = body["version"].as_i64().expect("version");
            assert_eq!(
                body["current_version"].as_i64(),
                Some(version),
                "a read of current names current"
            );
            seen.push((
                version,
                body["value_b64"].as_str().expect("b64").to_string(),
            ));
        }
        (seen, other)
    })
}

/// Every audit record of `rot/path`, oldest first.
async fn all_records(db: &mongodb::Database, path: &str) -> Vec<mongodb::bson::Document> {
    use futures_util::TryStreamExt as _;
    db.collection::<mongodb::bson::Document>("audit_logs")
        .find(doc! { "project": "rot", "path": path })
        .sort(doc! { "ts": 1 })
        .await
        .expect("audit query")
        .try_collect()
        .await
        .expect("audit records")
}

fn actions<'a>(
    records: &'a [mongodb::bson::Document],
    action: &str,
) -> Vec<&'a mongodb::bson::Document> {
    records
        .iter()
        .filter(|r| r.get_str("action") == Ok(action))
        .collect()
}

/// Chaos, the database down between steps: a dedicated SecantusDB
/// (scripts/db.sh) is stopped while a rotation's verify call is held (the
/// pending version is written), the verifier then passes, so the promotion
/// meets the outage; the database comes back on the same port and data, and
/// the rotation's next try replaces its own stranded pending version and
/// promotes. A reader loops throughout: every read it gets is `current`,
/// never the stranded pending value; every step that reached the database is
/// audited with a final outcome, and the rotation once, as a success.
#[tokio::test]
async fn chaos_the_database_down_between_stage_and_promote() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    let db_sh = |action: &'static str| {
        let dir = db_dir.path().to_str().expect("utf8").to_string();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("scripts/db.sh")
                .args([action, &dir])
                .env_remove("MONGO_URI")
                .output()
                .expect("db.sh");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .expect("utf8")
                .trim()
                .to_string()
        })
    };
    /// Stops the dedicated database however the test ends.
    struct StopDb(std::path::PathBuf);
    impl Drop for StopDb {
        fn drop(&mut self) {
            let _ = std::process::Command::new("scripts/db.sh")
                .arg("stop")
                .arg(&self.0)
                .env_remove("MONGO_URI")
                .output();
        }
    }
    let uri = db_sh("start").await.expect("db.sh start");
    let _stop_db = StopDb(db_dir.path().to_path_buf());
    let events = Receiver::start(None).await;
    let mut app = app_with(
        &events,
        &[
            ("MONGO_URI", &uri),
            ("MONGO_TIMEOUT_MS", "500"),
            ("ROTATION_SCHEDULER", "false"),
            // Long enough for the database to come back before the second try.
            ("ROTATION_RETRY_MS", "3000"),
        ],
    )
    .await;
    app.db = mongodb::Client::with_uri_str(&uri)
        .await
        .expect("client")
        .database(&app.db_name);
    let mut gate = Gate::start(app.address.clone()).await;
    create(&app, "outage", "v1").await;
    let res = put_rotation(&app, "outage", json!({ "verify_url": gate.url })).await;
    assert_eq!(res.status, 200, "{}", res.text);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = reader_loop(
        format!("{}/api/secrets/rot/outage", app.address),
        app.identity.clone(),
        stop.clone(),
    );
    let rotation = {
        let (http, url, who) = (
            app.http.clone(),
            format!("{}/api/secrets/rot/outage/rotate", app.address),
            app.identity.clone(),
        );
        tokio::spawn(async move {
            let res = http
                .post(url)
                .header("x-service", &who.service)
                .header("x-token", &who.token)
                .send()
                .await
                .expect("rotate");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        })
    };

    // Try 1: pending version 2 is written; the database goes down while the
    // verifier holds; then the verifier passes and the promotion fails.
    let (first, stranded) = gate.next().await;
    assert_eq!(first["version"], 2);
    let stranded = stranded.expect("the verifier read the pending value");
    db_sh("stop").await.expect("db.sh stop");
    gate.release.send(200).expect("release");
    let metrics = format!("{}/metrics", app.address);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = app
            .http
            .get(&metrics)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let failed = |op: &str| {
            text.lines().any(|l| {
                l.starts_with("secret_manager_operations_total{")
                    && l.contains(&format!("operation=\"{op}\""))
                    && !l.contains("outcome=\"success\"")
            })
        };
        // The promotion failed, and so did marking the version failed: it is stranded.
        if failed("rotation_promote") && failed("rotation_discard") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed promotion and discard during the outage:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        db_sh("start").await.expect("db.sh start"),
        uri,
        "same address"
    );

    // Try 2 (after the backoff): replaces the stranded version and promotes.
    let (second, fresh) = gate.next().await;
    assert_eq!(second["version"], 3, "{second}");
    let fresh = fresh.expect("pending value");
    gate.release.send(200).expect("release");
    let (status, body) = rotation.await.expect("rotation");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].as_i64(), body["tries"].as_i64()),
        (Some(3), Some(2))
    );

    // Readable again, with the promoted value; the reader saw only current values.
    let current = read(&app, "outage", "").await;
    assert_eq!(current.status, 200, "{}", current.text);
    assert_eq!(value_of(&current), fresh);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, other) = reader.await.expect("the reader saw only current versions");
    assert!(
        !seen.is_empty() && !other.is_empty(),
        "the reader ran through the outage"
    );
    assert!(
        other.iter().all(|s| *s == 503),
        "only 503s during the outage: {other:?}"
    );
    assert!(seen.iter().all(|(v, _)| *v == 1 || *v == 3), "{seen:?}");
    assert!(
        seen.iter().all(|(_, value)| *value != stranded),
        "a reader saw the stranded pending value"
    );
    let doc = app
        .secrets()
        .find_one(doc! { "project": "rot", "path": "outage" })
        .await
        .expect("find")
        .expect("doc");
    assert!(doc.get("pending_version").is_none(), "{doc:?}");
    assert_eq!(doc.get_i64("current_version").ok(), Some(3));
    assert!(
        doc.get_array("failed_versions")
            .expect("failed_versions")
            .iter()
            .any(|v| v.as_i64() == Some(2)),
        "the stranded version is marked failed: {doc:?}"
    );

    // Audited: the rotation once (success), both stages, the promotion that
    // happened; the promotion tried during the outage could store no record
    // (and changed nothing: its `pending` record comes first). Nothing `pending`.
    let records = audited(&app, "outage", "rotate", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].get_str("outcome"), Ok("success"));
    let all = all_records(&app.db, "outage").await;
    assert!(
        all.iter().all(|r| r.get_str("outcome") != Ok("pending")),
        "{all:?}"
    );
    let stages: Vec<i64> = actions(&all, "rotation_stage")
        .iter()
        .map(|r| r.get_i64("version").expect("version"))
        .collect();
    assert_eq!(stages, [2, 3]);
    let promotions: Vec<(i64, &str)> = actions(&all, "rotation_promote")
        .iter()
        .map(|r| {
            (
                r.get_i64("version").expect("version"),
                r.get_str("outcome").expect("outcome"),
            )
        })
        .collect();
    assert_eq!(promotions, [(3, "success")]);
}

/// Chaos, the scheduler's leader killed mid-rotation: two real server
/// processes share a database; the leader starts a scheduled rotation and is
/// SIGKILLed while the test holds its verify call (version 2 pending). The
/// survivor takes the lease (a higher fencing token), finds the schedule
/// still due, replaces the stranded pending version (marked `failed`) and
/// promotes version 3. A reader loops on the survivor throughout: every read
/// is `current` (version 1, then 3), never the stranded value.
///
/// Audit, as the code does it: the killed leader's steps that finished are
/// audited with their outcome (its `rotation_stage` of version 2, settled
/// before the verify call), nothing is left `pending`; its rotation has no
/// `rotate` record, since that record is written when a rotation ends and
/// that process never ended it. The survivor's rotation is the one `rotate`
/// record (success, trigger `schedule`), and its `rotation_stage` of version
/// 3 is what marked version 2 failed.
#[tokio::test]
async fn chaos_the_scheduler_leader_killed_mid_rotation() {
    let (mut servers, pair) = LeaderPair::start(&[
        ("WEBHOOK_SECRET", SIGNING),
        ("ROTATION_RETRY_MS", "20"),
        ("ROTATION_LEASE_SECS", "3"),
    ])
    .await;
    let (pids, leader, survivor, epoch) = (pair.pids, pair.leader, pair.survivor, pair.epoch);
    let (db, who, base) = (&pair.db, &pair.who, pair.base.clone());
    let lease = || pair.lease();
    let send = |method: Method, path: &str, body: Option<Value>| pair.send(method, path, body);
    let mut gate = Gate::start(base.clone()).await;
    let res = send(
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "rot", "path": "leader", "value": "v1" })),
    )
    .await
    .expect("create");
    assert_eq!(res.status().as_u16(), 201);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = reader_loop(
        format!("{base}/api/secrets/rot/leader"),
        who.clone(),
        stop.clone(),
    );
    // Due now: an expiry within the hour.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let res = send(
        Method::PUT,
        "/api/secrets/rot/leader/rotation",
        Some(json!({ "expires_at": soon, "verify_url": gate.url })),
    )
    .await
    .expect("put");
    assert_eq!(res.status().as_u16(), 200);

    // The leader's rotation: version 2 pending, its verify call held; killed.
    let (first_call, stranded) = gate.next().await;
    assert_eq!(first_call["version"], 2);
    let stranded = stranded.expect("the verifier read the pending value");
    let now = lease().await.expect("lease");
    assert_eq!(
        (holder_pid(&now), now.get_i64("epoch").ok()),
        (pids[leader], Some(epoch)),
        "the rotation is the leader's"
    );
    let killed_at = Instant::now();
    drop(servers[leader].take());
    gate.release.send(200).expect("release (to a dead caller)");

    // The survivor leads, rotates again (version 3) and promotes.
    let (second_call, fresh) = gate.next().await;
    assert_eq!(second_call["version"], 3, "{second_call}");
    let fresh = fresh.expect("pending value");
    let took = lease().await.expect("lease");
    assert_eq!(holder_pid(&took), pids[survivor]);
    assert!(
        took.get_i64("epoch").expect("epoch") > epoch,
        "a new fencing token"
    );
    gate.release.send(200).expect("release");
    let shown = loop {
        let shown: Value = send(Method::GET, "/api/secrets/rot/leader/rotation", None)
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if !shown["last_rotation"].is_null() {
            break shown;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "not rotated: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last = &shown["last_rotation"];
    assert_eq!(
        (
            &last["outcome"],
            &last["trigger"],
            &last["from_version"],
            &last["to_version"]
        ),
        (&json!("success"), &json!("schedule"), &json!(1), &json!(3)),
        "{shown}"
    );
    assert_eq!(
        shown["history"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );
    let current: Value = send(Method::GET, "/api/secrets/rot/leader", None)
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (current["version"].as_i64(), current["value_b64"].as_str()),
        (Some(3), Some(fresh.as_str()))
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, other) = reader.await.expect("the reader saw only current versions");
    assert!(
        other.is_empty(),
        "the survivor answered every read: {other:?}"
    );
    assert!(
        seen.len() > 10,
        "the reader ran throughout ({} reads)",
        seen.len()
    );
    assert!(seen.iter().all(|(v, _)| *v == 1 || *v == 3), "{seen:?}");
    assert!(
        seen.iter().all(|(_, value)| *value != stranded),
        "a reader saw the stranded pending value"
    );
    let doc = db
        .collection::<mongodb::bson::Document>("secrets")
        .find_one(doc! { "project": "rot", "path": "leader" })
        .await
        .expect("find")
        .expect("doc");
    assert!(doc.get("pending_version").is_none(), "{doc:?}");
    assert!(
        doc.get_array("failed_versions")
            .expect("failed_versions")
            .iter()
            .any(|v| v.as_i64() == Some(2)),
        "the stranded version is marked failed: {doc:?}"
    );

    // The audit trail (see above): settled records only; one rotation record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = all_records(db, "leader").await;
        let settled = all.iter().all(|r| r.get_str("outcome") != Ok("pending"));
        if settled && actions(&all, "rotate").len() == 1 {
            break all;
        }
        assert!(Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rotate = actions(&all, "rotate");
    assert_eq!(rotate[0].get_str("outcome"), Ok("success"));
    assert_eq!(
        rotate[0].get_str("actor"),
        Ok(secret_manager::vault::rotation::scheduler::SCHEDULER_ACTOR)
    );
    assert_eq!(rotate[0].get_i64("version"), Ok(3));
    let stages: Vec<(i64, &str)> = actions(&all, "rotation_stage")
        .iter()
        .map(|r| {
            (
                r.get_i64("version").expect("version"),
                r.get_str("outcome").expect("outcome"),
            )
        })
        .collect();
    assert_eq!(stages, [(2, "success"), (3, "success")]);
    let promotions: Vec<i64> = actions(&all, "rotation_promote")
        .iter()
        .map(|r| r.get_i64("version").expect("version"))
        .collect();
    assert_eq!(promotions, [3], "the killed leader promoted nothing");
}
