//! The OpenAPI document, generated from the handlers.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Secret Manager",
        description = "Encrypted (AES-256-GCM), audited secrets over HTTP. Authenticate every \
            `/vault` and `/api` call with the `X-Service` and `X-Token` headers.",
    ),
    modifiers(&ServiceHeaders),
    tags(
        (name = "vault", description = "Seed-compatible UUID secrets"),
        (name = "secrets", description = "Project/path secrets with version history"),
        (name = "rotation", description = "Rotation schedules, rotate now, staging labels"),
        (name = "projects", description = "Projects"),
        (name = "audit", description = "The audit trail"),
        (name = "access", description = "Access requests: denied reads for admins to grant or deny"),
        (name = "policies", description = "Policies and role bindings managed at run time (config.yaml's are read-only)"),
        (name = "sys", description = "Data keys: rotation, rewrap, status"),
        (name = "service-tokens", description = "Self-registered service tokens and their approval"),
        (name = "events", description = "Secret change events (Server-Sent Events), resumable"),
        (name = "scan", description = "Which managed secrets a scanner's findings are"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// Declares `X-Service` and `X-Token` so Swagger UI's Authorize button sends them.
struct ServiceHeaders;

impl Modify for ServiceHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Service",
                "The calling service's name",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Token",
                "The calling service's token",
            ))),
        );
    }
}
