//! The built binary, started as Docker would start it: environment, a secrets
//! file for the master key, health check, JSON logs, SIGTERM.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use secret_manager::crypto::MasterKey;
use serde_json::json;

use crate::helpers::{free_port, mongo_uri, unique_db_name};

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");
const TOKEN: &str = "binary-test-token-8d2c4a";

/// A served binary that is killed when the test ends, also when it fails midway.
struct Served(Child);

impl std::ops::Deref for Served {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn serve(dir: &Path, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Tests run in parallel: never the default gRPC port.
        .env("GRPC_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("binary starts")
}

async fn wait_healthy(client: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = client.get(format!("{url}/health/live")).send().await {
            if res.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            panic!("server exited early ({status}): {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not become healthy");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn key_file_start_json_logs_without_secrets_and_clean_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::generate().to_base64().to_string();
    let key_file = dir.path().join("master_key");
    std::fs::write(&key_file, format!("{key}\n")).expect("key file");
    let port = free_port();
    let mut child = Served(serve(
        dir.path(),
        &[
            ("MASTER_KEY_FILE", key_file.display().to_string()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DB", unique_db_name()),
            ("HOST", "127.0.0.1".into()),
            ("PORT", port.to_string()),
            ("RUST_LOG", "debug".into()),
            ("LOG_FORMAT", "json".into()),
            ("CONFIG_FILE", "/dev/null".into()),
            ("TOKEN_bin-test", TOKEN.into()),
            ("ALLOW_bin-test", "*".into()),
        ],
    ));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &url, &mut child).await;
    let probe = Command::new(BIN)
        .args(["healthcheck", "--port", &port.to_string()])
        .status()
        .expect("healthcheck runs");
    assert!(probe.success(), "the container health check passes");

    let secret = "log-canary-5b1e2f";
    let encoded = STANDARD.encode(secret);
    let res = http
        .post(format!("{url}/vault/secret/create"))
        .header("x-service", "bin-test")
        .header("x-token", TOKEN)
        .json(&json!({ "secret": encoded }))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status().as_u16(), 200);
    let id = res.json::<serde_json::Value>().await.expect("json")["secret_id"]
        .as_str()
        .expect("id")
        .to_string();
    let fetched: serde_json::Value = http
        .post(format!("{url}/vault/secret/fetch"))
        .header("x-service", "bin-test")
        .header("x-token", TOKEN)
        .json(&json!({ "secret_id": id }))
        .send()
        .await
        .expect("fetch")
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["secret"], encoded);
    // Bad inputs that carry the value must not log it either.
    for body in [
        format!(r#"{{"secret": "{secret}"}}"#),
        format!(r#"{{"secret": {secret}"#),
    ] {
        http.post(format!("{url}/vault/secret/create"))
            .header("x-service", "bin-test")
            .header("x-token", TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("bad create");
    }

    // A wrong token must not be logged either.
    let wrong = http
        .post(format!("{url}/vault/secret/fetch"))
        .header("x-service", "bin-test")
        .header("x-token", "wrong-token-canary-77a1")
        .json(&json!({ "secret_id": id }))
        .send()
        .await
        .expect("wrong token");
    assert_eq!(wrong.status().as_u16(), 401);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(9));
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let probe = Command::new(BIN)
        .args(["healthcheck", "--port", &port.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("healthcheck runs");
    assert!(
        !probe.success(),
        "the health check fails once the server is gone"
    );

    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5, "logs were written: {out}");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    assert!(
        out.contains("request finished") && out.contains("request_id"),
        "request lines: {out}"
    );
    for leaked in [
        secret,
        encoded.as_str(),
        key.as_str(),
        TOKEN,
        "wrong-token-canary-77a1",
    ] {
        assert!(!out.contains(leaked), "stdout leaks {leaked}");
        assert!(!err.contains(leaked), "stderr leaks {leaked}");
    }
}

/// An open `WatchSecret` stream never ends by itself: on SIGTERM it ends
/// with UNAVAILABLE (`busy`: reconnect) and the process exits cleanly, not
/// at the end of the shutdown timeout.
#[tokio::test]
async fn sigterm_ends_open_watch_streams_and_exits_cleanly() {
    use secret_manager::grpc::pb;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, grpc_port) = (free_port(), free_port());
    let mut child = Served(serve(
        dir.path(),
        &[
            ("MASTER_KEY", MasterKey::generate().to_base64().to_string()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DB", unique_db_name()),
            ("HOST", "127.0.0.1".into()),
            ("PORT", port.to_string()),
            ("GRPC_PORT", grpc_port.to_string()),
            ("SHUTDOWN_TIMEOUT_SECS", "60".into()),
            ("CONFIG_FILE", "/dev/null".into()),
            ("TOKEN_bin-test", TOKEN.into()),
            ("ALLOW_bin-test", "*".into()),
        ],
    ));
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&reqwest::Client::new(), &url, &mut child).await;
    let mut grpc = pb::secrets_service_client::SecretsServiceClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .expect("gRPC connects");
    let mut req = tonic::Request::new(pb::WatchSecretRequest {
        secret_name: "ops/flag".into(),
        token: TOKEN.into(),
    });
    req.metadata_mut()
        .insert("x-service", "bin-test".parse().expect("ascii"));
    let mut stream = grpc.watch_secret(req).await.expect("watch").into_inner();
    let first = stream.message().await.expect("current").expect("open");
    assert_eq!(first.change, "current");

    sigterm(&child);
    let ended = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("the stream ends on shutdown")
        .expect_err("an error status");
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(ended.message().starts_with("busy: "), "{ended:?}");
    // The client's connection must stay serviced while the server drains:
    // wait off the runtime (a blocked runtime cannot answer the server's GOAWAY).
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(30));
        drop(child);
        status
    })
    .await
    .expect("join");
    drop((stream, grpc));
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[tokio::test]
async fn dotenv_is_loaded_and_the_real_environment_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::generate().to_base64().to_string();
    let (env_port, dotenv_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "MASTER_KEY={key}\nPORT={dotenv_port}\nHOST=127.0.0.1\nMONGO_DB={}\n",
            unique_db_name()
        ),
    )
    .expect(".env");
    let mut child = Served(serve(
        dir.path(),
        &[("MONGO_URI", mongo_uri()), ("PORT", env_port.to_string())],
    ));
    let http = reqwest::Client::new();
    wait_healthy(&http, &format!("http://127.0.0.1:{env_port}"), &mut child).await;
    let dotenv_answers = http
        .get(format!("http://127.0.0.1:{dotenv_port}/health/live"))
        .send()
        .await
        .is_ok();
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(9));
    assert!(!dotenv_answers, "PORT from the environment overrides .env");
}

#[test]
fn bad_configuration_refuses_to_start_naming_the_variable_not_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "`MASTER_KEY` or `MASTER_KEY_FILE` is required"),
        (
            &[("MASTER_KEY", "too-short-to-be-a-key-value")],
            "`MASTER_KEY` is invalid",
        ),
        (
            &[
                ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
                ("MASTER_KEY_FILE", "/x"),
            ],
            "not both",
        ),
        (
            &[
                ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
                ("AUDIT_TTL_DAYS", "abc"),
            ],
            "`AUDIT_TTL_DAYS` must be a whole number of days (got `abc`)",
        ),
    ];
    for (envs, expected) in cases {
        let envs: Vec<(&str, String)> = envs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let child = serve(dir.path(), &envs);
        let out = child.wait_with_output().expect("exits");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {err}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!err.contains("too-short-to-be-a-key-value") && !err.contains("0123456789abcdef"));
    }
}

#[test]
fn unreachable_database_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::generate().to_base64().to_string();
    let child = serve(
        dir.path(),
        &[
            ("MASTER_KEY", key),
            ("MONGO_URI", "mongodb://127.0.0.1:1".into()),
            ("MONGO_TIMEOUT_MS", "300".into()),
        ],
    );
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach MongoDB"), "{err}");
}

#[test]
fn keygen_prints_a_usable_key_and_writes_a_private_file() {
    let out = Command::new(BIN).arg("keygen").output().expect("keygen");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf8");
    let a = MasterKey::parse(printed.trim()).expect("a valid key");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k");
    let status = Command::new(BIN)
        .args(["keygen", "--file"])
        .arg(&path)
        .status()
        .expect("keygen --file");
    assert!(status.success());
    let b = MasterKey::parse(std::fs::read_to_string(&path).expect("read").trim()).expect("valid");
    assert_ne!(a.key_id(), b.key_id());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let again = Command::new(BIN)
        .args(["keygen", "--file"])
        .arg(&path)
        .status()
        .expect("keygen");
    assert!(!again.success(), "never overwrites an existing key file");
}

/// An open `GET /api/events` stream never ends by itself either: on SIGTERM
/// it ends at once (the client resumes elsewhere with `Last-Event-ID`) and
/// the process exits long before the shutdown timeout.
#[tokio::test]
async fn sigterm_ends_open_event_streams_and_exits_cleanly() {
    use futures_util::StreamExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Served(serve(
        dir.path(),
        &[
            ("MASTER_KEY", MasterKey::generate().to_base64().to_string()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DB", unique_db_name()),
            ("HOST", "127.0.0.1".into()),
            ("PORT", port.to_string()),
            ("SHUTDOWN_TIMEOUT_SECS", "60".into()),
            ("CONFIG_FILE", "/dev/null".into()),
            ("TOKEN_bin-test", TOKEN.into()),
            ("ALLOW_bin-test", "*".into()),
        ],
    ));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &url, &mut child).await;
    let res = client
        .get(format!("{url}/api/events?project=ops"))
        .header("x-service", "bin-test")
        .header("x-token", TOKEN)
        .send()
        .await
        .expect("stream opens");
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = body.next().await.expect("a frame").expect("bytes");
    assert!(first.starts_with(b"retry: 1000"), "{first:?}");

    let asked = Instant::now();
    sigterm(&child);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends on shutdown");
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(30));
        drop(child);
        status
    })
    .await
    .expect("join");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "not held until the 60 s shutdown timeout: {:?}",
        asked.elapsed()
    );
}
