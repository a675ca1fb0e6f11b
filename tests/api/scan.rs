//! `secret-manager scan`: the built binary on files, standard input and the
//! git index; output formats, baselines and exit codes. No server needed.
//!
//! Leaked values are assembled at run time so this file holds none whole.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");

/// A fake GitHub token (critical) for `seed`.
fn github_token(seed: u8) -> String {
    let body: String = (0..36)
        .map(|i| {
            let set = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
            set[(usize::from(seed) * 31 + i * 17 + i * i) % set.len()] as char
        })
        .collect();
    format!("{}{}", "ghp_", body)
}

fn scan_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(b) = stdin {
        input.write_all(b).expect("stdin");
    }
    drop(input);
    child.wait_with_output().expect("exits")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// A directory with one leaked token in `app/settings.py` and a clean file.
fn leaky_dir(token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("app")).expect("mkdir");
    std::fs::write(
        dir.path().join("app/settings.py"),
        format!("DEBUG = True\nGITHUB_TOKEN = \"{token}\"\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join("app/main.py"), "print('hello')\n").expect("write");
    dir
}

#[test]
fn scan_a_clean_tree_exits_0_and_a_leak_exits_1_with_the_secret_masked() {
    let token = github_token(1);
    let dir = leaky_dir(&token);
    std::fs::write(dir.path().join("clean.txt"), "nothing here\n").expect("write");

    let clean = scan_in(dir.path(), &["clean.txt"], None);
    assert_eq!(code(&clean), 0, "{}", out(&clean));
    assert!(out(&clean).contains("no secrets found"), "{}", out(&clean));

    let leak = scan_in(dir.path(), &["."], None);
    assert_eq!(code(&leak), 1, "{}", out(&leak));
    let table = out(&leak);
    assert!(table.contains("critical"), "{table}");
    assert!(table.contains("app/settings.py:2"), "{table}");
    assert!(table.contains("github-pat"), "{table}");
    assert!(table.contains("1 finding(s) in 3 file(s)"), "{table}");
    assert!(!table.contains(&token[4..]), "secret printed: {table}");
}

#[test]
fn scan_json_and_sarif_carry_locations_previews_and_fingerprints_only() {
    let token = github_token(2);
    let dir = leaky_dir(&token);

    let json = scan_in(dir.path(), &["--format", "json", "app"], None);
    assert_eq!(code(&json), 1);
    assert!(!out(&json).contains(&token[4..]), "secret in JSON");
    let doc: Value = serde_json::from_str(&out(&json)).expect("JSON");
    let f = &doc["findings"][0];
    assert_eq!(f["rule"], "github-pat");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["line"], 2);
    assert!(f["confidence"]
        .as_f64()
        .is_some_and(|c| c > 0.0 && c <= 1.0));
    assert_eq!(f["fingerprint"].as_str().map(str::len), Some(32));
    assert_eq!(doc["files_scanned"], 2);

    let sarif = scan_in(dir.path(), &["--format", "sarif", "app"], None);
    assert_eq!(code(&sarif), 1);
    assert!(!out(&sarif).contains(&token[4..]), "secret in SARIF");
    let doc: Value = serde_json::from_str(&out(&sarif)).expect("SARIF");
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    assert!(
        run["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules")
            .len()
            >= 60
    );
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "github-pat");
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"];
    assert_eq!(region["artifactLocation"]["uri"], "app/settings.py");
    assert_eq!(region["region"]["startLine"], 2);
}

#[test]
fn scan_baseline_accepts_known_findings_and_still_fails_on_new_ones() {
    let dir = leaky_dir(&github_token(3));
    let report = scan_in(dir.path(), &["--format", "json", "app"], None);
    std::fs::write(dir.path().join("baseline.json"), report.stdout).expect("write");

    let accepted = scan_in(dir.path(), &["--baseline", "baseline.json", "app"], None);
    assert_eq!(code(&accepted), 0, "{}", out(&accepted));

    std::fs::write(
        dir.path().join("app/new.py"),
        format!("T = \"{}\"\n", github_token(4)),
    )
    .expect("write");
    let fresh = scan_in(dir.path(), &["--baseline", "baseline.json", "app"], None);
    assert_eq!(code(&fresh), 1, "{}", out(&fresh));
    assert!(out(&fresh).contains("app/new.py:1"), "{}", out(&fresh));
    assert!(!out(&fresh).contains("settings.py"), "{}", out(&fresh));
}

#[test]
fn scan_fail_on_sets_the_threshold_and_stdin_is_scanned() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A Stripe test key is `low`.
    let low = format!("key = {}{}\n", "sk_test_", "Fk3Q9tZ2mLp7Rx4Vb8Nc1Yw6");
    let below = scan_in(
        dir.path(),
        &["--fail-on", "high", "-"],
        Some(low.as_bytes()),
    );
    assert_eq!(code(&below), 0, "{}", out(&below));
    assert!(out(&below).contains("<stdin>:1"), "{}", out(&below));
    let at = scan_in(dir.path(), &["--fail-on", "low", "-"], Some(low.as_bytes()));
    assert_eq!(code(&at), 1);
}

#[test]
fn scan_usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.json"), "[1, 2]").expect("write");
    // (arguments, why it is a usage error)
    let cases: &[(&[&str], &str)] = &[
        (&[], "no path"),
        (&["does-not-exist"], "a missing path"),
        (&["--fail-on", "severe", "."], "an unknown severity"),
        (&["--format", "xml", "."], "an unknown format"),
        (
            &["--baseline", "bad.json", "."],
            "a baseline that is not a report",
        ),
        (&["--baseline", "missing.json", "."], "a missing baseline"),
        (&["--max-file-size", "0", "."], "a zero size limit"),
        (&["--min-confidence", "2", "."], "a confidence above 1"),
        (&["--staged", "."], "paths with --staged"),
    ];
    for (args, why) in cases {
        let o = scan_in(dir.path(), args, None);
        assert_eq!(
            code(&o),
            2,
            "{why}: {args:?} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn scan_staged_reads_the_index_not_the_working_copy_and_honours_secretsignore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    git(root, &["init", "-q"]);
    std::fs::write(
        root.join("staged.py"),
        format!("T = \"{}\"\n", github_token(5)),
    )
    .expect("write");
    std::fs::write(
        root.join("ignored.py"),
        format!("T = \"{}\"\n", github_token(6)),
    )
    .expect("write");
    std::fs::write(root.join(".secretsignore"), "ignored.py\n").expect("write");
    git(root, &["add", "staged.py", "ignored.py"]);
    // The working copy is cleaned after staging: the index still leaks.
    std::fs::write(root.join("staged.py"), "T = None\n").expect("write");
    std::fs::write(
        root.join("unstaged.py"),
        format!("T = \"{}\"\n", github_token(7)),
    )
    .expect("write");

    let o = scan_in(root, &["--staged", "--format", "json"], None);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_str(&out(&o)).expect("JSON");
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, ["staged.py"]);

    let outside = tempfile::tempdir().expect("tempdir");
    let o = scan_in(outside.path(), &["--staged"], None);
    assert_eq!(code(&o), 2, "not a repository is a usage error");
}

#[test]
fn pre_commit_hook_definition_runs_scan_on_the_index() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".pre-commit-hooks.yaml"),
    )
    .expect(".pre-commit-hooks.yaml");
    let hooks: Value = serde_norway::from_str(&text).expect("YAML");
    let hook = &hooks[0];
    assert_eq!(hook["id"], "secret-manager-scan");
    assert_eq!(hook["entry"], "secret-manager scan --staged");
    assert_eq!(hook["pass_filenames"], false);
}

mod check_vault {
    //! `scan --check-vault` and `POST /api/scan/match`: only SHA-256 digests
    //! leave the machine; the service answers which managed secrets they are.

    use mongodb::bson::doc;
    use reqwest::Method;
    use serde_json::{json, Value};
    use sha2::{Digest as _, Sha256};

    use super::{code, github_token, out, BIN};
    use crate::helpers::{spawn_app_with_config, Identity, TestApp};

    const YAML: &str = "policies:
  - {name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}
  - {name: ci-lister, permissions: [{effect: allow, actions: [list], resources: ['secret:billing:*']}]}
services:
  - {name: admin, roles: [ops]}
  - {name: ci, roles: [ci-lister]}
  - {name: other, roles: []}
";

    fn sha(v: &str) -> String {
        hex::encode(Sha256::digest(v.as_bytes()))
    }

    async fn write(app: &TestApp, method: Method, path: &str, body: Value) {
        let res = TestApp::send(app.request(method, path).json(&body)).await;
        assert!(res.status < 300, "{}", res.text);
    }

    #[tokio::test]
    async fn a_leaked_current_version_is_critical_and_named_an_old_one_high() {
        let (admin, ci, other) = (
            Identity::new("admin"),
            Identity::new("ci"),
            Identity::new("other"),
        );
        let app = spawn_app_with_config(
            YAML,
            &[
                ("TOKEN_admin", &admin.token),
                ("TOKEN_ci", &ci.token),
                ("TOKEN_other", &other.token),
            ],
        )
        .await;
        let (old, current, unmanaged) = (github_token(1), github_token(2), github_token(3));
        let at = "/api/secrets/billing/github/deploy";
        write(
            &app,
            Method::POST,
            "/api/secrets",
            json!({ "project": "billing", "path": "github/deploy", "value": old }),
        )
        .await;
        write(&app, Method::PATCH, at, json!({ "value": current })).await;

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("deploy.sh"),
            format!("export A_TOKEN=\"{old}\"\nexport B_TOKEN=\"{current}\"\nexport C_TOKEN=\"{unmanaged}\"\n"),
        )
        .expect("write");
        // Blocking, off the runtime that serves the app.
        let (dir_path, address, service, token) = (
            dir.path().to_path_buf(),
            app.address.clone(),
            ci.service.clone(),
            ci.token.clone(),
        );
        let scanned = tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN)
                .args(["scan", "--check-vault", "--format", "json", "."])
                .current_dir(dir_path)
                .env("VAULT_URL", address)
                .env("VAULT_SERVICE", service)
                .env("VAULT_TOKEN", token)
                .output()
                .expect("scan runs")
        })
        .await
        .expect("join");
        assert_eq!(
            code(&scanned),
            1,
            "{}",
            String::from_utf8_lossy(&scanned.stderr)
        );
        let report: Value = serde_json::from_str(&out(&scanned)).expect("json report");
        let findings = report["findings"].as_array().expect("findings");
        let by_line = |line: u64| {
            findings
                .iter()
                .find(|f| f["line"] == line)
                .unwrap_or_else(|| panic!("a finding on line {line}: {report}"))
        };
        assert_eq!(by_line(2)["severity"], "critical");
        assert_eq!(
            by_line(2)["description"],
            "live managed secret leaked: billing/github/deploy v2"
        );
        assert_eq!(
            by_line(1)["description"],
            "managed secret leaked (an older version): billing/github/deploy v1"
        );
        assert!(!by_line(3)["description"]
            .as_str()
            .expect("text")
            .contains("managed"));
        for value in [&old, &current, &unmanaged] {
            assert!(
                !out(&scanned).contains(value.as_str()),
                "the report masks values"
            );
        }

        // The server saw digests only, and names nothing to a caller that may not list it.
        let audit = app
            .audit_logs()
            .find_one(doc! { "action": "scan_match", "actor": "ci" })
            .await
            .expect("query")
            .expect("audited");
        assert_eq!(audit.get_str("outcome").expect("outcome"), "success");
        assert!(!format!("{audit:?}").contains(&current));
        let blind = TestApp::send(
            app.request_as(Some(&other), Method::POST, "/api/scan/match")
                .json(&json!({ "sha256": [sha(&current)] })),
        )
        .await;
        assert_eq!(blind.status, 200, "{}", blind.text);
        assert_eq!(blind.json()["matches"], json!([]));
    }

    #[tokio::test]
    async fn bad_digests_are_refused_and_rewrap_fingerprints_old_versions() {
        let (admin, ci, other) = (
            Identity::new("admin"),
            Identity::new("ci"),
            Identity::new("other"),
        );
        let app = spawn_app_with_config(
            YAML,
            &[
                ("TOKEN_admin", &admin.token),
                ("TOKEN_ci", &ci.token),
                ("TOKEN_other", &other.token),
            ],
        )
        .await;
        let ask = |body: Value| {
            TestApp::send(
                app.request_as(Some(&ci), Method::POST, "/api/scan/match")
                    .json(&body),
            )
        };
        ask(json!({ "sha256": ["not-hex"] }))
            .await
            .assert_error(400, "invalid_field");
        ask(json!({ "sha256": ["ab".repeat(33)] }))
            .await
            .assert_error(400, "invalid_field");
        let too_many: Vec<String> = (0..1001).map(|i| format!("{i:064x}")).collect();
        ask(json!({ "sha256": too_many }))
            .await
            .assert_error(400, "invalid_field");
        ask(json!({ "values": ["x"] }))
            .await
            .assert_error(400, "invalid_field");
        let unauthenticated = TestApp::send(
            app.request_as(None, Method::POST, "/api/scan/match")
                .json(&json!({ "sha256": [] })),
        )
        .await;
        assert_eq!(unauthenticated.status, 401);

        // A version stored before fingerprints existed is found once rewrapped.
        let value = github_token(9);
        write(
            &app,
            Method::POST,
            "/api/secrets",
            json!({ "project": "billing", "path": "legacy", "value": value }),
        )
        .await;
        app.secrets()
            .update_many(doc! {}, doc! { "$unset": { "versions.$[].fp": "" } })
            .await
            .expect("strip fingerprints");
        let before = ask(json!({ "sha256": [sha(&value)] })).await;
        assert_eq!(before.json()["matches"], json!([]), "{}", before.text);
        let rewrap =
            TestApp::send(app.request_as(Some(&admin), Method::POST, "/api/sys/rewrap")).await;
        assert_eq!(rewrap.status, 200, "{}", rewrap.text);
        let after = ask(json!({ "sha256": [sha(&value).to_uppercase()] })).await;
        assert_eq!(
            after.json()["matches"],
            json!([{ "sha256": sha(&value), "project": "billing", "path": "legacy", "version": 1, "current": true, "deleted": false }]),
            "{}",
            after.text
        );
    }
}
