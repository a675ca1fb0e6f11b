use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use secret_manager::store::audit;

use crate::helpers::{b64, spawn_app, spawn_app_with, test_db};

async fn records(app: &crate::helpers::TestApp, filter: Document) -> Vec<Document> {
    use futures_util::TryStreamExt as _;
    app.audit_logs()
        .find(filter)
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

#[tokio::test]
async fn create_and_fetch_each_write_one_complete_record() {
    let app = spawn_app().await;
    let res = app
        .request(reqwest::Method::POST, "/vault/secret/create")
        .header("user-agent", "audit-test/1.0")
        .json(&serde_json::json!({ "secret": b64(b"audited-value") }))
        .send()
        .await
        .expect("sent");
    let create_request_id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: serde_json::Value = res.json().await.expect("json");
    let id = body["secret_id"].as_str().expect("id").to_string();
    let fetched = app.fetch(&id).await;
    assert_eq!(fetched.status, 200);

    let found = records(&app, doc! { "secret_id": &id }).await;

    assert_eq!(found.len(), 2, "{found:?}");
    let (create, fetch) = (&found[0], &found[1]);
    assert_eq!(create.get_str("action").expect("action"), "create");
    assert_eq!(fetch.get_str("action").expect("action"), "fetch");
    for (record, request_id) in [(create, create_request_id), (fetch, fetched.request_id())] {
        assert_eq!(record.get_str("outcome").expect("outcome"), "success");
        assert_eq!(record.get_str("channel").expect("channel"), "http");
        assert_eq!(record.get_str("actor").expect("actor"), "tester");
        assert_eq!(record.get_str("project").expect("project"), "default");
        assert_eq!(record.get_str("path").expect("path"), id);
        assert_eq!(record.get_i64("version").expect("version"), 1);
        assert_eq!(record.get_str("client_ip").expect("ip"), "127.0.0.1");
        assert_eq!(
            record.get_str("request_id").expect("request id"),
            request_id
        );
        assert!(record.get_datetime("ts").is_ok());
        assert!(record.get("error_code").is_none());
        let text = format!("{record:?}");
        assert!(!text.contains("audited-value") && !text.contains(&b64(b"audited-value")));
    }
    assert_eq!(create.get_str("user_agent").expect("ua"), "audit-test/1.0");
}

#[tokio::test]
async fn failures_are_audited_with_outcome_and_error_code() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    app.post_json(
        "/vault/secret/create",
        &serde_json::json!({ "secret": "%%%secret-ish%%%" }),
    )
    .await;
    app.post_raw("/vault/secret/create", Some("application/json"), "nope")
        .await;
    app.fetch(&unknown).await;
    app.fetch("not-a-uuid").await;

    let found = records(&app, doc! {}).await;

    let summary: Vec<(String, String, String)> = found
        .iter()
        .map(|r| {
            (
                r.get_str("action").unwrap_or_default().to_string(),
                r.get_str("outcome").unwrap_or_default().to_string(),
                r.get_str("error_code").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        ("create", "invalid", "invalid_base64"),
        ("create", "invalid", "invalid_json"),
        ("fetch", "not_found", "secret_not_found"),
        ("fetch", "invalid", "invalid_secret_id"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, o, c)| (a.to_string(), o.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(found[2].get_str("secret_id").expect("id"), unknown);
    assert!(
        !format!("{found:?}").contains("secret-ish"),
        "rejected input never stored"
    );
}

/// Issue 10, finding 1: the client writes the left of `X-Forwarded-For`, so the
/// audited address is the right-most hop that is not a trusted proxy, and only
/// when the direct peer (127.0.0.1 here) is itself a trusted proxy.
#[tokio::test]
async fn the_audited_address_is_the_right_most_untrusted_forwarded_hop() {
    let proxies = "10.0.0.0/8,127.0.0.1/32";
    // (settings, X-Forwarded-For sent, audited client_ip, why)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
    let cases: [Case; 7] = [
        (
            &[("TRUST_PROXY_HEADERS", "false")],
            "203.0.113.9",
            "127.0.0.1",
            "headers off: the peer",
        ),
        (
            &[("TRUST_PROXY_HEADERS", "true")],
            "203.0.113.9, 198.51.100.7",
            "198.51.100.7",
            "shorthand: the peer is the proxy, the hop it appended is the client (was 203.0.113.9)",
        ),
        (
            &[("TRUSTED_PROXIES", proxies)],
            "203.0.113.9, 198.51.100.7, 10.0.0.1",
            "198.51.100.7",
            "trusted hops are skipped, the forged left hop is ignored",
        ),
        (
            &[("TRUSTED_PROXIES", proxies)],
            "198.51.100.7, not-an-ip",
            "127.0.0.1",
            "an entry that is not an IP gives the peer",
        ),
        (
            &[("TRUSTED_PROXIES", proxies)],
            "10.0.0.2, 127.0.0.1",
            "127.0.0.1",
            "only trusted hops give the peer",
        ),
        (
            &[("TRUSTED_PROXIES", "10.0.0.0/8")],
            "203.0.113.9",
            "127.0.0.1",
            "an untrusted peer's header is ignored",
        ),
        (
            &[("TRUSTED_PROXIES", proxies)],
            "2001:db8::1",
            "2001:db8::1",
            "IPv6 clients",
        ),
    ];
    for (settings, forwarded, expected, why) in cases {
        let app = spawn_app_with(settings).await;
        let res = app
            .request(reqwest::Method::POST, "/vault/secret/create")
            .header("x-forwarded-for", forwarded)
            .json(&serde_json::json!({ "secret": b64(b"x") }))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status().as_u16(), 200, "{why}");
        let found = records(&app, doc! {}).await;
        assert_eq!(
            found[0].get_str("client_ip").expect("ip"),
            expected,
            "{why}"
        );
    }
}

#[tokio::test]
async fn audit_can_be_disabled() {
    let app = spawn_app_with(&[("AUDIT_ENABLED", "false")]).await;
    let id = app.create(b"x").await;
    assert_eq!(app.fetch(&id).await.status, 200);
    assert!(records(&app, doc! {}).await.is_empty());
}

/// Makes every audit insert for `create` and `fetch` fail with a duplicate key.
async fn break_audit(app: &crate::helpers::TestApp) {
    use mongodb::options::IndexOptions;
    use mongodb::IndexModel;
    app.audit_logs().delete_many(doc! {}).await.expect("clear");
    app.audit_logs()
        .insert_many([doc! { "action": "create" }, doc! { "action": "fetch" }])
        .await
        .expect("seed");
    let unique = IndexModel::builder()
        .keys(doc! { "action": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    app.audit_logs()
        .create_index(unique)
        .await
        .expect("sabotage index");
}

#[tokio::test]
async fn create_fails_closed_when_its_audit_record_cannot_be_written() {
    let app = spawn_app().await;
    break_audit(&app).await;

    let res = app
        .post_json(
            "/vault/secret/create",
            &serde_json::json!({ "secret": b64(b"unaudited") }),
        )
        .await;

    res.assert_error(500, "internal_error");
    let stored = app.secrets().count_documents(doc! {}).await.expect("count");
    assert_eq!(stored, 0, "an unaudited create is undone");
}

#[tokio::test]
async fn fetch_fails_closed_when_its_audit_record_cannot_be_written() {
    let app = spawn_app().await;
    let id = app.create(b"unaudited-read").await;
    break_audit(&app).await;

    let res = app.fetch(&id).await;

    res.assert_error(500, "internal_error");
    assert!(
        !res.text.contains(&b64(b"unaudited-read")),
        "no value without an audit record"
    );
}

async fn ts_index(app: &crate::helpers::TestApp) -> Option<Option<i64>> {
    audit::current_ttl(&app.db).await.expect("list indexes")
}

#[tokio::test]
async fn ttl_index_follows_the_setting_across_restarts_without_dropping_records() {
    let first = spawn_app_with(&[("AUDIT_TTL_DAYS", "0")]).await;
    assert_eq!(ts_index(&first).await, Some(None), "plain index when 0");
    first.create(b"a").await;
    let name = first.db_name.clone();
    let steps = [
        ("30", Some(30 * 86_400)),
        ("7", Some(7 * 86_400)),
        ("0", None),
        ("0", None),
        ("2", Some(2 * 86_400)),
    ];
    for (days, expected) in steps {
        let app = spawn_app_with(&[
            ("MONGO_DB", &name),
            ("MASTER_KEY", &first.master_key),
            ("AUDIT_TTL_DAYS", days),
        ])
        .await;
        assert_eq!(
            ts_index(&app).await,
            Some(expected),
            "AUDIT_TTL_DAYS={days}"
        );
        assert_eq!(
            app.audit_logs()
                .count_documents(doc! {})
                .await
                .expect("count"),
            1,
            "records kept"
        );
    }
}

#[tokio::test]
async fn replicas_starting_together_agree_on_the_indexes() {
    let db_name = crate::helpers::unique_db_name();
    let db = test_db(&db_name).await;
    let runs = (0..4).map(|_| secret_manager::store::ensure_indexes(&db, 5));
    for result in futures_util::future::join_all(runs).await {
        result.expect("concurrent index setup succeeds");
    }
    let runs = (0..4).map(|i| secret_manager::store::ensure_indexes(&db, 6 + (i % 2)));
    for result in futures_util::future::join_all(runs).await {
        result.expect("concurrent changes do not fail");
    }
    let ttl = audit::current_ttl(&db).await.expect("list");
    assert!(
        matches!(ttl, Some(Some(s)) if s == 6 * 86_400 || s == 7 * 86_400),
        "{ttl:?}"
    );
}

#[tokio::test]
async fn expired_audit_records_are_really_removed() {
    let app = spawn_app_with(&[("AUDIT_TTL_DAYS", "1")]).await;
    let admin = app.db.client().database("admin");
    admin
        .run_command(doc! { "setParameter": 1, "ttlMonitorSleepSecs": 1 })
        .await
        .expect("fast TTL monitor");
    let two_days_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 2 * 86_400_000);
    app.audit_logs()
        .insert_many([
            doc! { "ts": two_days_ago, "action": "fetch", "outcome": "success", "channel": "http" },
            doc! { "ts": DateTime::now(), "action": "fetch", "outcome": "success", "channel": "http" },
        ])
        .await
        .expect("insert");

    let mut remaining = 2;
    for _ in 0..120 {
        remaining = app
            .audit_logs()
            .count_documents(doc! {})
            .await
            .expect("count");
        if remaining == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(remaining, 1, "the old record expired, the new one stays");
    let left = app
        .audit_logs()
        .find_one(doc! {})
        .await
        .expect("q")
        .expect("one");
    assert!(
        left.get_datetime("ts").expect("ts").timestamp_millis() > two_days_ago.timestamp_millis()
    );
}

async fn refused_authentications(app: &crate::helpers::TestApp) -> Vec<Document> {
    records(app, doc! { "action": "authenticate" }).await
}

fn count_of(record: &Document) -> i64 {
    record
        .get_i64("count")
        .expect("a refused-authentication record has a count")
}

/// Issue 10, finding 4: every 401 and 429 used to write its own audit record
/// (100 bad requests: 100 records). Now the first refusal of a window is
/// written at once and the rest are counted into the next record or the flush
/// at the end of the window; the counts add up to the refused requests.
#[tokio::test]
async fn a_hundred_refused_requests_write_few_records_whose_counts_add_up() {
    // One failure refills per second: the aggregation window is 1 s.
    let app = spawn_app_with(&[
        ("AUTH_FAILURE_BURST", "3"),
        ("AUTH_FAILURE_PER_MINUTE", "60"),
    ])
    .await;
    let wrong = crate::helpers::Identity {
        token: "wrong-token-444444".into(),
        ..app.identity.clone()
    };
    for _ in 0..100 {
        let req = app.request_as(Some(&wrong), reqwest::Method::POST, "/api/secrets/test");
        let status = crate::helpers::TestApp::send(req).await.status;
        assert!(status == 401 || status == 429, "refused: {status}");
    }
    let mut found = refused_authentications(&app).await;
    for _ in 0..50 {
        if found.iter().map(count_of).sum::<i64>() == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        found = refused_authentications(&app).await;
    }
    let total: i64 = found.iter().map(count_of).sum();
    assert_eq!(total, 100, "the counts add up: {found:?}");
    assert!(
        found.len() <= 20,
        "far fewer than 100 records: {}",
        found.len()
    );
    assert_eq!(
        count_of(&found[0]),
        1,
        "the first refusal is written at once"
    );
    for r in &found {
        assert_eq!(r.get_str("actor").expect("actor"), "tester");
        assert_eq!(r.get_str("client_ip").expect("ip"), "127.0.0.1");
    }
}

/// Issue 10, finding 5: every audited string is bounded (actor 128 characters,
/// the others 256), cut on a character boundary (unit-tested in `auth::limiter`). A 6 KB `X-Service` (refused)
/// and a 6 KB `User-Agent` (refused and accepted) are stored cut.
#[tokio::test]
async fn huge_headers_are_stored_cut_to_their_bounds() {
    let app = spawn_app().await;
    let huge_service = "s".repeat(6_000);
    let huge_agent = "u".repeat(6_000);
    let intruder = crate::helpers::Identity {
        service: huge_service.clone(),
        token: "wrong-token-555555".into(),
    };
    for who in [&intruder, &app.identity] {
        let req = app
            .request_as(Some(who), reqwest::Method::GET, "/api/secrets")
            .header("user-agent", &huge_agent);
        crate::helpers::TestApp::send(req).await;
    }
    let refused = refused_authentications(&app).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    let actor = refused[0].get_str("actor").expect("actor");
    assert_eq!(actor, "s".repeat(128), "the claimed service, cut");
    let listed = records(&app, doc! { "action": "list" }).await;
    for r in [&refused[0], &listed[0]] {
        let agent = r.get_str("user_agent").expect("ua");
        assert_eq!(agent, "u".repeat(256), "the user agent, cut");
    }
}

/// Update, delete and restore cannot be undone, so their record is written as
/// `pending` first: when it cannot be written the change is not made.
#[tokio::test]
async fn changes_that_cannot_be_undone_are_not_made_without_their_audit_record() {
    use mongodb::options::IndexOptions;
    use mongodb::IndexModel;
    use reqwest::Method;
    let app = spawn_app().await;
    let send = |method: Method, path: &str, body: Option<serde_json::Value>| {
        let mut req = app.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        crate::helpers::TestApp::send(req)
    };
    let created = send(
        Method::POST,
        "/api/secrets",
        Some(serde_json::json!({ "project": "p", "path": "k", "value": "v1" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let normal = send(
        Method::PATCH,
        "/api/secrets/p/k",
        Some(serde_json::json!({ "value": "v2" })),
    )
    .await;
    assert_eq!(normal.status, 200, "{}", normal.text);
    // The update has exactly one record, settled from pending to success.
    let updates: Vec<mongodb::bson::Document> = {
        use futures_util::TryStreamExt as _;
        app.audit_logs()
            .find(doc! { "action": "update" })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("collect")
    };
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].get_str("outcome").expect("outcome"), "success");
    assert_eq!(updates[0].get_i64("version").expect("version"), 2);

    // Break the trail for pending updates and deletes only (reads still audit):
    // a unique index and a record already holding the key they would need.
    let unique = IndexModel::builder()
        .keys(doc! { "action": 1, "outcome": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .partial_filter_expression(
                    doc! { "action": { "$in": ["update", "delete", "restore"] } },
                )
                .build(),
        )
        .build();
    app.audit_logs()
        .create_index(unique)
        .await
        .expect("sabotage index");
    app.audit_logs()
        .insert_one(doc! { "action": "update", "outcome": "pending" })
        .await
        .expect("block pending updates");
    app.audit_logs()
        .insert_one(doc! { "action": "delete", "outcome": "pending" })
        .await
        .expect("block pending deletes");

    let update = send(
        Method::PATCH,
        "/api/secrets/p/k",
        Some(serde_json::json!({ "value": "v3-unaudited" })),
    )
    .await;
    update.assert_error(500, "internal_error");
    let delete = send(Method::DELETE, "/api/secrets/p/k", None).await;
    delete.assert_error(500, "internal_error");

    let read = app.get("/api/secrets/p/k").await;
    assert_eq!(read.status, 200, "not deleted: {}", read.text);
    assert_eq!(
        (read.json()["value"].clone(), read.json()["version"].clone()),
        (serde_json::json!("v2"), serde_json::json!(2)),
        "no unaudited version"
    );
}

/// A UUID-addressed fetch that is refused does not say where the secret lives.
#[tokio::test]
async fn a_refused_fetch_does_not_name_the_project_or_path() {
    let outsider = crate::helpers::Identity::new("outsider");
    let app = spawn_app_with(&[
        (
            &format!("TOKEN_{}", outsider.service),
            outsider.token.as_str(),
        ),
        ("ALLOW_outsider", "elsewhere:"),
    ])
    .await;
    let created =
        crate::helpers::TestApp::send(app.request(reqwest::Method::POST, "/api/secrets").json(
            &serde_json::json!({ "project": "payroll", "path": "prod/db-root", "value": "v" }),
        ))
        .await;
    let id = created.json()["id"].as_str().expect("id").to_string();
    let res = crate::helpers::TestApp::send(
        app.request_as(
            Some(&outsider),
            reqwest::Method::POST,
            "/vault/secret/fetch",
        )
        .json(&serde_json::json!({ "secret_id": id })),
    )
    .await;
    let message = res.assert_error(403, "forbidden");
    for hidden in ["payroll", "prod", "db-root"] {
        assert!(!res.text.contains(hidden), "{hidden} in {}", res.text);
    }
    assert!(message.contains("outsider"), "{message}");
}
