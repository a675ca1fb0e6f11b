//! Policies and role bindings managed at run time: checked like config.yaml,
//! config.yaml's own entries read-only, every change audited and applied by
//! every replica within a second.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::call;
use crate::helpers::{spawn_app_with_config, Identity, TestApp};

const YAML: &str = "policies:
  - {name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}
  - {name: cfg-reader, permissions: [{effect: allow, actions: [read], resources: ['secret:cfg:*']}]}
services:
  - {name: admin, roles: [ops]}
";

/// What every replica should apply a change within.
const BOUND: Duration = Duration::from_secs(1);

struct Replicas {
    a: TestApp,
    b: TestApp,
    admin: Identity,
    reader: Identity,
}

/// Two replicas on one database; `report-job` exists only at run time.
async fn replicas() -> Replicas {
    let admin = Identity::new("admin");
    let reader = Identity::new("report-job");
    let a = spawn_app_with_config(
        YAML,
        &[
            ("TOKEN_admin", admin.token.as_str()),
            ("TOKEN_report-job", reader.token.as_str()),
            ("ALLOWED_SERVICES", "report-job"),
        ],
    )
    .await;
    let b = spawn_app_with_config(
        YAML,
        &[
            ("TOKEN_admin", admin.token.as_str()),
            ("TOKEN_report-job", reader.token.as_str()),
            ("ALLOWED_SERVICES", "report-job"),
            ("MONGO_DB", a.db_name.as_str()),
            ("MASTER_KEY", a.master_key.as_str()),
        ],
    )
    .await;
    let created = call(
        &a,
        &a.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/db", "value": "db-pw" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    Replicas {
        a,
        b,
        admin,
        reader,
    }
}

/// Polls `app` until the reader's read answers `status`; panics after the bound.
async fn read_becomes(app: &TestApp, reader: &Identity, status: u16, since: Instant) -> Duration {
    loop {
        let res = call(
            app,
            reader,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
        .await;
        if res.status == status {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < BOUND,
            "still {} after {:?} (wanted {status}): {}",
            res.status,
            since.elapsed(),
            res.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn billing_reader() -> Value {
    json!({
        "description": "reads billing",
        "permissions": [{ "effect": "allow", "actions": ["read"], "resources": ["secret:billing:*"] }]
    })
}

async fn audited(app: &TestApp, action: &str, outcome: &str) -> u64 {
    app.audit_logs()
        .count_documents(doc! { "action": action, "outcome": outcome })
        .await
        .expect("count")
}

#[tokio::test]
async fn a_policy_put_and_bound_on_one_replica_applies_on_another_within_a_second() {
    let r = replicas().await;
    call(
        &r.b,
        &r.reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");

    let put = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/policies/billing-reader",
        Some(billing_reader()),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json()["source"], "runtime");
    let bound = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/services/report-job/roles",
        Some(json!({ "roles": ["billing-reader"] })),
    )
    .await;
    assert_eq!(bound.status, 200, "{}", bound.text);
    assert_eq!(bound.json()["roles"], json!(["billing-reader"]));
    read_becomes(&r.b, &r.reader, 200, Instant::now()).await;
    let read = call(
        &r.b,
        &r.reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    assert_eq!(read.json()["value"], "db-pw", "{}", read.text);
    // Only what the policy grants: no write.
    call(
        &r.b,
        &r.reader,
        Method::PATCH,
        "/api/secrets/billing/prod/db",
        Some(json!({ "value": "other" })),
    )
    .await
    .assert_error(403, "forbidden");

    // Unbinding denies again on the other replica.
    let unbound = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/services/report-job/roles",
        Some(json!({ "roles": [] })),
    )
    .await;
    assert_eq!(unbound.status, 200, "{}", unbound.text);
    read_becomes(&r.b, &r.reader, 403, Instant::now()).await;

    // Bound again, then the policy deleted: denied again.
    let rebound = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/services/report-job/roles",
        Some(json!({ "roles": ["billing-reader"] })),
    )
    .await;
    assert_eq!(rebound.status, 200, "{}", rebound.text);
    read_becomes(&r.b, &r.reader, 200, Instant::now()).await;
    let deleted = call(
        &r.a,
        &r.admin,
        Method::DELETE,
        "/api/policies/billing-reader",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    read_becomes(&r.b, &r.reader, 403, Instant::now()).await;
    call(
        &r.b,
        &r.admin,
        Method::GET,
        "/api/policies/billing-reader",
        None,
    )
    .await
    .assert_error(404, "policy_not_found");

    // Every change audited once, with what it touched.
    assert_eq!(audited(&r.a, "policy_put", "success").await, 1);
    assert_eq!(audited(&r.a, "service_roles", "success").await, 3);
    assert_eq!(audited(&r.a, "policy_delete", "success").await, 1);
    let record =
        r.a.audit_logs()
            .find_one(doc! { "action": "policy_delete" })
            .await
            .expect("query")
            .expect("record");
    assert_eq!(record.get_str("actor").expect("actor"), "admin");
    assert_eq!(
        record.get_str("target").expect("target"),
        "policy:billing-reader"
    );
}

#[tokio::test]
async fn run_time_roles_may_name_config_policies_and_deny_still_beats_allow() {
    let r = replicas().await;
    let deny = json!({
        "permissions": [{ "effect": "deny", "actions": ["read"], "resources": ["secret:billing:prod/*"] }]
    });
    for (name, body) in [("billing-reader", billing_reader()), ("no-prod", deny)] {
        let res = call(
            &r.a,
            &r.admin,
            Method::PUT,
            &format!("/api/policies/{name}"),
            Some(body),
        )
        .await;
        assert_eq!(res.status, 200, "{name}: {}", res.text);
    }
    let bound = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/services/report-job/roles",
        Some(json!({ "roles": ["billing-reader", "no-prod", "cfg-reader"] })),
    )
    .await;
    assert_eq!(bound.status, 200, "{}", bound.text);
    call(
        &r.a,
        &r.reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    let listed = call(&r.a, &r.admin, Method::GET, "/api/policies", None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let names: Vec<(String, String)> = listed.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().into(),
                p["source"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for expected in [
        ("ops", "config"),
        ("cfg-reader", "config"),
        ("billing-reader", "runtime"),
        ("no-prod", "runtime"),
    ] {
        assert!(
            names.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in {names:?}"
        );
    }
}

#[tokio::test]
async fn config_yaml_entries_are_read_only() {
    let r = replicas().await;
    let cases = [
        (
            Method::PUT,
            "/api/policies/ops",
            Some(billing_reader()),
            "PUT a config policy",
        ),
        (
            Method::DELETE,
            "/api/policies/cfg-reader",
            None,
            "DELETE a config policy",
        ),
        (
            Method::PUT,
            "/api/services/admin/roles",
            Some(json!({ "roles": ["cfg-reader"] })),
            "roles of a config service",
        ),
    ];
    for (method, path, body, case) in cases {
        let res = call(&r.a, &r.admin, method, path, body).await;
        let message = res.assert_error(409, "managed_by_config");
        assert!(message.contains("config.yaml"), "{case}: {message}");
    }
    let got = call(&r.a, &r.admin, Method::GET, "/api/policies/ops", None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json()["source"], "config");
    assert_eq!(got.json()["permissions"][0]["resources"], json!(["sys"]));
    assert_eq!(audited(&r.a, "policy_put", "conflict").await, 1);
}

#[tokio::test]
async fn an_invalid_policy_is_refused_with_every_problem_named() {
    let r = replicas().await;
    let body = json!({
        "permissions": [
            { "effect": "maybe", "actions": ["read"], "resources": ["secret:*"] },
            { "effect": "allow", "actions": ["fly"], "resources": ["bucket:x"] },
            { "effect": "allow", "actions": [], "resources": [] }
        ]
    });
    let res = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/policies/broken",
        Some(body),
    )
    .await;
    let message = res.assert_error(400, "invalid_policy");
    for expected in [
        "policy `broken` permission 1: effect must be `allow` or `deny` (got `maybe`)",
        "policy `broken` permission 2: unknown action `fly`",
        "policy `broken` permission 2: bad resource pattern `bucket:x`",
        "policy `broken` permission 3: needs at least one action and one resource",
    ] {
        assert!(message.contains(expected), "`{expected}` in: {message}");
    }
    let bad_name = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/policies/bad%20name",
        Some(billing_reader()),
    )
    .await;
    let message = bad_name.assert_error(400, "invalid_policy");
    assert!(message.contains("name must be"), "{message}");
    call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/policies/x",
        Some(json!({ "permissions": "all" })),
    )
    .await
    .assert_error(400, "invalid_field");
    call(&r.a, &r.admin, Method::GET, "/api/policies/broken", None)
        .await
        .assert_error(404, "policy_not_found");
    assert_eq!(audited(&r.a, "policy_put", "invalid").await, 3);
}

#[tokio::test]
async fn a_binding_to_an_unknown_role_is_refused() {
    let r = replicas().await;
    let res = call(
        &r.a,
        &r.admin,
        Method::PUT,
        "/api/services/report-job/roles",
        Some(json!({ "roles": ["cfg-reader", "ghost", "phantom"] })),
    )
    .await;
    let message = res.assert_error(400, "unknown_role");
    assert!(
        message.contains("`ghost`") && message.contains("`phantom`"),
        "{message}"
    );
    assert!(!message.contains("cfg-reader"), "{message}");
    call(&r.a, &r.reader, Method::GET, "/api/secrets/cfg/x", None)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(audited(&r.a, "service_roles", "invalid").await, 1);
}

#[tokio::test]
async fn only_admins_manage_policies() {
    let r = replicas().await;
    let cases = [
        (Method::GET, "/api/policies", None),
        (Method::GET, "/api/policies/ops", None),
        (Method::PUT, "/api/policies/mine", Some(billing_reader())),
        (Method::DELETE, "/api/policies/mine", None),
        (
            Method::PUT,
            "/api/services/report-job/roles",
            Some(json!({ "roles": ["ops"] })),
        ),
    ];
    for who in [&r.reader, &r.a.identity] {
        for (method, path, body) in cases.clone() {
            call(&r.a, who, method.clone(), path, body)
                .await
                .assert_error(403, "forbidden");
        }
    }
    call(&r.a, &r.reader, Method::GET, "/api/policies/mine", None)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(audited(&r.a, "policy_put", "denied").await, 2);
    assert_eq!(audited(&r.a, "service_roles", "denied").await, 2);
}

/// Runs the built binary's client against `app` as `who`.
async fn cli(app: &TestApp, who: &Identity, args: &[&str]) -> std::process::Output {
    let (url, who) = (app.address.clone(), who.clone());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_secret-manager"))
            .args(&args)
            .env("VAULT_URL", url)
            .env("VAULT_SERVICE", &who.service)
            .env("VAULT_TOKEN", &who.token)
            .env_remove("VAULT_TOKEN_FILE")
            .output()
            .expect("binary runs")
    })
    .await
    .expect("blocking")
}

#[tokio::test]
async fn the_cli_gets_puts_and_deletes_policies() {
    let r = replicas().await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), billing_reader().to_string()).expect("write");
    let path = file.path().to_str().expect("utf8");

    let put = cli(&r.a, &r.admin, &["policy", "put", "billing-reader", path]).await;
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = cli(&r.a, &r.admin, &["policy", "get", "billing-reader"]).await;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(got["permissions"], billing_reader()["permissions"]);
    assert_eq!(got["source"], "runtime");

    let refused = cli(&r.a, &r.admin, &["policy", "delete", "ops"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("409 managed_by_config"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let deleted = cli(&r.a, &r.admin, &["policy", "delete", "billing-reader"]).await;
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let gone = cli(&r.a, &r.admin, &["policy", "get", "billing-reader"]).await;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404 policy_not_found"));
}
