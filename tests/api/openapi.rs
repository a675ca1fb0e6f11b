use crate::helpers::spawn_app;

#[tokio::test]
async fn the_spec_documents_every_operation_with_its_error_statuses() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, 200);
    let spec = res.json();
    assert!(spec["openapi"].as_str().expect("version").starts_with("3."));
    let expected: [(&str, &str, &[&str]); 6] = [
        (
            "/vault/secret/create",
            "post",
            &["201", "400", "413", "415", "500", "503"],
        ),
        (
            "/vault/secret/create/",
            "post",
            &["201", "400", "413", "503"],
        ),
        (
            "/vault/secret/fetch",
            "post",
            &["200", "400", "404", "413", "500", "503"],
        ),
        ("/health", "get", &["200"]),
        ("/health/live", "get", &["200"]),
        ("/health/ready", "get", &["200", "503"]),
    ];
    for (path, method, statuses) in expected {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{path} has a summary"
        );
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    assert!(spec["components"]["schemas"]["CreateRequest"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("swagger-ui"),
        "{}",
        &page.text[..page.text.len().min(300)]
    );
    let init = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status, 200);
    assert!(init.text.contains("/openapi.json"));
}
