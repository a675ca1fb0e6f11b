//! Concurrent point reads are coalesced into one `$in` query (see
//! `store::read_batch`), and each caller still gets exactly its own secret.

use futures_util::future::join_all;
use reqwest::Method;
use secret_manager::store::read_batch::{Newest, ReadBatch};
use secret_manager::store::secrets::Locator;
use serde_json::json;

use crate::helpers::{b64, spawn_app, TestApp};

async fn put(app: &TestApp, project: &str, path: &str, value: &str) -> String {
    let res = TestApp::send(app.request(Method::POST, "/api/secrets").json(&json!({
        "project": project, "path": path, "value": value
    })))
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.json()["id"].as_str().expect("id").to_string()
}

/// A stored secret: id, project, path.
type Made = (String, String, String);

/// `(count, sum)` of `secret_manager_read_batch_size` in this process.
fn batch_histogram() -> (f64, f64) {
    let text = secret_manager::metrics::METRICS.encode();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("secret_manager_read_batch_size_count"),
        value("secret_manager_read_batch_size_sum"),
    )
}

#[tokio::test]
async fn concurrent_reads_by_id_and_by_name_share_one_query_and_each_gets_its_own_secret() {
    let app = spawn_app().await;
    let mut made = Vec::new();
    for i in 0..6 {
        let (project, path) = (if i % 2 == 0 { "alpha" } else { "beta" }, format!("s/{i}"));
        let id = put(&app, project, &path, &format!("value-{i}")).await;
        made.push((id, project.to_string(), path));
    }
    // A second version: the newest one is what a read gets.
    let patched = TestApp::send(
        app.request(Method::PATCH, "/api/secrets/alpha/s/0")
            .json(&json!({ "value": "value-0-v2" })),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);

    let missing_id = uuid::Uuid::new_v4().to_string();
    let mut wanted: Vec<(Locator<'_>, Option<&Made>)> = Vec::new();
    for m in &made {
        wanted.push((Locator::Id(&m.0), Some(m)));
        wanted.push((
            Locator::Path {
                project: &m.1,
                path: &m.2,
            },
            Some(m),
        ));
    }
    // The same key twice, a missing id, a missing path, a path of another project.
    wanted.push((Locator::Id(&made[1].0), Some(&made[1])));
    wanted.push((Locator::Id(&missing_id), None));
    wanted.push((
        Locator::Path {
            project: "alpha",
            path: "s/404",
        },
        None,
    ));
    wanted.push((
        Locator::Path {
            project: "beta",
            path: "s/0",
        },
        None,
    ));

    // This test's runtime has one thread: every read below is queued before
    // the batching task runs, so they all go out as one query.
    let reads = ReadBatch::spawn(app.db.collection::<Newest>("secrets"));
    let before = batch_histogram();
    let got = join_all(wanted.iter().map(|(at, _)| reads.newest(*at))).await;
    let after = batch_histogram();
    assert_eq!(after.0 - before.0, 1.0, "one query for every read");
    assert_eq!(after.1 - before.1, wanted.len() as f64);

    for ((at, expected), found) in wanted.iter().zip(got) {
        let found = found.expect("no database error");
        match expected {
            None => assert!(found.is_none(), "{at:?} is not stored"),
            Some((id, project, path)) => {
                let found = found.unwrap_or_else(|| panic!("{at:?} is stored"));
                assert_eq!(
                    (&found.id, &found.project, &found.path),
                    (id, project, path)
                );
                assert_eq!(found.versions.len(), 1, "only the newest version");
                let newest = if path == "s/0" { 2 } else { 1 };
                assert_eq!(found.versions[0].version, newest);
                assert_eq!(found.current_version, newest);
            }
        }
    }
}

#[tokio::test]
async fn many_concurrent_fetches_each_get_their_own_value() {
    let app = spawn_app().await;
    let mut made = Vec::new();
    for i in 0..16 {
        let path = format!("k{i}");
        let id = put(&app, "gamma", &path, &format!("v{i}")).await;
        made.push((id, path, format!("v{i}")));
    }
    let fetches = (0..96).map(|n| {
        let (id, path, value) = &made[n % made.len()];
        let app = &app;
        async move {
            if n % 2 == 0 {
                let url = format!("/api/secrets/gamma/{path}");
                let res = TestApp::send(app.request(Method::GET, &url)).await;
                assert_eq!(res.status, 200, "{url}: {}", res.text);
                assert_eq!(res.json()["value"], json!(value), "{url}");
            } else {
                let res = app.fetch(id).await;
                assert_eq!(res.status, 200, "{id}: {}", res.text);
                assert_eq!(res.json()["secret"], json!(b64(value.as_bytes())), "{id}");
            }
        }
    });
    join_all(fetches).await;
    let gone = TestApp::send(app.request(Method::GET, "/api/secrets/gamma/k99")).await;
    gone.assert_error(404, "secret_not_found");
    let gone = app.fetch(&uuid::Uuid::new_v4().to_string()).await;
    gone.assert_error(404, "secret_not_found");
}
