//! The myVault README's `config.yaml`, byte for byte (`tests/fixtures/myvault-config.yaml`),
//! starts the service and its policies mean what that README says.

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::json;

use crate::helpers::call;
use crate::helpers::{spawn_app_with_config, Identity, Response, TestApp};

const MYVAULT_CONFIG: &str = include_str!("../fixtures/myvault-config.yaml");

async fn write(app: &TestApp, who: &Identity, project: &str, path: &str) -> Response {
    let body = json!({ "project": project, "path": path, "value": "v" });
    call(app, who, Method::POST, "/api/secrets", Some(body)).await
}

#[tokio::test]
async fn the_myvault_readme_config_loads_verbatim_and_means_what_it_says() {
    assert!(
        MYVAULT_CONFIG.contains("application:") && MYVAULT_CONFIG.contains("retention_days: 90"),
        "the fixture is the README's block"
    );
    let api = Identity::new("my-api-service");
    let worker = Identity::new("my-worker-service");
    // `PORT=0` (set by the helper) overrides `application.port: 8000`: the environment wins.
    let app = spawn_app_with_config(
        MYVAULT_CONFIG,
        &[
            ("TOKEN_my-api-service", &api.token),
            ("TOKEN_my-worker-service", &worker.token),
        ],
    )
    .await;
    // my-project-editor: read, write, list on `secret:myproject*:prod/*`.
    for (project, path) in [
        ("myproject", "prod/worker/queue"),
        ("myproject", "prod/db"),
        ("myproject-eu", "prod/db"),
    ] {
        let res = write(&app, &api, project, path).await;
        assert_eq!(
            res.status, 201,
            "editor writes {project}/{path}: {}",
            res.text
        );
    }
    write(&app, &api, "myproject", "staging/db")
        .await
        .assert_error(403, "forbidden");
    write(&app, &api, "other", "prod/db")
        .await
        .assert_error(403, "forbidden");
    call(
        &app,
        &api,
        Method::DELETE,
        "/api/secrets/myproject/prod/db",
        None,
    )
    .await
    .assert_error(403, "forbidden");
    let listed = call(
        &app,
        &api,
        Method::GET,
        "/api/secrets?project=myproject",
        None,
    )
    .await;
    assert_eq!(listed.json()["items"].as_array().expect("items").len(), 2);
    // my-project-worker-reader: read only, on `secret:myproject:prod/worker/*`.
    let read = call(
        &app,
        &worker,
        Method::GET,
        "/api/secrets/myproject/prod/worker/queue",
        None,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["value"], "v");
    for path in [
        "/api/secrets/myproject/prod/db",
        "/api/secrets/myproject-eu/prod/db",
    ] {
        call(&app, &worker, Method::GET, path, None)
            .await
            .assert_error(403, "forbidden");
    }
    write(&app, &worker, "myproject", "prod/worker/new")
        .await
        .assert_error(403, "forbidden");
    // A grant inside `myproject` lets the editor register it.
    let project = call(
        &app,
        &api,
        Method::POST,
        "/api/projects",
        Some(json!({ "name": "myproject" })),
    )
    .await;
    assert_eq!(project.status, 201, "{}", project.text);
    // `audit.retention_days: 90` is the audit TTL; `log_access: true` audits every access.
    let ttl = secret_manager::store::audit::current_ttl(&app.db)
        .await
        .expect("indexes");
    assert_eq!(ttl, Some(Some(90 * 86_400)));
    let reads = app
        .audit_logs()
        .count_documents(doc! { "actor": "my-worker-service", "action": "read" })
        .await
        .expect("count");
    assert_eq!(reads, 3, "every read is audited, allowed or denied");
}

#[tokio::test]
async fn log_access_false_and_unknown_fields_refuse_to_start() {
    let key = secret_manager::crypto::MasterKey::generate()
        .to_base64()
        .to_string();
    let cases = [
        (
            MYVAULT_CONFIG.replace("log_access: true", "log_access: false"),
            "`audit.log_access: false` is not supported",
        ),
        (
            MYVAULT_CONFIG.replace("port: 8000", "port: 8000\n  host: example"),
            "unknown field `host`",
        ),
    ];
    for (yaml, expected) in cases {
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), &yaml).expect("write");
        let path = file.path().display().to_string();
        let err = secret_manager::config::Config::from_pairs([
            ("MASTER_KEY", key.as_str()),
            ("CONFIG_FILE", path.as_str()),
        ])
        .expect_err(expected);
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
}
