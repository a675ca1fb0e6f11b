//! The gRPC interface (issue 12) from a tonic client, and from Python with
//! `grpcio` stubs compiled from the repository's `.proto` (an independent
//! client). The transport conformance table covers every code; these cover
//! what only gRPC has: the `token` field, `success = false`, paging,
//! registration, and `WatchSecret` streams.

use std::process::Command;

use mongodb::bson::doc;
use reqwest::Method;
use secret_manager::grpc::pb;
use serde_json::json;
use tonic::{Code, Request};

use crate::helpers::{spawn_app_with, spawn_app_with_config, Identity, TestApp};

type Client = pb::secrets_service_client::SecretsServiceClient<tonic::transport::Channel>;

async fn channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(app.grpc_address.clone().expect("gRPC enabled"))
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connects")
}

async fn client(app: &TestApp) -> Client {
    Client::connect(app.grpc_address.clone().expect("gRPC enabled"))
        .await
        .expect("gRPC connects")
}

/// `body` with only `x-service` in the metadata (the token goes in the body).
fn as_service<T>(body: T, service: &str) -> Request<T> {
    let mut req = Request::new(body);
    req.metadata_mut()
        .insert("x-service", service.parse().expect("ascii"));
    req
}

fn put(name: &str, value: &str, token: &str) -> pb::PutSecretRequest {
    pb::PutSecretRequest {
        secret_name: name.into(),
        value: Some(value.into()),
        token: token.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn put_get_and_list_with_the_token_field() {
    let app = spawn_app_with(&[]).await;
    let mut grpc = client(&app).await;
    let id = &app.identity;

    let written = grpc
        .put_secret(as_service(
            put("billing/stripe/key", "sk_1", &id.token),
            &id.service,
        ))
        .await
        .expect("put")
        .into_inner();
    assert_eq!(written.secret_name, "billing/stripe/key");
    assert_eq!(written.version, 1);
    let again = grpc
        .put_secret(as_service(
            put("billing/stripe/key", "sk_2", &id.token),
            &id.service,
        ))
        .await
        .expect("second put")
        .into_inner();
    assert_eq!(again.version, 2);

    let get = |version| pb::GetSecretRequest {
        secret_name: "billing/stripe/key".into(),
        token: id.token.clone(),
        version,
        ..Default::default()
    };
    let current = grpc
        .get_secret(as_service(get(None), &id.service))
        .await
        .expect("get");
    assert!(current.metadata().get("x-request-id").is_some());
    let current = current.into_inner();
    assert!(current.success, "{current:?}");
    assert_eq!(
        (current.value.as_slice(), current.version),
        (&b"sk_2"[..], 2)
    );
    let first = grpc
        .get_secret(as_service(get(Some(1)), &id.service))
        .await
        .expect("get v1")
        .into_inner();
    assert_eq!(first.value, b"sk_1");

    let version = |version| {
        as_service(
            pb::GetSecretVersionRequest {
                secret_name: "billing/stripe/key".into(),
                version,
                token: id.token.clone(),
                ..Default::default()
            },
            &id.service,
        )
    };
    let v1 = grpc
        .get_secret_version(version(1))
        .await
        .expect("version 1")
        .into_inner();
    assert_eq!(
        (v1.value.as_slice(), v1.version, v1.current_version),
        (&b"sk_1"[..], 1, 2)
    );
    assert_eq!(v1.created_by, id.service);
    let gone = grpc
        .get_secret_version(version(9))
        .await
        .expect_err("no version 9");
    assert_eq!(gone.code(), Code::NotFound);
    assert!(
        gone.message().starts_with("version_not_found: "),
        "{gone:?}"
    );

    // The same secret over HTTP: one vault.
    let http = app.get("/api/secrets/billing/stripe/key").await;
    assert_eq!(http.status, 200, "{}", http.text);
    assert_eq!(http.json()["value"], "sk_2");

    // Paging: three secrets, two per page.
    for path in ["stripe/other", "zz/last"] {
        grpc.put_secret(as_service(
            put(&format!("billing/{path}"), "v", &id.token),
            &id.service,
        ))
        .await
        .expect("put");
    }
    let page = |cursor: String| pb::ListSecretsRequest {
        project: "billing".into(),
        limit: Some(2),
        cursor,
        token: id.token.clone(),
        ..Default::default()
    };
    let one = grpc
        .list_secrets(as_service(page(String::new()), &id.service))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(one.secrets.len(), 2);
    assert!(!one.next_cursor.is_empty());
    let two = grpc
        .list_secrets(as_service(page(one.next_cursor), &id.service))
        .await
        .expect("page 2")
        .into_inner();
    let names: Vec<_> = one
        .secrets
        .iter()
        .chain(&two.secrets)
        .map(|s| s.secret_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "billing/stripe/key",
            "billing/stripe/other",
            "billing/zz/last"
        ]
    );
    assert!(two.next_cursor.is_empty(), "last page");
    assert_eq!(one.secrets[0].version, 2);

    // Every record says it came over gRPC.
    let http_reads = doc! { "channel": "http" };
    let grpc_records = app
        .audit_logs()
        .count_documents(doc! { "channel": "grpc" })
        .await
        .expect("count");
    assert_eq!(grpc_records, 10, "4 puts, 4 gets, 2 lists");
    assert_eq!(
        app.audit_logs()
            .count_documents(http_reads)
            .await
            .expect("count"),
        1
    );
}

#[tokio::test]
async fn get_secret_answers_domain_errors_in_the_body_and_bad_identity_as_a_status() {
    let app = spawn_app_with(&[]).await;
    let mut grpc = client(&app).await;
    let id = &app.identity;
    let get = |name: &str, token: &str| pb::GetSecretRequest {
        secret_name: name.into(),
        description: "the Stripe key".into(),
        token: token.into(),
        ..Default::default()
    };

    for (name, code) in [
        ("billing/missing", "secret_not_found"),
        ("billing/a/../b", "invalid_path"),
        ("", "missing_field"),
    ] {
        let res = grpc
            .get_secret(as_service(get(name, &id.token), &id.service))
            .await
            .expect("OK status")
            .into_inner();
        assert!(!res.success, "{name}");
        assert_eq!(res.error_message, code, "{name}");
        assert!(res.value.is_empty());
    }
    // The miss recorded a stub with the caller's description.
    let stubs = grpc
        .list_secrets(as_service(
            pb::ListSecretsRequest {
                project: "billing".into(),
                missing_only: true,
                token: id.token.clone(),
                ..Default::default()
            },
            &id.service,
        ))
        .await
        .expect("stubs")
        .into_inner();
    assert_eq!(stubs.secrets.len(), 1);
    assert_eq!(stubs.secrets[0].secret_name, "billing/missing");
    assert_eq!(stubs.secrets[0].state, "missing");
    assert_eq!(stubs.secrets[0].description, "the Stripe key");

    // A wrong token or none: UNAUTHENTICATED, with the code string.
    for req in [
        as_service(
            get("billing/missing", "wrong-token-0123456789"),
            &id.service,
        ),
        Request::new(get("billing/missing", "")),
    ] {
        let status = grpc.get_secret(req).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().starts_with("unauthorized: "), "{status:?}");
        assert_eq!(
            status
                .metadata()
                .get("x-error-code")
                .map(|v| v.to_str().ok()),
            Some(Some("unauthorized"))
        );
    }
}

const ADMIN_YAML: &str = "\
policies:
  - {name: ops, permissions: [{effect: allow, actions: [admin], resources: [sys]}]}
  - {name: billing-reader, permissions: [{effect: allow, actions: [read], resources: ['secret:billing:*']}]}
services:
  - {name: admin, roles: [ops]}
  - {name: billing, roles: [billing-reader]}
";

#[tokio::test]
async fn a_token_registered_over_grpc_reads_once_approved_with_x_token_alone() {
    let admin = Identity::new("admin");
    let app = spawn_app_with_config(ADMIN_YAML, &[("TOKEN_admin", &admin.token)]).await;
    let mut grpc = client(&app).await;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let register = |token: &str| pb::RegisterTokenRequest {
        service_name: "billing".into(),
        service_version: "1.2.3".into(),
        token: token.into(),
    };
    let res = grpc
        .register_token(register(&token))
        .await
        .expect("registered")
        .into_inner();
    assert_eq!(res.status, "pending_approval", "{res:?}");
    let weak = grpc
        .register_token(register("aaaa"))
        .await
        .expect_err("weak token");
    assert_eq!(weak.code(), Code::InvalidArgument);
    assert!(weak.message().starts_with("weak_token: "), "{weak:?}");

    let created = app
        .post_json(
            "/api/secrets",
            &json!({ "project": "billing", "path": "db/password", "value": "hunter2" }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let list = TestApp::send(app.request_as(
        Some(&admin),
        Method::GET,
        "/api/service-tokens?state=pending",
    ))
    .await;
    let reg_id = list.json()["items"][0]["id"]
        .as_str()
        .expect("registration listed")
        .to_string();
    let approved = TestApp::send(app.request_as(
        Some(&admin),
        Method::POST,
        &format!("/api/service-tokens/{reg_id}/approve"),
    ))
    .await;
    assert_eq!(approved.status, 200, "{}", approved.text);

    let mut req = Request::new(pb::GetSecretRequest {
        secret_name: "billing/db/password".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-token", token.parse().expect("ascii"));
    let read = grpc.get_secret(req).await.expect("read").into_inner();
    assert!(read.success, "{read:?}");
    assert_eq!(read.value, b"hunter2");
    let registered = app
        .audit_logs()
        .count_documents(doc! { "channel": "grpc", "action": "token_register" })
        .await
        .expect("count");
    assert_eq!(registered, 2, "the registration and the weak one");
}

#[tokio::test]
async fn values_over_the_limit_are_refused() {
    let app = spawn_app_with(&[("MAX_SECRET_BYTES", "16")]).await;
    let mut grpc = client(&app).await;
    let id = &app.identity;
    // Within the message limit, over MAX_SECRET_BYTES: the vault's code.
    let big = grpc
        .put_secret(as_service(
            put("p/big", &"x".repeat(17), &id.token),
            &id.service,
        ))
        .await
        .expect_err("too large");
    assert_eq!(big.code(), Code::InvalidArgument);
    assert!(big.message().starts_with("secret_too_large: "), "{big:?}");
    // Over the message limit (HTTP's body limit): refused by the server.
    let huge = grpc
        .put_secret(as_service(
            put("p/huge", &"x".repeat(64 * 1024), &id.token),
            &id.service,
        ))
        .await
        .expect_err("message too large");
    assert_eq!(huge.code(), Code::OutOfRange, "tonic's code: {huge:?}");
}

#[tokio::test]
async fn grpc_enabled_false_serves_no_grpc() {
    let app = spawn_app_with(&[("GRPC_ENABLED", "false")]).await;
    assert!(app.grpc_address.is_none());
}

/// Python's `grpcio` + `grpcio-tools` (`scripts/test.sh` installs them),
/// stubs compiled from `proto/` into a temporary directory: put, get, a
/// missing secret, list, register.
#[tokio::test]
async fn a_python_client_compiled_from_the_proto_puts_gets_and_registers() {
    let app = spawn_app_with(&[]).await;
    let address = app
        .grpc_address
        .clone()
        .expect("gRPC enabled")
        .trim_start_matches("http://")
        .to_string();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let id = app.identity.clone();
    let out_path = out_dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("tests/grpc/client.py")
            .env("GRPC_TARGET", address)
            .env("GRPC_OUT", out_path)
            .env("X_SERVICE", &id.service)
            .env("X_TOKEN", &id.token)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("blocking");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("python grpc client: ok"), "{stdout}");
    // Python wrote version 1, and version 2 while it watched.
    let value = app.get("/api/secrets/py/from-python?version=1").await;
    assert_eq!(value.json()["value"], "written by python", "{}", value.text);
    let value = app.get("/api/secrets/py/from-python").await;
    assert_eq!(value.json()["value"], "second value", "{}", value.text);
}

type Health = tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>;

/// The status `grpc.health.v1` reports for `service`.
async fn health_of(health: &mut Health, service: &str) -> i32 {
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Polls until `service` reports `want` (10 s at most).
async fn wait_health(health: &mut Health, service: &str, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = health_of(health, service).await;
        if got == want as i32 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service:?}: health {got}, wanted {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn health_is_not_serving_while_mongodb_is_down_and_recovers() {
    let (db, uri) = crate::database::OwnDatabase::start();
    let app = spawn_app_with(&[("MONGO_URI", &uri), ("MONGO_TIMEOUT_MS", "500")]).await;
    let mut health = Health::new(channel(&app).await);
    for service in ["", "secrets.v1.SecretsService"] {
        wait_health(&mut health, service, ServingStatus::Serving).await;
    }
    db.stop();
    wait_health(
        &mut health,
        "secrets.v1.SecretsService",
        ServingStatus::NotServing,
    )
    .await;
    wait_health(&mut health, "", ServingStatus::NotServing).await;
    let again = db.restart();
    assert_eq!(again, uri, "the database came back where it was");
    wait_health(
        &mut health,
        "secrets.v1.SecretsService",
        ServingStatus::Serving,
    )
    .await;
}

#[tokio::test]
async fn reflection_lists_the_secrets_and_health_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let app = spawn_app_with(&[]).await;
    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(ask))
        .await
        .expect("reflection")
        .into_inner();
    let first = answers
        .message()
        .await
        .expect("an answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in ["secrets.v1.SecretsService", "grpc.health.v1.Health"] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
}

#[tokio::test]
async fn grpc_uses_the_https_certificate() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let certs = crate::helpers::TestCerts::new();
    let (cert, key) = (certs.cert_file(), certs.key_file());
    let app = spawn_app_with(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]).await;
    let address = app
        .grpc_address
        .clone()
        .expect("gRPC")
        .replacen("http://", "https://", 1);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&certs.ca_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(address.clone())
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS connects");
    let id = &app.identity;
    let who = Client::new(channel)
        .who_am_i(as_service(
            pb::WhoAmIRequest {
                token: id.token.clone(),
            },
            &id.service,
        ))
        .await
        .expect("whoami over TLS")
        .into_inner();
    assert_eq!(who.service, id.service);
    // Plain HTTP/2 to the TLS port gets no answer.
    let plain = address.replacen("https://", "http://", 1);
    let refused = match Client::connect(plain).await {
        Err(_) => true,
        Ok(mut c) => c
            .who_am_i(Request::new(pb::WhoAmIRequest::default()))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext must not reach the service");
}

#[tokio::test]
async fn bench_drives_grpc_and_named_http_every_fetch_matches_and_updates_add_versions() {
    use secret_manager::bench::{Mode, Transport};
    for transport in [Transport::Grpc, Transport::HttpNamed] {
        let app = spawn_app_with(&[]).await;
        let args = base_args(&app, transport);
        let summary = secret_manager::bench::run(args).await.expect("bench runs");
        assert!(summary.requests > 0, "{transport:?}: {summary:?}");
        assert!(summary.errors.is_empty(), "{transport:?}: {summary:?}");
        assert_eq!(summary.mismatches, 0, "{transport:?}");
        let written = app
            .secrets()
            .count_documents(doc! { "project": "bench" })
            .await
            .expect("count");
        assert!(
            written >= 4,
            "{transport:?} seeded the named path: {written}"
        );
        // --mode update writes new versions of the seeded names, no new names.
        let mut update = base_args(&app, transport);
        update.load.mode = Mode::Update;
        let before = written;
        let summary = secret_manager::bench::run(update)
            .await
            .expect("update runs");
        assert!(
            summary.requests > 0 && summary.errors.is_empty(),
            "{transport:?}: {summary:?}"
        );
        let after = app
            .secrets()
            .count_documents(doc! { "project": "bench" })
            .await
            .expect("count");
        assert_eq!(after, before + 4, "{transport:?}: only the 4 seeds are new");
        let updated = app
            .secrets()
            .count_documents(doc! { "project": "bench", "current_version": { "$gt": 1 } })
            .await
            .expect("count");
        assert!(updated >= 1, "{transport:?}: some seed got a new version");
    }
    // The seed-compatible UUID endpoints have no update: refused before any request.
    let app = spawn_app_with(&[]).await;
    let mut update = base_args(&app, Transport::Http);
    update.load.mode = Mode::Update;
    let err = secret_manager::bench::run(update)
        .await
        .expect_err("no update over /vault/secret/*");
    assert!(err.contains("--mode update needs"), "{err}");
}

fn base_args(
    app: &TestApp,
    transport: secret_manager::bench::Transport,
) -> secret_manager::bench::BenchArgs {
    secret_manager::bench::BenchArgs {
        url: app.address.clone(),
        transport,
        grpc_url: app.grpc_address.clone().expect("gRPC"),
        service: Some(app.identity.service.clone()),
        token: Some(app.identity.token.clone()),
        load: secret_manager::bench::LoadArgs {
            mode: secret_manager::bench::Mode::Mix,
            fetch_ratio: 0.5,
            concurrency: 4,
            duration: 1,
            max_requests: 200,
            value_size: 32,
            seed: 4,
            json: true,
        },
    }
}

fn watch_request(name: &str, token: &str) -> pb::WatchSecretRequest {
    pb::WatchSecretRequest {
        secret_name: name.into(),
        token: token.into(),
    }
}

/// The next message of a watch, within a bound (a change arrives at once on
/// the replica that wrote it, within `POLL` from another).
async fn next_update(
    stream: &mut tonic::Streaming<pb::WatchSecretResponse>,
) -> Result<pb::WatchSecretResponse, tonic::Status> {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message in time")
        .map(|m| m.expect("the stream is still open"))
}

#[tokio::test]
async fn watch_streams_version_metadata_of_every_change_never_the_value() {
    let billing = Identity::new("billing");
    let app = spawn_app_with_config(ADMIN_YAML, &[("TOKEN_billing", &billing.token)]).await;
    let mut grpc = client(&app).await;
    let writer = &app.identity;
    // The secret need not exist yet: the first message says it is absent.
    let mut stream = grpc
        .watch_secret(as_service(
            watch_request("billing/db/password", &billing.token),
            "billing",
        ))
        .await
        .expect("watch opens")
        .into_inner();
    let first = next_update(&mut stream).await.expect("current state");
    assert_eq!(
        (first.change.as_str(), first.state.as_str(), first.version),
        ("current", "absent", 0)
    );

    let values = ["watch-value-1", "watch-value-2"];
    let mut seen = Vec::new();
    for value in values {
        grpc.put_secret(as_service(
            put("billing/db/password", value, &writer.token),
            &writer.service,
        ))
        .await
        .expect("put");
        seen.push(next_update(&mut stream).await.expect("update"));
    }
    let path = "/api/secrets/billing/db/password";
    let deleted = TestApp::send(app.request(Method::DELETE, path)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    seen.push(next_update(&mut stream).await.expect("deleted"));
    let restored = TestApp::send(app.request(Method::POST, &format!("{path}/restore"))).await;
    assert_eq!(restored.status, 204, "{}", restored.text);
    seen.push(next_update(&mut stream).await.expect("restored"));

    let summary: Vec<_> = seen
        .iter()
        .map(|m| (m.change.as_str(), m.state.as_str(), m.version))
        .collect();
    assert_eq!(
        summary,
        [
            ("created", "live", 1),
            ("updated", "live", 2),
            ("deleted", "deleted", 2),
            ("restored", "live", 2),
        ]
    );
    assert_eq!(seen[0].secret_name, "billing/db/password");
    assert_eq!(seen[1].updated_by, "tester");
    assert!(!seen[1].updated_at.is_empty());
    let everything = format!("{first:?}{seen:?}");
    for value in values {
        assert!(!everything.contains(value), "a watch never carries a value");
    }

    // One audit record for the stream, not one per change.
    let watches = app
        .audit_logs()
        .count_documents(
            doc! { "action": "watch", "actor": "billing", "outcome": "success", "channel": "grpc" },
        )
        .await
        .expect("count");
    assert_eq!(watches, 1);
}

#[tokio::test]
async fn watch_refuses_what_it_may_not_read_and_ends_when_access_is_withdrawn() {
    let admin = Identity::new("admin");
    let reader = Identity::new("report-job");
    let app = spawn_app_with_config(
        ADMIN_YAML,
        &[
            ("TOKEN_admin", &admin.token),
            ("TOKEN_report-job", &reader.token),
            ("ALLOWED_SERVICES", "report-job"),
        ],
    )
    .await;
    let mut grpc = client(&app).await;
    let open =
        |name: &str, who: &Identity| as_service(watch_request(name, &who.token), &who.service);

    // No right to read: refused before any message, and audited.
    let denied = grpc
        .watch_secret(open("billing/db/password", &reader))
        .await
        .expect_err("forbidden");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().starts_with("forbidden: "), "{denied:?}");
    let bad_name = grpc
        .watch_secret(open("no-path", &reader))
        .await
        .expect_err("bad name");
    assert_eq!(bad_name.code(), Code::InvalidArgument, "{bad_name:?}");
    let mut anonymous = Request::new(watch_request("billing/db/password", "not-a-token"));
    anonymous
        .metadata_mut()
        .insert("x-service", "report-job".parse().expect("ascii"));
    let unknown = grpc.watch_secret(anonymous).await.expect_err("bad token");
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let refused = app
        .audit_logs()
        .count_documents(
            doc! { "action": "watch", "actor": "report-job", "outcome": { "$ne": "success" } },
        )
        .await
        .expect("count");
    assert_eq!(refused, 2, "the forbidden and the bad-name watch");

    // Granted by a run-time role: the watch opens ...
    let bind = |roles: serde_json::Value| {
        app.request_as(Some(&admin), Method::PUT, "/api/services/report-job/roles")
            .json(&json!({ "roles": roles }))
    };
    assert_eq!(
        TestApp::send(bind(json!(["billing-reader"]))).await.status,
        200
    );
    let mut stream = grpc
        .watch_secret(open("billing/db/password", &reader))
        .await
        .expect("watch opens")
        .into_inner();
    assert_eq!(
        next_update(&mut stream).await.expect("current").state,
        "absent"
    );

    // ... and ends with PERMISSION_DENIED at the first change after the role is gone.
    assert_eq!(TestApp::send(bind(json!([]))).await.status, 200);
    let read = app.request_as(
        Some(&reader),
        Method::GET,
        "/api/secrets/billing/db/password",
    );
    assert_eq!(
        TestApp::send(read).await.status,
        403,
        "the unbinding is in force"
    );
    let created = app
        .post_json(
            "/api/secrets",
            &json!({ "project": "billing", "path": "db/password", "value": "after-unbind" }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let ended = next_update(&mut stream)
        .await
        .expect_err("access withdrawn");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(!format!("{ended:?}").contains("after-unbind"));
}

#[tokio::test]
async fn watch_sees_a_change_written_through_another_replica() {
    let a = spawn_app_with(&[]).await;
    let b = spawn_app_with(&[
        ("MONGO_DB", a.db_name.as_str()),
        ("MASTER_KEY", a.master_key.as_str()),
        ("TOKEN_tester", a.identity.token.as_str()),
    ])
    .await;
    let id = &a.identity;
    let mut stream = client(&a)
        .await
        .watch_secret(as_service(
            watch_request("ops/flag", &id.token),
            &id.service,
        ))
        .await
        .expect("watch opens")
        .into_inner();
    assert_eq!(next_update(&mut stream).await.expect("current").version, 0);
    client(&b)
        .await
        .put_secret(as_service(put("ops/flag", "on", &id.token), &id.service))
        .await
        .expect("put through b");
    let update = next_update(&mut stream).await.expect("update from b");
    assert_eq!((update.change.as_str(), update.version), ("created", 1));
}
