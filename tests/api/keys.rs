//! Keyring: rotation, rewrap, master-key change, tampering, key operations' audit.

use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    b64, mongo_uri, spawn_app_with, spawn_app_with_config, Identity, Response, TestApp,
};

const ADMIN_YAML: &str = "policies: [{name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys, audit]}]}]\nservices: [{name: admin, roles: [ops]}]";

async fn admin_app(extra: &[(&str, &str)]) -> (TestApp, Identity) {
    let admin = Identity::new("admin");
    let mut all = vec![("TOKEN_admin", admin.token.as_str())];
    all.extend_from_slice(extra);
    (spawn_app_with_config(ADMIN_YAML, &all).await, admin)
}

async fn sys(app: &TestApp, admin: &Identity, method: Method, path: &str) -> Response {
    TestApp::send(app.request_as(Some(admin), method, path)).await
}

async fn key_ids_in_db(app: &TestApp) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    let docs: Vec<Document> = app
        .secrets()
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    docs.iter()
        .flat_map(|d| d.get_array("versions").expect("versions").clone())
        .map(|v| {
            v.as_document()
                .expect("doc")
                .get_str("key_id")
                .expect("key")
                .to_string()
        })
        .collect()
}

async fn put(app: &TestApp, path: &str, value: &str) {
    let res = TestApp::send(
        app.request(Method::POST, "/api/secrets")
            .json(&json!({ "project": "k", "path": path, "value": value })),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
}

async fn get(app: &TestApp, path: &str) -> Response {
    TestApp::send(app.request(Method::GET, &format!("/api/secrets/k/{path}"))).await
}

#[tokio::test]
async fn rotate_keeps_old_values_readable_and_seals_new_ones_under_the_new_key() {
    let (app, admin) = admin_app(&[]).await;
    let before = app.create(b"before-rotation").await;
    let first_key = key_ids_in_db(&app).await[0].clone();

    let rotated = sys(&app, &admin, Method::POST, "/api/sys/rotate").await;

    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new_key = rotated.json()["active_key_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_ne!(new_key, first_key);
    let after = app.create(b"after-rotation").await;
    assert_eq!(
        app.fetch(&before).await.json()["secret"],
        b64(b"before-rotation")
    );
    assert_eq!(
        app.fetch(&after).await.json()["secret"],
        b64(b"after-rotation")
    );
    let doc = app
        .secrets()
        .find_one(doc! { "_id": &after })
        .await
        .expect("q")
        .expect("doc");
    let key = doc.get_array("versions").expect("v")[0]
        .as_document()
        .expect("d")
        .get_str("key_id")
        .expect("k")
        .to_string();
    assert_eq!(key, new_key, "new versions carry the new key id");

    let status = sys(&app, &admin, Method::GET, "/api/sys/keys").await.json();
    assert_eq!(status["active_key_id"], new_key);
    let by_id: HashMap<String, Value> = status["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["key_id"].as_str().expect("id").to_string(), k.clone()))
        .collect();
    assert_eq!(by_id[&first_key]["state"], "retired");
    assert_eq!(by_id[&first_key]["versions"], 1);
    assert_eq!(by_id[&new_key]["state"], "active");
    assert_eq!(by_id[&new_key]["versions"], 1);
    assert!(
        !status.to_string().contains("wrapped"),
        "no key material in the status"
    );
}

#[tokio::test]
async fn key_operations_need_admin_on_sys_and_are_audited() {
    let (app, admin) = admin_app(&[]).await;
    for (method, path) in [
        (Method::POST, "/api/sys/rotate"),
        (Method::POST, "/api/sys/rewrap"),
        (Method::GET, "/api/sys/keys"),
    ] {
        let res = TestApp::send(app.request(method.clone(), path)).await;
        res.assert_error(403, "forbidden");
        assert_eq!(
            sys(&app, &admin, method.clone(), path).await.status,
            200,
            "{method} {path}"
        );
    }
    for action in ["key_rotate", "key_rewrap", "key_status"] {
        let success = app
            .audit_logs()
            .count_documents(doc! { "action": action, "actor": "admin", "outcome": "success" })
            .await
            .expect("count");
        let denied = app
            .audit_logs()
            .count_documents(doc! { "action": action, "actor": "tester", "outcome": "denied" })
            .await
            .expect("count");
        assert_eq!((success, denied), (1, 1), "{action}");
    }
}

#[tokio::test]
async fn legacy_values_sealed_under_the_master_key_still_decrypt_and_rewrap_away() {
    use secret_manager::crypto::{record_aad_v1, Cipher, MasterKey};
    let (app, admin) = admin_app(&[]).await;
    // A record as the core service wrote it: sealed directly under the master key.
    let master = MasterKey::parse(&app.master_key).expect("key");
    let cipher = Cipher::from_master(&master);
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = cipher
        .seal(b"legacy-value", &record_aad_v1(&id, 1, master.key_id()))
        .expect("seal");
    let now = mongodb::bson::DateTime::now();
    let bin = |b: Vec<u8>| {
        Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: b,
        })
    };
    app.secrets().insert_one(doc! {
        "_id": &id, "project": "default", "path": &id, "current_version": 1_i64,
        "versions": [{ "version": 1_i64, "ciphertext": bin(sealed.ciphertext), "nonce": bin(sealed.nonce.to_vec()),
                       "key_id": master.key_id(), "created_at": now, "created_by": "old" }],
        "created_at": now, "created_by": "old", "updated_at": now, "updated_by": "old",
    }).await.expect("insert legacy");
    // A restart adds the legacy keyring entry.
    let restarted = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("MONGO_DB", &app.db_name),
            ("MASTER_KEY", &app.master_key),
            ("TOKEN_admin", &admin.token),
            ("TOKEN_tester", &app.identity.token),
        ],
    )
    .await;
    assert_eq!(
        restarted.fetch(&id).await.json()["secret"],
        b64(b"legacy-value")
    );

    let status = sys(&restarted, &admin, Method::GET, "/api/sys/keys")
        .await
        .json();
    let legacy = status["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["legacy"] == true)
        .expect("legacy entry")
        .clone();
    assert_eq!(legacy["key_id"], master.key_id());
    assert_eq!(legacy["versions"], 1);
    let in_use = sys(
        &restarted,
        &admin,
        Method::DELETE,
        &format!("/api/sys/keys/{}", master.key_id()),
    )
    .await;
    in_use.assert_error(409, "key_in_use");

    let rewrap = sys(&restarted, &admin, Method::POST, "/api/sys/rewrap")
        .await
        .json();
    assert_eq!(
        (
            rewrap["versions_rewrapped"].clone(),
            rewrap["versions_remaining"].clone()
        ),
        (json!(1), json!(0))
    );
    assert_eq!(
        restarted.fetch(&id).await.json()["secret"],
        b64(b"legacy-value")
    );
    let destroyed = sys(
        &restarted,
        &admin,
        Method::DELETE,
        &format!("/api/sys/keys/{}", master.key_id()),
    )
    .await;
    assert_eq!(destroyed.status, 204, "{}", destroyed.text);
    assert_eq!(
        restarted.fetch(&id).await.json()["secret"],
        b64(b"legacy-value")
    );
    let active = status["active_key_id"]
        .as_str()
        .expect("active")
        .to_string();
    sys(
        &restarted,
        &admin,
        Method::DELETE,
        &format!("/api/sys/keys/{active}"),
    )
    .await
    .assert_error(409, "key_active");
    sys(&restarted, &admin, Method::DELETE, "/api/sys/keys/dk-nope")
        .await
        .assert_error(404, "key_not_found");
    let audited = restarted
        .audit_logs()
        .count_documents(doc! { "action": "key_destroy", "outcome": "success" })
        .await
        .expect("count");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn rewrap_under_concurrent_reads_and_writes_on_two_instances() {
    let (a, admin) = admin_app(&[]).await;
    let b = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("MONGO_DB", &a.db_name),
            ("MASTER_KEY", &a.master_key),
            ("TOKEN_admin", &admin.token),
            ("TOKEN_tester", &a.identity.token),
        ],
    )
    .await;
    for i in 0..40 {
        put(&a, &format!("s{i}"), &format!("v{i}-1")).await;
    }
    for i in 0..40 {
        let res = TestApp::send(
            b.request(Method::PATCH, &format!("/api/secrets/k/s{i}"))
                .json(&json!({ "value": format!("v{i}-2") })),
        )
        .await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(
        sys(&a, &admin, Method::POST, "/api/sys/rotate")
            .await
            .status,
        200
    );

    let workers = [&a, &b].map(|app| {
        let admin = admin.clone();
        async move {
            let mut passes = 0;
            loop {
                let r = sys(app, &admin, Method::POST, "/api/sys/rewrap?max_documents=5").await;
                assert_eq!(r.status, 200, "{}", r.text);
                passes += 1;
                if r.json()["versions_remaining"] == 0 || passes > 200 {
                    return passes;
                }
            }
        }
    });
    let traffic = async {
        let mut failures = Vec::new();
        for round in 0..6 {
            for i in 0..40 {
                let app = if i % 2 == 0 { &a } else { &b };
                if round % 2 == 0 {
                    let res = get(app, &format!("s{i}")).await;
                    if res.status != 200 {
                        failures.push(res.text.clone());
                    }
                } else if i % 5 == 0 {
                    let res = TestApp::send(
                        app.request(Method::PATCH, &format!("/api/secrets/k/s{i}"))
                            .json(&json!({ "value": format!("v{i}-r{round}") })),
                    )
                    .await;
                    if res.status != 200 {
                        failures.push(res.text.clone());
                    }
                }
            }
        }
        failures
    };
    let (passes, failures) = tokio::join!(futures_util::future::join_all(workers), traffic);
    assert!(failures.is_empty(), "zero failed requests: {failures:?}");
    assert!(passes.iter().all(|p| *p <= 200));
    // A last pass catches documents written during the rewrap by the old key holders.
    let last = sys(&a, &admin, Method::POST, "/api/sys/rewrap")
        .await
        .json();
    assert_eq!(last["versions_remaining"], 0, "{last}");

    let active = sys(&a, &admin, Method::GET, "/api/sys/keys").await.json()["active_key_id"]
        .as_str()
        .expect("a")
        .to_string();
    let keys = key_ids_in_db(&a).await;
    assert!(
        keys.iter().all(|k| *k == active),
        "every version under the active key"
    );
    for i in 0..40 {
        let current = get(&a, &format!("s{i}")).await.json();
        let expected = if i % 5 == 0 {
            format!("v{i}-r5")
        } else {
            format!("v{i}-2")
        };
        assert_eq!(current["value"], expected, "s{i}");
        let old = TestApp::send(a.request(Method::GET, &format!("/api/secrets/k/s{i}?version=1")))
            .await
            .json();
        assert_eq!(old["value"], format!("v{i}-1"), "old versions unchanged");
    }
}

#[tokio::test]
async fn replicas_rotating_at_once_leave_exactly_one_active_key() {
    let (a, admin) = admin_app(&[]).await;
    let b = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("MONGO_DB", &a.db_name),
            ("MASTER_KEY", &a.master_key),
            ("TOKEN_admin", &admin.token),
        ],
    )
    .await;
    let rotations = (0..10).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        sys(app, &admin, Method::POST, "/api/sys/rotate")
    });
    for r in futures_util::future::join_all(rotations).await {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let status = sys(&a, &admin, Method::GET, "/api/sys/keys").await.json();
    let active: Vec<&Value> = status["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1);
    let docs_active =
        a.db.collection::<Document>("keyring")
            .count_documents(doc! { "state": "active" })
            .await
            .expect("count");
    assert!(docs_active >= 1);
    // Both replicas seal under the same key within the refresh interval.
    let id_a = a.create(b"x").await;
    let id_b = b.create(b"y").await;
    let key_of = |d: Document| {
        d.get_array("versions").expect("v")[0]
            .as_document()
            .expect("d")
            .get_str("key_id")
            .expect("k")
            .to_string()
    };
    let ka = key_of(
        a.secrets()
            .find_one(doc! { "_id": &id_a })
            .await
            .expect("q")
            .expect("a"),
    );
    let kb = key_of(
        a.secrets()
            .find_one(doc! { "_id": &id_b })
            .await
            .expect("q")
            .expect("b"),
    );
    assert_eq!(ka, status["active_key_id"].as_str().expect("id"));
    // b may need one refresh to see a rotation made through a.
    assert!(
        kb == ka
            || status["keys"]
                .as_array()
                .expect("k")
                .iter()
                .any(|k| k["key_id"] == kb.as_str())
    );
}

#[tokio::test]
async fn the_active_key_retires_after_max_seals() {
    let (app, _admin) = admin_app(&[("KEY_MAX_SEALS", "5"), ("KEYRING_REFRESH_SECS", "1")]).await;
    for i in 0..6 {
        app.create(format!("v{i}").as_bytes()).await;
    }
    let first: Vec<String> = key_ids_in_db(&app).await;
    let mut rotated = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let id = app.create(b"probe").await;
        let doc = app
            .secrets()
            .find_one(doc! { "_id": &id })
            .await
            .expect("q")
            .expect("d");
        let key = doc.get_array("versions").expect("v")[0]
            .as_document()
            .expect("d")
            .get_str("key_id")
            .expect("k")
            .to_string();
        if key != first[0] {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "a new key took over after 5 seals");
}

async fn start(db: &str, envs: &[(&str, String)]) -> Result<TestApp, String> {
    let mut pairs = vec![
        ("MONGO_URI", mongo_uri()),
        ("MONGO_DB", db.to_string()),
        ("PORT", "0".to_string()),
        ("HOST", "127.0.0.1".to_string()),
        ("CONFIG_FILE", "/dev/null".to_string()),
    ];
    pairs.extend(envs.iter().map(|(k, v)| (*k, v.clone())));
    let config = secret_manager::config::Config::from_pairs(pairs).map_err(|e| e.to_string())?;
    match secret_manager::startup::Application::build(config).await {
        Ok(_) => Ok(spawn_app_with(
            &envs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .chain([("MONGO_DB", db)])
                .collect::<Vec<_>>(),
        )
        .await),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn master_key_change_reseals_only_the_keyring() {
    use secret_manager::crypto::MasterKey;
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let token = Identity::new("tester").token;
    let first = spawn_app_with(&[
        ("MASTER_KEY", old.to_base64().as_str()),
        ("TOKEN_tester", &token),
    ])
    .await;
    let id = first.create(b"survives-key-change").await;
    let ciphertext_before = first
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("q")
        .expect("d")
        .get_array("versions")
        .expect("v")
        .clone();
    let db = first.db_name.clone();
    let tok = ("TOKEN_tester", token.clone());

    let wrong = start(
        &db,
        &[("MASTER_KEY", new.to_base64().to_string()), tok.clone()],
    )
    .await;
    assert!(
        wrong
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("MASTER_KEY_PREVIOUS")),
        "new key alone is refused"
    );

    let changed = start(
        &db,
        &[
            ("MASTER_KEY", new.to_base64().to_string()),
            ("MASTER_KEY_PREVIOUS", old.to_base64().to_string()),
            tok.clone(),
        ],
    )
    .await
    .expect("starts with the previous key given");
    assert_eq!(
        changed.fetch(&id).await.json()["secret"],
        b64(b"survives-key-change")
    );
    let ring: Vec<Document> = {
        use futures_util::TryStreamExt as _;
        changed
            .db
            .collection::<Document>("keyring")
            .find(doc! {})
            .await
            .expect("f")
            .try_collect()
            .await
            .expect("c")
    };
    assert!(
        ring.iter()
            .all(|k| k.get_str("master_key_id").expect("m") == new.key_id()),
        "keyring re-sealed"
    );
    let ciphertext_after = changed
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("q")
        .expect("d")
        .get_array("versions")
        .expect("v")
        .clone();
    assert_eq!(
        ciphertext_before, ciphertext_after,
        "values were not re-encrypted"
    );

    let later = start(
        &db,
        &[("MASTER_KEY", new.to_base64().to_string()), tok.clone()],
    )
    .await
    .expect("new key alone now");
    assert_eq!(
        later.fetch(&id).await.json()["secret"],
        b64(b"survives-key-change")
    );
    let old_again = start(&db, &[("MASTER_KEY", old.to_base64().to_string()), tok]).await;
    let err = old_again.err().expect("the old key is now wrong");
    assert!(
        err.contains(new.key_id()) && !err.contains(old.to_base64().as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_keyring_entry_fails_closed_for_its_values_only() {
    let (app, admin) = admin_app(&[]).await;
    let under_first = app.create(b"under-first-key").await;
    let first_key = key_ids_in_db(&app).await[0].clone();
    sys(&app, &admin, Method::POST, "/api/sys/rotate").await;
    let under_second = app.create(b"under-second-key").await;
    let ring = app.db.collection::<Document>("keyring");
    let entry = ring
        .find_one(doc! { "_id": &first_key })
        .await
        .expect("q")
        .expect("entry");
    let Some(Bson::Binary(mut wrapped)) = entry.get("wrapped").cloned() else {
        panic!("binary")
    };
    wrapped.bytes[3] ^= 0x40;
    ring.update_one(
        doc! { "_id": &first_key },
        doc! { "$set": { "wrapped": wrapped } },
    )
    .await
    .expect("tamper");

    let restarted = spawn_app_with(&[
        ("MONGO_DB", &app.db_name),
        ("MASTER_KEY", &app.master_key),
        ("TOKEN_tester", &app.identity.token),
    ])
    .await;

    let res = restarted.fetch(&under_first).await;
    res.assert_error(500, "internal_error");
    assert!(!res.text.contains("under-first-key") && !res.text.contains(&first_key));
    assert_eq!(
        restarted.fetch(&under_second).await.json()["secret"],
        b64(b"under-second-key")
    );
}

/// Another replica caches the old active key for up to `KEYRING_REFRESH_SECS`
/// after a rotation: destroying it at once could make that replica's writes
/// unreadable, so a freshly retired key is refused until the grace has passed.
#[tokio::test]
async fn a_freshly_retired_key_cannot_be_destroyed_until_the_grace_has_passed() {
    let (app, admin) = admin_app(&[]).await;
    put(&app, "a", "v").await;
    let before = sys(&app, &admin, Method::GET, "/api/sys/keys").await.json();
    let old = before["active_key_id"]
        .as_str()
        .expect("active")
        .to_string();
    sys(&app, &admin, Method::POST, "/api/sys/rotate").await;
    let rewrap = sys(&app, &admin, Method::POST, "/api/sys/rewrap")
        .await
        .json();
    assert_eq!(rewrap["versions_remaining"], 0, "{rewrap}");

    let refused = sys(
        &app,
        &admin,
        Method::DELETE,
        &format!("/api/sys/keys/{old}"),
    )
    .await;
    refused.assert_error(409, "key_recently_retired");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (60..=75).contains(&wait),
        "2 x refresh (5 s) + 60 s: {wait}"
    );

    // As if the grace period had passed.
    let long_ago = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 600_000,
    );
    app.db
        .collection::<Document>("keyring")
        .update_one(
            doc! { "_id": &old },
            doc! { "$set": { "retired_at": long_ago } },
        )
        .await
        .expect("backdate");
    let destroyed = sys(
        &app,
        &admin,
        Method::DELETE,
        &format!("/api/sys/keys/{old}"),
    )
    .await;
    assert_eq!(destroyed.status, 204, "{}", destroyed.text);
    assert_eq!(get(&app, "a").await.json()["value"], "v");
}

/// During a master-key change, a replica still on the old key must not serve
/// 500s behind a green readiness check, nor seal a data key under the old key.
#[tokio::test]
async fn a_replica_left_on_the_old_master_key_fails_readiness_and_refuses_to_rotate() {
    use secret_manager::crypto::MasterKey;
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let admin = Identity::new("admin");
    let token = Identity::new("tester").token;
    let old_replica = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("MASTER_KEY", old.to_base64().as_str()),
            ("TOKEN_tester", &token),
            ("TOKEN_admin", &admin.token),
            ("ALLOW_tester", "*"),
        ],
    )
    .await;
    put(&old_replica, "before", "value-1").await;
    let ready = TestApp::send(old_replica.request_as(None, Method::GET, "/health/ready")).await;
    assert_eq!(ready.status, 200, "{}", ready.text);

    // A new replica starts with the new key and re-seals the keyring.
    let new_replica = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("MONGO_DB", old_replica.db_name.as_str()),
            ("MASTER_KEY", new.to_base64().as_str()),
            ("MASTER_KEY_PREVIOUS", old.to_base64().as_str()),
            ("TOKEN_tester", &token),
            ("TOKEN_admin", &admin.token),
        ],
    )
    .await;

    // The old replica notices at its next keyring load (key status forces one).
    sys(&old_replica, &admin, Method::GET, "/api/sys/keys").await;
    let ready = TestApp::send(old_replica.request_as(None, Method::GET, "/health/ready")).await;
    ready.assert_error(503, "keyring_unavailable");
    // It keeps its last good keyring: reads and writes still work.
    assert_eq!(get(&old_replica, "before").await.json()["value"], "value-1");
    put(&old_replica, "during", "value-2").await;
    // It refuses to rotate: a data key sealed under the old master key would be
    // unreadable to the replicas on the new one.
    let rotate = sys(&old_replica, &admin, Method::POST, "/api/sys/rotate").await;
    rotate.assert_error(500, "internal_error");
    let foreign = old_replica
        .db
        .collection::<Document>("keyring")
        .count_documents(doc! { "master_key_id": old.key_id() })
        .await
        .expect("count");
    assert_eq!(foreign, 0, "no key sealed under the old master key");
    // What the old replica wrote meanwhile stays readable to the new ones.
    let read = TestApp::send(new_replica.request_as(
        Some(&old_replica.identity),
        Method::GET,
        "/api/secrets/k/during",
    ))
    .await;
    assert_eq!(read.json()["value"], "value-2", "{}", read.text);
}
