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
            &["200", "400", "413", "415", "500", "503"],
        ),
        (
            "/vault/secret/create/",
            "post",
            &["200", "400", "413", "503"],
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
    let named: [(&str, &str, &[&str]); 10] = [
        (
            "/api/secrets",
            "post",
            &["201", "400", "401", "403", "409", "413", "503"],
        ),
        ("/api/secrets", "get", &["200", "400", "401"]),
        (
            "/api/secrets/{project}/{path}",
            "get",
            &["200", "400", "401", "403", "404"],
        ),
        (
            "/api/secrets/{project}/{path}",
            "patch",
            &["200", "401", "403", "404", "409"],
        ),
        (
            "/api/secrets/{project}/{path}",
            "delete",
            &["204", "401", "403", "404"],
        ),
        (
            "/api/secrets/{project}/{path}/restore",
            "post",
            &["204", "404"],
        ),
        (
            "/api/secrets/{project}/{path}/versions",
            "get",
            &["200", "404"],
        ),
        ("/api/audit", "get", &["200", "403"]),
        ("/api/sys/rotate", "post", &["200", "403"]),
        ("/api/sys/keys/{key_id}", "delete", &["204", "404", "409"]),
    ];
    for (path, method, statuses) in named {
        let op = &spec["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is documented: {}",
            spec["paths"]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
        assert_eq!(
            op["security"],
            serde_json::json!([{ "service": [], "token": [] }]),
            "{method} {path} needs identity"
        );
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(
        schemes["service"],
        serde_json::json!({ "type": "apiKey", "in": "header", "name": "X-Service", "description": "The calling service's name" })
    );
    assert_eq!(schemes["token"]["name"], "X-Token");
    assert!(
        spec["paths"]["/health"]["get"]["security"].is_null(),
        "health stays open"
    );
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
