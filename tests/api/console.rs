//! The operator console (`/ui/`): its files and security headers, the small
//! API additions it uses (`/api/identity`, audit `outcome`/`until`, list
//! `contains`), and the end-to-end run in headless Chromium
//! (`tests/console/e2e.py`, Playwright driving `/usr/bin/chromium`).

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::call;
use crate::helpers::{spawn_app, spawn_app_with_config, Identity, Response, TestApp};

/// `operator` holds every right; `billing-app` reads billing secrets and has no
/// token (it self-registers one); `viewer` and `report-job` come from `ALLOW_*`.
const YAML: &str = "\
policies:
  - {name: operator, permissions: [{effect: allow, actions: [read, write, list, delete, admin], resources: ['*']}]}
  - {name: billing-app, permissions: [{effect: allow, actions: [read], resources: ['secret:billing:*']}]}
services:
  - {name: operator, roles: [operator]}
  - {name: billing-app, roles: [billing-app]}
";

fn header<'a>(res: &'a Response, name: &str) -> &'a str {
    res.headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .expect("ascii")
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_strict_security_headers() {
    let app = spawn_app().await;
    let index = TestApp::send(app.request_as(None, Method::GET, "/ui/")).await;
    assert_eq!(index.status, 200);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    let csp = header(&index, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&index, "x-frame-options"), "DENY");
    assert_eq!(header(&index, "referrer-policy"), "no-referrer");
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    // No inline script or style: every <script> has a src, no style attribute or element.
    let html = &index.text;
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=").count()
    );
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "{html}"
    );

    for (file, mime) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("dom.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let res = TestApp::send(app.request_as(None, Method::GET, &format!("/ui/{file}"))).await;
        assert_eq!(res.status, 200, "{file}");
        assert_eq!(header(&res, "content-type"), mime, "{file}");
        assert!(
            ![
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write"
            ]
            .iter()
            .any(|sink| res.text.contains(sink)),
            "{file} builds the DOM with textContent only"
        );
    }
    let missing = TestApp::send(app.request_as(None, Method::GET, "/ui/nope.js")).await;
    missing.assert_error(404, "route_not_found");
    let bare = app
        .http
        .get(format!("{}/ui", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(bare.url().path(), "/ui/", "/ui redirects to /ui/");

    // API answers, successful or not, are never cached.
    let ok = TestApp::send(app.request(Method::GET, "/api/identity")).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(header(&ok, "cache-control"), "no-store");
    assert_eq!(header(&ok, "x-frame-options"), "DENY");
    let refused = TestApp::send(app.request_as(None, Method::GET, "/api/secrets")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(header(&refused, "cache-control"), "no-store");
    let seed = app.fetch(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(header(&seed, "cache-control"), "no-store");
}

#[tokio::test]
async fn identity_names_the_caller_and_its_admin_rights() {
    let operator = Identity::new("operator");
    let viewer = Identity::new("viewer");
    let app = spawn_app_with_config(
        YAML,
        &[
            ("TOKEN_operator", &operator.token),
            ("TOKEN_viewer", &viewer.token),
            ("ALLOW_viewer", "*"),
        ],
    )
    .await;
    let res = call(&app, &operator, Method::GET, "/api/identity", None).await;
    assert_eq!(
        res.json(),
        json!({ "service": "operator", "sys_admin": true, "audit_admin": true })
    );
    let res = call(&app, &viewer, Method::GET, "/api/identity", None).await;
    assert_eq!(
        res.json(),
        json!({ "service": "viewer", "sys_admin": false, "audit_admin": false })
    );
    let wrong = Identity::new("viewer");
    call(&app, &wrong, Method::GET, "/api/identity", None)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn audit_filters_by_outcome_and_time_range() {
    let me = Identity::new("operator");
    let app = spawn_app_with_config(YAML, &[("TOKEN_operator", &me.token)]).await;
    let body = json!({ "project": "p", "path": "a", "value": "v1" });
    assert_eq!(
        call(&app, &me, Method::POST, "/api/secrets", Some(body))
            .await
            .status,
        201
    );
    let stale = json!({ "value": "x", "expected_version": 7 });
    call(&app, &me, Method::PATCH, "/api/secrets/p/a", Some(stale))
        .await
        .assert_error(409, "version_conflict");
    let audit = |query: &'static str| {
        let app = &app;
        let me = me.clone();
        async move {
            let res = call(
                app,
                &me,
                Method::GET,
                &format!("/api/audit?project=p&{query}"),
                None,
            )
            .await;
            assert_eq!(res.status, 200, "{query}: {}", res.text);
            res.json()
        }
    };
    let failed = audit("outcome=failed").await;
    let records = failed["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{failed}");
    assert_eq!(records[0]["outcome"], "conflict");
    assert_eq!(failed["totals"], json!({ "success": 0, "failed": 1 }));
    let created = audit("outcome=success").await;
    assert!(created["records"]
        .as_array()
        .expect("records")
        .iter()
        .all(|r| r["outcome"] == "success"));
    assert_eq!(
        audit("outcome=conflict&path=a").await["records"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let past = audit("until=2000-01-01T00:00:00Z").await;
    assert_eq!(past["records"], json!([]), "nothing before 2000");
    let window =
        audit("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&outcome=failed").await;
    assert_eq!(window["totals"]["failed"], 1);
    call(&app, &me, Method::GET, "/api/audit?outcome=bad", None)
        .await
        .assert_error(400, "invalid_query");
}

#[tokio::test]
async fn list_searches_paths_by_substring_with_a_cursor_bound_to_the_search() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    for path in [
        "prod/db-password",
        "prod/api-key",
        "dev/db-password",
        "dev/db-user",
        "x.y/a",
    ] {
        let body = json!({ "project": "p", "path": path, "value": "v" });
        assert_eq!(
            call(&app, &me, Method::POST, "/api/secrets", Some(body))
                .await
                .status,
            201
        );
    }
    let paths = |res: &Response| -> Vec<String> {
        assert_eq!(res.status, 200, "{}", res.text);
        res.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["path"].as_str().expect("path").to_string())
            .collect()
    };
    let list = |q: &str| {
        let path = format!("/api/secrets?project=p&{q}");
        let (app, me) = (&app, &me);
        async move { call(app, me, Method::GET, &path, None).await }
    };
    assert_eq!(
        paths(&list("contains=db-pass").await),
        ["dev/db-password", "prod/db-password"]
    );
    assert_eq!(
        paths(&list("contains=db&prefix=dev/").await),
        ["dev/db-password", "dev/db-user"]
    );
    // Taken literally: `.` is not regular-expression syntax.
    assert_eq!(paths(&list("contains=.").await), ["x.y/a"]);
    assert_eq!(paths(&list("contains=").await).len(), 5);
    let first = list("contains=db&limit=1").await;
    assert_eq!(paths(&first), ["dev/db-password"]);
    let cursor = first.json()["next_cursor"]
        .as_str()
        .expect("more")
        .to_string();
    let next = list(&format!("contains=db&limit=1&cursor={cursor}")).await;
    assert_eq!(paths(&next), ["dev/db-user"]);
    list(&format!("contains=api&limit=1&cursor={cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    let long = "a".repeat(513);
    list("contains=a%00b")
        .await
        .assert_error(400, "invalid_prefix");
    list(&format!("contains={long}"))
        .await
        .assert_error(400, "invalid_prefix");
}

/// The browser run: every view, as tests/console/e2e.py describes.
#[tokio::test]
async fn the_console_works_end_to_end_in_headless_chromium() {
    let operator = Identity::new("operator");
    let viewer = Identity::new("viewer");
    let reader = Identity::new("report-job");
    let app = spawn_app_with_config(
        YAML,
        &[
            ("TOKEN_operator", &operator.token),
            ("TOKEN_viewer", &viewer.token),
            ("ALLOW_viewer", "*"),
            ("TOKEN_report-job", &reader.token),
            ("ALLOW_report-job", "reports:"),
        ],
    )
    .await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/console/e2e.py");
    // docs/console/ (the README's pictures) only when asked, so a test run
    // leaves the work tree clean; a temporary directory otherwise.
    let scratch = tempfile::tempdir().expect("tempdir");
    let shots = match std::env::var_os("CONSOLE_SCREENSHOTS") {
        Some(_) => root.join("docs/console"),
        None => scratch.path().to_path_buf(),
    };
    let env = [
        ("CONSOLE_URL", app.address.clone()),
        ("ADMIN_SERVICE", operator.service.clone()),
        ("ADMIN_TOKEN", operator.token.clone()),
        ("VIEWER_SERVICE", viewer.service.clone()),
        ("VIEWER_TOKEN", viewer.token.clone()),
        ("READER_SERVICE", reader.service.clone()),
        ("READER_TOKEN", reader.token.clone()),
        ("TOKEN_SERVICE", "billing-app".to_string()),
        ("SCREENSHOTS", shots.display().to_string()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .envs(env)
            .output()
            .expect("python3 runs (scripts/test.sh installs playwright)")
    })
    .await
    .expect("blocking");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console e2e run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("every step passed"), "{stdout}");
}

#[tokio::test]
async fn a_new_version_may_change_the_metadata_too() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    let body = json!({ "project": "p", "path": "m", "value": "v1",
        "description": "old", "tags": ["a"], "type": "password" });
    assert_eq!(
        call(&app, &me, Method::POST, "/api/secrets", Some(body))
            .await
            .status,
        201
    );
    let patch = |body: Value| call(&app, &me, Method::PATCH, "/api/secrets/p/m", Some(body));
    let res = patch(json!({ "value": "v2", "expected_version": 1,
        "description": "new", "tags": ["b", "c"] }))
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let record = res.json();
    assert_eq!(record["version"], 2);
    assert_eq!(record["description"], "new");
    assert_eq!(record["tags"], json!(["b", "c"]));
    assert_eq!(record["type"], "password", "absent: unchanged");
    let listed = call(&app, &me, Method::GET, "/api/secrets?project=p", None).await;
    let item = &listed.json()["items"][0];
    assert_eq!(
        (&item["description"], &item["tags"], &item["type"]),
        (&json!("new"), &json!(["b", "c"]), &json!("password"))
    );
    // An empty type removes it; the value alone keeps the rest.
    let res = patch(json!({ "value": "v3", "type": "" })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let listed = call(&app, &me, Method::GET, "/api/secrets?project=p", None).await;
    let item = &listed.json()["items"][0];
    assert!(item.get("type").is_none_or(Value::is_null), "{item}");
    assert_eq!(item["description"], "new");
    assert_eq!(item["version"], 3);
    patch(json!({ "value": "v4", "tags": [""] }))
        .await
        .assert_error(400, "invalid_metadata");
    let versions = call(&app, &me, Method::GET, "/api/secrets/p/m/versions", None).await;
    assert_eq!(versions.json()["current_version"], 3, "nothing written");
}
