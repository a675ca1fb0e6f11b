//! `/api/scan/match`: which managed secrets a scanner's findings are.

use actix_web::{post, web, HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::{read_body, AppState};
use crate::dto::{ScanMatchItem, ScanMatchRequest, ScanMatchResponse};
use crate::error::ApiError;
use crate::vault::Op;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scan_match);
}

/// Match scanner findings against stored secrets
///
/// Send SHA-256 digests (hex) of candidate secrets, never the candidates.
/// Answers which kept versions of secrets the caller may `list` have that
/// value (`current`: the live version — rotate it). Other secrets are not
/// revealed. At most 1000 digests per call.
#[utoipa::path(
    tag = "scan",
    request_body = ScanMatchRequest,
    security(("service" = [], "token" = [])),
    responses(
        (status = 200, body = ScanMatchResponse),
        (status = 400, description = "Bad JSON, or a digest that is not 64 hex characters, or over 1000", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/scan/match")]
async fn scan_match(
    Caller(meta): Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let shape = "an object with `sha256`: a list of hex SHA-256 digests";
    let r: ScanMatchRequest = read_body(&state, &meta, Op::ScanMatch, &req, body, shape).await?;
    let matches = state.vault.scan_match(&meta, &r.sha256).await?;
    Ok(HttpResponse::Ok().json(ScanMatchResponse {
        matches: matches.into_iter().map(ScanMatchItem::from).collect(),
    }))
}
