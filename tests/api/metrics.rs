//! `GET /metrics`: OpenMetrics text that Prometheus' own parser (Python
//! `prometheus_client`) reads, every documented name present, no value or
//! token in it, and `METRICS_TOKEN` honoured.

use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with, Identity, TestApp};

/// Parses `text` with `prometheus_client.openmetrics.parser`; the family names.
fn parse(text: &str) -> Vec<String> {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n    print(f.name)\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser exits");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn metrics_parse_name_every_documented_family_and_carry_no_secret() {
    // The MongoDB command timings are opt-in; everything else is on by default.
    let app = spawn_app_with(&[("METRICS_DB_COMMANDS", "true")]).await;
    let value = "metrics-canary-value-5e1";
    let created = app
        .post_json(
            "/api/secrets",
            &json!({ "project": "ops", "path": "m", "value": value }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(app.get("/api/secrets/ops/m").await.status, 200);
    let wrong = Identity::new("tester");
    let refused =
        TestApp::send(app.request_as(Some(&wrong), Method::GET, "/api/secrets/ops/m")).await;
    assert_eq!(refused.status, 401);

    let res = TestApp::send(app.request_as(None, Method::GET, "/metrics")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let families = parse(&res.text);
    for name in secret_manager::metrics::NAMES {
        // The parser names counter families without `_total`.
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            families.iter().any(|f| f == family),
            "{name} is served: {families:?}"
        );
    }
    for needle in [value, app.identity.token.as_str(), wrong.token.as_str()] {
        assert!(!res.text.contains(needle), "no value or token in /metrics");
    }
    let line = |prefix: &str| {
        res.text
            .lines()
            .any(|l| l.starts_with(prefix) && !l.ends_with(" 0"))
    };
    assert!(line(
        "secret_manager_operations_total{channel=\"http\",operation=\"create\",outcome=\"success\"}"
    ));
    assert!(line(
        "secret_manager_authentications_total{channel=\"http\",result=\"failure\"}"
    ));
    assert!(line(
        "secret_manager_events_published_total{kind=\"secret_created\"}"
    ));
    assert!(
        line("secret_manager_http_request_duration_seconds_count{route=\"/api/secrets/{project}/{path:.*}\",method=\"GET\",status=\"200\"}"),
        "by route template"
    );
    assert!(
        !res.text.contains("route=\"/api/secrets/ops/m\""),
        "never a concrete path"
    );

    // Every documented name is in the README.
    let readme = std::fs::read_to_string("README.md").expect("README");
    for name in secret_manager::metrics::NAMES {
        assert!(readme.contains(name), "README documents {name}");
    }
}

#[tokio::test]
async fn metrics_token_requires_the_bearer_token() {
    let token = format!("mt{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(&[("METRICS_TOKEN", token.as_str())]).await;
    let scrape = |auth: Option<String>| {
        let mut req = app.request_as(None, Method::GET, "/metrics");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        TestApp::send(req)
    };
    scrape(None).await.assert_error(401, "unauthorized");
    scrape(Some("Bearer wrong".into()))
        .await
        .assert_error(401, "unauthorized");
    let ok = scrape(Some(format!("Bearer {token}"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(!ok.text.contains(&token));
}

/// Every metric the Grafana dashboard queries is one the service serves.
#[test]
fn the_dashboard_queries_only_served_metrics() {
    let text = std::fs::read_to_string("deploy/grafana/secret-manager.json").expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("secret_manager_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in &queried {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            secret_manager::metrics::NAMES.contains(&base),
            "the dashboard queries {name}, which is not served"
        );
    }
    let prometheus = std::fs::read_to_string("deploy/prometheus.yml").expect("scrape config");
    assert!(
        prometheus.contains("job_name: secret-manager")
            && prometheus.contains("metrics_path: /metrics")
    );
}

/// A Prometheus started by `scripts/prometheus.sh`, stopped (by its pid) on drop.
struct Prometheus {
    dir: tempfile::TempDir,
    url: String,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) every second.
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("scripts/prometheus.sh")
            .args(["start", dir.path().to_str().expect("utf-8"), "1s", target])
            .output()
            .expect("scripts/prometheus.sh runs");
        assert!(
            out.status.success(),
            "Prometheus starts (scripts/test.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Self { dir, url }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("scripts/prometheus.sh")
            .args(["stop", self.dir.path().to_str().expect("utf-8")])
            .status();
    }
}

/// Every dashboard query goes through the real Prometheus query engine
/// (`scripts/render_dashboard.py check`: Grafana's variables substituted,
/// `/api/v1/query`) without a parse or execution error, and once a real
/// replica's traffic is scraped the key panels have finite values: request
/// rate, authentication failures, audit write latency, operation latency.
/// `promtool` accepts `deploy/prometheus.yml`.
#[tokio::test]
async fn the_dashboard_queries_run_in_prometheus_and_the_key_panels_have_data() {
    // The Swarm scrape job is a configuration Prometheus accepts.
    let checked = Command::new("promtool")
        .args(["check", "config", "deploy/prometheus.yml"])
        .output()
        .expect("promtool runs (Debian's prometheus package)");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    let app = spawn_app_with(&[("METRICS_DB_COMMANDS", "true")]).await;
    let prometheus = Prometheus::start(app.address.trim_start_matches("http://"));
    let key = [
        ("Request rate by route", "A"),
        ("Authentication failures and denials", "A"),
        ("Audit writes", "A"),
        ("p99 by channel and operation", "A"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let mut round = 0;
    loop {
        // Traffic between scrapes, so every rate has something to show: a
        // create, a fetch, and a refused token (a new claimed service each
        // round, so the failure limiter never answers 429 instead).
        round += 1;
        let created = app
            .post_json(
                "/api/secrets",
                &json!({ "project": "ops", "path": format!("d{round}"), "value": "v" }),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            app.get(&format!("/api/secrets/ops/d{round}")).await.status,
            200
        );
        let wrong = Identity::new(&format!("stranger{round}"));
        let refused =
            TestApp::send(app.request_as(Some(&wrong), Method::GET, "/api/secrets/ops/d1")).await;
        assert_eq!(refused.status, 401);

        let out = Command::new("python3")
            .args(["scripts/render_dashboard.py", "check", "--prometheus"])
            .arg(&prometheus.url)
            .args(["--scrape-interval", "1"])
            .output()
            .expect("python3 runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "Prometheus rejected a dashboard query: {stderr}"
        );
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect();
        assert!(results.len() >= 20, "every query reported: {results:?}");
        let missing: Vec<_> = key
            .iter()
            .filter(|(panel, refid)| {
                !results
                    .iter()
                    .any(|r| r["panel"] == *panel && r["ref"] == *refid && r["finite"] != 0)
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no data for {missing:?} after {round} rounds: {stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    // The check fails loudly: a query Prometheus cannot parse, and a variable
    // Grafana would not know, are each named and exit non-zero.
    let dir = tempfile::tempdir().expect("tempdir");
    for (expr, says) in [
        ("sum(rate(secret_manager_operations_total[5m])", "bad_data"),
        (
            "rate(secret_manager_operations_total[$nosuch])",
            "unknown variable $nosuch",
        ),
    ] {
        let broken = dir.path().join("broken.json");
        let dashboard = json!({ "panels": [{ "id": 1, "title": "Broken", "targets": [{ "refId": "A", "expr": expr }] }] });
        std::fs::write(&broken, dashboard.to_string()).expect("write");
        let out = Command::new("python3")
            .args(["scripts/render_dashboard.py", "check", "--prometheus"])
            .arg(&prometheus.url)
            .arg("--dashboard")
            .arg(&broken)
            .output()
            .expect("python3 runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expr} is refused");
        assert!(
            stderr.contains("REJECTED") && stderr.contains(says),
            "{expr}: {stderr}"
        );
    }
}

/// The snapshot script hands tokens to `secret-manager bench` through its
/// environment, never on a command line, and stops what it starts by pid.
#[test]
fn the_dashboard_snapshot_passes_no_token_on_a_command_line() {
    let script = std::fs::read_to_string("scripts/dashboard_snapshot.sh").expect("script");
    for flag in ["--token", "--mongo-uri"] {
        assert!(!script.contains(flag), "passes {flag} in argv");
    }
    assert!(script.contains(r#"VAULT_TOKEN="$tok" "$BIN" bench"#));
    for stop in ["scripts/prometheus.sh stop", "scripts/cluster.sh down"] {
        assert!(script.contains(stop), "cleans up with {stop}");
    }
    for broad in ["pkill", "killall"] {
        assert!(!script.contains(broad), "never {broad}");
    }
}
