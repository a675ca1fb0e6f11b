//! Identity: every secret route needs X-Service + X-Token; failures look alike.

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{b64, spawn_app, spawn_app_with, Identity, TestApp};

#[tokio::test]
async fn the_test_endpoint_names_the_authenticated_service() {
    let app = spawn_app().await;
    let res = TestApp::send(app.request(Method::POST, "/api/secrets/test")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.json(),
        json!({ "status": "ok", "message": "Authentication successful for service 'tester'" })
    );
}

#[tokio::test]
async fn every_kind_of_bad_credential_gets_the_same_401_body() {
    let disabled = Identity::new("retired");
    let yaml = "services: [{name: retired, enabled: false}]";
    let app = crate::helpers::spawn_app_with_config(
        yaml,
        &[
            ("TOKEN_retired", &disabled.token),
            ("AUTH_FAILURE_BURST", "0"),
        ],
    )
    .await;
    let wrong_token = Identity {
        token: "wrong-token-000000".into(),
        ..app.identity.clone()
    };
    let unknown = Identity::new("nobody");
    // (case, identity sent, one extra raw header)
    type Case<'a> = (&'a str, Option<&'a Identity>, Option<(&'a str, &'a str)>);
    let cases: [Case; 6] = [
        ("no headers", None, None),
        ("service only", None, Some(("x-service", "tester"))),
        (
            "token only",
            None,
            Some(("x-token", app.identity.token.as_str())),
        ),
        ("wrong token", Some(&wrong_token), None),
        ("unknown service", Some(&unknown), None),
        ("disabled service", Some(&disabled), None),
    ];
    let mut bodies = Vec::new();
    for (case, who, header) in cases {
        let mut req = app
            .request_as(who, Method::POST, "/vault/secret/create")
            .json(&json!({ "secret": b64(b"x") }));
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let res = TestApp::send(req).await;
        let message = res.assert_error(401, "unauthorized");
        assert!(!res.text.contains("wrong-token"), "{case}: token echoed");
        bodies.push((case, message));
    }
    for (case, message) in &bodies {
        assert_eq!(
            message, &bodies[0].1,
            "{case}: same message as the others (no oracle)"
        );
    }
    assert_eq!(
        app.secrets().count_documents(doc! {}).await.expect("count"),
        0
    );
}

#[tokio::test]
async fn failed_authentication_is_audited_with_the_claimed_name_and_never_the_token() {
    let app = spawn_app().await;
    let intruder = Identity {
        service: "mallory".into(),
        token: "guess-token-4242".into(),
    };
    let res = TestApp::send(app.request_as(Some(&intruder), Method::GET, "/api/secrets")).await;
    res.assert_error(401, "unauthorized");

    let record = app
        .audit_logs()
        .find_one(doc! { "action": "authenticate" })
        .await
        .expect("query")
        .expect("audited");
    assert_eq!(record.get_str("actor").expect("actor"), "mallory");
    assert_eq!(record.get_str("outcome").expect("outcome"), "denied");
    assert_eq!(record.get_str("error_code").expect("code"), "unauthorized");
    assert!(!format!("{record:?}").contains("guess-token"));
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_429_even_with_the_right_token() {
    let app = spawn_app_with(&[
        ("AUTH_FAILURE_BURST", "3"),
        ("AUTH_FAILURE_PER_MINUTE", "1"),
    ])
    .await;
    let wrong = Identity {
        token: "wrong-token-111111".into(),
        ..app.identity.clone()
    };
    for i in 0..3 {
        let res =
            TestApp::send(app.request_as(Some(&wrong), Method::POST, "/api/secrets/test")).await;
        assert_eq!(res.status, 401, "attempt {i}");
    }
    for who in [&wrong, &app.identity] {
        let res = TestApp::send(app.request_as(Some(who), Method::POST, "/api/secrets/test")).await;
        res.assert_error(429, "too_many_auth_failures");
        let wait: u64 = res.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=61).contains(&wait), "Retry-After {wait}");
    }
    let health = app.get("/health").await;
    assert_eq!(health.status, 200, "open routes stay open");
}

#[tokio::test]
async fn open_routes_need_no_identity_and_every_other_route_does() {
    let app = spawn_app_with(&[("AUTH_FAILURE_BURST", "0")]).await;
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/docs/",
    ] {
        let res = TestApp::send(app.request_as(None, Method::GET, path)).await;
        assert_eq!(res.status, 200, "{path} is open");
    }
    let closed = [
        (Method::POST, "/vault/secret/create"),
        (Method::POST, "/vault/secret/fetch"),
        (Method::POST, "/api/secrets/test"),
        (Method::GET, "/api/secrets"),
        (Method::POST, "/api/secrets"),
        (Method::GET, "/api/secrets/p/a"),
        (Method::PATCH, "/api/secrets/p/a"),
        (Method::DELETE, "/api/secrets/p/a"),
        (Method::POST, "/api/secrets/p/a/restore"),
        (Method::GET, "/api/secrets/p/a/versions"),
        (Method::GET, "/api/projects"),
        (Method::POST, "/api/projects"),
        (Method::GET, "/api/audit"),
    ];
    for (method, path) in closed {
        let res = TestApp::send(app.request_as(None, method.clone(), path).json(&json!({}))).await;
        assert_eq!(
            res.status, 401,
            "{method} {path} needs identity: {}",
            res.text
        );
    }
}

#[tokio::test]
async fn tokens_can_come_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token-0123456789abcdef-0123\n").expect("write");
    let file = file.to_str().expect("utf8");
    let app = spawn_app_with(&[("TOKEN_filer_FILE", file), ("ALLOW_filer", "files:")]).await;
    let filer = Identity {
        service: "filer".into(),
        token: "file-token-0123456789abcdef-0123".into(),
    };
    let res = TestApp::send(app.request_as(Some(&filer), Method::POST, "/api/secrets/test")).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

/// Issue 10, finding 1: behind a proxy the client writes the left of
/// `X-Forwarded-For`; a new left hop per request used to be a new limiter key
/// (unlimited guesses). Now the hop the proxy appended (203.0.113.5) is the
/// client, so the 4th and 5th bad guesses get 429.
#[tokio::test]
async fn a_new_forged_forwarded_hop_per_request_does_not_escape_the_limit() {
    let app = spawn_app_with(&[
        ("TRUST_PROXY_HEADERS", "true"),
        ("AUTH_FAILURE_BURST", "3"),
        ("AUTH_FAILURE_PER_MINUTE", "1"),
    ])
    .await;
    let wrong = Identity {
        token: "wrong-token-222222".into(),
        ..app.identity.clone()
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        let req = app
            .request_as(Some(&wrong), Method::POST, "/api/secrets/test")
            .header("x-forwarded-for", format!("198.51.100.{i}, 203.0.113.5"));
        statuses.push(TestApp::send(req).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

/// Issue 10, finding 2: behind an ingress every client shares one address, so
/// the limit is per (claimed service, address). Service `tester`'s bad tokens
/// exhaust its own bucket (429, even with its right token); service `other`
/// from the same address still authenticates (was 429), and a request claiming
/// no service gets 401 from a bucket of its own (was 429).
#[tokio::test]
async fn one_services_failures_from_a_shared_address_do_not_lock_out_another() {
    let other = Identity::new("other");
    let app = spawn_app_with(&[
        ("TOKEN_other", &other.token),
        ("ALLOW_other", "*"),
        ("AUTH_FAILURE_BURST", "3"),
        ("AUTH_FAILURE_PER_MINUTE", "1"),
    ])
    .await;
    let wrong = Identity {
        token: "wrong-token-333333".into(),
        ..app.identity.clone()
    };
    let test = |who: Option<&Identity>| {
        TestApp::send(app.request_as(who, Method::POST, "/api/secrets/test"))
    };
    for i in 0..3 {
        assert_eq!(test(Some(&wrong)).await.status, 401, "attempt {i}");
    }
    test(Some(&app.identity))
        .await
        .assert_error(429, "too_many_auth_failures");
    let res = test(Some(&other)).await;
    assert_eq!(
        res.status, 200,
        "another service is not locked out: {}",
        res.text
    );
    test(None).await.assert_error(401, "unauthorized");
}
