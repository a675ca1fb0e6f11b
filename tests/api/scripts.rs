//! scripts/create_secret.sh and scripts/fetch_secret.sh against a running server.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::helpers::{spawn_app, Identity};

fn script(name: &str, app: &(String, Identity), args: &[&str], stdin: Option<&[u8]>) -> Output {
    let (url, who) = app;
    let mut child = Command::new(format!("scripts/{name}"))
        .args(args)
        .env("VAULT_URL", url)
        .env("VAULT_SERVICE", &who.service)
        .env("VAULT_TOKEN", &who.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("script ends")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn values_from_an_argument_a_file_and_stdin_round_trip() {
    let app = spawn_app().await;
    let url = (app.address.clone(), app.identity.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("blob");
    let binary: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    std::fs::write(&file, &binary).expect("write");
    let file = file.to_str().expect("utf8").to_string();

    // (case, arguments, standard input, expected bytes)
    type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a [u8]>, Vec<u8>);
    let cases: [Case; 3] = [
        (
            "argument",
            vec!["s3cret with spaces & \"quotes\""],
            None,
            b"s3cret with spaces & \"quotes\"".to_vec(),
        ),
        ("file", vec!["-f", &file], None, binary.clone()),
        (
            "stdin",
            vec!["-"],
            Some(b"from stdin\n"),
            b"from stdin\n".to_vec(),
        ),
    ];
    for (case, args, input, expected) in cases {
        let url = url.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let input = input.map(|b| b.to_vec());
        let (created, fetched) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let created = script("create_secret.sh", &url, &args, input.as_deref());
            let id = stdout(&created);
            let fetched = script("fetch_secret.sh", &url, &[&id], None);
            (created, fetched)
        })
        .await
        .expect("blocking");
        assert!(created.status.success(), "{case}: {}", stderr(&created));
        assert!(
            uuid::Uuid::parse_str(&stdout(&created)).is_ok(),
            "{case}: prints the id"
        );
        assert!(fetched.status.success(), "{case}: {}", stderr(&fetched));
        assert_eq!(fetched.stdout, expected, "{case}: identical bytes");
    }
}

#[tokio::test]
async fn fetch_base64_prints_what_the_server_sent() {
    let app = spawn_app().await;
    let id = app.create(b"hello").await;
    let url = (app.address.clone(), app.identity.clone());
    let out = tokio::task::spawn_blocking(move || {
        script("fetch_secret.sh", &url, &["--base64", &id], None)
    })
    .await
    .expect("blocking");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "aGVsbG8=");
}

#[tokio::test]
async fn failures_exit_non_zero_with_the_servers_message_or_usage() {
    let app = spawn_app().await;
    let url = (app.address.clone(), app.identity.clone());
    let unknown = uuid::Uuid::new_v4().to_string();
    let results = tokio::task::spawn_blocking(move || {
        vec![
            (
                "unknown id",
                script("fetch_secret.sh", &url, &[&unknown], None),
                1,
                "404: no secret with that id",
            ),
            (
                "empty value",
                script("create_secret.sh", &url, &[""], None),
                1,
                "400: `secret` must not be empty",
            ),
            (
                "no arguments",
                script("create_secret.sh", &url, &[], None),
                2,
                "usage: create_secret.sh",
            ),
            (
                "too many",
                script("fetch_secret.sh", &url, &["a", "b"], None),
                2,
                "usage: fetch_secret.sh",
            ),
            (
                "not an id",
                script("fetch_secret.sh", &url, &["x;rm"], None),
                2,
                "is not a secret id",
            ),
            (
                "no file",
                script("create_secret.sh", &url, &["-f", "/nonexistent"], None),
                2,
                "cannot read",
            ),
            (
                "no server",
                script(
                    "create_secret.sh",
                    &("http://127.0.0.1:1".into(), url.1.clone()),
                    &["v"],
                    None,
                ),
                1,
                "cannot reach",
            ),
            (
                "wrong token",
                script(
                    "create_secret.sh",
                    &(url.0.clone(), Identity::new("tester")),
                    &["v"],
                    None,
                ),
                1,
                "401: missing or invalid service credentials",
            ),
        ]
    })
    .await
    .expect("blocking");
    for (case, out, code, message) in results {
        assert_eq!(out.status.code(), Some(code), "{case}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{case}: stderr was {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{case}: nothing on stdout");
    }
}
