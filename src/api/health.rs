//! Health endpoints: open to all, no credentials.

use actix_web::{get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::AppState;
use crate::dto::HealthResponse;
use crate::error::ApiError;

fn healthy(status: &str) -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: status.into(),
        service: "secret-manager".into(),
    })
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(live).service(ready);
}

/// Service health
#[utoipa::path(tag = "health", responses((status = 200, body = HealthResponse)))]
#[get("/health")]
async fn health() -> HttpResponse {
    healthy("healthy")
}

/// Liveness: the process serves HTTP (does not touch the database)
#[utoipa::path(tag = "health", responses((status = 200, body = HealthResponse)))]
#[get("/health/live")]
async fn live() -> HttpResponse {
    healthy("alive")
}

/// Readiness: the database answers a ping
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, body = HealthResponse),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/health/ready")]
async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.vault.ready().await?;
    Ok(healthy("ready"))
}
