//! Sends change events (see `vault::events`) to `WEBHOOK_URL`, signed so the
//! receiver can check they came from us and are fresh:
//! `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(WEBHOOK_SECRET, "<t>.<body>")>`.
//! Best effort: each event is tried three times with a short backoff, then
//! dropped with a warning (the audit trail is the record, not the webhook).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::broadcast::error::RecvError;

use crate::vault::events::Event;

/// Where events go, and the key that signs them.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The `X-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> Option<String> {
    crate::crypto::signature(secret, t, body)
}

/// Sends every event from `events` until the process ends.
pub fn spawn(mut events: tokio::sync::broadcast::Receiver<Event>, settings: WebhookSettings) {
    tokio::spawn(async move {
        let Ok(client) = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        else {
            tracing::error!("the webhook client could not be built; events are not sent");
            return;
        };
        loop {
            match events.recv().await {
                Ok(event) => send(&client, &settings, &event).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "the webhook fell behind; events were dropped")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

async fn send(client: &reqwest::Client, settings: &WebhookSettings, event: &Event) {
    let Ok(body) = serde_json::to_vec(event) else {
        return;
    };
    for attempt in 0..3u32 {
        let t = chrono::Utc::now().timestamp();
        let Some(sig) = signature(settings.secret.expose_secret().as_bytes(), t, &body) else {
            return;
        };
        let sent = client
            .post(&settings.url)
            .header("content-type", "application/json")
            .header("x-signature", sig)
            .header("x-event", event.kind)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => tracing::warn!(
                status = res.status().as_u16(),
                kind = event.kind,
                "webhook refused an event"
            ),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), kind = event.kind, "webhook unreachable")
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::warn!(
        kind = event.kind,
        "event dropped after three webhook attempts"
    );
}
