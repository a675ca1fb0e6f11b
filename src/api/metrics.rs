//! `GET /metrics`: Prometheus (OpenMetrics text). Open like the health
//! checks unless `METRICS_TOKEN` (or `METRICS_TOKEN_FILE`) is set; then it
//! needs `Authorization: Bearer <token>` (compared in constant time).

use actix_web::{get, web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::AppState;
use crate::error::{ApiError, ErrorCode};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(metrics);
}

/// Prometheus metrics
///
/// OpenMetrics text. With `METRICS_TOKEN` set, send `Authorization: Bearer <token>`.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, description = "`METRICS_TOKEN` is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 404, description = "`METRICS_ENABLED=false`", body = ErrorBody),
    )
)]
#[get("/metrics")]
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !crate::metrics::enabled() {
        // Like any unknown route (as `/docs/` with `DOCS_ENABLED=false`).
        return Err(ApiError::new(ErrorCode::RouteNotFound, "no such route"));
    }
    if let Some(expected) = &state.metrics_token {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = presented
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes())
            .into();
        if !ok {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "`/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`",
            ));
        }
    }
    state.vault.refresh_key_metrics();
    state.vault.refresh_access_request_metrics().await;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::METRICS.encode()))
}
