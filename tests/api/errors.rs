//! Every bad input: its status, its error code, and a body without internals or values.

use serde_json::json;

use crate::helpers::{b64, spawn_app, spawn_app_with};

const CREATE: &str = "/vault/secret/create";
const FETCH: &str = "/vault/secret/fetch";

#[tokio::test]
async fn bad_create_bodies_get_400_415_with_a_code_per_case() {
    let app = spawn_app().await;
    let cases: [(&str, Option<&str>, &str, u16, &str); 10] = [
        (
            "body is not JSON",
            Some("application/json"),
            "not json",
            400,
            "invalid_json",
        ),
        (
            "body is truncated JSON",
            Some("application/json"),
            r#"{"secret": "#,
            400,
            "invalid_json",
        ),
        (
            "body is empty",
            Some("application/json"),
            "",
            400,
            "invalid_json",
        ),
        (
            "field missing",
            Some("application/json"),
            "{}",
            400,
            "missing_field",
        ),
        (
            "field is a number",
            Some("application/json"),
            r#"{"secret": 123456}"#,
            400,
            "invalid_field",
        ),
        (
            "not base64",
            Some("application/json"),
            r#"{"secret": "!!!"}"#,
            400,
            "invalid_base64",
        ),
        (
            "unpadded base64",
            Some("application/json"),
            r#"{"secret": "aGk"}"#,
            400,
            "invalid_base64",
        ),
        (
            "base64 with whitespace",
            Some("application/json"),
            r#"{"secret": "aGk= "}"#,
            400,
            "invalid_base64",
        ),
        (
            "empty secret",
            Some("application/json"),
            r#"{"secret": ""}"#,
            400,
            "empty_secret",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            r#"{"secret": "aGk="}"#,
            415,
            "unsupported_media_type",
        ),
    ];
    for (case, content_type, body, status, code) in cases {
        let res = app.post_raw(CREATE, content_type, body.to_string()).await;
        let message = res.assert_error(status, code);
        assert!(
            !message.contains("123456"),
            "{case}: value echoed in {message}"
        );
    }
    let stored = app
        .secrets()
        .count_documents(mongodb::bson::doc! {})
        .await
        .expect("count");
    assert_eq!(stored, 0, "no bad input is stored");
}

#[tokio::test]
async fn json_without_a_content_type_is_accepted() {
    let app = spawn_app().await;
    let res = app
        .post_raw(CREATE, None, json!({ "secret": b64(b"x") }).to_string())
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn oversize_secret_and_oversize_body_get_413() {
    let app = spawn_app_with(&[("MAX_SECRET_BYTES", "16")]).await;

    let at_limit = app
        .post_json(CREATE, &json!({ "secret": b64(&[7u8; 16]) }))
        .await;
    assert_eq!(
        at_limit.status, 200,
        "exactly the limit is fine: {}",
        at_limit.text
    );

    let over = app
        .post_json(CREATE, &json!({ "secret": b64(&[7u8; 17]) }))
        .await;
    over.assert_error(413, "secret_too_large");

    let huge = app
        .post_json(CREATE, &json!({ "secret": b64(&[7u8; 100_000]) }))
        .await;
    huge.assert_error(413, "payload_too_large");

    let padded = format!(
        r#"{{"secret": "{}", "pad": "{}"}}"#,
        b64(b"x"),
        "p".repeat(10_000)
    );
    let res = app.post_raw(CREATE, Some("application/json"), padded).await;
    res.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let app = spawn_app_with(&[("MAX_SECRET_BYTES", "16")]).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let res = app.post_raw(CREATE, Some("application/json"), body).await;
    res.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn bad_fetch_bodies_get_400_or_404() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases: [(&str, String, u16, &str); 6] = [
        ("not JSON", "{{".into(), 400, "invalid_json"),
        ("field missing", "{}".into(), 400, "missing_field"),
        (
            "id is a number",
            r#"{"secret_id": 5}"#.into(),
            400,
            "invalid_field",
        ),
        (
            "id not a UUID",
            r#"{"secret_id": "abc"}"#.into(),
            400,
            "invalid_secret_id",
        ),
        (
            "id is empty",
            r#"{"secret_id": ""}"#.into(),
            400,
            "invalid_secret_id",
        ),
        (
            "unknown id",
            json!({ "secret_id": unknown }).to_string(),
            404,
            "secret_not_found",
        ),
    ];
    for (case, body, status, code) in cases {
        let res = app.post_raw(FETCH, Some("application/json"), body).await;
        let message = res.assert_error(status, code);
        assert!(!message.is_empty(), "{case}");
    }
}

#[tokio::test]
async fn malformed_input_fuzz_never_yields_a_5xx() {
    let app = spawn_app().await;
    let bodies = [
        "null",
        "[]",
        "\"x\"",
        "{\"secret\": null}",
        "{\"secret\": []}",
        "{\"secret\": {}}",
        "{\"secret\": \"====\"}",
        "{\"secret\": \"\\u0000\"}",
        "\u{feff}{}",
        "{\"secret\":\"AA==\"}garbage",
        "{\"secret_id\": \"00000000-0000-0000-0000-000000000000\"}",
    ];
    for body in bodies {
        for path in [CREATE, FETCH] {
            let res = app
                .post_raw(path, Some("application/json"), body.to_string())
                .await;
            assert!(
                res.status < 500,
                "{path} {body:?} gave {}: {}",
                res.status,
                res.text
            );
            assert!(
                res.json().get("error").is_some() || res.status == 200,
                "{path} {body:?}: {}",
                res.text
            );
        }
    }
}
