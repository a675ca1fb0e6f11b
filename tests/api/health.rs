use crate::helpers::spawn_app;

#[tokio::test]
async fn health_live_and_ready_answer_with_their_status() {
    let app = spawn_app().await;
    let cases = [
        ("/health", "healthy"),
        ("/health/live", "alive"),
        ("/health/ready", "ready"),
    ];
    for (path, status) in cases {
        let res = app.get(path).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.json(),
            serde_json::json!({ "status": status, "service": "secret-manager" }),
            "{path}"
        );
        assert_eq!(res.request_id().len(), 36, "{path} carries a request id");
    }
}

#[tokio::test]
async fn every_response_carries_a_fresh_request_id() {
    let app = spawn_app().await;
    let a = app.get("/health").await.request_id();
    let b = app.get("/health").await.request_id();
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok());
}

#[tokio::test]
async fn unknown_routes_get_the_json_error_body() {
    let app = spawn_app().await;
    let res = app.get("/no/such/thing").await;
    res.assert_error(404, "route_not_found");
}
