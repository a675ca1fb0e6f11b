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
