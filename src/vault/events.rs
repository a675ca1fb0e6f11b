//! Change events: every workflow transition (a stub recorded or filled, an
//! access request opened, granted or denied, ...) is published, after its
//! audit record is stored, to whoever listens (the NATS bridge publishes to
//! `vault.events.<kind>`, the webhook sender POSTs it). Best effort and
//! never blocking: a listener that falls behind loses the oldest events and
//! says so in the log. Events carry names and ids, never a value or token.
//!
//! Secret writes are events too: `secret_created` (also when a stub is
//! filled), `secret_updated`, `secret_deleted`, `secret_restored`, with the
//! version; `WatchSecret` wakes on them (and polls, for other replicas' writes).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One transition, as published.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `stub_created`, `stub_filled`, `access_requested`, `access_granted`, `access_denied`, `secret_updated`, ...
    pub kind: &'static str,
    pub ts: DateTime<Utc>,
    /// Who caused it (the service whose read was denied, the admin who granted).
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    /// The version written (`secret_created`, `secret_updated`); absent on
    /// `secret_deleted` and `secret_restored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// How many events a slow listener may fall behind before it loses some.
pub const BACKLOG: usize = 1024;
