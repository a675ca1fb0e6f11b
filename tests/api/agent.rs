//! `secret-manager agent` and `run --watch`: the built binary against a
//! spawned service on the real database. Every wait polls for a condition
//! with a deadline.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, Identity, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");
const DEADLINE: Duration = Duration::from_secs(20);

/// A running agent (or `run --watch`), killed when the test ends; its log
/// (standard error) goes to a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(url: &str, who: &Identity, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("agent-{}.log", uuid::Uuid::new_v4().simple()));
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("VAULT_URL", url)
            .env("VAULT_SERVICE", &who.service)
            .env("VAULT_TOKEN", &who.token)
            .env_remove("VAULT_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("binary runs");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `check` holds; panics with the agent's log otherwise.
    async fn until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let end = Instant::now() + DEADLINE;
        while !check() {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; agent log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Agent {
    /// SIGTERM first, so the agent stops its own child (a SIGKILLed agent
    /// would leave it running), then SIGKILL if it lingers.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `project/path` with `value`, or writes a new version.
async fn set(app: &TestApp, key: &str, value: &str) {
    let (project, path) = key.split_once('/').expect("project/path");
    let created = TestApp::send(
        app.request(Method::POST, "/api/secrets")
            .json(&json!({ "project": project, "path": path, "value": value })),
    )
    .await;
    if created.status == 409 {
        let patched = TestApp::send(
            app.request(Method::PATCH, &format!("/api/secrets/{key}"))
                .json(&json!({ "value": value })),
        )
        .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
    } else {
        assert_eq!(created.status, 201, "{}", created.text);
    }
}

async fn delete(app: &TestApp, key: &str) {
    let res = TestApp::send(app.request(Method::DELETE, &format!("/api/secrets/{key}"))).await;
    assert!(res.status < 300, "{}", res.text);
}

/// Runs `cmd` to the end off the test's runtime (the service runs on it).
async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("runs"))
        .await
        .expect("blocking")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn lines(path: &Path) -> usize {
    read(path).lines().count()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// The flags every long-running agent in these tests gets: fast polling for
/// whenever the event stream is not there.
const POLL: [&str; 2] = ["--poll-interval", "200ms"];

#[tokio::test]
async fn agent_once_renders_every_template_form() {
    let app = spawn_app().await;
    set(&app, "billing/prod/db", "pg-pass-1").await;
    set(&app, "billing/prod/api", "api-key-2").await;
    set(&app, "billing/dev/db", "not-under-prod").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        &d.join("all.tmpl"),
        "db={{ secret(\"billing/prod/db\") }}\n\
         b64={{ secret(\"billing/prod/api\") | b64encode }}\n\
         {% for s in secrets(\"billing/prod/\") %}{{ s.path }}={{ s.value }};{% endfor %}\n\
         home={{ env(\"AGENT_TEST_HOME\") }} other={{ env(\"AGENT_TEST_UNSET\", \"fallback\") }}\n",
    );
    write(&d.join("flag.tmpl"), "{{ secret(\"billing/dev/db\") }}");
    write(
        &d.join("agent.yaml"),
        "templates:\n  - source: all.tmpl\n    destination: out/all.env\n    mode: \"0640\"\n  - contents: 'inline {{ secret(\"billing/prod/db\") }}'\n    destination: out/inline.txt\n    user: nobody\n    group: nogroup\n",
    );
    std::fs::create_dir(d.join("out")).expect("mkdir");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "--config",
        "agent.yaml",
        "--once",
        "--template",
        "flag.tmpl:out/flag.txt",
    ])
    .current_dir(d)
    .env("VAULT_URL", &app.address)
    .env("VAULT_SERVICE", &app.identity.service)
    .env("VAULT_TOKEN", &app.identity.token)
    .env("AGENT_TEST_HOME", "/home/x")
    .env_remove("AGENT_TEST_UNSET");
    let out = output(cmd).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        read(&d.join("out/all.env")),
        "db=pg-pass-1\nb64=YXBpLWtleS0y\nprod/api=api-key-2;prod/db=pg-pass-1;\nhome=/home/x other=fallback\n"
    );
    assert_eq!(read(&d.join("out/inline.txt")), "inline pg-pass-1");
    assert_eq!(read(&d.join("out/flag.txt")), "not-under-prod");
    let mode = |p: &str| std::fs::metadata(d.join(p)).expect("meta").mode() & 0o7777;
    assert_eq!(mode("out/all.env"), 0o640, "the configured mode");
    assert_eq!(mode("out/inline.txt"), 0o600, "the default mode");
    assert_eq!(mode("out/flag.txt"), 0o600, "the default mode");
    // The owner is applied when the agent runs as root (as the tests do in CI).
    let inline = std::fs::metadata(d.join("out/inline.txt")).expect("meta");
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("nobody");
        let group = nix::unistd::Group::from_name("nogroup")
            .ok()
            .flatten()
            .expect("nogroup");
        assert_eq!(
            (inline.uid(), inline.gid()),
            (user.uid.as_raw(), group.gid.as_raw()),
            "nobody:nogroup"
        );
    } else {
        assert!(log.contains("applied only when running as root"), "{log}");
    }
    for value in ["pg-pass-1", "api-key-2", &app.identity.token] {
        assert!(
            !log.contains(value),
            "a value or the token in the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn agent_refuses_bad_configs_naming_each_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // (config, expected in the message)
    let cases = [
        ("templates: []\n", "nothing to do"),
        ("token: abc\n", "`token` does not belong"),
        (
            "templates:\n  - contents: '{{ secret(' \n    destination: x\n",
            "templates[0]:",
        ),
        (
            "templates:\n  - source: nope.tmpl\n    destination: x\n",
            "cannot read",
        ),
        (
            "templates:\n  - contents: x\n    destination: y\n    mode: \"0999\"\n",
            "`mode`",
        ),
        (
            "exec:\n  command: [sh]\n  env: { A: \"no-slash\" }\n",
            "exec.env.A",
        ),
        ("surprise: 1\n", "unknown field"),
    ];
    for (yaml, expected) in cases {
        write(&d.join("agent.yaml"), yaml);
        let out = Command::new(BIN)
            .args(["agent", "--config", "agent.yaml"])
            .current_dir(d)
            .env("VAULT_URL", "http://127.0.0.1:9")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(
            err.contains(expected),
            "{yaml}: expected {expected} in {err}"
        );
        assert!(!err.contains("abc"), "the token is not echoed: {err}");
    }
}

#[tokio::test]
async fn agent_replaces_files_atomically_under_a_reader_with_mode_0600() {
    let app = spawn_app().await;
    // Values of very different sizes, so a torn write would show.
    let value = |i: usize| {
        format!(
            "v{i}-{}",
            "x".repeat(if i.is_multiple_of(2) { 60_000 } else { 3 })
        )
    };
    set(&app, "atomic/big", &value(0)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let dest = d.join("big.txt");
    write(&d.join("big.tmpl"), "<{{ secret(\"atomic/big\") }}>");
    let mut args = vec!["agent", "--template", "big.tmpl:big.txt"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    agent
        .until("the first render", || read(&dest).starts_with("<v0-"))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dest) = (stop.clone(), dest.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&dest).expect("the file is always there");
                assert!(
                    text.starts_with("<v") && text.ends_with('>'),
                    "a partial or empty file ({} bytes)",
                    text.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=10 {
        set(&app, "atomic/big", &value(i)).await;
        let expected = format!("<{}>", value(i));
        agent
            .until(&format!("version {i}"), || read(&dest) == expected)
            .await;
        let mode = std::fs::metadata(&dest).expect("meta").mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(
        reads > 10,
        "the reader read while the file changed ({reads} reads)"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(!agent.log().contains("xxxxxxxx"), "no value in the log");
}

/// A child that records each start (with its DB_PASSWORD) and each SIGHUP.
const CHILD: &str = r#"
echo "start $DB_PASSWORD" >> "$1/starts"
trap 'echo hup >> "$1/hups"' HUP
trap 'exit 0' TERM
while :; do sleep 1 & wait $!; done
"#;

fn exec_config(d: &Path, restart: &str) -> String {
    write(&d.join("child.sh"), CHILD);
    format!(
        "templates:\n  - contents: 'key={{{{ secret(\"shop/prod/api\") }}}}'\n    destination: app.conf\n\
         exec:\n  command: [sh, child.sh, \"{}\"]\n  env:\n    DB_PASSWORD: shop/prod/db\n  restart: {restart}\n",
        d.display()
    )
}

#[tokio::test]
async fn agent_restarts_the_child_with_a_fresh_environment_on_change() {
    let app = spawn_app().await;
    set(&app, "shop/prod/db", "db-1").await;
    set(&app, "shop/prod/api", "api-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("agent.yaml"), &exec_config(d, "{ grace: 2s }"));
    let mut args = vec!["agent", "--config", "agent.yaml"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let starts = d.join("starts");
    agent
        .until("the child to start", || read(&starts) == "start db-1\n")
        .await;
    assert_eq!(read(&d.join("app.conf")), "key=api-1");

    // Its environment changes: restarted with the new value.
    set(&app, "shop/prod/db", "db-2").await;
    agent
        .until("a restart with the new value", || {
            read(&starts) == "start db-1\nstart db-2\n"
        })
        .await;
    // A template it reads changes: restarted too (no signal configured).
    set(&app, "shop/prod/api", "api-2").await;
    agent
        .until("the new file", || read(&d.join("app.conf")) == "key=api-2")
        .await;
    agent
        .until("a second restart", || lines(&starts) == 3)
        .await;
    assert!(!d.join("hups").exists(), "no signal was configured");
    let log = agent.log();
    for value in ["db-1", "db-2", "api-1", "api-2", &app.identity.token] {
        assert!(!log.contains(value), "{value} in the log:\n{log}");
    }
}

#[tokio::test]
async fn agent_signals_the_child_on_a_template_change_instead_of_restarting() {
    let app = spawn_app().await;
    set(&app, "shop/prod/db", "db-1").await;
    set(&app, "shop/prod/api", "api-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("agent.yaml"), &exec_config(d, "{ signal: SIGHUP }"));
    let mut args = vec!["agent", "--config", "agent.yaml"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let (starts, hups) = (d.join("starts"), d.join("hups"));
    agent
        .until("the child to start", || lines(&starts) == 1)
        .await;
    for i in 2..=3 {
        set(&app, "shop/prod/api", &format!("api-{i}")).await;
        agent.until("a SIGHUP", || lines(&hups) == i - 1).await;
        assert_eq!(
            read(&d.join("app.conf")),
            format!("key=api-{i}"),
            "rendered before the signal"
        );
    }
    assert_eq!(lines(&starts), 1, "signalled, not restarted");
}

#[tokio::test]
async fn agent_runs_the_hook_after_the_first_render_and_after_each_real_change() {
    let app = spawn_app().await;
    set(&app, "hooks/a", "a-1").await;
    set(&app, "hooks/b", "b-1").await;
    set(&app, "hooks/unrelated", "u-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        &d.join("agent.yaml"),
        "templates:\n  - contents: '{{ secret(\"hooks/a\") }}+{{ secret(\"hooks/b\") }}'\n    destination: out.txt\n    command: 'echo \"$(cat out.txt)\" >> hooks.log'\n",
    );
    let mut args = vec!["agent", "--config", "agent.yaml"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let hooks = d.join("hooks.log");
    agent
        .until("the hook after the first render", || {
            read(&hooks) == "a-1+b-1\n"
        })
        .await;

    // Either secret of the template re-renders it.
    set(&app, "hooks/b", "b-2").await;
    agent
        .until("the hook after b changed", || lines(&hooks) == 2)
        .await;
    // A new version with the same value, and a secret the template does not
    // use: no rewrite, no hook. The next real change is the third hook run.
    let inode = std::fs::metadata(d.join("out.txt")).expect("meta").ino();
    set(&app, "hooks/a", "a-1").await;
    set(&app, "hooks/unrelated", "u-2").await;
    set(&app, "hooks/a", "a-3").await;
    agent
        .until("the hook after a changed", || lines(&hooks) >= 3)
        .await;
    assert_eq!(read(&hooks), "a-1+b-1\na-1+b-2\na-3+b-2\n");
    assert!(
        agent.log().contains("following the event stream (push)"),
        "{}",
        agent.log()
    );
    assert_ne!(
        std::fs::metadata(d.join("out.txt")).expect("meta").ino(),
        inode
    );
}

#[tokio::test]
async fn agent_keeps_the_old_file_when_a_secret_goes_missing_and_names_it() {
    let app = spawn_app().await;
    set(&app, "gone/db", "kept-value").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("t.tmpl"), "{{ secret(\"gone/db\") }}");
    let mut args = vec!["agent", "--template", "t.tmpl:out.txt"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let out = d.join("out.txt");
    agent
        .until("the first render", || read(&out) == "kept-value")
        .await;
    delete(&app, "gone/db").await;
    agent
        .until("the failure in the log", || {
            agent.log().contains("render failed")
        })
        .await;
    let log = agent.log();
    assert!(log.contains("gone/db"), "the secret is named:\n{log}");
    assert!(log.contains("secret_not_found"), "and why:\n{log}");
    assert!(!log.contains("kept-value"), "never the value:\n{log}");
    assert_eq!(read(&out), "kept-value", "the old file stays");
    // It comes back: rendered again.
    let restored = TestApp::send(app.request(Method::POST, "/api/secrets/gone/db/restore")).await;
    assert!(restored.status < 300, "{}", restored.text);
    set(&app, "gone/db", "new-value").await;
    agent
        .until("the re-render", || read(&out) == "new-value")
        .await;
}

/// A health receiver for rotations that always answers 500, but only once
/// `dest` holds `new` (or after 3 s, within the service's 4 s health timeout):
/// so the promoted value has certainly reached the file before the rollback.
/// Counts its calls and how many of them saw `new` in the file.
async fn failing_health(
    dest: PathBuf,
    new: &'static str,
) -> (String, Arc<std::sync::Mutex<(usize, usize)>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/health", listener.local_addr().expect("addr"));
    let calls = Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (dest, counted) = (dest.clone(), counted.clone());
            tokio::spawn(async move {
                // The request: headers, then content-length bytes of body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let end = Instant::now() + Duration::from_secs(3);
                let mut saw = false;
                while Instant::now() < end {
                    if read(&dest) == new {
                        saw = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                {
                    let mut c = counted.lock().expect("lock");
                    c.0 += 1;
                    c.1 += usize::from(saw);
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, calls)
}

#[tokio::test]
async fn a_rotation_rolling_back_re_renders_the_old_value() {
    let app = crate::helpers::spawn_app_with(&[
        ("WEBHOOK_SECRET", "agent-rollback-signing-secret-3c9d1f"),
        ("ROTATION_RETRY_MS", "20"),
        ("ROTATION_SCHEDULER", "false"),
    ])
    .await;
    set(&app, "rot/db", "old-value").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = d.join("out.txt");
    let (health_url, health) = failing_health(out.clone(), "new-value").await;
    let res = TestApp::send(
        app.request(Method::PUT, "/api/secrets/rot/db/rotation")
            .json(&json!({ "health_url": health_url })),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    write(
        &d.join("agent.yaml"),
        "templates:\n  - contents: '{{ secret(\"rot/db\") }}'\n    destination: out.txt\n    command: 'echo \"$(cat out.txt)\" >> hooks.log'\n",
    );
    let mut args = vec!["agent", "--config", "agent.yaml"];
    args.extend(POLL);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let hooks = d.join("hooks.log");
    agent
        .until("the hook after the first render", || {
            read(&hooks) == "old-value\n"
        })
        .await;

    // Each of the three tries promotes the new value, which the health check
    // refuses (once the file has it), and rolls back.
    let res = TestApp::send(
        app.request(Method::POST, "/api/secrets/rot/db/rotate")
            .json(&json!({ "value": "new-value" })),
    )
    .await;
    res.assert_error(502, "rotation_failed");
    assert!(res.text.contains("rolled back"), "{}", res.text);
    let (calls, saw_new) = *health.lock().expect("lock");
    assert_eq!(calls, 3, "one health check per try");
    assert_eq!(saw_new, 3, "the promoted value reached the file each time");
    let current = TestApp::send(app.request(Method::GET, "/api/secrets/rot/db")).await;
    assert_eq!(current.json()["value"], "old-value", "{}", current.text);

    // The file ends with the old value again, re-rendered (hook run) after the
    // last rollback: the hook log alternates old/new and ends with old.
    agent
        .until("the old value back, with its hook", || {
            read(&out) == "old-value" && read(&hooks).ends_with("new-value\nold-value\n")
        })
        .await;
    let log = read(&hooks);
    let renders: Vec<&str> = log.lines().collect();
    assert!(
        renders.windows(2).all(|w| w[0] != w[1]),
        "a hook runs only on a real change: {renders:?}"
    );
    assert!(
        renders.iter().filter(|r| **r == "new-value").count() >= 1,
        "{renders:?}"
    );
    let agent_log = agent.log();
    assert!(
        !agent_log.contains("new-value") && !agent_log.contains("old-value"),
        "no value in the log:\n{agent_log}"
    );
}

#[tokio::test]
async fn a_first_render_that_fails_exits_1_and_leaves_the_file() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        &d.join("t.tmpl"),
        "{{ secret(\"nowhere/db\") }} {{ undefined_name }}",
    );
    write(&d.join("out.txt"), "old");
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--once", "--template", "t.tmpl:out.txt"])
        .current_dir(d)
        .env("VAULT_URL", &app.address)
        .env("VAULT_SERVICE", &app.identity.service)
        .env("VAULT_TOKEN", &app.identity.token);
    let out = output(cmd).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nowhere/db"), "{err}");
    assert_eq!(read(&d.join("out.txt")), "old");
}

/// A reverse proxy in front of `app` that answers 404 to `/api/events`, as a
/// service without the event stream would.
async fn without_events(app: &TestApp) -> String {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let upstream = app.address.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        let upstream = upstream.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let upstream = upstream.clone();
            async move {
                if req.path() == "/api/events" {
                    return HttpResponse::NotFound().finish();
                }
                let method = Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
                let mut out = reqwest::Client::new()
                    .request(method, format!("{upstream}{}", req.uri()))
                    .body(body.to_vec());
                for (k, v) in req.headers() {
                    if k != "host" {
                        out = out.header(k.as_str(), v.as_bytes());
                    }
                }
                let res = out.send().await.expect("upstream");
                let mut answer = HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(res.status().as_u16()).expect("status"),
                );
                if let Some(ct) = res.headers().get("content-type") {
                    answer.insert_header(("content-type", ct.as_bytes()));
                }
                answer.body(res.bytes().await.expect("body").to_vec())
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn agent_polls_when_the_service_has_no_event_stream() {
    let app = spawn_app().await;
    set(&app, "poll/db", "p-1").await;
    let url = without_events(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("t.tmpl"), "{{ secret(\"poll/db\") }}");
    let mut args = vec!["agent", "--template", "t.tmpl:out.txt"];
    args.extend(POLL);
    let agent = Agent::start(&url, &app.identity, d, &args);
    let out = d.join("out.txt");
    agent
        .until("the first render", || read(&out) == "p-1")
        .await;
    agent
        .until("the log to say it polls", || {
            agent.log().contains("event stream unavailable (404")
                && agent.log().contains("polling every 200ms")
        })
        .await;
    set(&app, "poll/db", "p-2").await;
    agent
        .until("the polled change", || read(&out) == "p-2")
        .await;
}

#[tokio::test]
async fn run_watch_restarts_the_child_when_its_secret_changes() {
    let app = spawn_app().await;
    set(&app, "watch/db", "w-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("child.sh"), CHILD);
    let dir_arg = d.display().to_string();
    let mut args = vec!["run", "--watch", "--secret", "DB_PASSWORD=watch/db"];
    args.extend(POLL);
    args.extend(["--", "sh", "child.sh", &dir_arg]);
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let starts = d.join("starts");
    agent
        .until("the child to start", || read(&starts) == "start w-1\n")
        .await;
    set(&app, "watch/db", "w-2").await;
    agent
        .until("the restart with the new value", || {
            read(&starts) == "start w-1\nstart w-2\n"
        })
        .await;
    assert!(!agent.log().contains("w-2"), "no value in the log");
    assert!(
        agent.log().contains("following the event stream (push)"),
        "{}",
        agent.log()
    );
}

/// `secret-manager serve` on `port` over `db`, with the tester's token.
fn serve(port: u16, db: &str, master_key: &str, who: &Identity) -> Agent {
    let dir = std::env::temp_dir();
    let log = dir.join(format!("served-{}.log", uuid::Uuid::new_v4().simple()));
    let child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONFIG_FILE", "/dev/null")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("GRPC_PORT", "0")
        .env("MONGO_URI", crate::helpers::mongo_uri())
        .env("MONGO_DB", db)
        .env("MASTER_KEY", master_key)
        .env(format!("TOKEN_{}", who.service), &who.token)
        .env(format!("ALLOW_{}", who.service), "*")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("serve starts");
    Agent { child, log }
}

async fn wait_live(url: &str, server: &Agent) {
    let http = reqwest::Client::new();
    server
        .until("the server to be live", || {
            // A blocking probe is fine here: the server is another process.
            std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok()
        })
        .await;
    let end = Instant::now() + DEADLINE;
    while !http
        .get(format!("{url}/health/live"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < end, "not live: {}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn agent_survives_a_server_restart_and_resumes_the_event_stream() {
    // The agent follows server A (a process); writes go through B (same
    // database), also while A is down.
    let db = crate::helpers::unique_db_name();
    let key = secret_manager::crypto::MasterKey::generate()
        .to_base64()
        .to_string();
    let who = Identity::new("tester");
    let token_var = format!("TOKEN_{}", who.service);
    let writer = crate::helpers::spawn_app_with(&[
        ("MONGO_DB", &db),
        ("MASTER_KEY", &key),
        (&token_var, &who.token),
    ])
    .await;
    let port = crate::helpers::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = serve(port, &db, &key, &who);
    wait_live(&url, &server).await;
    set(&writer, "resume/db", "r-1").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("t.tmpl"), "{{ secret(\"resume/db\") }}");
    // Polling so rare that only the event stream can bring the changes.
    let agent = Agent::start(
        &url,
        &who,
        d,
        &[
            "agent",
            "--template",
            "t.tmpl:out.txt",
            "--poll-interval",
            "1h",
        ],
    );
    let out = d.join("out.txt");
    agent
        .until("the first render", || read(&out) == "r-1")
        .await;
    agent
        .until("the stream", || {
            agent.log().contains("following the event stream (push)")
        })
        .await;
    set(&writer, "resume/db", "r-2").await;
    agent
        .until("the pushed change", || read(&out) == "r-2")
        .await;

    // A goes down; a change is made meanwhile; A comes back.
    let _ = server.child.kill();
    let _ = server.child.wait();
    agent
        .until("the agent to notice", || {
            agent.log().contains("event stream lost")
        })
        .await;
    set(&writer, "resume/db", "r-3").await;
    server = serve(port, &db, &key, &who);
    wait_live(&url, &server).await;
    // With `Last-Event-ID` the missed change is replayed after the reconnect.
    agent
        .until("the change made while A was down", || read(&out) == "r-3")
        .await;
    assert!(
        agent
            .log()
            .matches("following the event stream (push)")
            .count()
            >= 2,
        "{}",
        agent.log()
    );
    set(&writer, "resume/db", "r-4").await;
    agent
        .until("pushes after the restart", || read(&out) == "r-4")
        .await;
    drop(server);
}

/// Change → file latency over 100 updates (run by hand; see docs/BENCHMARKS.md).
#[tokio::test]
#[ignore]
async fn agent_change_to_file_latency() {
    let app = spawn_app().await;
    set(&app, "latency/db", "l-0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("t.tmpl"), "{{ secret(\"latency/db\") }}");
    let agent = Agent::start(
        &app.address,
        &app.identity,
        d,
        &["agent", "--template", "t.tmpl:out.txt"],
    );
    let out = d.join("out.txt");
    agent
        .until("the first render", || read(&out) == "l-0")
        .await;
    agent
        .until("push mode", || {
            agent.log().contains("(push)") || agent.log().contains("polling")
        })
        .await;
    let mode = if agent.log().contains("(push)") {
        "push"
    } else {
        "polling"
    };
    let mut latencies = Vec::new();
    let mut writes = Vec::new();
    for i in 1..=100 {
        let value = format!("l-{i}");
        let start = Instant::now();
        set(&app, "latency/db", &value).await;
        writes.push(start.elapsed());
        let end = start + DEADLINE;
        while read(&out) != value {
            assert!(
                Instant::now() < end,
                "update {i} never arrived: {}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    writes.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "agent change->file latency ({mode}, {} updates, from sending the write to the new file): \
         p50 {:?}, p95 {:?}, max {:?}; the write itself: p50 {:?}",
        latencies.len(),
        at(0.50),
        at(0.95),
        latencies[latencies.len() - 1],
        writes[writes.len() / 2]
    );
    assert!(at(0.95) <= Duration::from_secs(1), "p95 above 1 s");
}

/// Change → restarted child latency over 50 updates with `run --watch` (run
/// by hand; see docs/BENCHMARKS.md).
#[tokio::test]
#[ignore]
async fn run_watch_change_to_restart_latency() {
    let app = spawn_app().await;
    set(&app, "latency/env", "e-0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("child.sh"), CHILD);
    let dir_arg = d.display().to_string();
    let args = [
        "run",
        "--watch",
        "--secret",
        "DB_PASSWORD=latency/env",
        "--",
        "sh",
        "child.sh",
        &dir_arg,
    ];
    let agent = Agent::start(&app.address, &app.identity, d, &args);
    let starts = d.join("starts");
    agent.until("the child", || lines(&starts) == 1).await;
    agent
        .until("push mode", || agent.log().contains("(push)"))
        .await;
    let mut latencies = Vec::new();
    for i in 1..=50 {
        let start = Instant::now();
        set(&app, "latency/env", &format!("e-{i}")).await;
        let expected = format!("start e-{i}\n");
        let end = start + DEADLINE;
        while !read(&starts).ends_with(&expected) {
            assert!(
                Instant::now() < end,
                "restart {i} never came: {}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "run --watch change->restarted child latency ({} updates): p50 {:?}, p95 {:?}, max {:?}",
        latencies.len(),
        at(0.50),
        at(0.95),
        latencies[latencies.len() - 1]
    );
    assert!(at(0.95) <= Duration::from_secs(1), "p95 above 1 s");
}

#[tokio::test]
async fn sigterm_to_the_agent_stops_the_child_and_passes_on_its_exit_code() {
    let app = spawn_app().await;
    set(&app, "stop/db", "s-1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        &d.join("child.sh"),
        "echo $$ > \"$1/pid\"\ntrap 'echo bye >> \"$1/bye\"; exit 7' TERM\nwhile :; do sleep 1 & wait $!; done\n",
    );
    write(
        &d.join("agent.yaml"),
        &format!(
            "exec:\n  command: [sh, child.sh, \"{}\"]\n  env: {{ DB: stop/db }}\n  restart: {{ grace: 5s }}\n",
            d.display()
        ),
    );
    let mut agent = Agent::start(
        &app.address,
        &app.identity,
        d,
        &["agent", "--config", "agent.yaml"],
    );
    let pid = d.join("pid");
    agent
        .until("the child", || !read(&pid).trim().is_empty())
        .await;
    let status = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut exited = None;
    let end = Instant::now() + DEADLINE;
    while exited.is_none() {
        assert!(
            Instant::now() < end,
            "the agent did not stop: {}",
            agent.log()
        );
        exited = agent.child.try_wait().expect("wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exited.and_then(|s| s.code()), Some(7), "{}", agent.log());
    assert_eq!(read(&d.join("bye")), "bye\n", "the child got SIGTERM");
}
