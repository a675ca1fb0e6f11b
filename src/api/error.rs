//! The HTTP side of the error table: every `ApiError` becomes one JSON body
//! with the status its code names; 5xx bodies never carry internals.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::telemetry::current_request_id;

/// The JSON body of every error response.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `secret_not_found`.
    #[schema(example = "secret_not_found")]
    pub code: String,
    /// Human-readable explanation; never contains secret values or internals.
    pub message: String,
    /// The request id, also sent as the `X-Request-Id` header.
    pub request_id: String,
}

/// The seed service's error body: FastAPI's `detail` beside the standard `error`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SeedErrorBody {
    /// What the seed service said, e.g. `Secret not found`.
    #[schema(example = "Secret not found")]
    pub detail: String,
    pub error: ErrorDetail,
}

fn detail_of(e: &ApiError) -> ErrorDetail {
    ErrorDetail {
        code: e.code.as_str().to_string(),
        message: e.message.clone(),
        request_id: current_request_id().unwrap_or_default(),
    }
}

fn status_of(e: &ApiError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn respond(e: &ApiError, body: impl Serialize) -> HttpResponse {
    let mut builder = HttpResponse::build(status_of(e));
    if let Some(secs) = e.retry_after {
        builder.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    builder.json(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self)
    }

    fn error_response(&self) -> HttpResponse {
        respond(
            self,
            ErrorBody {
                error: detail_of(self),
            },
        )
    }
}

/// An error on a seed-compatible `/vault/*` route: the standard body plus `detail`.
#[derive(Debug)]
pub struct SeedError(pub ApiError);

impl From<ApiError> for SeedError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for SeedError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.0)
    }

    fn error_response(&self) -> HttpResponse {
        let e = &self.0;
        let detail = match e.code {
            ErrorCode::SecretNotFound => "Secret not found".to_string(),
            ErrorCode::InvalidBase64 => format!("invalid base64: {}", e.message),
            _ => e.message.clone(),
        };
        respond(
            e,
            SeedErrorBody {
                detail,
                error: detail_of(e),
            },
        )
    }
}
