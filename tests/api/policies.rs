//! Policies over HTTP: each action allowed or denied (403, audited).

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with_config, Identity, TestApp};

const CONFIG: &str = r#"
policies:
  - name: billing-reader
    description: read and list billing production secrets
    permissions:
      - effect: allow
        actions: [read, list]
        resources: ["secret:billing:prod/*"]
      - effect: deny
        actions: [read]
        resources: ["secret:billing:prod/root-*"]
  - name: billing-writer
    permissions:
      - effect: allow
        actions: [read, write, list, delete]
        resources: ["secret:billing:*", "project:billing"]
  - name: auditor
    permissions:
      - effect: allow
        actions: [admin]
        resources: ["audit"]
services:
  - name: reporter
    roles: [billing-reader]
  - name: deployer
    roles: [billing-writer, auditor]
"#;

async fn app_with_services() -> (TestApp, Identity, Identity) {
    let reporter = Identity::new("reporter");
    let deployer = Identity::new("deployer");
    let app = spawn_app_with_config(
        CONFIG,
        &[
            ("TOKEN_reporter", &reporter.token),
            ("TOKEN_deployer", &deployer.token),
        ],
    )
    .await;
    (app, reporter, deployer)
}

async fn call(
    app: &TestApp,
    who: &Identity,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> crate::helpers::Response {
    let mut req = app.request_as(Some(who), method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestApp::send(req).await
}

#[tokio::test]
async fn each_action_is_allowed_or_denied_by_policy() {
    let (app, reporter, deployer) = app_with_services().await;
    for path in ["prod/db", "prod/root-key", "staging/db"] {
        let res = call(
            &app,
            &deployer,
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "billing", "path": path, "value": "v" })),
        )
        .await;
        assert_eq!(res.status, 201, "{path}: {}", res.text);
    }
    let cases: [(&str, Method, &str, Option<serde_json::Value>, u16); 9] = [
        (
            "read allowed",
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
            200,
        ),
        (
            "read outside prefix",
            Method::GET,
            "/api/secrets/billing/staging/db",
            None,
            403,
        ),
        (
            "explicit deny beats allow",
            Method::GET,
            "/api/secrets/billing/prod/root-key",
            None,
            403,
        ),
        (
            "write not granted",
            Method::PATCH,
            "/api/secrets/billing/prod/db",
            Some(json!({ "value": "x" })),
            403,
        ),
        (
            "create not granted",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "billing", "path": "prod/new", "value": "x" })),
            403,
        ),
        (
            "delete not granted",
            Method::DELETE,
            "/api/secrets/billing/prod/db",
            None,
            403,
        ),
        (
            "versions need list",
            Method::GET,
            "/api/secrets/billing/prod/db/versions",
            None,
            200,
        ),
        (
            "other project",
            Method::GET,
            "/api/secrets/other/prod/db",
            None,
            403,
        ),
        ("audit needs admin", Method::GET, "/api/audit", None, 403),
    ];
    for (case, method, path, body, status) in cases {
        let res = call(&app, &reporter, method, path, body).await;
        assert_eq!(res.status, status, "{case}: {}", res.text);
        if status == 403 {
            let message = res.assert_error(403, "forbidden");
            assert!(
                message.starts_with("Service 'reporter' does not have access to '"),
                "{case}: {message}"
            );
        }
    }
    let denied = call(
        &app,
        &reporter,
        Method::GET,
        "/api/secrets/billing/staging/db",
        None,
    )
    .await;
    assert_eq!(
        denied.json()["error"]["message"],
        "Service 'reporter' does not have access to 'billing:staging/db'"
    );
    let audited = app
        .audit_logs()
        .count_documents(doc! { "actor": "reporter", "outcome": "denied" })
        .await
        .expect("count");
    assert_eq!(audited, 8, "every denial is audited");
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_list() {
    let (app, reporter, deployer) = app_with_services().await;
    for path in ["prod/a", "prod/b", "staging/c"] {
        call(
            &app,
            &deployer,
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "billing", "path": path, "value": "v" })),
        )
        .await;
    }
    let res = call(
        &app,
        &reporter,
        Method::GET,
        "/api/secrets?project=billing",
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    let paths: Vec<String> = res.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["path"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(paths, ["prod/a", "prod/b"]);
    let all = call(&app, &deployer, Method::GET, "/api/secrets", None).await;
    assert_eq!(all.json()["items"].as_array().expect("items").len(), 3);
}

#[tokio::test]
async fn seed_endpoints_follow_the_same_policies() {
    let (app, reporter, deployer) = app_with_services().await;
    let denied = call(
        &app,
        &deployer,
        Method::POST,
        "/vault/secret/create",
        Some(json!({ "secret": "eA==" })),
    )
    .await;
    let message = denied.assert_error(403, "forbidden");
    assert!(message.contains("'default:"), "{message}");
    let named = call(
        &app,
        &deployer,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/k", "value": "by-path" })),
    )
    .await;
    let id = named.json()["id"].as_str().expect("id").to_string();

    let fetched = call(
        &app,
        &reporter,
        Method::POST,
        "/vault/secret/fetch",
        Some(json!({ "secret_id": id })),
    )
    .await;

    assert_eq!(
        fetched.status, 200,
        "fetch of a path-addressed secret by id: {}",
        fetched.text
    );
    assert_eq!(fetched.json()["secret"], crate::helpers::b64(b"by-path"));
}

#[tokio::test]
async fn invalid_config_refuses_to_start_naming_file_entry_and_problem() {
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), "policies: [{name: p, permissions: [{effect: allow, actions: [fly], resources: ['secret:*']}]}]").expect("write");
    let pairs = [
        (
            "MASTER_KEY",
            secret_manager::crypto::MasterKey::generate()
                .to_base64()
                .to_string(),
        ),
        ("CONFIG_FILE", file.path().display().to_string()),
    ];
    let err = secret_manager::config::Config::from_pairs(pairs).expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains(&file.path().display().to_string()), "{text}");
    assert!(
        text.contains("policy `p` permission 1: unknown action `fly`"),
        "{text}"
    );
    let missing = secret_manager::config::Config::from_pairs([
        ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
        ("CONFIG_FILE", "/nonexistent/config.yaml"),
    ])
    .expect_err("missing file");
    assert!(
        missing
            .to_string()
            .contains("`CONFIG_FILE` /nonexistent/config.yaml could not be read"),
        "{missing}"
    );
}

#[tokio::test]
async fn the_shipped_example_config_is_valid_and_means_what_it_says() {
    let deployer = Identity::new("deployer");
    let api = Identity::new("billing-api");
    let reporter = Identity::new("reporter");
    let app = crate::helpers::spawn_app_with(&[
        ("CONFIG_FILE", "config.yaml.example"),
        ("TOKEN_deployer", &deployer.token),
        ("TOKEN_billing-api", &api.token),
        ("TOKEN_reporter", &reporter.token),
    ])
    .await;
    let created = call(
        &app,
        &deployer,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/stripe-key", "value": "sk_live_x" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let read = call(
        &app,
        &api,
        Method::GET,
        "/api/secrets/billing/prod/stripe-key",
        None,
    )
    .await;
    assert_eq!(read.json()["value"], "sk_live_x");
    call(
        &app,
        &reporter,
        Method::GET,
        "/api/secrets/billing/prod/stripe-key",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    let audit = call(&app, &deployer, Method::GET, "/api/audit?limit=5", None).await;
    assert_eq!(audit.status, 200);
}
