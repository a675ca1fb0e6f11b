//! Projects and path-addressed secrets with version history.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{b64, spawn_app, spawn_app_with, Response, TestApp};

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut req = app.request(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestApp::send(req).await
}

async fn put(app: &TestApp, project: &str, path: &str, value: &str) -> Value {
    let res = call(
        app,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": project, "path": path, "value": value })),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.json()
}

#[tokio::test]
async fn create_read_update_and_read_old_versions() {
    let app = spawn_app().await;
    let created = call(
        &app,
        Method::POST,
        "/api/secrets",
        Some(json!({
            "project": "newsbot", "path": "prod/api-key", "value": "v1-secret",
            "description": "upstream API", "tags": ["api", "prod"], "type": "api_key"
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = created.json();
    assert_eq!(c["project"], "newsbot");
    assert_eq!(c["path"], "prod/api-key");
    assert_eq!(c["value"], "v1-secret");
    assert_eq!(c["version"], 1);
    assert_eq!(c["updated_by"], "tester");
    assert!(uuid::Uuid::parse_str(c["id"].as_str().expect("id")).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(c["updated_at"].as_str().expect("ts")).is_ok());

    let patched = call(
        &app,
        Method::PATCH,
        "/api/secrets/newsbot/prod/api-key",
        Some(json!({ "value": "v2-secret" })),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["version"], 2);

    let current = call(&app, Method::GET, "/api/secrets/newsbot/prod/api-key", None)
        .await
        .json();
    assert_eq!(
        (current["value"].clone(), current["version"].clone()),
        (json!("v2-secret"), json!(2))
    );
    assert_eq!(current["description"], "upstream API");
    assert_eq!(current["tags"], json!(["api", "prod"]));
    assert_eq!(current["type"], "api_key");
    let old = call(
        &app,
        Method::GET,
        "/api/secrets/newsbot/prod/api-key?version=1",
        None,
    )
    .await
    .json();
    assert_eq!(
        (
            old["value"].clone(),
            old["version"].clone(),
            old["current_version"].clone()
        ),
        (json!("v1-secret"), json!(1), json!(2))
    );

    let versions = call(
        &app,
        Method::GET,
        "/api/secrets/newsbot/prod/api-key/versions",
        None,
    )
    .await;
    let v = versions.json();
    assert_eq!(v["current_version"], 2);
    let numbers: Vec<i64> = v["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|x| x["version"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert!(
        !versions.text.contains("secret\""),
        "no values in version metadata: {}",
        versions.text
    );
    assert!(!versions.text.contains("v1-secret") && !versions.text.contains("ciphertext"));
}

#[tokio::test]
async fn binary_values_round_trip_through_value_b64() {
    let app = spawn_app().await;
    let bytes: Vec<u8> = vec![0, 159, 146, 150, 255];
    let res = call(
        &app,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "p", "path": "bin", "value_b64": b64(&bytes) })),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let got = call(&app, Method::GET, "/api/secrets/p/bin", None)
        .await
        .json();
    assert_eq!(got["value_b64"], b64(&bytes));
    assert!(got.get("value").is_none(), "not UTF-8, so no text value");
}

#[tokio::test]
async fn bad_names_values_and_queries_get_400_with_a_code_each() {
    let app = spawn_app().await;
    put(&app, "p", "exists", "v").await;
    let cases: [(&str, Method, &str, Option<Value>, &str); 12] = [
        (
            "dotdot path",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "a/../b", "value": "v" })),
            "invalid_path",
        ),
        (
            "empty segment",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "a//b", "value": "v" })),
            "invalid_path",
        ),
        (
            "reserved last segment",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "a/versions", "value": "v" })),
            "invalid_path",
        ),
        (
            "colon in project",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "a:b", "path": "x", "value": "v" })),
            "invalid_project",
        ),
        (
            "long project",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p".repeat(65), "path": "x", "value": "v" })),
            "invalid_project",
        ),
        (
            "no value",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "x" })),
            "invalid_value",
        ),
        (
            "both values",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "x", "value": "v", "value_b64": "dg==" })),
            "invalid_value",
        ),
        (
            "empty value",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "x", "value": "" })),
            "empty_secret",
        ),
        (
            "too many tags",
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "x", "value": "v", "tags": vec!["t"; 33] })),
            "invalid_metadata",
        ),
        (
            "version not a number",
            Method::GET,
            "/api/secrets/p/exists?version=abc",
            None,
            "invalid_query",
        ),
        (
            "bad limit",
            Method::GET,
            "/api/secrets?limit=0",
            None,
            "invalid_limit",
        ),
        (
            "bad cursor",
            Method::GET,
            "/api/secrets?cursor=%%%",
            None,
            "invalid_cursor",
        ),
    ];
    for (case, method, path, body, code) in cases {
        let res = call(&app, method, path, body).await;
        let message = res.assert_error(400, code);
        assert!(!message.is_empty(), "{case}");
    }
}

#[tokio::test]
async fn unknown_secrets_and_versions_get_404_and_existing_paths_409() {
    let app = spawn_app().await;
    put(&app, "p", "a", "v").await;
    let cases: [(Method, &str, Option<Value>, u16, &str); 6] = [
        (
            Method::GET,
            "/api/secrets/p/missing",
            None,
            404,
            "secret_not_found",
        ),
        (
            Method::GET,
            "/api/secrets/p/a?version=7",
            None,
            404,
            "version_not_found",
        ),
        // (The GET above left a stub at p/missing, which a PATCH would fill:
        // see tests/api/stubs.rs. These paths were never asked for.)
        (
            Method::PATCH,
            "/api/secrets/p/never-asked",
            Some(json!({ "value": "x" })),
            404,
            "secret_not_found",
        ),
        (
            Method::DELETE,
            "/api/secrets/p/never-asked",
            None,
            404,
            "secret_not_found",
        ),
        (
            Method::POST,
            "/api/secrets/p/a/restore",
            None,
            404,
            "deleted_secret_not_found",
        ),
        (
            Method::POST,
            "/api/secrets",
            Some(json!({ "project": "p", "path": "a", "value": "again" })),
            409,
            "secret_exists",
        ),
    ];
    for (method, path, body, status, code) in cases {
        call(&app, method, path, body)
            .await
            .assert_error(status, code);
    }
}

#[tokio::test]
async fn only_max_versions_are_kept() {
    let app = spawn_app_with(&[("MAX_VERSIONS", "3")]).await;
    put(&app, "p", "k", "v1").await;
    for i in 2..=5 {
        call(
            &app,
            Method::PATCH,
            "/api/secrets/p/k",
            Some(json!({ "value": format!("v{i}") })),
        )
        .await;
    }
    let v = call(&app, Method::GET, "/api/secrets/p/k/versions", None)
        .await
        .json();
    let numbers: Vec<i64> = v["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|x| x["version"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, [5, 4, 3]);
    call(&app, Method::GET, "/api/secrets/p/k?version=2", None)
        .await
        .assert_error(404, "version_not_found");
    assert_eq!(
        call(&app, Method::GET, "/api/secrets/p/k?version=3", None)
            .await
            .json()["value"],
        "v3"
    );
}

#[tokio::test]
async fn expected_version_is_a_compare_and_set() {
    let app = spawn_app().await;
    put(&app, "p", "cas", "v1").await;
    let ok = call(
        &app,
        Method::PATCH,
        "/api/secrets/p/cas",
        Some(json!({ "value": "v2", "expected_version": 1 })),
    )
    .await;
    assert_eq!(ok.json()["version"], 2);
    let stale = call(
        &app,
        Method::PATCH,
        "/api/secrets/p/cas",
        Some(json!({ "value": "lost", "expected_version": 1 })),
    )
    .await;
    let message = stale.assert_error(409, "version_conflict");
    assert!(message.contains("current version is 2"), "{message}");
    assert_eq!(
        call(&app, Method::GET, "/api/secrets/p/cas", None)
            .await
            .json()["value"],
        "v2"
    );
}

#[tokio::test]
async fn racing_patches_through_two_instances_never_lose_a_version() {
    let app = spawn_app().await;
    let other = spawn_app_with(&[
        ("MONGO_DB", &app.db_name),
        ("MASTER_KEY", &app.master_key),
        ("TOKEN_tester", &app.identity.token),
    ])
    .await;
    put(&app, "p", "race", "v1").await;

    // Compare-and-set: 16 writers all expect version 1; exactly one wins.
    let cas = (0..16).map(|i| {
        let target = if i % 2 == 0 { &app } else { &other };
        call(
            target,
            Method::PATCH,
            "/api/secrets/p/race",
            Some(json!({ "value": format!("cas-{i}"), "expected_version": 1 })),
        )
    });
    let results = futures_util::future::join_all(cas).await;
    let won: Vec<&Response> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one compare-and-set wins");
    for r in &results {
        assert!(
            r.status == 200 || r.status == 409,
            "{}: {}",
            r.status,
            r.text
        );
    }

    // Blind writes: every one lands as its own version.
    let blind = (0..16).map(|i| {
        let target = if i % 2 == 0 { &app } else { &other };
        call(
            target,
            Method::PATCH,
            "/api/secrets/p/race",
            Some(json!({ "value": format!("blind-{i}") })),
        )
    });
    let results = futures_util::future::join_all(blind).await;
    let versions: HashSet<i64> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["version"].as_i64().expect("version")
        })
        .collect();
    assert_eq!(
        versions,
        (3..=18).collect::<HashSet<i64>>(),
        "one version number per writer"
    );
    let current = call(&app, Method::GET, "/api/secrets/p/race", None)
        .await
        .json();
    assert_eq!(current["version"], 18);
}

#[tokio::test]
async fn delete_hides_restore_brings_back() {
    let app = spawn_app().await;
    put(&app, "p", "gone", "still-here").await;
    let deleted = call(&app, Method::DELETE, "/api/secrets/p/gone", None).await;
    assert_eq!(deleted.status, 204);

    call(&app, Method::GET, "/api/secrets/p/gone", None)
        .await
        .assert_error(404, "secret_not_found");
    let list = call(&app, Method::GET, "/api/secrets?project=p", None)
        .await
        .json();
    assert_eq!(list["items"], json!([]));
    call(
        &app,
        Method::POST,
        "/api/secrets",
        Some(json!({ "project": "p", "path": "gone", "value": "new" })),
    )
    .await
    .assert_error(409, "secret_deleted");
    call(&app, Method::DELETE, "/api/secrets/p/gone", None)
        .await
        .assert_error(404, "secret_not_found");

    let restored = call(&app, Method::POST, "/api/secrets/p/gone/restore", None).await;
    assert_eq!(restored.status, 204, "{}", restored.text);
    assert_eq!(
        call(&app, Method::GET, "/api/secrets/p/gone", None)
            .await
            .json()["value"],
        "still-here"
    );
}

#[tokio::test]
async fn deleted_secrets_are_purged_after_the_recovery_window() {
    let app = spawn_app_with(&[("DELETE_RECOVERY_DAYS", "0")]).await;
    app.db
        .client()
        .database("admin")
        .run_command(doc! { "setParameter": 1, "ttlMonitorSleepSecs": 1 })
        .await
        .expect("fast TTL");
    put(&app, "p", "purge-me", "v").await;
    put(&app, "p", "keep-me", "v").await;
    call(&app, Method::DELETE, "/api/secrets/p/purge-me", None).await;

    let mut left = 2;
    for _ in 0..120 {
        left = app.secrets().count_documents(doc! {}).await.expect("count");
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(left, 1, "the deleted secret was purged, the live one kept");
    call(&app, Method::POST, "/api/secrets/p/purge-me/restore", None)
        .await
        .assert_error(404, "deleted_secret_not_found");
}

#[tokio::test]
async fn lists_are_redacted_filtered_and_page_stably() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for project in ["a", "b"] {
        for i in 0..7 {
            let path = format!("dir/k{i:02}");
            put(&app, project, &path, "hidden-value").await;
            expected.push(format!("{project}:{path}"));
        }
    }
    put(&app, "b", "other/x", "hidden-value").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("/api/secrets?prefix=dir/&limit=4&cursor={c}"),
            None => "/api/secrets?prefix=dir/&limit=4".to_string(),
        };
        let res = call(&app, Method::GET, &q, None).await;
        assert!(!res.text.contains("hidden-value"), "values are redacted");
        let page = res.json();
        for item in page["items"].as_array().expect("items") {
            seen.push(format!(
                "{}:{}",
                item["project"].as_str().expect("p"),
                item["path"].as_str().expect("path")
            ));
            assert_eq!(item["version"], 1);
            assert_eq!(item["updated_by"], "tester");
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen, expected,
        "every secret once, in (project, path) order"
    );
    let only_b = call(
        &app,
        Method::GET,
        "/api/secrets?project=b&prefix=other/",
        None,
    )
    .await
    .json();
    assert_eq!(only_b["items"].as_array().expect("items").len(), 1);
}

#[tokio::test]
async fn projects_are_created_once_and_listed() {
    let app = spawn_app().await;
    let res = call(
        &app,
        Method::POST,
        "/api/projects",
        Some(json!({ "name": "newsbot", "description": "the news bot" })),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let p = res.json();
    assert_eq!(p["name"], "newsbot");
    assert_eq!(p["created_by"], "tester");
    assert!(p["id"].is_string() && p["created_at"].is_string());
    call(
        &app,
        Method::POST,
        "/api/projects",
        Some(json!({ "name": "newsbot" })),
    )
    .await
    .assert_error(409, "project_exists");
    call(
        &app,
        Method::POST,
        "/api/projects",
        Some(json!({ "name": "bad name" })),
    )
    .await
    .assert_error(400, "invalid_project");
    let list = call(&app, Method::GET, "/api/projects", None).await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["newsbot"]);
}

#[tokio::test]
async fn audit_trail_is_readable_by_admins_with_filters() {
    let admin = crate::helpers::Identity::new("admin");
    let yaml = "policies: [{name: audit, permissions: [{effect: allow, actions: [admin], resources: [audit]}]}]\nservices: [{name: admin, roles: [audit]}]";
    let app = crate::helpers::spawn_app_with_config(yaml, &[("TOKEN_admin", &admin.token)]).await;
    put(&app, "p", "one", "audit-value").await;
    put(&app, "q", "two", "audit-value").await;
    call(&app, Method::GET, "/api/secrets/p/one", None).await;

    let res = TestApp::send(app.request_as(
        Some(&admin),
        Method::GET,
        "/api/audit?project=p&actor=tester",
    ))
    .await;

    assert_eq!(res.status, 200, "{}", res.text);
    assert!(!res.text.contains("audit-value"));
    let records = res.json()["records"].as_array().expect("records").clone();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["read", "create"], "newest first, only project p");
    assert!(records
        .iter()
        .all(|r| r["path"] == "one" && r["outcome"] == "success"));
    let since = TestApp::send(app.request_as(
        Some(&admin),
        Method::GET,
        "/api/audit?since=2999-01-01T00:00:00Z",
    ))
    .await;
    assert_eq!(since.json()["records"], json!([]));
    let bad =
        TestApp::send(app.request_as(Some(&admin), Method::GET, "/api/audit?since=yesterday"))
            .await;
    bad.assert_error(400, "invalid_query");
    let denied = call(&app, Method::GET, "/api/audit", None).await;
    denied.assert_error(403, "forbidden");
}

/// Cursors are sealed and bound to the caller and query: a forged one, one
/// for another query, or one issued to another service is 400; no cursor
/// reveals a name the caller may not list.
#[tokio::test]
async fn list_cursors_are_opaque_authenticated_and_bound_to_caller_and_query() {
    use base64::Engine as _;
    let other = crate::helpers::Identity::new("other-lister");
    let app = spawn_app_with(&[
        (&format!("TOKEN_{}", other.service), other.token.as_str()),
        ("ALLOW_other-lister", "vis:"),
    ])
    .await;
    for i in 0..6 {
        put(&app, "hidden", &format!("name-{i}-zq7"), "v").await;
        put(&app, "vis", &format!("item-{i}"), "v").await;
    }
    // Forged cursors in the old format (base64 of `project\npath`) are refused.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("vis\nitem-0");
    let res = app.get(&format!("/api/secrets?cursor={forged}")).await;
    res.assert_error(400, "invalid_cursor");

    // The other service lists everything it may: pages stop on hidden names,
    // and its cursors do not show them.
    let page =
        TestApp::send(app.request_as(Some(&other), Method::GET, "/api/secrets?limit=2")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let cursor = page.json()["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_string();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cursor)
        .expect("url-safe base64");
    for secret_name in ["hidden", "name-", "zq7", "item-"] {
        assert!(
            !raw.windows(secret_name.len())
                .any(|w| w == secret_name.as_bytes()),
            "cursor shows {secret_name}"
        );
    }
    // The cursor continues the same caller's same query...
    let next = TestApp::send(app.request_as(
        Some(&other),
        Method::GET,
        &format!("/api/secrets?limit=2&cursor={cursor}"),
    ))
    .await;
    assert_eq!(next.status, 200, "{}", next.text);
    // ...and nothing else: another caller, or another query.
    app.get(&format!("/api/secrets?limit=2&cursor={cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    TestApp::send(app.request_as(
        Some(&other),
        Method::GET,
        &format!("/api/secrets?project=vis&limit=2&cursor={cursor}"),
    ))
    .await
    .assert_error(400, "invalid_cursor");
    // A flipped character is refused too.
    let mut tampered = cursor.into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    TestApp::send(app.request_as(
        Some(&other),
        Method::GET,
        &format!("/api/secrets?limit=2&cursor={tampered}"),
    ))
    .await
    .assert_error(400, "invalid_cursor");
}

/// A prefix is bounded (a few thousand characters was a 500); odd ones still work.
#[tokio::test]
async fn list_prefixes_are_bounded_and_odd_ones_are_taken_literally() {
    let app = spawn_app().await;
    put(&app, "p", "a.b/c", "v").await;
    put(&app, "p", "axb/c", "v").await;
    let long = "a".repeat(5000);
    app.get(&format!("/api/secrets?prefix={long}"))
        .await
        .assert_error(400, "invalid_prefix");
    for (prefix, expected) in [
        ("a.b", vec!["a.b/c"]),
        ("a%2Eb", vec!["a.b/c"]),
        ("%28", vec![]),
        ("%5B", vec![]),
        ("*", vec![]),
        ("%5C", vec![]),
        ("%24", vec![]),
        ("a%7C", vec![]),
        (&"b".repeat(512), vec![]),
    ] {
        let res = app
            .get(&format!("/api/secrets?project=p&prefix={prefix}"))
            .await;
        assert_eq!(res.status, 200, "{prefix}: {}", res.text);
        let paths: Vec<String> = res.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["path"].as_str().expect("path").to_string())
            .collect();
        assert_eq!(paths, expected, "{prefix}");
    }
}
