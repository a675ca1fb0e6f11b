//! Missing-secret stubs: a read of a secret that does not exist, by a service
//! that could read it, records what was asked for; an ordinary create or PATCH fills it.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::json;

use crate::helpers::call;
use crate::helpers::{spawn_app_with, Identity, TestApp};

async fn stubs(app: &TestApp) -> Vec<Document> {
    app.secrets()
        .find(doc! { "state": "missing" })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

async fn app_with_reader() -> (TestApp, Identity, Identity) {
    let reader = Identity::new("billing-reader");
    let outsider = Identity::new("outsider");
    let app = spawn_app_with(&[
        ("TOKEN_billing-reader", reader.token.as_str()),
        ("ALLOW_billing-reader", "billing:"),
        ("TOKEN_outsider", outsider.token.as_str()),
        ("ALLOW_outsider", "elsewhere:"),
    ])
    .await;
    (app, reader, outsider)
}

#[tokio::test]
async fn a_miss_by_a_service_that_may_read_records_one_stub_and_still_answers_404() {
    let (app, reader, outsider) = app_with_reader().await;

    let miss = call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/stripe-key?description=card%20payments",
        None,
    )
    .await;
    miss.assert_error(404, "secret_not_found");
    // A service that may not read the path gets 403 and records nothing.
    call(
        &app,
        &outsider,
        Method::GET,
        "/api/secrets/billing/prod/other",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    // An older version of a missing secret is not a request for it.
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/v?version=2",
        None,
    )
    .await
    .assert_error(404, "secret_not_found");

    let found = stubs(&app).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].get_str("path").expect("path"), "prod/stripe-key");
    assert_eq!(
        found[0].get_str("description").expect("description"),
        "card payments"
    );
    assert_eq!(
        found[0]
            .get_array("requested_by")
            .expect("requesters")
            .len(),
        1
    );
    assert!(found[0].get_array("versions").expect("versions").is_empty());
    let audited = app
        .audit_logs()
        .count_documents(doc! { "action": "stub_create", "outcome": "success" })
        .await
        .expect("count");
    assert_eq!(audited, 1);

    // Listed with ?state=missing only, never as a live secret.
    let live = call(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets?project=billing",
        None,
    )
    .await;
    assert_eq!(
        live.json()["items"].as_array().expect("items").len(),
        0,
        "{}",
        live.text
    );
    let missing = call(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets?project=billing&state=missing",
        None,
    )
    .await;
    let items = missing.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", missing.text);
    assert_eq!(items[0]["key"], "billing/prod/stripe-key");
    assert_eq!(items[0]["state"], "missing");
    assert_eq!(items[0]["requested_by"], json!(["billing-reader"]));
    call(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets?state=gone",
        None,
    )
    .await
    .assert_error(400, "invalid_query");
    // Still a 404 on the next read.
    call(
        &app,
        &reader,
        Method::GET,
        "/api/secrets/billing/prod/stripe-key",
        None,
    )
    .await
    .assert_error(404, "secret_not_found");
}

#[tokio::test]
async fn a_hundred_concurrent_misses_create_exactly_one_stub() {
    let (app, reader, _) = app_with_reader().await;
    let misses = (0..100).map(|_| {
        call(
            &app,
            &reader,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
    });
    for res in futures_util::future::join_all(misses).await {
        res.assert_error(404, "secret_not_found");
    }
    let also = call(
        &app,
        &app.identity,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await;
    also.assert_error(404, "secret_not_found");
    let found = stubs(&app).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let mut requesters: Vec<String> = found[0]
        .get_array("requested_by")
        .expect("requesters")
        .iter()
        .map(|r| r.as_str().expect("name").to_string())
        .collect();
    requesters.sort();
    assert_eq!(requesters, ["billing-reader", "tester"]);
    let audited = app
        .audit_logs()
        .count_documents(doc! { "action": "stub_create" })
        .await
        .expect("count");
    assert_eq!(audited, 1, "one stub, one transition");
}

#[tokio::test]
async fn an_ordinary_create_or_patch_fills_a_stub() {
    let (app, reader, _) = app_with_reader().await;
    for path in ["prod/a", "prod/b"] {
        call(
            &app,
            &reader,
            Method::GET,
            &format!("/api/secrets/billing/{path}"),
            None,
        )
        .await
        .assert_error(404, "secret_not_found");
    }
    let created = call(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/a", "value": "filled-a" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["version"], 1);
    let patched = call(
        &app,
        &app.identity,
        Method::PATCH,
        "/api/secrets/billing/prod/b",
        Some(json!({ "value": "filled-b" })),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["version"], 1);
    for (path, value) in [("prod/a", "filled-a"), ("prod/b", "filled-b")] {
        let read = call(
            &app,
            &reader,
            Method::GET,
            &format!("/api/secrets/billing/{path}"),
            None,
        )
        .await;
        assert_eq!(read.json()["value"], value, "{}", read.text);
    }
    assert!(stubs(&app).await.is_empty(), "both stubs filled");
    // A second create of a filled path is the usual conflict.
    call(
        &app,
        &app.identity,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "billing", "path": "prod/a", "value": "again" })),
    )
    .await
    .assert_error(409, "secret_exists");

    // Each path's events in the order of its changes, numbered without a
    // gap once the numbers the refused inserts and the conflict reserved are
    // filled (in the background).
    let events = crate::helpers::settled_event_docs(&app.db).await;
    let of = |path: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e.get_str("path") == Ok(path))
            .map(|e| e.get_str("kind").expect("kind"))
            .collect()
    };
    for path in ["prod/a", "prod/b"] {
        assert_eq!(
            of(path),
            ["stub_created", "stub_filled", "secret_created"],
            "{path}"
        );
    }
}
