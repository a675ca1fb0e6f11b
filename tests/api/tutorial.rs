//! The myVault README's news-bot tutorial, step by step, with its identities
//! and grants (tokens are strong random ones: the tutorial's examples are too
//! weak for this service, which refuses tokens under 128 bits).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::call;
use crate::helpers::{spawn_app_with, Identity, TestApp};

/// The tutorial's `MSA_MASTER_KEY`, under this service's name `MASTER_KEY`.
const TUTORIAL_MASTER_KEY: &str = "base64:jFi1bkzTyKQ5BLtw2dBDo1RItDXlKo8A5z2JbC6TExE=";

/// A service with a token of 244 random bits.
fn strong(service: &str) -> Identity {
    Identity {
        service: service.to_string(),
        token: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    }
}

#[tokio::test]
async fn the_myvault_news_bot_tutorial_runs_as_documented() {
    // Step 1: the tutorial's `.env`.
    let api = strong("newsbot-api");
    let worker = strong("newsbot-worker");
    let scheduler = strong("newsbot-scheduler");
    let app = spawn_app_with(&[
        (
            "ALLOWED_SERVICES",
            "newsbot-api,newsbot-worker,newsbot-scheduler",
        ),
        ("TOKEN_newsbot-api", &api.token),
        ("TOKEN_newsbot-worker", &worker.token),
        ("TOKEN_newsbot-scheduler", &scheduler.token),
        ("ALLOW_newsbot-api", "newsbot:prod/,common:"),
        (
            "ALLOW_newsbot-worker",
            "newsbot:prod/worker/,newsbot:prod/database/",
        ),
        ("ALLOW_newsbot-scheduler", "newsbot:prod/scheduler/,common:"),
        ("MASTER_KEY", TUTORIAL_MASTER_KEY),
    ])
    .await;

    // Step 2: the service answers (it names itself `secret-manager`, not `myVault`).
    let health = TestApp::send(app.http.get(format!("{}/health", app.address))).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json()["status"], "healthy");

    // Step 3: newsbot-api, granted `newsbot:prod/`, registers the project.
    let project = call(
        &app,
        &api,
        Method::POST,
        "/api/projects",
        Some(json!({
            "name": "newsbot",
            "description": "News aggregation bot production secrets"
        })),
    )
    .await;
    assert_eq!(project.status, 201, "step 3: {}", project.text);
    let project = project.json();
    assert_eq!(project["name"], "newsbot");
    assert_eq!(
        project["description"],
        "News aggregation bot production secrets"
    );
    assert_eq!(project["created_by"], "newsbot-api");
    assert!(project["created_at"].is_string(), "{project}");

    // Step 4: each service stores its secrets.
    let stored = [
        (
            &api,
            "newsbot",
            "prod/twitter-api-key",
            "twitter-key-abc123xyz",
        ),
        (
            &api,
            "newsbot",
            "prod/openai-api-key",
            "sk-openai-secret-key-456",
        ),
        (
            &worker,
            "newsbot",
            "prod/database/password",
            "postgres-secure-password-789",
        ),
        (
            &worker,
            "newsbot",
            "prod/worker/redis-url",
            "redis://user:pass@localhost:6379/0",
        ),
        (
            &scheduler,
            "newsbot",
            "prod/scheduler/webhook-url",
            "https://api.newsbot.com/jobs/trigger",
        ),
        (&api, "common", "encryption-key", "shared-aes-key-xyz789"),
    ];
    for (who, project, path, value) in stored {
        let res = call(
            &app,
            who,
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": project, "path": path, "value": value })),
        )
        .await;
        assert_eq!(res.status, 201, "step 4 {project}/{path}: {}", res.text);
        let body = res.json();
        assert_eq!(
            (
                &body["project"],
                &body["path"],
                &body["value"],
                &body["version"]
            ),
            (&json!(project), &json!(path), &json!(value), &json!(1)),
            "step 4: {body}"
        );
        assert_eq!(body["updated_by"], who.service.as_str());
    }

    // Step 5: newsbot-api reads its secrets at run time.
    for (path, value) in [
        ("newsbot/prod/twitter-api-key", "twitter-key-abc123xyz"),
        ("newsbot/prod/openai-api-key", "sk-openai-secret-key-456"),
        ("common/encryption-key", "shared-aes-key-xyz789"),
    ] {
        let res = call(
            &app,
            &api,
            Method::GET,
            &format!("/api/secrets/{path}"),
            None,
        )
        .await;
        assert_eq!(res.status, 200, "step 5 {path}: {}", res.text);
        assert_eq!(res.json()["value"], value, "step 5 {path}");
    }

    // Step 6: access control.
    let own = call(
        &app,
        &api,
        Method::GET,
        "/api/secrets/newsbot/prod/twitter-api-key",
        None,
    )
    .await;
    assert_eq!(own.status, 200, "step 6: {}", own.text);
    let other = call(
        &app,
        &worker,
        Method::GET,
        "/api/secrets/newsbot/prod/twitter-api-key",
        None,
    )
    .await;
    let message = other.assert_error(403, "forbidden");
    assert_eq!(
        message,
        "Service 'newsbot-worker' does not have access to 'newsbot:prod/twitter-api-key'"
    );

    // Step 7: rotation makes version 2.
    let rotated = call(
        &app,
        &api,
        Method::PATCH,
        "/api/secrets/newsbot/prod/twitter-api-key",
        Some(json!({ "value": "twitter-key-NEW-rotated-abc789" })),
    )
    .await;
    assert_eq!(rotated.status, 200, "step 7: {}", rotated.text);
    assert_eq!(rotated.json()["version"], 2);
    let read = call(
        &app,
        &api,
        Method::GET,
        "/api/secrets/newsbot/prod/twitter-api-key",
        None,
    )
    .await;
    let read = read.json();
    assert_eq!(read["version"], 2, "{read}");
    assert_eq!(read["value"], "twitter-key-NEW-rotated-abc789");
    assert!(read["updated_at"].is_string(), "{read}");

    // Step 8: the list, values redacted, shows who updated what.
    let list = call(&app, &api, Method::GET, "/api/secrets", None).await;
    assert_eq!(list.status, 200, "step 8: {}", list.text);
    let items = list.json()["items"].as_array().expect("items").clone();
    let item = |project: &str, path: &str| -> Value {
        items
            .iter()
            .find(|i| i["project"] == project && i["path"] == path)
            .unwrap_or_else(|| panic!("step 8: {project}/{path} not listed: {items:?}"))
            .clone()
    };
    let twitter = item("newsbot", "prod/twitter-api-key");
    assert_eq!(
        (&twitter["version"], &twitter["updated_by"]),
        (&json!(2), &json!("newsbot-api"))
    );
    let openai = item("newsbot", "prod/openai-api-key");
    assert_eq!(
        (&openai["version"], &openai["updated_by"]),
        (&json!(1), &json!("newsbot-api"))
    );
    assert_eq!(
        items.len(),
        6,
        "everything under newsbot:prod/ and common: {items:?}"
    );
    for i in &items {
        assert!(
            i.get("value").is_none() && i.get("value_b64").is_none(),
            "redacted: {i}"
        );
    }
}

#[tokio::test]
async fn a_service_may_register_only_projects_it_holds_grants_in() {
    let worker = strong("newsbot-worker");
    let app = spawn_app_with(&[
        ("TOKEN_newsbot-worker", &worker.token),
        ("ALLOW_newsbot-worker", "newsbot:prod/worker/"),
    ])
    .await;
    let register = |name: &str| {
        call(
            &app,
            &worker,
            Method::POST,
            "/api/projects",
            Some(json!({ "name": name })),
        )
    };
    let other = register("billing").await;
    let message = other.assert_error(403, "forbidden");
    assert_eq!(
        message,
        "Service 'newsbot-worker' does not have access to 'project billing'"
    );
    assert_eq!(register("newsbot").await.status, 201);
    register("newsbot")
        .await
        .assert_error(409, "project_exists");
    let denied = app
        .audit_logs()
        .count_documents(mongodb::bson::doc! {
            "actor": "newsbot-worker", "action": "project_create", "outcome": "denied", "project": "billing"
        })
        .await
        .expect("count");
    assert_eq!(denied, 1, "the refusal is audited");
}
