//! Each HTTP worker thread serves its requests with its own database client
//! and batching tasks (`Vault::on_this_thread`), so a request never waits for
//! the thread that started the application to hand it a connection or to run
//! its batch.

use std::process::Command;

use crate::helpers::{b64, spawn_app, TestApp};

/// `POST path` with `body` through curl, from this (blocked) thread.
fn post_blocking(app: &TestApp, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["-H", "content-type: application/json"])
        .args(["-H", &format!("x-service: {}", app.identity.service)])
        .args(["-H", &format!("x-token: {}", app.identity.token)])
        .args(["-d", &body.to_string()])
        .arg(format!("{}{path}", app.address))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn a_create_and_a_fetch_are_served_while_the_main_thread_is_blocked() {
    let app = spawn_app().await;
    // The server runs once the main runtime has polled it; a health check
    // (no database) makes sure it has.
    assert_eq!(app.get("/health/live").await.status, 200);
    // The application's main runtime is this test's: until the curl calls
    // return, nothing spawned on it runs.
    let (created_status, created) = post_blocking(
        &app,
        "/vault/secret/create",
        &serde_json::json!({ "secret": b64(b"served by a worker") }),
    );
    assert_eq!(created_status, 200, "create: {created}");
    let id = created["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();
    let (fetched_status, fetched) = post_blocking(
        &app,
        "/vault/secret/fetch",
        &serde_json::json!({ "secret_id": id }),
    );
    assert_eq!(fetched_status, 200, "fetch: {fetched}");
    assert_eq!(fetched["secret"], b64(b"served by a worker"));

    // Both were audited (by the worker's own writer) before their answers.
    let records = app
        .audit_logs()
        .count_documents(mongodb::bson::doc! { "secret_id": &id, "outcome": "success" })
        .await
        .expect("count");
    assert_eq!(records, 2, "a record for the create and one for the fetch");
}
