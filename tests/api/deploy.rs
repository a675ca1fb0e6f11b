//! Deployment switches and the helper scripts' hygiene: `DOCS_ENABLED`, no
//! token left in `$TMPDIR` when a script is interrupted, `.env` kept 0600,
//! no token on a command line.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

#[tokio::test]
async fn docs_enabled_false_turns_docs_and_spec_into_the_standard_404() {
    let on = spawn_app().await;
    let off = spawn_app_with(&[("DOCS_ENABLED", "false")]).await;
    for path in ["/docs/", "/openapi.json"] {
        let res = on.get(path).await;
        assert_eq!(res.status, 200, "{path} is served by default");
        let res = TestApp::send(off.request_as(None, reqwest::Method::GET, path)).await;
        res.assert_error(404, "route_not_found");
    }
    let res = off.get("/health/live").await;
    assert_eq!(res.status, 200, "the API itself still answers");
}

#[test]
fn an_interrupted_script_leaves_no_token_file_behind() {
    // A server that accepts the connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("scripts/create_secret.sh")
        .arg("value")
        .env("VAULT_URL", &url)
        .env("VAULT_SERVICE", "svc")
        .env("VAULT_TOKEN", "hunter2-token")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("script starts");
    let (_conn, _) = listener.accept().expect("curl connects");
    let files = std::fs::read_dir(tmp.path()).expect("read tmp").count();
    assert_eq!(files, 1, "the header file exists while curl waits");

    // What Ctrl-C or `kill` of the job does: signal the whole process group.
    let status = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "script did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The subshell that owned the file may end a moment after the script.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("read tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn keys_appended_to_an_existing_env_file_make_it_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join(".env");
    std::fs::write(&env, "LOG_FORMAT=pretty\n").expect("write");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let fresh = dir.path().join("fresh.env");
    let lib = std::fs::canonicalize("scripts/lib.sh").expect("lib.sh");
    for file in [&env, &fresh] {
        let status = Command::new("bash")
            .args([
                "-c",
                r#". "$1" && printf 'MASTER_KEY=%s\n' k3y | append_private "$2""#,
                "test",
            ])
            .arg(&lib)
            .arg(file)
            .status()
            .expect("bash");
        assert!(status.success(), "{file:?}");
        let mode = std::fs::metadata(file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file:?} mode {mode:o}");
    }
    let mut text = String::new();
    std::fs::File::open(&env)
        .expect("open")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(
        text, "LOG_FORMAT=pretty\nMASTER_KEY=k3y\n",
        "appended, kept"
    );
    let run = std::fs::read_to_string("scripts/run.sh").expect("run.sh");
    assert!(
        !run.contains(">>.env") && run.matches("append_private .env").count() == 2,
        "run.sh writes .env only through append_private"
    );
}

#[test]
fn bench_passes_no_token_or_database_uri_on_a_command_line() {
    for script in [
        "scripts/bench.sh",
        "scripts/bench_transports.sh",
        "scripts/bench_openbao.sh",
        "scripts/bench_scale.sh",
        "scripts/bench_metrics.sh",
    ] {
        let bench = std::fs::read_to_string(script).expect(script);
        for flag in ["--token", "--mongo-uri"] {
            assert!(!bench.contains(flag), "{script} passes {flag} in argv");
        }
        assert!(
            bench.contains(r#"VAULT_TOKEN="$TOKEN_bench" "$BIN" bench"#),
            "{script}: the token reaches `secret-manager bench` through its environment"
        );
    }
    let bao = std::fs::read_to_string("scripts/bench_openbao.sh").expect("bench_openbao.sh");
    assert!(
        bao.contains(r#"VAULT_TOKEN="$BAO_TOKEN" "$BIN" bench"#),
        "OpenBao's root token goes through the environment too"
    );
    let up = std::fs::read_to_string("scripts/openbao.sh").expect("openbao.sh");
    assert!(
        !up.contains("operator unseal \"$key\"") && up.contains("--data @-"),
        "the unseal key goes through stdin"
    );
}

#[test]
fn the_stack_runs_a_keyfile_replica_set_and_the_service_as_a_least_privilege_user() {
    let text = std::fs::read_to_string("stack.yml").expect("stack.yml");
    let stack: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
    let services = &stack["services"];
    for member in ["mongo1", "mongo2", "mongo3"] {
        let command = services[member]["command"].to_string();
        assert!(
            command.contains("\"--replSet\",\"rs0\"") && command.contains("\"--keyFile\""),
            "{member}: {command}"
        );
    }
    let init = services["mongo-init"]["command"].to_string();
    assert!(init.contains("mongo-init.js"), "{init}");
    let script = std::fs::read_to_string("deploy/mongo-init.js").expect("mongo-init.js");
    assert!(script.contains("replSetGetStatus") && script.contains("NotYetInitialized"));
    assert!(
        script.contains("[{ role: 'readWrite', db: APP_DB }]"),
        "readWrite only"
    );
    assert!(
        !script.contains("role: 'root'"),
        "the service is never root"
    );
    let env = &services["secret-manager"]["environment"];
    assert_eq!(env["MONGO_URI_FILE"], "/run/secrets/vault_mongo_uri");
    assert_eq!(env["MONGO_WRITE_CONCERN"], "majority");
    assert_eq!(env["DOCS_ENABLED"], "false");
    let config = &services["secret-manager"]["configs"][0];
    assert_eq!(
        config["target"], env["CONFIG_FILE"],
        "config.yaml is mounted where CONFIG_FILE points"
    );
    assert!(services["secret-manager"]["secrets"]
        .to_string()
        .contains("vault_token_deployer"));
}
