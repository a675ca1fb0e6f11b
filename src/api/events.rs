//! `GET /api/events`: secret change events as Server-Sent Events (see
//! `vault::event_stream` for storage, order, resuming and rights).
//!
//! The wire format, a contract other clients (the injection agent) rely on:
//!
//! ```text
//! retry: 1000
//!
//! id: <opaque resume token>
//! event: <kind>
//! data: {"kind":"secret_updated","project":"p","path":"a/b","version":3,"ts":"2026-11-30T02:00:00Z","actor":"svc"}
//!
//! : ping
//!
//! ```
//!
//! A resume token that is too old starts the stream with
//! `id: <token>` / `event: reset` / `data: {"kind":"reset","reason":"expired"}`.

use std::convert::Infallible;

use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ErrorBody;
use super::identity::Caller;
use super::AppState;
use crate::dto::{SecretEvent, SERVICE_HEADER, TOKEN_HEADER};
use crate::error::{ApiError, ErrorCode};
use crate::vault::event_stream::{EventQuery, Frame};
use crate::vault::named::MAX_PREFIX_LEN;
use crate::vault::names::ProjectName;
use crate::vault::watch::Credentials;
use crate::vault::Op;

/// The header (and query parameter) a reconnecting client resumes with.
pub const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Deserialize, IntoParams)]
pub struct EventsQuery {
    /// The project to follow.
    #[param(required = true, value_type = String)]
    pub project: Option<String>,
    /// Only secrets whose path starts with this (at most 512 characters, taken literally).
    pub prefix: Option<String>,
    /// Resume after this event, for clients that cannot send `Last-Event-ID`
    /// (the header wins when both are given).
    pub last_event_id: Option<String>,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(events);
}

/// Follow secret changes (Server-Sent Events)
///
/// A stream of the project's secret events (writes, deletes, restores, stubs,
/// promotions, rollbacks, ...) that the caller may `read` or `list`: names and
/// versions, never a value. Opening it is one audited `watch_events`
/// operation and needs a grant on something in the project. Frames:
/// `retry: 1000` first; then per event `id: <resume token>`, `event: <kind>`,
/// `data: <SecretEvent JSON>`; a `: ping` comment every 15 s. Send the last
/// `id` back as `Last-Event-ID` (or `?last_event_id=`) to get exactly the
/// events after it, in order; one older than `EVENTS_RETENTION` starts the
/// stream with `event: reset` (`{"kind":"reset","reason":"expired"}`): reload
/// everything. A revoked token, or the replica stopping, ends the stream.
#[utoipa::path(
    tag = "events",
    security(("service" = [], "token" = [])),
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: resume strictly after it"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data:` line is a SecretEvent", content_type = "text/event-stream", body = SecretEvent),
        (status = 400, description = "Missing or bad `project`, a `prefix` over 512 characters, or a `Last-Event-ID` this service did not send (`invalid_cursor`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "No grant on anything in the project", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 503, description = "Database unavailable; or `busy`: `EVENTS_MAX_STREAMS` streams are open on this replica, or it is stopping", body = ErrorBody),
    )
)]
#[get("/api/events")]
async fn events(
    Caller(meta): Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let v = &state.vault;
    let header = |name: &str| req.headers().get(name).map(|h| h.to_str());
    let project = match &query.project {
        Some(p) => ProjectName::parse(p),
        None => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "`project` is required: the project whose events to follow",
        )),
    };
    let project = v.check(Op::WatchEvents, &meta, project).await?;
    let prefix = query.prefix.as_deref().filter(|p| !p.is_empty());
    if prefix.is_some_and(|p| p.chars().count() > MAX_PREFIX_LEN || p.chars().any(char::is_control))
    {
        let e = ApiError::new(
            ErrorCode::InvalidPrefix,
            format!("`prefix` must be at most {MAX_PREFIX_LEN} characters, none of them a control character"),
        );
        return Err(v.refuse(Op::WatchEvents, &meta, e).await);
    }
    let last_event_id = match header(LAST_EVENT_ID) {
        Some(Ok(id)) => Some(id.to_string()),
        Some(Err(_)) => {
            let e = ApiError::new(
                ErrorCode::InvalidCursor,
                "`Last-Event-ID` is not an event id this service sent",
            );
            return Err(v.refuse(Op::WatchEvents, &meta, e).await);
        }
        None => query.last_event_id.clone(),
    }
    .filter(|id| !id.is_empty());
    let credentials = Credentials {
        service: header(SERVICE_HEADER)
            .and_then(Result::ok)
            .map(str::to_string),
        token: header(TOKEN_HEADER)
            .and_then(Result::ok)
            .map(|t| zeroize::Zeroizing::new(t.to_string())),
    };
    let stream = v
        .watch_events(
            &meta,
            credentials,
            EventQuery {
                project: &project,
                prefix,
                last_event_id: last_event_id.as_deref(),
            },
        )
        .await?;
    let start = futures_util::stream::once(async { Ok(Bytes::from_static(b"retry: 1000\n\n")) });
    let frames = futures_util::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(sse(&frame))), stream))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(start, frames)))
}

/// One frame as text. Kinds are fixed identifiers and `data` is one line of
/// JSON (serde escapes every control character), so no field can break a frame.
fn sse(frame: &Frame) -> String {
    match frame {
        Frame::Event(e) => {
            let data = serde_json::to_string(&SecretEvent::of_stored(e)).unwrap_or_default();
            format!("id: {}\nevent: {}\ndata: {data}\n\n", e.id, e.kind)
        }
        Frame::Reset { id } => format!(
            "id: {id}\nevent: reset\ndata: {{\"kind\":\"reset\",\"reason\":\"expired\"}}\n\n"
        ),
        Frame::Ping => ": ping\n\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::event_stream::StreamEvent;

    #[test]
    fn frames_are_exactly_the_contract() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-11-30T02:00:00.123Z")
            .expect("time")
            .to_utc();
        let event = StreamEvent {
            seq: 7,
            id: "abc".into(),
            kind: "secret_updated".into(),
            project: "p".into(),
            path: "a/b".into(),
            version: Some(3),
            ts,
            actor: "svc".into(),
        };
        assert_eq!(
            sse(&Frame::Event(std::sync::Arc::new(event.clone()))),
            "id: abc\nevent: secret_updated\ndata: {\"kind\":\"secret_updated\",\"project\":\"p\",\"path\":\"a/b\",\"version\":3,\"ts\":\"2026-11-30T02:00:00Z\",\"actor\":\"svc\"}\n\n"
        );
        let deleted = StreamEvent {
            kind: "secret_deleted".into(),
            version: None,
            ..event
        };
        assert!(
            sse(&Frame::Event(std::sync::Arc::new(deleted))).contains("\"path\":\"a/b\",\"ts\"")
        );
        assert_eq!(
            sse(&Frame::Reset { id: "x".into() }),
            "id: x\nevent: reset\ndata: {\"kind\":\"reset\",\"reason\":\"expired\"}\n\n"
        );
        assert_eq!(sse(&Frame::Ping), ": ping\n\n");
    }
}
