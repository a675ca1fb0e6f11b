//! `GET /api/audit` as a per-secret access log (the Mahavishnu spec's
//! `get_access_log`): a service holding `admin` on one secret reads that
//! secret's records, with totals of successful and failed accesses.

use reqwest::Method;
use serde_json::json;

use crate::helpers::call;
use crate::helpers::{spawn_app_with_config, Identity};

const CONFIG: &str = r#"
policies:
  - name: db-owner
    permissions:
      - effect: allow
        actions: [read, admin]
        resources: ["secret:billing:prod/db"]
  - name: writer
    permissions:
      - effect: allow
        actions: [read, write, list]
        resources: ["secret:billing:*"]
  - name: auditor
    permissions:
      - effect: allow
        actions: [admin]
        resources: ["audit"]
services:
  - name: owner
    roles: [db-owner]
  - name: writer
    roles: [writer]
  - name: auditor
    roles: [auditor]
  - name: outsider
    roles: []
"#;

#[tokio::test]
async fn an_admin_of_a_secret_reads_its_access_log_with_totals() {
    let [owner, writer, auditor, outsider] =
        ["owner", "writer", "auditor", "outsider"].map(Identity::new);
    let app = spawn_app_with_config(
        CONFIG,
        &[
            ("TOKEN_owner", &owner.token),
            ("TOKEN_writer", &writer.token),
            ("TOKEN_auditor", &auditor.token),
            ("TOKEN_outsider", &outsider.token),
        ],
    )
    .await;
    for path in ["prod/db", "prod/other"] {
        let body = json!({ "project": "billing", "path": path, "value": "v" });
        let res = call(&app, &writer, Method::POST, "/api/secrets", Some(body)).await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    for who in [&writer, &owner] {
        let res = call(&app, who, Method::GET, "/api/secrets/billing/prod/db", None).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    for _ in 0..2 {
        call(
            &app,
            &outsider,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
        .await
        .assert_error(403, "forbidden");
    }
    call(
        &app,
        &writer,
        Method::GET,
        "/api/secrets/billing/prod/other",
        None,
    )
    .await;

    let log = call(
        &app,
        &owner,
        Method::GET,
        "/api/audit?project=billing&path=prod/db",
        None,
    )
    .await;

    assert_eq!(log.status, 200, "{}", log.text);
    let log = log.json();
    let records = log["records"].as_array().expect("records");
    assert_eq!(
        records.len(),
        6,
        "create, two reads, two refused reads and the access request the first refusal opened: {log}"
    );
    for r in records {
        assert_eq!(
            (&r["project"], &r["path"]),
            (&json!("billing"), &json!("prod/db")),
            "{r}"
        );
    }
    assert_eq!(records[0]["actor"], "outsider", "newest first");
    assert_eq!(log["totals"], json!({ "success": 4, "failed": 2 }));
    let page = call(
        &app,
        &owner,
        Method::GET,
        "/api/audit?project=billing&path=prod/db&limit=1",
        None,
    )
    .await;
    let page = page.json();
    assert_eq!(page["records"].as_array().expect("records").len(), 1);
    assert_eq!(
        page["totals"],
        json!({ "success": 5, "failed": 2 }),
        "totals cover every match, the first log read (`audit_read`) included"
    );

    let refused = [
        (&owner, "/api/audit", "'audit'"),
        (&owner, "/api/audit?project=billing", "'audit'"),
        (
            &owner,
            "/api/audit?project=billing&path=prod/other",
            "'billing:prod/other'",
        ),
        (
            &writer,
            "/api/audit?project=billing&path=prod/db",
            "'billing:prod/db'",
        ),
        (
            &outsider,
            "/api/audit?project=billing&path=prod/db",
            "'billing:prod/db'",
        ),
    ];
    for (who, path, target) in refused {
        let message = call(&app, who, Method::GET, path, None)
            .await
            .assert_error(403, "forbidden");
        assert!(
            message.ends_with(target),
            "{} {path}: {message}",
            who.service
        );
    }
    let wildcard = call(
        &app,
        &owner,
        Method::GET,
        "/api/audit?project=billing&path=prod/*",
        None,
    )
    .await;
    assert_eq!(
        wildcard.status, 400,
        "a pattern is not a path: {}",
        wildcard.text
    );

    let all = call(
        &app,
        &auditor,
        Method::GET,
        "/api/audit?project=billing&path=prod/db",
        None,
    )
    .await;
    let all = all.json();
    assert_eq!(
        all["totals"],
        json!({ "success": 6, "failed": 4 }),
        "plus the owner's two log reads and the two refused ones: {all}"
    );
    let everything = call(&app, &auditor, Method::GET, "/api/audit", None).await;
    assert_eq!(everything.status, 200);
    let totals = &everything.json()["totals"];
    assert!(
        totals["success"].as_u64().expect("success") >= 7,
        "{totals}"
    );
    assert!(totals["failed"].as_u64().expect("failed") >= 7, "{totals}");
}

/// `GET /api/audit/summary`: totals per secret and per actor by aggregation,
/// for the audit admin (all) and for a secret's admin (that secret only).
#[tokio::test]
async fn the_summary_totals_accesses_per_secret_and_per_actor() {
    let [owner, writer, auditor, outsider] =
        ["owner", "writer", "auditor", "outsider"].map(Identity::new);
    let app = spawn_app_with_config(
        CONFIG,
        &[
            ("TOKEN_owner", &owner.token),
            ("TOKEN_writer", &writer.token),
            ("TOKEN_auditor", &auditor.token),
            ("TOKEN_outsider", &outsider.token),
        ],
    )
    .await;
    for path in ["prod/db", "prod/other"] {
        let body = json!({ "project": "billing", "path": path, "value": "summary-value-9" });
        let res = call(&app, &writer, Method::POST, "/api/secrets", Some(body)).await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    for _ in 0..3 {
        let res = call(
            &app,
            &writer,
            Method::GET,
            "/api/secrets/billing/prod/db",
            None,
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    call(
        &app,
        &outsider,
        Method::GET,
        "/api/secrets/billing/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");

    let all = call(
        &app,
        &auditor,
        Method::GET,
        "/api/audit/summary?project=billing",
        None,
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.text);
    let all = all.json();
    let secret = |path: &str| {
        all["per_secret"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("a row for {path}: {all}"))
    };
    // prod/db: create + 3 reads succeeded; the refused read and the access
    // request it opened are the failed one and a success of the outsider's.
    let db = secret("prod/db");
    assert_eq!(
        (db["project"].clone(), db["failed"].clone()),
        (json!("billing"), json!(1)),
        "{all}"
    );
    assert_eq!(db["total"], json!(db["success"].as_u64().expect("n") + 1));
    assert_eq!(secret("prod/other")["total"], json!(1), "its create");
    let actor = |name: &str| {
        all["per_actor"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["actor"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("a row for {name}: {all}"))
    };
    assert_eq!(
        actor("writer")["success"],
        json!(5),
        "2 creates and 3 reads: {all}"
    );
    assert!(actor("outsider")["failed"].as_u64().expect("n") >= 1);
    assert_eq!(all["truncated"], json!(false));
    assert!(!all.to_string().contains("summary-value-9"));

    // A secret's admin sees that secret's summary only; others are refused.
    let own = call(
        &app,
        &owner,
        Method::GET,
        "/api/audit/summary?project=billing&path=prod/db",
        None,
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json()["per_secret"].as_array().expect("rows").len(), 1);
    call(
        &app,
        &owner,
        Method::GET,
        "/api/audit/summary?project=billing",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    call(
        &app,
        &auditor,
        Method::GET,
        "/api/audit/summary?since=yesterday",
        None,
    )
    .await
    .assert_error(400, "invalid_query");
    // `action` names one operation; anything else is a clear 400.
    let long = format!("/api/audit?action={}", "a".repeat(41));
    for bad in [
        "/api/audit?action=Read",
        "/api/audit?action=",
        long.as_str(),
    ] {
        let res = call(&app, &auditor, Method::GET, bad, None).await;
        let message = res.assert_error(400, "invalid_query");
        assert!(message.contains("`action`"), "{bad}: {message}");
    }
    let reads = call(&app, &auditor, Method::GET, "/api/audit?action=read", None).await;
    assert_eq!(reads.status, 200, "{}", reads.text);
    let records = reads.json()["records"].as_array().expect("records").clone();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["action"] == "read"), "{records:?}");
}
