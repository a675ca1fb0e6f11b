//! Access requests: a denied read leaves one pending request per service and
//! secret; an admin grants it (for a time, or for good) or denies it.

use std::time::Duration;

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::call;
use crate::helpers::{spawn_app_with_config, Identity, TestApp};

const ADMIN_YAML: &str = "policies: [{name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}]\nservices: [{name: admin, roles: [ops]}]";

async fn setup() -> (TestApp, Identity, Identity) {
    let admin = Identity::new("admin");
    let reader = Identity::new("report-job");
    let app = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("TOKEN_admin", admin.token.as_str()),
            ("TOKEN_report-job", reader.token.as_str()),
            ("ALLOW_report-job", "reports:"),
        ],
    )
    .await;
    let created = call(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/db", "value": "db-pw" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    (app, admin, reader)
}

async fn pending(app: &TestApp, admin: &Identity) -> Vec<Value> {
    let res = call(
        app,
        admin,
        Method::GET,
        "/api/access-requests?status=pending",
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn denied_reads_leave_one_pending_request_per_service_and_secret() {
    let (app, admin, reader) = setup().await;
    let reads = (0..20).map(|_| {
        call(
            &app,
            &reader,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
    });
    for res in futures_util::future::join_all(reads).await {
        res.assert_error(403, "forbidden");
    }
    let id = call(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The seed fetch's denial counts on the same request.
    let fetch = TestApp::send(
        app.request_as(Some(&reader), Method::POST, "/vault/secret/fetch")
            .json(&json!({ "secret_id": id })),
    )
    .await;
    fetch.assert_error(403, "forbidden");

    let found = pending(&app, &admin).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["service_name"], "report-job");
    assert_eq!(
        (found[0]["project"].clone(), found[0]["path"].clone()),
        (json!("billing"), json!("prod/db"))
    );
    assert_eq!(found[0]["attempts"], 21, "{found:?}");
    let audited = app
        .audit_logs()
        .count_documents(doc! { "action": "access_request" })
        .await
        .expect("count");
    assert_eq!(audited, 1, "one request, one transition");
    // Only admins see or decide requests.
    call(&app, &reader, Method::GET, "/api/access-requests", None)
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn a_time_limited_grant_lets_the_service_read_until_it_expires() {
    let (app, admin, reader) = setup().await;
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    let id = pending(&app, &admin).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let state = |s: &str| format!("secret_manager_access_requests{{state=\"{s}\"}}");
    assert_eq!(
        crate::helpers::metric(&app, &state("pending")).await,
        Some(1.0)
    );
    assert_eq!(
        crate::helpers::metric(&app, &state("granted")).await,
        Some(0.0)
    );
    let granted = call(
        &app,
        &admin,
        Method::POST,
        &format!("/api/access-requests/{id}/approve"),
        Some(json!({ "expires_in": 2 })),
    )
    .await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    assert_eq!(granted.json()["status"], "granted");
    // `/metrics` counts the stored requests by state.
    assert_eq!(
        crate::helpers::metric(&app, &state("pending")).await,
        Some(0.0)
    );
    assert_eq!(
        crate::helpers::metric(&app, &state("granted")).await,
        Some(1.0)
    );
    let read = call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    assert_eq!(read.json()["value"], "db-pw", "{}", read.text);
    // Only that secret.
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/other",
        None,
    )
    .await
    .assert_error(403, "forbidden");

    // Wait for the expiry (bounded): reads are denied again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = call(
            &app,
            &reader,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
        .await;
        if res.status == 403 {
            break;
        }
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = call(
        &app,
        &admin,
        Method::GET,
        "/api/access-requests?status=expired",
        None,
    )
    .await;
    let items = expired.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", expired.text);
    assert!(items[0]["access_count"].as_i64() >= Some(1), "{items:?}");
    assert_eq!(items[0]["status"], "expired");
    // The expiry was recorded once, when the grant was next needed.
    let expiries = app
        .audit_logs()
        .count_documents(doc! { "action": "access_expire", "outcome": "success" })
        .await
        .expect("count");
    assert_eq!(expiries, 1);
    // The denial after expiry is a new pending request (beside the one for prod/other).
    let again: Vec<Value> = pending(&app, &admin)
        .await
        .into_iter()
        .filter(|r| r["path"] == "prod/db")
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
}

#[tokio::test]
async fn every_state_and_action_gets_its_answer() {
    let (app, admin, reader) = setup().await;
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    let id = pending(&app, &admin).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let act = |action: &'static str, body: Option<Value>| {
        let path = format!("/api/access-requests/{id}/{action}");
        let (app, admin) = (&app, &admin);
        async move { call(app, admin, Method::POST, &path, body).await }
    };
    // Bad input first: nothing changes.
    for bad in [
        json!({ "expires_in": 0 }),
        json!({ "expires_in": 999_999_999 }),
    ] {
        act("approve", Some(bad))
            .await
            .assert_error(400, "invalid_field");
    }
    act("approve", Some(json!({ "forever": true })))
        .await
        .assert_error(400, "invalid_field");
    call(
        &app,
        &reader,
        Method::POST,
        &format!("/api/access-requests/{id}/deny"),
        None,
    )
    .await
    .assert_error(403, "forbidden");
    call(
        &app,
        &admin,
        Method::POST,
        "/api/access-requests/nope/deny",
        None,
    )
    .await
    .assert_error(404, "access_request_not_found");
    call(
        &app,
        &admin,
        Method::GET,
        "/api/access-requests?status=maybe",
        None,
    )
    .await
    .assert_error(400, "invalid_query");

    // pending → denied; denied → (approve | deny) = 409.
    let denied = act("deny", None).await;
    assert_eq!(denied.json()["status"], "denied", "{}", denied.text);
    act("deny", None)
        .await
        .assert_error(409, "invalid_transition");
    act("approve", None)
        .await
        .assert_error(409, "invalid_transition");
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");

    // A new pending request → granted (no end); granted → (approve | deny) = 409.
    let id2 = pending(&app, &admin).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_ne!(id2, id);
    let path = |a: &str| format!("/api/access-requests/{id2}/{a}");
    let granted = call(&app, &admin, Method::POST, &path("approve"), None).await;
    assert_eq!(granted.json()["status"], "granted", "{}", granted.text);
    assert!(granted.json().get("expires_at").is_none());
    call(&app, &admin, Method::POST, &path("approve"), None)
        .await
        .assert_error(409, "invalid_transition");
    call(&app, &admin, Method::POST, &path("deny"), None)
        .await
        .assert_error(409, "invalid_transition");
    let read = call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    assert_eq!(read.json()["value"], "db-pw", "{}", read.text);
    for (action, outcome) in [("access_grant", "success"), ("access_deny", "success")] {
        let n = app
            .audit_logs()
            .count_documents(doc! { "action": action, "outcome": outcome })
            .await
            .expect("count");
        assert_eq!(n, 1, "{action}");
    }
}
