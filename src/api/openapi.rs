//! The OpenAPI document, generated from the handlers.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Secret Manager",
        description = "Encrypted (AES-256-GCM), audited secrets over HTTP.",
    ),
    tags(
        (name = "vault", description = "Seed-compatible UUID secrets"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;
