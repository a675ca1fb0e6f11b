//! Self-registered service tokens: registration, the admin transitions, and
//! authentication by an approved token across replicas.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with_config, Identity, Response, TestApp};

/// `admin` may manage tokens; `billing` (no token of its own) may read `billing:*`.
const YAML: &str = "\
policies:
  - {name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys, audit]}]}
  - {name: billing-reader, permissions: [{effect: allow, actions: [read, write], resources: ['secret:billing:*']}]}
services:
  - {name: admin, roles: [ops]}
  - {name: billing, roles: [billing-reader]}
";

fn strong_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn admin_app(extra: &[(&str, &str)]) -> (TestApp, Identity) {
    let admin = Identity::new("admin");
    let mut all = vec![("TOKEN_admin", admin.token.as_str())];
    all.extend_from_slice(extra);
    (spawn_app_with_config(YAML, &all).await, admin)
}

async fn register(app: &TestApp, name: &str, token: &str) -> Response {
    let req = app
        .request_as(None, Method::POST, "/api/service-tokens/register")
        .json(&json!({ "service_name": name, "service_version": "1.0.0", "token": token }));
    TestApp::send(req).await
}

/// Registers `token` as `name` and returns the registration's id.
async fn registered(app: &TestApp, admin: &Identity, name: &str, token: &str) -> String {
    let res = register(app, name, token).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["status"], "pending_approval", "{}", res.text);
    let list = admin_call(app, admin, Method::GET, "/api/service-tokens?state=pending").await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["service_name"] == name)
        .and_then(|t| t["id"].as_str())
        .expect("registration listed")
        .to_string()
}

async fn admin_call(app: &TestApp, admin: &Identity, method: Method, path: &str) -> Response {
    TestApp::send(app.request_as(Some(admin), method, path)).await
}

async fn act(app: &TestApp, admin: &Identity, id: &str, action: &str) -> Response {
    let path = format!("/api/service-tokens/{id}/{action}");
    admin_call(app, admin, Method::POST, &path).await
}

/// `X-Token` alone (`service` None) or with `X-Service`.
async fn whoami(app: &TestApp, service: Option<&str>, token: &str) -> Response {
    let mut req = app
        .http
        .post(format!("{}/api/secrets/test", app.address))
        .header("x-token", token);
    if let Some(s) = service {
        req = req.header("x-service", s);
    }
    TestApp::send(req).await
}

async fn read_as(app: &TestApp, token: &str, path: &str) -> Response {
    let req = app
        .http
        .get(format!("{}/api/secrets/{path}", app.address))
        .header("x-token", token);
    TestApp::send(req).await
}

/// Brings a fresh registration into `state` through the API.
async fn token_in(app: &TestApp, admin: &Identity, state: &str) -> String {
    let name = format!("svc-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let id = registered(app, admin, &name, &strong_token()).await;
    let steps: &[&str] = match state {
        "pending" => &[],
        "approved" => &["approve"],
        "denied" => &["deny"],
        "revoked" => &["approve", "revoke"],
        other => panic!("unknown state {other}"),
    };
    for step in steps {
        assert_eq!(act(app, admin, &id, step).await.status, 200);
    }
    id
}

#[tokio::test]
async fn every_state_and_action_gives_the_expected_answer() {
    let (app, admin) = admin_app(&[("REGISTER_PER_MINUTE", "0")]).await;
    // (state, action, expected status, expected code or new state)
    let table = [
        ("pending", "approve", 200, "approved"),
        ("pending", "deny", 200, "denied"),
        ("pending", "revoke", 409, "invalid_transition"),
        ("approved", "approve", 409, "invalid_transition"),
        ("approved", "deny", 409, "invalid_transition"),
        ("approved", "revoke", 200, "revoked"),
        ("denied", "approve", 409, "invalid_transition"),
        ("denied", "deny", 409, "invalid_transition"),
        ("denied", "revoke", 409, "invalid_transition"),
        ("revoked", "approve", 409, "invalid_transition"),
        ("revoked", "deny", 409, "invalid_transition"),
        ("revoked", "revoke", 409, "invalid_transition"),
    ];
    for (state, action, status, outcome) in table {
        let id = token_in(&app, &admin, state).await;
        let res = act(&app, &admin, &id, action).await;
        if status == 200 {
            assert_eq!(res.status, 200, "{state} × {action}: {}", res.text);
            assert_eq!(res.json()["state"], outcome, "{state} × {action}");
        } else {
            res.assert_error(status, outcome);
        }
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    act(&app, &admin, &unknown, "approve")
        .await
        .assert_error(404, "service_token_not_found");
    // Without `admin` on `sys`: 403; without identity: 401.
    let id = token_in(&app, &admin, "pending").await;
    TestApp::send(app.request(Method::POST, &format!("/api/service-tokens/{id}/approve")))
        .await
        .assert_error(403, "forbidden");
    let anonymous = app
        .http
        .post(format!("{}/api/service-tokens/{id}/approve", app.address));
    TestApp::send(anonymous)
        .await
        .assert_error(401, "unauthorized");
    admin_call(&app, &admin, Method::GET, "/api/service-tokens?state=bogus")
        .await
        .assert_error(400, "invalid_query");
    // Two admins racing on one token: exactly one wins.
    let id = token_in(&app, &admin, "pending").await;
    let (a, b) = tokio::join!(
        act(&app, &admin, &id, "approve"),
        act(&app, &admin, &id, "deny")
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
    let settled = app
        .audit_logs()
        .count_documents(doc! { "action": "token_approve", "outcome": "pending" })
        .await
        .expect("count");
    assert_eq!(settled, 0, "every pending record was settled");
}

#[tokio::test]
async fn register_approve_read_revoke_across_two_replicas() {
    let (one, admin) = admin_app(&[]).await;
    let two = spawn_app_with_config(
        YAML,
        &[
            ("TOKEN_admin", admin.token.as_str()),
            ("MONGO_DB", one.db_name.as_str()),
            ("MASTER_KEY", one.master_key.as_str()),
        ],
    )
    .await;
    let created = one
        .post_json(
            "/api/secrets",
            &json!({ "project": "billing", "path": "db/password", "value": "s3cret" }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let token = strong_token();

    let id = registered(&one, &admin, "billing", &token).await;
    for app in [&one, &two] {
        whoami(app, None, &token)
            .await
            .assert_error(401, "unauthorized");
    }

    assert_eq!(act(&one, &admin, &id, "approve").await.status, 200);
    let again = register(&two, "billing", &token).await;
    assert_eq!(again.json()["status"], "approved", "{}", again.text);
    // The replica that approved knows at once; the other within its cache bound.
    assert_eq!(whoami(&one, None, &token).await.status, 200);
    answers_within_cache_bound(&two, &token, 200).await;
    for app in [&one, &two] {
        let me = whoami(app, None, &token).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert!(me.text.contains("billing"), "{}", me.text);
        let read = read_as(app, &token, "billing/db/password").await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.json()["value"], "s3cret");
    }
    assert_eq!(whoami(&two, Some("billing"), &token).await.status, 200);
    whoami(&two, Some("admin"), &token)
        .await
        .assert_error(401, "unauthorized");
    // Roles come from config.yaml: nothing outside `billing:*`.
    let other = read_as(&two, &token, "default/elsewhere").await;
    assert_eq!(other.status, 403, "{}", other.text);

    assert_eq!(act(&one, &admin, &id, "revoke").await.status, 200);
    whoami(&one, None, &token)
        .await
        .assert_error(401, "unauthorized");
    answers_within_cache_bound(&two, &token, 401).await;
    whoami(&two, None, &token)
        .await
        .assert_error(401, "unauthorized");

    // Uses are written in batches, not per request.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let doc = tokens(&one)
            .find_one(doc! { "_id": &id })
            .await
            .expect("find");
        let doc = doc.expect("registration");
        if doc.get_i64("access_count").unwrap_or(0) >= 4 && doc.get_datetime("last_used_at").is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "uses not recorded: {doc}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_token_is_nowhere(&one, &token).await;
}

#[tokio::test]
async fn registering_again_is_idempotent_and_weak_or_bad_input_is_refused() {
    let (app, admin) = admin_app(&[]).await;
    let token = strong_token();
    let first = register(&app, "jobs", &token).await;
    let second = register(&app, "jobs", &token).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json(), second.json());
    assert_eq!(first.json()["status"], "pending_approval");
    let stored = tokens(&app).count_documents(doc! {}).await.expect("count");
    assert_eq!(stored, 1, "one entry for one token");
    let id = registered(&app, &admin, "jobs", &strong_token()).await;
    assert_eq!(act(&app, &admin, &id, "deny").await.status, 200);

    register(&app, "jobs", "a-token-long-enough")
        .await
        .assert_error(400, "weak_token");
    register(&app, "bad name", &strong_token())
        .await
        .assert_error(400, "invalid_service_name");
    let missing = app
        .request_as(None, Method::POST, "/api/service-tokens/register")
        .json(&json!({ "service_name": "jobs" }));
    TestApp::send(missing)
        .await
        .assert_error(400, "missing_field");
    let audited = app
        .audit_logs()
        .count_documents(doc! { "action": "token_register" })
        .await
        .expect("count");
    assert!(audited >= 6, "every registration is audited ({audited})");
}

#[tokio::test]
async fn pending_registrations_are_capped_and_registration_is_rate_limited() {
    let (app, _admin) =
        admin_app(&[("MAX_PENDING_TOKENS", "2"), ("REGISTER_PER_MINUTE", "0")]).await;
    for name in ["a", "b"] {
        assert_eq!(register(&app, name, &strong_token()).await.status, 200);
    }
    let full = register(&app, "c", &strong_token()).await;
    full.assert_error(503, "too_many_pending_tokens");
    assert!(full.headers.get("retry-after").is_some());
    assert_eq!(
        tokens(&app).count_documents(doc! {}).await.expect("count"),
        2
    );

    let (limited, _) = admin_app(&[("REGISTER_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        assert_eq!(register(&limited, "d", &strong_token()).await.status, 200);
    }
    let refused = register(&limited, "d", &strong_token()).await;
    refused.assert_error(429, "too_many_registrations");
    assert!(refused.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn env_identities_win_and_tokenless_services_may_only_test() {
    let (app, admin) = admin_app(&[("REGISTER_PER_MINUTE", "0")]).await;
    // A registration claiming the env identity `admin` authenticates as nothing.
    let token = strong_token();
    let id = registered(&app, &admin, "admin", &token).await;
    assert_eq!(act(&app, &admin, &id, "approve").await.status, 200);
    whoami(&app, None, &token)
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        admin_call(&app, &admin, Method::GET, "/api/service-tokens")
            .await
            .status,
        200,
        "the env token still works"
    );
    // A service with no config.yaml entry: authenticated, allowed nothing else.
    let token = strong_token();
    let id = registered(&app, &admin, "stranger", &token).await;
    assert_eq!(act(&app, &admin, &id, "approve").await.status, 200);
    assert_eq!(whoami(&app, None, &token).await.status, 200);
    let read = read_as(&app, &token, "default/anything").await;
    assert_eq!(read.status, 403, "{}", read.text);
}

/// Polls until `app` answers `status` for `token`: the 1 s cache bound, with
/// slack. Slowly enough that the 401s stay under the failure limiter's burst.
async fn answers_within_cache_bound(app: &TestApp, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = whoami(app, None, token).await;
        if res.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {} instead of {status} after 5 s: {}",
            res.status,
            res.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tokens(app: &TestApp) -> mongodb::Collection<Document> {
    app.db.collection("service_tokens")
}

/// The raw token is in no stored document: only its SHA-256.
async fn assert_token_is_nowhere(app: &TestApp, token: &str) {
    use futures_util::TryStreamExt as _;
    for name in ["service_tokens", "audit_logs", "secrets"] {
        let docs: Vec<Document> = app
            .db
            .collection::<Document>(name)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("collect");
        for d in docs {
            let text = serde_json::to_value(&d).expect("json").to_string();
            assert!(!text.contains(token), "{name} holds the token: {text}");
        }
    }
}

#[tokio::test]
async fn the_spec_documents_the_service_token_routes() {
    let (app, _) = admin_app(&[]).await;
    let spec = app.get("/openapi.json").await.json();
    let routes: [(&str, &str, &[&str]); 5] = [
        (
            "/api/service-tokens/register",
            "post",
            &["200", "400", "429", "503"],
        ),
        ("/api/service-tokens", "get", &["200", "400", "401", "403"]),
        (
            "/api/service-tokens/{id}/approve",
            "post",
            &["200", "401", "403", "404", "409"],
        ),
        (
            "/api/service-tokens/{id}/deny",
            "post",
            &["200", "401", "403", "404", "409"],
        ),
        (
            "/api/service-tokens/{id}/revoke",
            "post",
            &["200", "401", "403", "404", "409"],
        ),
    ];
    for (path, method, statuses) in routes {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert_eq!(op["tags"], json!(["service-tokens"]), "{path}");
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert!(
        spec["paths"]["/api/service-tokens/register"]["post"]["security"].is_null(),
        "registration needs no identity"
    );
}

/// The built binary's logs (JSON, stdout and stderr) never carry a registered token.
#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let port = crate::helpers::free_port();
    let token = strong_token();
    let key = secret_manager::crypto::MasterKey::generate()
        .to_base64()
        .to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secret-manager"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONFIG_FILE", "/dev/null")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("GRPC_PORT", "0")
        .env("WORKERS", "1")
        .env("MONGO_URI", crate::helpers::mongo_uri())
        .env("MONGO_DB", crate::helpers::unique_db_name())
        .env("MASTER_KEY", &key)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/health/live"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = json!({ "service_name": "jobs", "service_version": "1", "token": token });
    for _ in 0..2 {
        let res = http
            .post(format!("{url}/api/service-tokens/register"))
            .json(&body)
            .send()
            .await
            .expect("register");
        assert_eq!(res.status().as_u16(), 200);
    }
    let pending = http
        .post(format!("{url}/api/secrets/test"))
        .header("x-token", &token)
        .send()
        .await
        .expect("whoami");
    assert_eq!(pending.status().as_u16(), 401);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    assert!(out.contains("request finished"), "logs were written: {out}");
    assert!(!out.contains(&token), "stdout leaks the token");
    assert!(!err.contains(&token), "stderr leaks the token");
}

/// A service polling with its token while the registration is pending is not
/// guessing: its 401s do not use up the failure limiter, so approval works at
/// once. A wrong token from the same address still does.
#[tokio::test]
async fn polling_while_pending_does_not_lock_the_service_out() {
    let (app, admin) = admin_app(&[("AUTH_FAILURE_BURST", "3")]).await;
    let token = strong_token();
    let id = registered(&app, &admin, "poller", &token).await;
    for _ in 0..10 {
        whoami(&app, Some("poller"), &token)
            .await
            .assert_error(401, "unauthorized");
        whoami(&app, None, &token)
            .await
            .assert_error(401, "unauthorized");
    }
    let approved = act(&app, &admin, &id, "approve").await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    let ok = whoami(&app, Some("poller"), &token).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // Guesses are still limited.
    let guesses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(whoami(&app, Some("poller"), &strong_token()).await.status);
        }
        statuses
    };
    assert_eq!(guesses, [401, 401, 401, 429, 429], "{guesses:?}");
}
