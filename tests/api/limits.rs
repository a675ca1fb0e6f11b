//! Issue 10 on NATS: no lockout on the bus (no client address), refusals still
//! audited, and a huge `service` field bounded before it becomes a key or a field.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::nats::{client, NatsServer, SUBJECT};

async fn ask(nc: &async_nats::Client, body: Value) -> Value {
    let msg = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request(SUBJECT.to_string(), body.to_string().into_bytes().into()),
    )
    .await
    .expect("answered in time")
    .expect("a reply");
    serde_json::from_slice(&msg.payload).expect("JSON reply")
}

async fn refused(app: &TestApp) -> Vec<Document> {
    use futures_util::TryStreamExt as _;
    app.audit_logs()
        .find(doc! { "action": "authenticate" })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

async fn nats_app(server: &NatsServer, extra: &[(&str, &str)]) -> (TestApp, async_nats::Client) {
    let url = server.url();
    let mut all = vec![("NATS_URL", url.as_str())];
    all.extend_from_slice(extra);
    let app = spawn_app_with(&all).await;
    let nc = client(server).await;
    // Wait until the bridge answers.
    for _ in 0..100 {
        let probe = nc.request(SUBJECT.to_string(), "{}".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), probe).await {
            break;
        }
    }
    (app, nc)
}

/// Finding 3: on the bus the limiter used to key on the claimed service alone,
/// so anyone could send 3 bad tokens for `tester` and get `tester` itself 429.
/// Now every bad token gets `unauthorized` (never `too_many_auth_failures`),
/// the right token still works, and the refusals are audited (counts add up).
#[tokio::test]
async fn bad_tokens_on_nats_never_lock_the_service_out_and_are_audited() {
    let server = NatsServer::start();
    let (app, nc) = nats_app(
        &server,
        &[
            ("AUTH_FAILURE_BURST", "3"),
            ("AUTH_FAILURE_PER_MINUTE", "60"),
        ],
    )
    .await;
    let before: i64 = refused(&app).await.len() as i64;
    for i in 0..6 {
        let reply = ask(
            &nc,
            json!({ "operation": "status", "service": "tester", "token": "wrong-token-666666" }),
        )
        .await;
        assert_eq!(reply["code"], "unauthorized", "attempt {i}: {reply}");
    }
    let ok = ask(
        &nc,
        json!({ "operation": "status", "service": "tester", "token": app.identity.token }),
    )
    .await;
    assert_eq!(ok["status"], "success", "the right token still works: {ok}");
    let mut total = 0;
    for _ in 0..50 {
        let found = refused(&app).await;
        total = found
            .iter()
            .filter(|r| r.get_str("actor") == Ok("tester"))
            .map(|r| r.get_i64("count").expect("count"))
            .sum::<i64>();
        if total == 6 {
            assert!(found.iter().all(|r| r.get_str("channel") == Ok("nats")));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        total, 6,
        "every refusal is accounted for (probes before: {before})"
    );
}

/// Finding 5: a 90 KB `service` used to become the limiter key and the audit
/// record's `client_ip` (`nats:<90 KB>`) and `actor` whole. Now the actor is cut
/// to 128 characters and there is no client address on the bus.
#[tokio::test]
async fn a_huge_nats_service_is_cut_before_it_is_keyed_or_stored() {
    let server = NatsServer::start();
    let (app, nc) = nats_app(&server, &[("MAX_SECRET_BYTES", "131072")]).await;
    let huge = "n".repeat(90_000);
    let reply = ask(
        &nc,
        json!({ "operation": "status", "service": huge, "token": "wrong-token-777777" }),
    )
    .await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    let found = refused(&app).await;
    let record = found
        .iter()
        .find(|r| r.get_str("actor").is_ok_and(|a| a.starts_with('n')))
        .expect("audited");
    assert_eq!(record.get_str("actor").expect("actor"), "n".repeat(128));
    assert!(record.get("client_ip").is_none(), "{record:?}");
    assert!(format!("{record:?}").len() < 2_000, "bounded record");
}
