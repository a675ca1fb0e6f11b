//! Health endpoints: open to all, no credentials.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::AppState;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "healthy")]
    pub status: String,
    #[schema(example = "secret-manager")]
    pub service: String,
}

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
    crate::store::ping(state.vault.db()).await?;
    Ok(healthy("ready"))
}
