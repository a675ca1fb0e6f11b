//! One error-code table. Every layer's error converts into `ApiError`, which
//! carries a code from this table; each code has exactly one HTTP status, one
//! audit outcome and one line of documentation, all in the table below. The
//! transports map it (HTTP in `api::error`, NATS in `nats`); this module
//! depends on nothing else in the crate.

/// How an audit record describes a failed (or successful) operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written before a change is applied; settled by its outcome afterwards.
    Pending,
    Success,
    Invalid,
    Denied,
    NotFound,
    Conflict,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Success => "success",
            Outcome::Invalid => "invalid",
            Outcome::Denied => "denied",
            Outcome::NotFound => "not_found",
            Outcome::Conflict => "conflict",
            Outcome::Error => "error",
        }
    }
}

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $outcome:ident, $doc:literal),)*) => {
        /// Every error code the service answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code's wire name, its HTTP status, its audit outcome and when it is used.
            pub fn spec(self) -> (&'static str, u16, Outcome, &'static str) {
                match self {
                    $(ErrorCode::$variant => ($code, $status, Outcome::$outcome, $doc),)*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson => ("invalid_json", 400, Invalid, "the body is not valid JSON"),
    MissingField => ("missing_field", 400, Invalid, "a required field is missing"),
    InvalidField => ("invalid_field", 400, Invalid, "a field has the wrong type"),
    InvalidBody => ("invalid_body", 400, Invalid, "the request body could not be read"),
    InvalidRequest => ("invalid_request", 400, Invalid, "a NATS message with a missing, unknown or mistyped field"),
    UnknownOperation => ("unknown_operation", 400, Invalid, "a NATS `operation` that is not get, set, delete, list, rotate or status"),
    InvalidBase64 => ("invalid_base64", 400, Invalid, "`secret` / `value_b64` is not strict padded base64"),
    EmptySecret => ("empty_secret", 400, Invalid, "the value is empty"),
    InvalidSecretId => ("invalid_secret_id", 400, Invalid, "`secret_id` is not a UUID"),
    InvalidProject => ("invalid_project", 400, Invalid, "a bad project name"),
    InvalidPath => ("invalid_path", 400, Invalid, "a bad secret path (or `key` that is not `<project>/<path>`)"),
    InvalidValue => ("invalid_value", 400, Invalid, "not exactly one of `value` and `value_b64`"),
    InvalidMetadata => ("invalid_metadata", 400, Invalid, "description, tags or type out of bounds"),
    InvalidQuery => ("invalid_query", 400, Invalid, "a query parameter that does not parse"),
    InvalidLimit => ("invalid_limit", 400, Invalid, "`limit` out of range"),
    InvalidCursor => ("invalid_cursor", 400, Invalid, "a `cursor` this service did not issue (for this caller and query), or a `Last-Event-ID` it did not send"),
    InvalidPolicy => ("invalid_policy", 400, Invalid, "a policy (name, description or permissions) that config.yaml would refuse; the message names every problem"),
    UnknownRole => ("unknown_role", 400, Invalid, "a role binding naming no policy (config.yaml or run-time), or too many roles"),
    InvalidPrefix => ("invalid_prefix", 400, Invalid, "a list `prefix` over 512 characters"),
    InvalidServiceName => ("invalid_service_name", 400, Invalid, "a registration's `service_name` is not 1-64 letters, digits, `-`, `_` or `.`, or its `service_version` is not 1-64 printable characters"),
    InvalidRotation => ("invalid_rotation", 400, Invalid, "a rotation schedule out of bounds: `every` (1h-3650d), `cron` (five fields, at most hourly), `window`, `generator`, a URL, `expires_after` / `expires_at`, or `verify_url` / `health_url` without `WEBHOOK_SECRET`"),
    WeakToken => ("weak_token", 400, Invalid, "a registered token below 128 bits of estimated entropy (generate one with `openssl rand -hex 32`)"),
    Unauthorized => ("unauthorized", 401, Denied, "missing or invalid `X-Service` / `X-Token` (one body for every cause)"),
    Forbidden => ("forbidden", 403, Denied, "the service may not do this"),
    SecretNotFound => ("secret_not_found", 404, NotFound, "no such secret"),
    VersionNotFound => ("version_not_found", 404, NotFound, "no such version (or no longer kept)"),
    DeletedSecretNotFound => ("deleted_secret_not_found", 404, NotFound, "no deleted secret to restore"),
    KeyNotFound => ("key_not_found", 404, NotFound, "no data key with that id"),
    AccessRequestNotFound => ("access_request_not_found", 404, NotFound, "no access request with that id"),
    PolicyNotFound => ("policy_not_found", 404, NotFound, "no policy with that name"),
    ServiceTokenNotFound => ("service_token_not_found", 404, NotFound, "no registered service token with that id"),
    RouteNotFound => ("route_not_found", 404, NotFound, "no such route"),
    RotationNotFound => ("rotation_not_found", 404, NotFound, "the secret has no rotation schedule"),
    SecretExists => ("secret_exists", 409, Conflict, "the path is taken"),
    SecretDeleted => ("secret_deleted", 409, Conflict, "a deleted secret holds the path"),
    VersionConflict => ("version_conflict", 409, Conflict, "a stale `expected_version`"),
    ProjectExists => ("project_exists", 409, Conflict, "a taken project name"),
    InvalidTransition => ("invalid_transition", 409, Conflict, "a state change its current state does not allow (service tokens, access requests), or another admin acted first"),
    ManagedByConfig => ("managed_by_config", 409, Conflict, "a config.yaml policy or service role list: read-only through the API"),
    RotationInProgress => ("rotation_in_progress", 409, Conflict, "another rotation of the secret has a pending version"),
    KeyActive => ("key_active", 409, Conflict, "the active data key cannot be destroyed"),
    KeyInUse => ("key_in_use", 409, Conflict, "stored versions are still sealed under the key"),
    KeyRecentlyRetired => ("key_recently_retired", 409, Conflict, "the key was retired too recently to destroy; `Retry-After`"),
    SecretExpired => ("secret_expired", 410, Denied, "the secret's `expires_at` has passed (reads are refused unless `ALLOW_EXPIRED_READS=true`); rotate it or set a new expiry"),
    SecretTooLarge => ("secret_too_large", 413, Invalid, "the decoded value is over `MAX_SECRET_BYTES`"),
    PayloadTooLarge => ("payload_too_large", 413, Invalid, "the request body or message is over its limit"),
    UnsupportedMediaType => ("unsupported_media_type", 415, Invalid, "a `Content-Type` other than JSON (none at all is accepted)"),
    TooManyAuthFailures => ("too_many_auth_failures", 429, Denied, "too many failed authentications; `Retry-After`"),
    TooManyRegistrations => ("too_many_registrations", 429, Denied, "too many token registrations from this address (`REGISTER_PER_MINUTE`); `Retry-After`"),
    InternalError => ("internal_error", 500, Error, "details only in the log, under the request id"),
    RotationFailed => ("rotation_failed", 502, Error, "a rotation failed after its tries (verify or health receiver refused or unreachable, or the secret changed meanwhile); `current` is unchanged or rolled back"),
    Busy => ("busy", 503, Error, "NATS: the replica has `NATS_MAX_IN_FLIGHT` requests in flight; gRPC `WatchSecret`: 1024 streams open on the replica, or it is shutting down; `GET /api/events`: `EVENTS_MAX_STREAMS` streams open, or shutting down; retry shortly"),
    KeyringUnavailable => ("keyring_unavailable", 503, Error, "`/health/ready`: keyring entries are sealed under a master key this replica does not hold"),
    TooManyPendingTokens => ("too_many_pending_tokens", 503, Error, "`MAX_PENDING_TOKENS` registrations already await approval; `Retry-After`"),
    DatabaseUnavailable => ("database_unavailable", 503, Error, "MongoDB unreachable; `Retry-After: 1`; recovers without a restart"),
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.spec().0
    }

    pub fn http_status(self) -> u16 {
        self.spec().1
    }

    pub fn outcome(self) -> Outcome {
        self.spec().2
    }

    pub fn doc(self) -> &'static str {
        self.spec().3
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as every transport answers it: a code, a message that never
/// carries secrets or internals, and an optional retry hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (503, 429).
    pub retry_after: Option<u64>,
}

/// Seconds a client should wait before retrying while the database is down.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing or invalid service credentials (X-Service and X-Token)",
        )
    }

    pub fn forbidden(service: &str, target: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("Service '{service}' does not have access to '{target}'"),
        )
    }

    /// A 403 with its own message.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn too_many_failures(wait_secs: u64) -> Self {
        let mut e = Self::new(
            ErrorCode::TooManyAuthFailures,
            "too many failed authentication attempts from this address; retry later",
        );
        e.retry_after = Some(wait_secs.max(1));
        e
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be sent as `Content-Type: application/json`",
        )
    }

    pub fn database_unavailable() -> Self {
        let mut e = Self::new(
            ErrorCode::DatabaseUnavailable,
            "the database is unavailable; retry shortly",
        );
        e.retry_after = Some(RETRY_AFTER_SECS);
        e
    }

    /// A 500 whose cause is logged (with the request id, by the span) and never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::InternalError,
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!((400..600).contains(&code.http_status()), "{name}");
            assert!(!code.doc().is_empty(), "{name}");
            let outcome = code.outcome();
            assert!(
                !matches!(outcome, Outcome::Success | Outcome::Pending),
                "{name}"
            );
            if code.http_status() >= 500 {
                assert_eq!(outcome, Outcome::Error, "{name}");
            }
        }
    }

    /// The README's error table lists every code with its status.
    #[test]
    fn readme_error_table_lists_every_code_with_its_status() {
        let readme = include_str!("../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("### Errors"))
            .take_while(|l| !l.starts_with("## Configuration"))
            .filter(|l| l.starts_with('|'))
            .collect();
        assert!(!table.is_empty(), "README has no `### Errors` table");
        let mut missing = Vec::new();
        for code in ErrorCode::ALL {
            let quoted = format!("`{}`", code.as_str());
            let status = format!("| {} |", code.http_status());
            if !table
                .iter()
                .any(|row| row.starts_with(&status) && row.contains(&quoted))
            {
                missing.push(format!("{} ({})", code.as_str(), code.http_status()));
            }
        }
        assert!(
            missing.is_empty(),
            "missing from README's error table: {missing:?}"
        );
    }
}
