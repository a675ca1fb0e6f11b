//! Database outages: 503 with Retry-After while down, recovery without a restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{b64, spawn_app_with};

fn db_script(action: &str, dir: &Path) -> String {
    let out = Command::new("scripts/db.sh")
        .args([action, dir.to_str().expect("utf8")])
        .env_remove("MONGO_URI")
        .output()
        .expect("scripts/db.sh runs");
    assert!(
        out.status.success(),
        "db.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A database of this test's own, stopped when dropped.
pub(crate) struct OwnDatabase {
    dir: tempfile::TempDir,
}

impl OwnDatabase {
    pub(crate) fn start() -> (Self, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = db_script("start", dir.path());
        (Self { dir }, uri)
    }
    pub(crate) fn stop(&self) {
        db_script("stop", self.dir.path());
    }
    pub(crate) fn restart(&self) -> String {
        db_script("start", self.dir.path())
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn requests_get_503_with_retry_after_while_the_database_is_down_then_recover() {
    let (db, uri) = OwnDatabase::start();
    let app = spawn_app_with(&[("MONGO_URI", &uri), ("MONGO_TIMEOUT_MS", "500")]).await;
    let id = app.create(b"survives-the-outage").await;

    db.stop();
    let create = app
        .post_json(
            "/vault/secret/create",
            &serde_json::json!({ "secret": b64(b"x") }),
        )
        .await;
    let fetch = app.fetch(&id).await;
    let ready = app.get("/health/ready").await;
    let live = app.get("/health/live").await;

    for (what, res) in [("create", &create), ("fetch", &fetch), ("ready", &ready)] {
        res.assert_error(503, "database_unavailable");
        assert_eq!(
            res.headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("")),
            Some("1"),
            "{what}"
        );
        assert!(
            !res.text.contains("127.0.0.1"),
            "{what}: no internals: {}",
            res.text
        );
    }
    assert_eq!(live.status, 200, "liveness does not depend on the database");

    let uri_again = db.restart();
    assert_eq!(uri, uri_again, "same address after restart");
    let mut recovered = None;
    for _ in 0..60 {
        let res = app.fetch(&id).await;
        if res.status == 200 {
            recovered = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let res = recovered.expect("service recovers without a restart");
    assert_eq!(
        res.json()["secret"],
        b64(b"survives-the-outage"),
        "acknowledged write survived"
    );
    assert_eq!(app.get("/health/ready").await.status, 200);
}

#[tokio::test]
async fn start_up_fails_with_a_clear_error_when_the_database_cannot_be_reached() {
    let pairs = [
        (
            "MASTER_KEY",
            secret_manager::crypto::MasterKey::generate()
                .to_base64()
                .to_string(),
        ),
        ("MONGO_URI", "mongodb://127.0.0.1:1".to_string()),
        ("MONGO_TIMEOUT_MS", "300".to_string()),
        ("PORT", "0".to_string()),
    ];
    let config = secret_manager::config::Config::from_pairs(pairs).expect("config");
    let err = secret_manager::startup::Application::build(config)
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("cannot reach MongoDB"), "{err}");
}
