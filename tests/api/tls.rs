//! HTTPS with `TLS_CERT_FILE` / `TLS_KEY_FILE`: a certificate the test makes,
//! clients that trust its CA, and start-up errors that name the variable.

use std::process::{Command, Output, Stdio};

use secret_manager::startup::Application;
use serde_json::json;

use crate::helpers::{b64, spawn_app_with, test_config, TestCerts};

#[tokio::test]
async fn https_serves_the_api_to_a_client_trusting_the_ca_and_plain_http_fails() {
    // Arrange
    let certs = TestCerts::new();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let app = spawn_app_with(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let https = app.address.replacen("http://", "https://", 1);
    let client = certs.client();

    // Act
    let live = client
        .get(format!("{https}/health/live"))
        .send()
        .await
        .expect("HTTPS answers");
    let created = client
        .post(format!("{https}/vault/secret/create"))
        .header("x-service", &app.identity.service)
        .header("x-token", &app.identity.token)
        .json(&json!({ "secret": b64(b"over tls") }))
        .send()
        .await
        .expect("create over HTTPS");
    let plain = app
        .http
        .get(format!("{}/health/live", app.address))
        .send()
        .await;
    let untrusting = reqwest::Client::new()
        .get(format!("{https}/health/live"))
        .send()
        .await;

    // Assert
    assert_eq!(live.status(), 200);
    assert_eq!(created.status(), 200);
    let body: serde_json::Value = created.json().await.expect("JSON");
    let id = body["secret_id"].as_str().expect("secret_id");
    let fetched: serde_json::Value = client
        .post(format!("{https}/vault/secret/fetch"))
        .header("x-service", &app.identity.service)
        .header("x-token", &app.identity.token)
        .json(&json!({ "secret_id": id }))
        .send()
        .await
        .expect("fetch over HTTPS")
        .json()
        .await
        .expect("JSON");
    assert_eq!(fetched["secret"], b64(b"over tls"));
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");
    assert!(
        untrusting.is_err(),
        "a client that does not trust the CA must fail: {untrusting:?}"
    );
}

#[tokio::test]
async fn bad_tls_files_are_start_up_errors_naming_the_variable_not_the_content() {
    let certs = TestCerts::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).expect("write");
        p.to_str().expect("utf8").to_string()
    };
    let not_pem = path("not-pem", "hunter2-not-a-key\n");
    let bad_line = path(
        "bad-line",
        "-----BEGIN PRIVATE KEY-----\nhunter2%%%\n-----END PRIVATE KEY-----\n",
    );
    let other_key = path(
        "other-key",
        &rcgen::KeyPair::generate().expect("key").serialize_pem(),
    );
    let missing = dir
        .path()
        .join("missing")
        .to_str()
        .expect("utf8")
        .to_string();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    // (case, TLS_CERT_FILE, TLS_KEY_FILE, expected text)
    let cases = [
        (
            "missing certificate",
            missing.as_str(),
            key.as_str(),
            format!("`TLS_CERT_FILE` ({missing}) could not be read"),
        ),
        (
            "certificate not PEM",
            not_pem.as_str(),
            key.as_str(),
            format!("`TLS_CERT_FILE` ({not_pem}) holds no PEM certificate"),
        ),
        (
            "key not PEM",
            cert.as_str(),
            not_pem.as_str(),
            format!("`TLS_KEY_FILE` ({not_pem}) holds no PEM private key"),
        ),
        (
            "key a certificate",
            cert.as_str(),
            cert.as_str(),
            "`TLS_KEY_FILE`".to_string(),
        ),
        (
            "key corrupt",
            cert.as_str(),
            bad_line.as_str(),
            format!("`TLS_KEY_FILE` ({bad_line})"),
        ),
        (
            "key of another certificate",
            cert.as_str(),
            other_key.as_str(),
            "does not fit the certificate in `TLS_CERT_FILE`".to_string(),
        ),
    ];
    for (case, cert_file, key_file, expected) in cases {
        let config = test_config(&[("TLS_CERT_FILE", cert_file), ("TLS_KEY_FILE", key_file)])
            .expect("the variables themselves are valid");
        let err = match Application::build(config).await {
            Ok(_) => panic!("{case}: must not start"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&expected), "{case}: {err}");
        assert!(!err.contains("hunter2"), "{case}: content echoed: {err}");
        assert!(!err.contains("BEGIN"), "{case}: content echoed: {err}");
    }
}

fn script(name: &str, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(format!("scripts/{name}"));
    cmd.args(args)
        .env_remove("VAULT_CACERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("script runs")
}

#[tokio::test]
async fn the_scripts_reach_an_https_url_trusting_vault_cacert() {
    let certs = TestCerts::new();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let app = spawn_app_with(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let https = app.address.replacen("http://", "https://", 1);
    let (service, token, ca) = (
        app.identity.service.clone(),
        app.identity.token.clone(),
        certs.ca_file(),
    );
    let (created, fetched, untrusted) = tokio::task::spawn_blocking(move || {
        let envs = [
            ("VAULT_URL", https.as_str()),
            ("VAULT_SERVICE", service.as_str()),
            ("VAULT_TOKEN", token.as_str()),
            ("VAULT_CACERT", ca.as_str()),
        ];
        let created = script("create_secret.sh", &envs, &["over https"]);
        let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
        let fetched = script("fetch_secret.sh", &envs, &[&id]);
        let untrusted = script("create_secret.sh", &envs[..3], &["v"]);
        (created, fetched, untrusted)
    })
    .await
    .expect("blocking");
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();
    assert!(created.status.success(), "create: {}", err(&created));
    assert!(fetched.status.success(), "fetch: {}", err(&fetched));
    assert_eq!(fetched.stdout, b"over https");
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "without VAULT_CACERT the certificate is not trusted: {}",
        err(&untrusted)
    );
    assert!(
        err(&untrusted).contains("cannot reach"),
        "{}",
        err(&untrusted)
    );
}

/// The container healthcheck probes HTTPS when the service serves it.
#[tokio::test]
async fn the_healthcheck_probes_https_when_tls_is_configured() {
    let certs = TestCerts::new();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let app = spawn_app_with(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let port = app.address.rsplit(':').next().expect("port").to_string();
    let probe = |tls: Option<String>| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-manager"));
            cmd.args(["healthcheck", "--port", &port])
                .env_remove("TLS_CERT_FILE")
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some(file) = tls {
                cmd.env("TLS_CERT_FILE", file);
            }
            cmd.output().expect("binary runs")
        })
    };
    let with_tls: Output = probe(Some(cert.clone())).await.expect("join");
    let without: Output = probe(None).await.expect("join");
    assert!(
        with_tls.status.success(),
        "{}",
        String::from_utf8_lossy(&with_tls.stderr)
    );
    assert!(
        !without.status.success(),
        "a plain probe of an HTTPS port fails"
    );
}

/// The CLI reaches an `https://` URL when `VAULT_CACERT` names the CA.
#[tokio::test]
async fn the_cli_trusts_vault_cacert_for_https() {
    let certs = TestCerts::new();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let app = spawn_app_with(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let https = app.address.replacen("http://", "https://", 1);
    let run = |args: Vec<&'static str>, cacert: Option<String>| {
        let (url, service, token) = (
            https.clone(),
            app.identity.service.clone(),
            app.identity.token.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-manager"));
            cmd.args(&args)
                .env("VAULT_URL", url)
                .env("VAULT_SERVICE", service)
                .env("VAULT_TOKEN", token)
                .env_remove("VAULT_TOKEN_FILE")
                .env_remove("VAULT_CACERT")
                .stdin(Stdio::null());
            if let Some(ca) = cacert {
                cmd.env("VAULT_CACERT", ca);
            }
            cmd.output().expect("binary runs")
        })
    };
    let ca = Some(certs.ca_file());
    let put: Output = run(vec!["put", "tls/key", "over-https"], ca.clone())
        .await
        .expect("join");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got: Output = run(vec!["get", "tls/key"], ca).await.expect("join");
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "over-https");
    let untrusted: Output = run(vec!["get", "tls/key"], None).await.expect("join");
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "the server cannot be verified"
    );
}
