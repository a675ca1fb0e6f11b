//! Several replicas behind HAProxy (scripts/cluster.sh), with faults: a replica
//! killed under load, the database stopped and restarted under load.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::helpers::{mongo_uri, unique_db_name};

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");
const TOKEN: &str = "cluster-test-token-5f1a9e";

/// A cluster of its own, torn down when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    lb: u16,
    base: u16,
}

/// The first of `n` consecutive free ports below the ephemeral range (which
/// the kernel hands out to outgoing connections and `bind(0)`).
fn unassigned_ports(n: usize) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let n = u16::try_from(n).expect("a few ports");
    loop {
        let high = ephemeral_low.saturating_sub(n).max(10_001);
        let first = rand::Rng::gen_range(&mut rand::thread_rng(), 10_000..high);
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
}

impl Cluster {
    fn up(n: usize, mongo: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The replicas' consecutive ports, and the balancer's, are bound by
        // the script later: taken below the kernel's ephemeral range, so no
        // other test's outgoing connection can take them in between.
        let ports = unassigned_ports(n + 1);
        let base = ports + 1;
        let envs = vec![
            ("CLUSTER_DIR".to_string(), dir.path().display().to_string()),
            ("LB_PORT".into(), ports.to_string()),
            ("BASE_PORT".into(), base.to_string()),
            ("BIN".into(), BIN.into()),
            ("MONGO_URI".into(), mongo.into()),
            ("MONGO_DB".into(), unique_db_name()),
            ("MONGO_TIMEOUT_MS".into(), "500".into()),
            ("CONFIG_FILE".into(), "/dev/null".into()),
            // Replicas' gRPC ports would be fixed offsets from BASE_PORT.
            ("GRPC_ENABLED".into(), "false".into()),
            ("TOKEN_cluster".into(), TOKEN.into()),
            ("ALLOW_cluster".into(), "*".into()),
            ("AUDIT_ENABLED".into(), "true".into()),
        ];
        let lb = envs[1].1.parse().expect("port");
        let cluster = Self {
            dir,
            envs,
            lb,
            base,
        };
        cluster.script(&["up", &n.to_string()]);
        cluster
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new("scripts/cluster.sh")
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("MASTER_KEY")
            .output()
            .expect("cluster.sh runs");
        assert!(
            out.status.success(),
            "cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.lb)
    }

    fn replica(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}", self.base + i - 1)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/cluster.sh")
            .arg("down")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
        let _: &Path = self.dir.path();
    }
}

async fn create(http: &reqwest::Client, url: &str, value: &str) -> Result<String, u16> {
    let res = http
        .post(format!("{url}/vault/secret/create"))
        .header("x-service", "cluster")
        .header("x-token", TOKEN)
        .json(&json!({ "secret": STANDARD.encode(value) }))
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = res.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: serde_json::Value = res.json().await.map_err(|_| 1u16)?;
    Ok(body["secret_id"].as_str().expect("id").to_string())
}

async fn fetch(http: &reqwest::Client, url: &str, id: &str) -> Result<String, u16> {
    let res = http
        .post(format!("{url}/vault/secret/fetch"))
        .header("x-service", "cluster")
        .header("x-token", TOKEN)
        .json(&json!({ "secret_id": id }))
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = res.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: serde_json::Value = res.json().await.map_err(|_| 1u16)?;
    let bytes = STANDARD
        .decode(body["secret"].as_str().expect("secret"))
        .expect("b64");
    Ok(String::from_utf8(bytes).expect("utf8"))
}

type Acked = Arc<Mutex<HashMap<String, String>>>;

/// Writers creating through `url` until `until`; returns acknowledged writes and failure statuses.
async fn load(
    url: String,
    until: Instant,
    writers: usize,
) -> (Acked, Arc<Mutex<Vec<(Instant, u16)>>>) {
    let acked: Acked = Arc::default();
    let failures: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (acked, failures, http, url) =
                (acked.clone(), failures.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < until && n < 100_000 {
                    n += 1;
                    let value = format!("w{w}-n{n}-{}", uuid::Uuid::new_v4());
                    match create(&http, &url, &value).await {
                        Ok(id) => {
                            acked.lock().expect("lock").insert(id, value);
                        }
                        Err(status) => failures
                            .lock()
                            .expect("lock")
                            .push((Instant::now(), status)),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (acked, failures)
}

async fn assert_all_readable(url: &str, acked: &Acked) {
    let http = reqwest::Client::new();
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty());
    for (id, value) in acked {
        assert_eq!(
            fetch(&http, url, &id).await.as_deref(),
            Ok(value.as_str()),
            "acknowledged write {id} lost"
        );
    }
}

#[tokio::test]
async fn a_secret_created_through_one_replica_is_fetched_through_another() {
    let cluster = Cluster::up(2, &mongo_uri());
    let http = reqwest::Client::new();
    let id = create(&http, &cluster.replica(1), "shared-state")
        .await
        .expect("created on r1");
    assert_eq!(
        fetch(&http, &cluster.replica(2), &id).await,
        Ok("shared-state".into())
    );
    assert_eq!(
        fetch(&http, &cluster.url(), &id).await,
        Ok("shared-state".into())
    );
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_acknowledged_write() {
    let cluster = Cluster::up(3, &mongo_uri());
    let started = Instant::now();
    let until = started + Duration::from_secs(6);
    let load_task = tokio::spawn(load(cluster.url(), until, 8));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.script(&["kill", "1"]);
    let killed_at = Instant::now();
    let (acked, failures) = load_task.await.expect("load");

    assert_all_readable(&cluster.url(), &acked).await;
    let failures = failures.lock().expect("lock").clone();
    // Requests in flight on the killed replica may fail; after the health check
    // takes it out (2 x 500 ms), none may.
    let late: Vec<_> = failures
        .iter()
        .filter(|(t, _)| *t > killed_at + Duration::from_secs(2))
        .collect();
    assert!(
        late.is_empty(),
        "the balancer kept sending traffic to the dead replica: {late:?}"
    );
    assert!(acked.lock().expect("lock").len() > 50, "the load ran");
}

#[tokio::test]
async fn a_database_outage_under_load_gives_503s_then_full_service() {
    // Stopped when dropped, also when an assertion fails.
    let (db, uri) = crate::database::OwnDatabase::start();
    let cluster = Cluster::up(2, &uri);
    let until = Instant::now() + Duration::from_secs(9);
    let load_task = tokio::spawn(load(cluster.url(), until, 4));
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(db.restart(), uri, "same address");
    let restarted = Instant::now();
    let (acked, failures) = load_task.await.expect("load");

    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.iter().any(|(_, s)| *s == 503),
        "503s during the outage: {failures:?}"
    );
    assert!(
        failures.iter().all(|(_, s)| *s == 503),
        "only 503s, no 500s or resets: {failures:?}"
    );
    let after: Vec<_> = failures
        .iter()
        .filter(|(t, _)| *t > restarted + Duration::from_secs(3))
        .collect();
    assert!(
        after.is_empty(),
        "full service after recovery, no restart: {after:?}"
    );
    assert_all_readable(&cluster.url(), &acked).await;
    drop(cluster);
}
