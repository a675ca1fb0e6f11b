//! The built binary's client subcommands against a spawned server.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{free_port, spawn_app, spawn_app_with_config, Identity, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");

async fn cli(app: &TestApp, who: &Identity, args: &[&str], stdin: Option<&[u8]>) -> Output {
    cli_at(&app.address, who, args, stdin).await
}

async fn cli_at(url: &str, who: &Identity, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let (url, who) = (url.to_string(), who.clone());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(<[u8]>::to_vec);
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(&args)
            .env("VAULT_URL", url)
            .env("VAULT_SERVICE", &who.service)
            .env("VAULT_TOKEN", &who.token)
            .env_remove("VAULT_TOKEN_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(b) = stdin {
            input.write_all(&b).expect("stdin");
        }
        drop(input);
        child.wait_with_output().expect("exits")
    })
    .await
    .expect("blocking")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test]
async fn create_and_fetch_with_values_from_argument_file_and_stdin() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v");
    std::fs::write(&file, [0u8, 1, 2, 255]).expect("write");
    let at_file = format!("@{}", file.display());
    // (value argument, standard input, expected bytes)
    type Case<'a> = (&'a str, Option<&'a [u8]>, Vec<u8>);
    let cases: [Case; 3] = [
        ("plain-argument", None, b"plain-argument".to_vec()),
        (&at_file, None, vec![0, 1, 2, 255]),
        ("-", Some(b"from-stdin"), b"from-stdin".to_vec()),
    ];
    for (value, stdin, expected) in cases {
        let created = cli(&app, &me, &["create", value], stdin).await;
        assert!(created.status.success(), "{value}: {}", err(&created));
        let id = out(&created).trim().to_string();
        let fetched = cli(&app, &me, &["fetch", &id], None).await;
        assert_eq!(fetched.stdout, expected, "{value}");
    }
}

#[tokio::test]
async fn named_secret_lifecycle_in_text_and_json() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    let put = cli(
        &app,
        &me,
        &["put", "web/prod/db-password", "pw-1", "--tag", "db"],
        None,
    )
    .await;
    assert!(put.status.success(), "{}", err(&put));
    assert_eq!(out(&put).trim(), "created web/prod/db-password version 1");
    assert!(!out(&put).contains("pw-1"), "writes do not echo the value");
    let patched = cli(
        &app,
        &me,
        &[
            "patch",
            "web/prod/db-password",
            "-",
            "--expected-version",
            "1",
        ],
        Some(b"pw-2"),
    )
    .await;
    assert_eq!(
        out(&patched).trim(),
        "updated web/prod/db-password version 2"
    );
    assert_eq!(
        out(&cli(&app, &me, &["get", "web/prod/db-password"], None).await),
        "pw-2"
    );
    assert_eq!(
        out(&cli(
            &app,
            &me,
            &["get", "web/prod/db-password", "--version", "1"],
            None
        )
        .await),
        "pw-1"
    );
    let json: Value = serde_json::from_str(&out(&cli(
        &app,
        &me,
        &["get", "web/prod/db-password", "--json"],
        None,
    )
    .await))
    .expect("json");
    assert_eq!(
        (json["value"].clone(), json["version"].clone()),
        (Value::from("pw-2"), Value::from(2))
    );
    let versions = out(&cli(&app, &me, &["versions", "web/prod/db-password"], None).await);
    assert!(
        versions.starts_with("VERSION") && versions.lines().count() == 3,
        "{versions}"
    );
    let list = out(&cli(&app, &me, &["list", "--project", "web"], None).await);
    assert!(
        list.contains("prod/db-password") && !list.contains("pw-2"),
        "{list}"
    );
    let listed: Value =
        serde_json::from_str(&out(
            &cli(&app, &me, &["list", "--all", "--json"], None).await
        ))
        .expect("json");
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);
    assert!(cli(&app, &me, &["delete", "web/prod/db-password"], None)
        .await
        .status
        .success());
    let gone = cli(&app, &me, &["get", "web/prod/db-password"], None).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        err(&gone).contains("404 secret_not_found"),
        "{}",
        err(&gone)
    );
    assert!(cli(&app, &me, &["restore", "web/prod/db-password"], None)
        .await
        .status
        .success());
    assert_eq!(
        out(&cli(&app, &me, &["get", "web/prod/db-password"], None).await),
        "pw-2"
    );
    let status = cli(&app, &me, &["status"], None).await;
    assert!(
        out(&status).contains("ready; Authentication successful for service 'tester'"),
        "{}",
        out(&status)
    );
}

#[tokio::test]
async fn exit_codes_say_who_said_no() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    let wrong = Identity {
        token: "wrong-token-zzzzzzzz".into(),
        ..me.clone()
    };
    // (case, arguments, identity, exit code, stderr)
    type Case<'a> = (&'a str, Vec<&'a str>, &'a Identity, i32, &'a str);
    let cases: [Case; 6] = [
        ("missing argument", vec!["get"], &me, 2, "KEY"),
        (
            "unknown subcommand",
            vec!["frobnicate"],
            &me,
            2,
            "unrecognized subcommand",
        ),
        (
            "bad key",
            vec!["get", "no-slash"],
            &me,
            2,
            "must be `<project>/<path>`",
        ),
        (
            "unreadable file",
            vec!["create", "@/nonexistent/file"],
            &me,
            2,
            "cannot read /nonexistent/file",
        ),
        (
            "server says 404",
            vec!["fetch", "00000000-0000-4000-8000-000000000000"],
            &me,
            1,
            "404 secret_not_found",
        ),
        (
            "server says 401",
            vec!["status"],
            &wrong,
            1,
            "401 unauthorized",
        ),
    ];
    for (case, args, who, code, message) in cases {
        let o = cli(&app, who, &args, None).await;
        assert_eq!(o.status.code(), Some(code), "{case}: {}", err(&o));
        assert!(err(&o).contains(message), "{case}: {}", err(&o));
        assert!(!err(&o).contains("wrong-token"), "{case}: token echoed");
    }
}

#[tokio::test]
async fn token_from_a_file() {
    let app = spawn_app().await;
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), format!("{}\n", app.identity.token)).expect("write");
    let (url, path) = (app.address.clone(), file.path().display().to_string());
    let o = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["status", "--service", "tester"])
            .env("VAULT_URL", url)
            .env("VAULT_TOKEN_FILE", path)
            .env_remove("VAULT_TOKEN")
            .output()
            .expect("runs")
    })
    .await
    .expect("blocking");
    assert!(o.status.success(), "{}", err(&o));
}

#[tokio::test]
async fn run_puts_secrets_in_the_child_environment_without_printing_them() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    cli(&app, &me, &["put", "ci/db", "s3cr3t-db"], None).await;
    cli(&app, &me, &["put", "ci/api", "s3cr3t-api"], None).await;
    let o = cli(
        &app,
        &me,
        &["run", "--secret", "DB_PASS=ci/db", "--secret", "API_KEY=ci/api", "--", "sh", "-c", "test \"$DB_PASS\" = s3cr3t-db && test \"$API_KEY\" = s3cr3t-api && test -z \"${VAULT_TOKEN+set}\" && test -z \"${VAULT_TOKEN_FILE+set}\" && echo env-ok; exit 7"],
        None,
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(7),
        "the child's exit code: {}",
        err(&o)
    );
    assert_eq!(out(&o).trim(), "env-ok");
    assert!(!err(&o).contains("s3cr3t"));
    let missing = cli(
        &app,
        &me,
        &["run", "--secret", "X=ci/missing", "--", "true"],
        None,
    )
    .await;
    assert_eq!(missing.status.code(), Some(1), "{}", err(&missing));
}

#[tokio::test]
async fn key_commands_rotate_rewrap_and_report() {
    let admin = Identity::new("admin");
    let yaml = "policies: [{name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}]\nservices: [{name: admin, roles: [ops]}]";
    let app = spawn_app_with_config(yaml, &[("TOKEN_admin", &admin.token)]).await;
    let me = app.identity.clone();
    for i in 0..5 {
        cli(&app, &me, &["put", &format!("k/s{i}"), "v"], None).await;
    }
    let rotated = cli(&app, &admin, &["key", "rotate"], None).await;
    assert!(
        out(&rotated).starts_with("active data key: dk-"),
        "{}",
        err(&rotated)
    );
    let rewrap = cli(&app, &admin, &["key", "rewrap", "--batch", "2"], None).await;
    assert!(rewrap.status.success(), "{}", err(&rewrap));
    assert!(
        out(&rewrap).contains("done: 5 versions re-sealed"),
        "{}",
        out(&rewrap)
    );
    let status: Value =
        serde_json::from_str(&out(
            &cli(&app, &admin, &["key", "status", "--json"], None).await
        ))
        .expect("json");
    let active = status["active_key_id"].as_str().expect("active");
    for k in status["keys"].as_array().expect("keys") {
        let expected = if k["key_id"] == active { 5 } else { 0 };
        assert_eq!(k["versions"], expected, "{k}");
    }
    let denied = cli(&app, &me, &["key", "rotate"], None).await;
    assert_eq!(denied.status.code(), Some(1));
    assert!(err(&denied).contains("403 forbidden"));
}

#[tokio::test]
async fn malformed_names_are_usage_errors_before_any_request() {
    // Nothing listens here: a request would fail with exit 1, not 2.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let me = Identity::new("tester");
    // (case, arguments, what stderr names)
    let cases: [(&str, Vec<&str>, &str); 10] = [
        (
            "no path",
            vec!["get", "nopath"],
            "must be `<project>/<path>`",
        ),
        ("dot-dot segment", vec!["get", "a/../b"], "`..` segments"),
        (
            "hidden project",
            vec!["put", ".x/a", "v"],
            "`project` must be",
        ),
        (
            "reserved tail",
            vec!["patch", "p/a/versions", "v"],
            "reserved",
        ),
        ("empty segment", vec!["delete", "p/a//b"], "empty segments"),
        ("space in path", vec!["restore", "p/a b"], "only letters"),
        ("empty path", vec!["versions", "p/"], "1-512 characters"),
        (
            "bad project filter",
            vec!["list", "--project", "a:b"],
            "`project` must be",
        ),
        (
            "run key",
            vec!["run", "--secret", "X=nopath", "--", "true"],
            "must be `<project>/<path>`",
        ),
        (
            "run spec",
            vec!["run", "--secret", "ci/db", "--", "true"],
            "must be ENV=<project>/<path>",
        ),
    ];
    for (case, args, message) in cases {
        let o = cli_at(&nowhere, &me, &args, None).await;
        assert_eq!(o.status.code(), Some(2), "{case}: {}", err(&o));
        assert!(err(&o).contains(message), "{case}: {}", err(&o));
        assert!(
            !err(&o).contains("cannot reach"),
            "{case}: a request was sent"
        );
    }
}

#[tokio::test]
async fn list_pages_with_a_dotted_project_a_slashed_prefix_and_a_cursor() {
    let app = spawn_app().await;
    let me = app.identity.clone();
    for key in [
        "a.b/dir/one",
        "a.b/dir/two",
        "a.b/dir/three",
        "a.b/other",
        "ab/dir/x",
    ] {
        let put = cli(&app, &me, &["put", key, "v"], None).await;
        assert!(put.status.success(), "{key}: {}", err(&put));
    }
    let filter = ["list", "--project", "a.b", "--prefix", "dir/", "--json"];
    let keys = |o: &Output| -> (Vec<String>, Option<String>) {
        let list: Value = serde_json::from_str(&out(o)).expect("json");
        let keys = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["key"].as_str().expect("key").to_string())
            .collect();
        (keys, list["next_cursor"].as_str().map(str::to_string))
    };

    let all = cli(
        &app,
        &me,
        &[&filter[..], &["--limit", "1", "--all"]].concat(),
        None,
    )
    .await;
    assert!(all.status.success(), "{}", err(&all));
    assert_eq!(
        keys(&all),
        (
            vec![
                "a.b/dir/one".into(),
                "a.b/dir/three".into(),
                "a.b/dir/two".into()
            ],
            None
        )
    );

    let first = cli(&app, &me, &[&filter[..], &["--limit", "2"]].concat(), None).await;
    let (page, cursor) = keys(&first);
    assert_eq!(page, ["a.b/dir/one", "a.b/dir/three"]);
    let cursor = cursor.expect("a cursor for the next page");
    let rest = cli(
        &app,
        &me,
        &[&filter[..], &["--limit", "2", "--cursor", &cursor]].concat(),
        None,
    )
    .await;
    assert_eq!(keys(&rest), (vec!["a.b/dir/two".into()], None));

    let text = cli(
        &app,
        &me,
        &[
            "list",
            "--project",
            "a.b",
            "--prefix",
            "dir/",
            "--limit",
            "2",
        ],
        None,
    )
    .await;
    assert_eq!(out(&text).lines().count(), 3, "{}", out(&text));
    assert!(err(&text).contains("more: --cursor "), "{}", err(&text));
}

/// The workflow commands: a service registers, an admin approves it; a denied
/// read leaves a request the admin grants.
#[tokio::test]
async fn register_tokens_and_requests_commands_drive_the_workflow() {
    let admin = Identity::new("admin");
    let yaml = "policies: [{name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}, {name: reader, permissions: [{effect: allow, actions: [read], resources: ['secret:jobs:*']}]}]\nservices: [{name: admin, roles: [ops]}, {name: batch-job, roles: [reader]}]";
    let app = spawn_app_with_config(yaml, &[("TOKEN_admin", &admin.token)]).await;
    let me = app.identity.clone();
    cli(&app, &me, &["put", "billing/prod/db", "db-pw"], None).await;

    // Register (no identity needed; the token comes from VAULT_TOKEN) and approve.
    let job = Identity::new("batch-job");
    let registered = cli(
        &app,
        &job,
        &["register", "--name", "batch-job", "--version", "1.0"],
        None,
    )
    .await;
    assert_eq!(registered.status.code(), Some(0), "{}", err(&registered));
    assert!(out(&registered).contains("pending"), "{}", out(&registered));
    let listed = cli(
        &app,
        &admin,
        &["tokens", "list", "--state", "pending", "--json"],
        None,
    )
    .await;
    let items: serde_json::Value = serde_json::from_str(&out(&listed)).expect("json");
    let id = items["items"][0]["id"].as_str().expect("id").to_string();
    assert!(
        !out(&listed).contains(&job.token),
        "the token is never shown"
    );
    let approved = cli(&app, &admin, &["tokens", "approve", &id], None).await;
    assert_eq!(approved.status.code(), Some(0), "{}", err(&approved));

    // Its read of billing (outside its role) is denied and leaves a request.
    let denied = cli(&app, &job, &["get", "billing/prod/db"], None).await;
    assert_eq!(denied.status.code(), Some(1), "{}", err(&denied));
    let requests = cli(
        &app,
        &admin,
        &["requests", "list", "--status", "pending", "--json"],
        None,
    )
    .await;
    let items: serde_json::Value = serde_json::from_str(&out(&requests)).expect("json");
    let request = items["items"][0]["id"].as_str().expect("id").to_string();
    let granted = cli(
        &app,
        &admin,
        &["requests", "approve", &request, "--expires-in", "600"],
        None,
    )
    .await;
    assert!(out(&granted).contains("granted"), "{}", out(&granted));
    let read = cli(&app, &job, &["get", "billing/prod/db"], None).await;
    assert_eq!(out(&read), "db-pw", "{}", err(&read));
    let again = cli(&app, &admin, &["requests", "deny", &request], None).await;
    assert_eq!(
        again.status.code(),
        Some(1),
        "a granted request cannot be denied"
    );
    assert!(
        err(&again).contains("invalid_transition"),
        "{}",
        err(&again)
    );
}
