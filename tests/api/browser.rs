//! Swagger UI in a real (headless) browser: the page loads its vendored assets,
//! runs, fetches /openapi.json and renders every operation and the Authorize button.

use std::process::Command;

use crate::helpers::spawn_app;

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is installed (scripts/test.sh installs it)")
}

#[tokio::test]
async fn swagger_ui_renders_every_operation_in_a_real_browser() {
    let app = spawn_app().await;
    let url = format!("{}/docs/", app.address);
    let profile = tempfile::tempdir().expect("profile dir");
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let dom = tokio::task::spawn_blocking(move || {
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                &profile_arg,
                "--virtual-time-budget=15000",
                "--dump-dom",
                &url,
            ])
            .output()
            .expect("chromium runs")
    })
    .await
    .expect("blocking");
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("swagger-ui"),
        "the page loaded: {}",
        &html[..html.len().min(500)]
    );
    for operation in [
        "/vault/secret/create",
        "/vault/secret/fetch",
        "/api/secrets/{project}/{path}",
        "/api/sys/rotate",
        "/health/ready",
    ] {
        assert!(html.contains(operation), "Swagger UI rendered {operation}");
    }
    assert!(
        html.contains("opblock"),
        "operations are rendered as blocks"
    );
    assert!(
        html.contains("authorize"),
        "the Authorize button is there (X-Service / X-Token)"
    );
}
