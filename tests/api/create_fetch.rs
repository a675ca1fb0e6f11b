use serde_json::json;

use crate::helpers::{b64, spawn_app};

#[tokio::test]
async fn create_returns_200_with_a_time_ordered_uuid_and_fetch_returns_the_same_base64() {
    let app = spawn_app().await;
    let plaintext = b"postgres://app:s3cr3t@db/prod";

    let res = app
        .post_json("/vault/secret/create", &json!({ "secret": b64(plaintext) }))
        .await;

    assert_eq!(res.status, 200, "{}", res.text);
    let id = res.json()["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();
    let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
    // Version 7: its timestamp is the creation time (ids sort by creation).
    assert_eq!(parsed.get_version_num(), 7);
    let (secs, _) = parsed.get_timestamp().expect("a v7 timestamp").to_unix();
    let now = chrono::Utc::now().timestamp();
    let secs = i64::try_from(secs).expect("seconds");
    assert!((now - 60..=now + 1).contains(&secs), "{secs} vs {now}");
    assert_eq!(parsed.hyphenated().to_string(), id, "canonical form");
    let later = app
        .post_json("/vault/secret/create", &json!({ "secret": b64(b"x") }))
        .await;
    let later = later.json()["secret_id"].as_str().expect("id").to_string();
    assert!(
        later > id,
        "a later secret's id sorts after: {later} vs {id}"
    );

    let fetched = app.fetch(&id).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert_eq!(fetched.json(), json!({ "secret": b64(plaintext) }));
}

#[tokio::test]
async fn trailing_slash_create_works_too() {
    let app = spawn_app().await;
    let res = app
        .post_json("/vault/secret/create/", &json!({ "secret": b64(b"x") }))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let id = res.json()["secret_id"].as_str().expect("id").to_string();
    assert_eq!(app.fetch(&id).await.json()["secret"], b64(b"x"));
}

#[tokio::test]
async fn binary_values_and_the_maximum_size_round_trip_exactly() {
    let app = spawn_app_with_max(1024).await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let max: Vec<u8> = (0..1024).map(|i| (i * 7 % 256) as u8).collect();
    for value in [vec![0u8], all_bytes, max] {
        let id = app.create(&value).await;
        let res = app.fetch(&id).await;
        assert_eq!(res.json()["secret"], b64(&value), "len {}", value.len());
    }
}

#[tokio::test]
async fn each_create_gets_its_own_id_and_value() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push((app.create(format!("value-{i}").as_bytes()).await, i));
    }
    let distinct: std::collections::HashSet<_> = ids.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(distinct.len(), 20);
    for (id, i) in ids {
        assert_eq!(
            app.fetch(&id).await.json()["secret"],
            b64(format!("value-{i}").as_bytes())
        );
    }
}

#[tokio::test]
async fn fetch_accepts_other_uuid_spellings_of_the_same_id() {
    let app = spawn_app().await;
    let id = app.create(b"v").await;
    let upper = id.to_uppercase();
    let simple = id.replace('-', "");
    for spelling in [upper, simple] {
        let res = app.fetch(&spelling).await;
        assert_eq!(res.status, 200, "{spelling}: {}", res.text);
    }
}

#[tokio::test]
async fn concurrent_creates_all_land() {
    let app = spawn_app().await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let req = app.request(reqwest::Method::POST, "/vault/secret/create");
            tokio::spawn(async move {
                let res = req
                    .json(&json!({ "secret": b64(format!("c{i}").as_bytes()) }))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(res.status().as_u16(), 200);
                let body: serde_json::Value = res.json().await.expect("json");
                (i, body["secret_id"].as_str().expect("id").to_string())
            })
        })
        .collect();
    for task in tasks {
        let (i, id) = task.await.expect("task");
        assert_eq!(
            app.fetch(&id).await.json()["secret"],
            b64(format!("c{i}").as_bytes())
        );
    }
    assert_eq!(
        app.secrets()
            .count_documents(mongodb::bson::doc! {})
            .await
            .expect("count"),
        32
    );
}

async fn spawn_app_with_max(max: usize) -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(&[("MAX_SECRET_BYTES", &max.to_string())]).await
}

/// The seed service's clients read FastAPI's `detail`; the standard `error` object stays.
#[tokio::test]
async fn seed_routes_answer_errors_with_detail_beside_the_error_object() {
    let app = spawn_app().await;
    let cases = [
        (
            "/vault/secret/fetch",
            json!({ "secret_id": uuid::Uuid::new_v4().to_string() }),
            404,
            "secret_not_found",
        ),
        (
            "/vault/secret/create",
            json!({ "secret": "not base64!" }),
            400,
            "invalid_base64",
        ),
        (
            "/vault/secret/fetch",
            json!({ "secret_id": "nope" }),
            400,
            "invalid_secret_id",
        ),
        ("/vault/secret/create", json!({}), 400, "missing_field"),
    ];
    for (path, body, status, code) in cases {
        let res = app.post_json(path, &body).await;
        assert_eq!(res.status, status, "{path} {body}: {}", res.text);
        let json = res.json();
        assert_eq!(json["error"]["code"], code, "{path} {body}: {json}");
        let detail = json["detail"].as_str().expect("a detail string");
        match code {
            "secret_not_found" => assert_eq!(detail, "Secret not found"),
            "invalid_base64" => assert!(detail.starts_with("invalid base64"), "{detail}"),
            _ => assert_eq!(detail, json["error"]["message"], "{json}"),
        }
    }
    // Identity headers stay required on the seed routes, and their 401 says so in `detail`.
    let res = crate::helpers::TestApp::send(
        app.request_as(None, reqwest::Method::POST, "/vault/secret/create")
            .json(&json!({ "secret": b64(b"x") })),
    )
    .await;
    assert_eq!(res.status, 401, "{}", res.text);
    assert_eq!(res.json()["error"]["code"], "unauthorized");
    assert!(res.json()["detail"].as_str().is_some_and(|d| !d.is_empty()));
    // The path-addressed API keeps the plain error body.
    let res = app.get("/api/secrets/p/missing").await;
    assert!(res.json().get("detail").is_none(), "{}", res.text);
}
