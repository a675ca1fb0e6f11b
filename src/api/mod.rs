//! HTTP resources. Each module exports `configure`; `openapi` assembles the spec.

pub mod access_requests;
pub mod audit;
pub mod error;
pub mod events;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod policies;
pub mod projects;
pub mod proxy;
pub mod rotation;
pub mod scan;
pub mod secrets;
pub mod service_tokens;
pub mod sys;
pub mod vault;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::telemetry::current_request_id;
use crate::vault::{Op, RequestMeta};
pub use proxy::TrustedProxies;

/// Shared state, built once and handed to every worker.
pub struct AppState {
    pub vault: crate::vault::Vault,
    pub max_body_bytes: usize,
    pub proxies: TrustedProxies,
    /// `GET /metrics` requires `Authorization: Bearer <this>` when set.
    pub metrics_token: Option<secrecy::SecretString>,
}

/// Who is asking and from where, for the audit trail and the failure limiter.
/// The address follows the proxy rule in [`proxy`].
pub fn request_meta(req: &HttpRequest, proxies: &TrustedProxies) -> RequestMeta {
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    let client_ip = req
        .peer_addr()
        .map(|a| proxies.client(a.ip(), forwarded).to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    RequestMeta {
        actor: None,
        client_ip,
        user_agent,
        request_id: current_request_id(),
        channel: "http",
    }
}

/// Reads the JSON body, or refuses `op` (audited) when it cannot.
pub async fn read_body<T: DeserializeOwned>(
    state: &AppState,
    meta: &RequestMeta,
    op: Op,
    req: &HttpRequest,
    payload: web::Payload,
    shape: &str,
) -> Result<T, ApiError> {
    let parsed = read_json(req, payload, state.max_body_bytes, shape).await;
    state.vault.check(op, meta, parsed).await
}

/// Reads a JSON body of at most `limit` bytes. Errors never echo the body.
/// `shape` describes the expected body for the error message.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    shape: &str,
) -> Result<T, ApiError> {
    check_content_type(req)?;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body must be at most {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(declared.unwrap_or(256).min(limit)));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(ErrorCode::InvalidBody, "the request body could not be read")
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| json_error(&e, shape))
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

/// serde_json's messages can quote parts of the input, so only the missing
/// field's name is passed on.
fn json_error(e: &serde_json::Error, shape: &str) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let text = e.to_string();
            match text
                .strip_prefix("missing field `")
                .and_then(|t| t.split('`').next())
            {
                Some(field) => ApiError::new(
                    ErrorCode::MissingField,
                    format!("the JSON body is missing the field `{field}`; expected {shape}"),
                ),
                None => ApiError::new(
                    ErrorCode::InvalidField,
                    format!("a field of the JSON body has the wrong type; expected {shape}"),
                ),
            }
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the request body is not valid JSON; expected {shape}"),
        ),
    }
}

/// Every unknown route gets the standard JSON error body.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::RouteNotFound, "no such route"))
}

/// Query strings and path segments that do not parse get the standard 400 body.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|_, _| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            "the query string has a bad or mistyped parameter",
        )
        .into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| {
        ApiError::new(ErrorCode::InvalidPath, "the URL path has a bad segment").into()
    })
}
