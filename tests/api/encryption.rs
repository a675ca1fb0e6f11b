use mongodb::bson::{doc, Bson, Document};

use crate::helpers::{b64, spawn_app};

#[tokio::test]
async fn the_stored_document_holds_no_plaintext_only_binary_ciphertext() {
    let app = spawn_app().await;
    let plaintext = b"plaintext-marker-7f3a9c";
    let id = app.create(plaintext).await;

    let stored = app
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("query")
        .expect("stored");
    let raw = mongodb::bson::to_vec(&stored).expect("bson bytes");
    let encoded = b64(plaintext);
    assert!(
        !raw.windows(plaintext.len()).any(|w| w == plaintext),
        "plaintext stored"
    );
    assert!(
        !raw.windows(encoded.len()).any(|w| w == encoded.as_bytes()),
        "base64 stored"
    );

    assert_eq!(stored.get_str("project").expect("project"), "default");
    assert_eq!(stored.get_str("path").expect("path"), id);
    assert_eq!(
        stored.get_i64("current_version").expect("current_version"),
        1
    );
    let versions = stored.get_array("versions").expect("versions");
    assert_eq!(versions.len(), 1);
    let v = versions[0].as_document().expect("version doc");
    assert_eq!(v.get_i64("version").expect("version"), 1);
    assert!(
        matches!(v.get("ciphertext"), Some(Bson::Binary(b)) if b.bytes.len() == plaintext.len() + 16)
    );
    assert!(matches!(v.get("nonce"), Some(Bson::Binary(b)) if b.bytes.len() == 12));
    let key_id = v.get_str("key_id").expect("key_id");
    assert!(
        key_id.starts_with("dk-") && key_id.len() == 23,
        "a data key id: {key_id}"
    );
    assert!(!key_id.contains(&app.master_key));
}

#[tokio::test]
async fn the_same_value_stored_twice_gets_different_nonces_and_ciphertexts() {
    let app = spawn_app().await;
    let a = app.create(b"same").await;
    let b = app.create(b"same").await;
    let version = |d: Document| {
        d.get_array("versions").expect("versions")[0]
            .as_document()
            .expect("doc")
            .clone()
    };
    let da = version(
        app.secrets()
            .find_one(doc! { "_id": &a })
            .await
            .expect("q")
            .expect("a"),
    );
    let db = version(
        app.secrets()
            .find_one(doc! { "_id": &b })
            .await
            .expect("q")
            .expect("b"),
    );
    assert_ne!(da.get("nonce"), db.get("nonce"));
    assert_ne!(da.get("ciphertext"), db.get("ciphertext"));
}

#[tokio::test]
async fn ciphertext_moved_to_another_record_fails_closed_with_a_generic_500() {
    let app = spawn_app().await;
    let a = app.create(b"value-of-a").await;
    let b = app.create(b"value-of-b").await;
    let a_doc = app
        .secrets()
        .find_one(doc! { "_id": &a })
        .await
        .expect("q")
        .expect("a");
    let a_versions = a_doc.get_array("versions").expect("versions").clone();
    app.secrets()
        .update_one(
            doc! { "_id": &b },
            doc! { "$set": { "versions": a_versions } },
        )
        .await
        .expect("tamper");

    let res = app.fetch(&b).await;

    let message = res.assert_error(500, "internal_error");
    for leaked in ["value-of-a", "value-of-b"] {
        assert!(!res.text.contains(leaked) && !res.text.contains(&b64(leaked.as_bytes())));
    }
    assert!(
        !message.contains("decrypt") && !message.contains(&b),
        "no internals: {message}"
    );
    let audit = app
        .audit_logs()
        .find_one(doc! { "action": "fetch", "secret_id": &b })
        .await
        .expect("q")
        .expect("failed fetch audited");
    assert_eq!(audit.get_str("outcome").expect("outcome"), "error");
    assert_eq!(audit.get_str("error_code").expect("code"), "internal_error");
    assert_eq!(
        app.fetch(&a).await.json()["secret"],
        b64(b"value-of-a"),
        "the original still reads"
    );
}

#[tokio::test]
async fn a_flipped_ciphertext_bit_fails_closed() {
    let app = spawn_app().await;
    let id = app.create(b"tamper-me").await;
    let stored = app
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("q")
        .expect("doc");
    let mut versions = stored.get_array("versions").expect("versions").clone();
    let v = versions[0].as_document_mut().expect("doc");
    let Some(Bson::Binary(ct)) = v.get_mut("ciphertext") else {
        panic!("binary ciphertext")
    };
    ct.bytes[0] ^= 0x01;
    app.secrets()
        .update_one(
            doc! { "_id": &id },
            doc! { "$set": { "versions": versions } },
        )
        .await
        .expect("tamper");

    let res = app.fetch(&id).await;

    res.assert_error(500, "internal_error");
    assert!(!res.text.contains("tamper-me"));
}

#[tokio::test]
async fn a_service_started_with_another_master_key_refuses_to_start() {
    let first = spawn_app().await;
    first.create(b"bound-to-key-one").await;
    let other_key = secret_manager::crypto::MasterKey::generate();
    let pairs = [
        ("MASTER_KEY", other_key.to_base64().to_string()),
        ("MONGO_URI", crate::helpers::mongo_uri()),
        ("MONGO_DB", first.db_name.clone()),
        ("PORT", "0".to_string()),
        ("CONFIG_FILE", "/dev/null".to_string()),
    ];
    let config = secret_manager::config::Config::from_pairs(pairs).expect("config");

    let err = secret_manager::startup::Application::build(config)
        .await
        .err()
        .expect("must refuse");

    let text = err.to_string();
    assert!(
        text.contains("the keyring is sealed under master key mk-"),
        "{text}"
    );
    assert!(
        text.contains("MASTER_KEY_PREVIOUS"),
        "says how to change keys: {text}"
    );
    assert!(
        !text.contains(first.master_key.as_str()) && !text.contains(other_key.to_base64().as_str())
    );
}

/// A database writer without the master key relabels a secret into a project
/// that a service may read: the service must not get the value.
#[tokio::test]
async fn relabelling_a_record_in_the_database_fails_closed() {
    let reader = crate::helpers::Identity::new("open-reader");
    let token = format!("TOKEN_{}", reader.service);
    let app =
        crate::helpers::spawn_app_with(&[(&token, &reader.token), ("ALLOW_open-reader", "open:")])
            .await;
    let created =
        crate::helpers::TestApp::send(app.request(reqwest::Method::POST, "/api/secrets").json(
            &serde_json::json!({ "project": "locked", "path": "db/root", "value": "root-pw-9d1c" }),
        ))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let denied = crate::helpers::TestApp::send(app.request_as(
        Some(&reader),
        reqwest::Method::GET,
        "/api/secrets/locked/db/root",
    ))
    .await;
    denied.assert_error(403, "forbidden");

    for (project, path) in [("open", "db/root"), ("open", "stolen")] {
        app.secrets()
            .update_one(
                doc! { "project": { "$in": ["locked", "open"] } },
                doc! { "$set": { "project": project, "path": path } },
            )
            .await
            .expect("relabel");
        let res = crate::helpers::TestApp::send(app.request_as(
            Some(&reader),
            reqwest::Method::GET,
            &format!("/api/secrets/{project}/{path}"),
        ))
        .await;
        res.assert_error(500, "internal_error");
        assert!(!res.text.contains("root-pw-9d1c"), "{}", res.text);
    }
}

/// A database writer removes the newest version: reads must not serve the
/// previous value as current.
#[tokio::test]
async fn a_removed_newest_version_is_an_integrity_error_not_a_stale_value() {
    let app = spawn_app().await;
    let created = crate::helpers::TestApp::send(
        app.request(reqwest::Method::POST, "/api/secrets")
            .json(&serde_json::json!({ "project": "p", "path": "k", "value": "old-value" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let updated = crate::helpers::TestApp::send(
        app.request(reqwest::Method::PATCH, "/api/secrets/p/k")
            .json(&serde_json::json!({ "value": "new-value" })),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text);

    app.secrets()
        .update_one(doc! { "_id": &id }, doc! { "$pop": { "versions": 1 } })
        .await
        .expect("remove the newest version");

    let current = app.get("/api/secrets/p/k").await;
    current.assert_error(500, "internal_error");
    assert!(!current.text.contains("old-value"), "{}", current.text);
    let fetched = app.fetch(&id).await;
    fetched.assert_error(500, "internal_error");
    assert!(
        !fetched.text.contains(&b64(b"old-value")),
        "{}",
        fetched.text
    );
    // An explicitly requested older version still reads: it is the one asked for.
    let old = app.get("/api/secrets/p/k?version=1").await;
    assert_eq!(old.json()["value"], "old-value", "{}", old.text);
}

/// Values sealed under the first AAD format (id | version | key) still open,
/// and rewrap re-seals them under the format that binds project and path.
#[tokio::test]
async fn first_format_values_open_and_rewrap_moves_them_to_the_binding_format() {
    let admin = crate::helpers::Identity::new("admin");
    let app = crate::helpers::spawn_app_with_config(
        "policies: [{name: sys, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}]\nservices: [{name: admin, roles: [sys]}]\n",
        &[(&format!("TOKEN_{}", admin.service), &admin.token)],
    )
    .await;
    let id = app.create(b"format-one").await;
    // Make the stored version look as the previous release wrote it.
    let stored = app
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("q")
        .expect("doc");
    let v = stored.get_array("versions").expect("versions")[0]
        .as_document()
        .expect("version")
        .clone();
    let key_id = v.get_str("key_id").expect("key id").to_string();
    let keyring = app
        .db
        .collection::<Document>("keyring")
        .find_one(doc! { "_id": &key_id })
        .await
        .expect("q")
        .expect("key doc");
    let master = secret_manager::crypto::MasterKey::parse(&app.master_key).expect("master");
    let wrapper = secret_manager::crypto::Cipher::from_master(&master);
    let Some(Bson::Binary(wrapped)) = keyring.get("wrapped") else {
        panic!("wrapped key")
    };
    let Some(Bson::Binary(nonce)) = keyring.get("nonce") else {
        panic!("nonce")
    };
    let data_key = wrapper
        .open(
            &nonce.bytes,
            &wrapped.bytes,
            format!("keyring|{key_id}").as_bytes(),
        )
        .expect("unwrap the data key");
    let data_key: [u8; 32] = data_key.as_slice().try_into().expect("32 bytes");
    let cipher = secret_manager::crypto::Cipher::new(&data_key, key_id.clone());
    let sealed = cipher
        .seal(
            b"format-one",
            &secret_manager::crypto::record_aad_v1(&id, 1, &key_id),
        )
        .expect("seal");
    let bin = |bytes: Vec<u8>| {
        Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes,
        })
    };
    app.secrets()
        .update_one(
            doc! { "_id": &id },
            doc! {
                "$set": { "versions.0.ciphertext": bin(sealed.ciphertext), "versions.0.nonce": bin(sealed.nonce.to_vec()) },
                "$unset": { "versions.0.aad": "" },
            },
        )
        .await
        .expect("downgrade");

    assert_eq!(app.fetch(&id).await.json()["secret"], b64(b"format-one"));
    let rewrap = crate::helpers::TestApp::send(app.request_as(
        Some(&admin),
        reqwest::Method::POST,
        "/api/sys/rewrap",
    ))
    .await;
    assert_eq!(rewrap.status, 200, "{}", rewrap.text);
    assert!(
        rewrap.json()["versions_rewrapped"].as_u64() >= Some(1),
        "{}",
        rewrap.text
    );
    assert_eq!(rewrap.json()["versions_remaining"], 0, "{}", rewrap.text);
    let after = app
        .secrets()
        .find_one(doc! { "_id": &id })
        .await
        .expect("q")
        .expect("doc");
    let v = after.get_array("versions").expect("versions")[0]
        .as_document()
        .expect("version")
        .clone();
    assert_eq!(v.get_i32("aad").expect("aad format"), 2);
    assert_eq!(app.fetch(&id).await.json()["secret"], b64(b"format-one"));
}
