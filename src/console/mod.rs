//! The operator console: static files from `console/`, embedded in the binary
//! at build time (`rust-embed`, also in debug builds), served under `/ui/`.
//! The console is a client of the JSON API like any other: it holds no
//! rights of its own, and every call it makes carries the operator's
//! `X-Service` / `X-Token`.
//!
//! `security_headers` wraps every response: no framing, no referrer, no MIME
//! sniffing everywhere; a strict CSP on the console's pages (no inline script
//! or style, nothing from another origin); `Cache-Control: no-store` on every
//! API answer, so no secret value lands in a cache.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use rust_embed::RustEmbed;

use crate::api::not_found;

#[derive(RustEmbed)]
#[folder = "console/"]
struct Assets;

/// The console's Content-Security-Policy: its own files and API only.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(redirect))
        .route("/ui/", web::get().to(index))
        .route("/ui/{file:.*}", web::get().to(asset));
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn index() -> HttpResponse {
    serve("index.html").unwrap_or_else(|| HttpResponse::NotFound().finish())
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, crate::error::ApiError> {
    match serve(&file) {
        Some(res) => Ok(res),
        None => not_found().await,
    }
}

fn serve(name: &str) -> Option<HttpResponse> {
    let file = Assets::get(name)?;
    let mime = match file.metadata.mimetype() {
        m @ ("text/html" | "text/css" | "text/javascript" | "application/javascript") => {
            format!("{m}; charset=utf-8")
        }
        other => other.to_string(),
    };
    Some(
        HttpResponse::Ok()
            .content_type(mime)
            // Revalidated on each load, so a new binary's console is seen at once.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((
                header::ETAG,
                format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16])),
            ))
            .body(file.data.into_owned()),
    )
}

/// Adds the security headers to every response (see the module comment).
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path().to_string();
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if path == "/ui" || path.starts_with("/ui/") {
        set(header::CONTENT_SECURITY_POLICY, CONSOLE_CSP);
    } else if path.starts_with("/api/") || path.starts_with("/vault/") {
        set(header::CACHE_CONTROL, "no-store");
    }
    Ok(res)
}
