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
//!
//! Alerts are events too: `alert`, with the fields of [`AlertFields`].

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
    /// On `alert`: the rule, its subject and the window (see `alerts`).
    #[serde(flatten)]
    pub alert: Option<AlertFields>,
}

/// What an `alert` event says about the alert: never a token or value.
#[derive(Debug, Clone, Serialize)]
pub struct AlertFields {
    /// `auth_failures`, `denials`, `new_address` or `read_rate`.
    pub rule: &'static str,
    /// `service` (the claimed or authenticated name) or `address`.
    pub subject_kind: &'static str,
    pub subject: String,
    /// `new_address`: the address the service read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What was counted in the window (failures, denials, reads).
    pub count: i64,
    /// The alert fired because `count` exceeded this.
    pub threshold: i64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

/// How many events a slow listener may fall behind before it loses some.
pub const BACKLOG: usize = 1024;
