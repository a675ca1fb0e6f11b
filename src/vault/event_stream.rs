//! Secret change events for HTTP clients (`GET /api/events`, Server-Sent
//! Events), the same on every replica and resumable after a reconnect.
//!
//! **Stored, in the request.** Every event that names a project and a path
//! (whatever its kind: writes, deletes, restores, stubs, promotions, rollbacks,
//! ...) is inserted into the `events` collection by the operation that caused
//! it, after its audit record is stored and before the caller gets its answer
//! (see `Vault::store_events`). So nothing is lost to a lagging in-process
//! channel, and a client that saw a write's answer and then resumes its stream
//! is sure to get that write's event. A failed insert (the database went away
//! between the audit record and the event) does not undo the change: it is
//! logged as an error and the event is missing (the audit trail has it).
//!
//! **Order: one sequence, gaps held back.** Each event's `_id` is a number
//! from one counter document (`$inc`), not a time: replicas' clocks may
//! disagree, a sequence does not. A number is taken before the insert, so
//! replica B can make event 8 visible while replica A is still inserting 7. A
//! reader that delivered 8 and moved its cursor past 7 would skip 7 for good;
//! so each replica's follower ([`FOLLOW_POLL`]: one indexed `_id` range query
//! per replica, shared by all its streams) publishes events strictly in
//! sequence: after a gap it waits for the missing number (polling faster) and
//! gives up on it only after [`GAP_TIMEOUT`] (its writer died between the two
//! steps; logged). A change to an existing secret takes its number before
//! the change (`Vault::pending_with_number`), so one secret's changes are
//! numbered in the order they happened. Everything up to the follower's *watermark* is therefore
//! settled, and a resume token (`Last-Event-ID`) names one sequence number:
//! resuming sends exactly the events after it, in order, none twice. A write
//! through this replica wakes the follower at once (the in-process broadcast);
//! another replica's write is seen at the next poll.
//!
//! **Wake-ups.** Each replica's follower reads when something may have
//! changed: at once on a write through this replica (the in-process
//! broadcast), at once on any insert anywhere when the server has change
//! streams (SecantusDB and replica-set MongoDB do: a change stream on
//! `events` is opened and used as a bare signal, re-opened after an error),
//! and every [`FOLLOW_POLL`] in any case (a standalone `mongod` refuses change
//! streams; a signal may be lost). What is delivered, and in which order, is
//! always decided by the `_id` range read, never by the change stream.
//!
//! **Resume tokens** are the sequence number encrypted with AES-256 (one
//! block, a key derived from the master key, a fixed 8-byte check), so they
//! are opaque (they do not reveal how many events other projects had) and any
//! replica accepts them. One that does not decrypt is `invalid_cursor`; one
//! whose following events are no longer all stored (older than
//! `EVENTS_RETENTION`, or from another database) starts the stream with a
//! `reset` frame: the client reloads what it follows.
//!
//! **Rights.** Opening a stream needs a grant on something in the project;
//! each event is sent only when the caller may `read` or `list` its secret,
//! asked of the live policy engine at that moment. The caller is
//! authenticated again before each event it is sent and every
//! [`RECHECK`]: a revoked token, or no grant left in the project, ends the
//! stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes_gcm::aes::Aes256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch, Notify, OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::watch::Credentials;
use super::{utc, Op, RequestMeta, Scope, Vault};
use crate::auth::{secret_resource, Action};
use crate::error::{ApiError, ErrorCode};
use crate::store::events::{self as store, EventDoc, LOST};
use crate::store::StoreError;

/// How often each replica's follower reads new events.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How soon a failed or refused change stream is opened again.
const CHANGE_STREAM_RETRY: Duration = Duration::from_secs(5);
/// How often the follower looks again while it waits for a missing number.
const GAP_POLL: Duration = Duration::from_millis(20);
/// How long a missing sequence number is waited for before it is given up.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(5);
/// A `: ping` comment this often keeps proxies from closing an idle stream.
pub const PING: Duration = Duration::from_secs(15);
/// How often an idle stream authenticates its caller again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Events read from the database at once.
const PAGE: i64 = 500;
/// The longest `Last-Event-ID` taken (a token is 22 characters).
const MAX_ID_LEN: usize = 64;
/// The fixed half of a token's plaintext: what makes a forged one fail.
const ID_CHECK: &[u8; 8] = b"sm-evt-1";

/// `EVENTS_RETENTION` and `EVENTS_MAX_STREAMS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// How long events are kept for resuming (TTL).
    pub retention: Duration,
    /// Open `GET /api/events` streams per replica (`busy` beyond).
    pub max_streams: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            max_streams: 1024,
        }
    }
}

/// One event as streams see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub seq: i64,
    /// The resume token (`id:` of the frame).
    pub id: String,
    pub kind: String,
    pub project: String,
    pub path: String,
    pub version: Option<i64>,
    pub ts: DateTime<Utc>,
    pub actor: String,
}

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum Frame {
    /// The resume token was too old: reload everything; `id` resumes from here.
    Reset {
        id: String,
    },
    Event(Arc<StreamEvent>),
    /// Nothing happened for a while.
    Ping,
}

/// Per replica: the follower's feed, its watermark, the stream bound.
pub struct EventHub {
    settings: EventSettings,
    feed: broadcast::Sender<Arc<StreamEvent>>,
    /// Every event up to this number has been published on `feed` (or given up).
    watermark: watch::Sender<i64>,
    started: OnceCell<()>,
    slots: Arc<Semaphore>,
    stopping: watch::Sender<bool>,
    ids: IdCipher,
    /// The runtime the hub was built on (the main one): the follower runs
    /// there, not on whichever HTTP worker opened the first stream.
    runtime: Option<tokio::runtime::Handle>,
}

impl EventHub {
    pub(super) fn new(settings: EventSettings, id_key: &[u8; 32]) -> Self {
        Self {
            runtime: tokio::runtime::Handle::try_current().ok(),
            slots: Arc::new(Semaphore::new(settings.max_streams)),
            settings,
            feed: broadcast::channel(super::events::BACKLOG).0,
            watermark: watch::channel(0).0,
            started: OnceCell::new(),
            stopping: watch::channel(false).0,
            ids: IdCipher::new(id_key),
        }
    }

    /// Ends every open stream and refuses new ones (SIGTERM).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }
}

/// Seals sequence numbers into resume tokens: one AES-256 block of
/// `seq (8 bytes, big-endian) | ID_CHECK`. Deterministic, so an event has the
/// same id on every replica and every stream.
struct IdCipher(Aes256);

impl IdCipher {
    fn new(key: &[u8; 32]) -> Self {
        Self(Aes256::new(key.into()))
    }

    fn seal(&self, seq: i64) -> String {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        block[8..].copy_from_slice(ID_CHECK);
        let mut block = block.into();
        self.0.encrypt_block(&mut block);
        URL_SAFE_NO_PAD.encode(block)
    }

    fn open(&self, token: &str) -> Option<i64> {
        if token.len() > MAX_ID_LEN {
            return None;
        }
        let bytes: [u8; 16] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
        let mut block = bytes.into();
        self.0.decrypt_block(&mut block);
        let (seq, check) = block.split_at(8);
        (check == ID_CHECK).then(|| i64::from_be_bytes(seq.try_into().unwrap_or_default()))
    }
}

fn invalid_id() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCursor,
        "`Last-Event-ID` is not an event id this service sent",
    )
}

/// An open stream; [`EventStream::next`] waits for the next frame.
pub struct EventStream {
    vault: Vault,
    meta: RequestMeta,
    credentials: Credentials,
    project: String,
    prefix: String,
    feed: broadcast::Receiver<Arc<StreamEvent>>,
    /// The last sequence number handled (sent, or not for this caller).
    cursor: i64,
    /// Read from the database up to here before taking the feed.
    catch_up_to: i64,
    backlog: VecDeque<Arc<StreamEvent>>,
    reset: Option<String>,
    next_ping: Instant,
    next_check: Instant,
    stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

/// What ended a stream's wait.
enum Woke {
    Stop,
    Ping,
    Feed(Result<Arc<StreamEvent>, broadcast::error::RecvError>),
}

/// What `GET /api/events` asks for, checked at the edge.
pub struct EventQuery<'a> {
    pub project: &'a super::names::ProjectName,
    pub prefix: Option<&'a str>,
    pub last_event_id: Option<&'a str>,
}

impl Vault {
    /// The events `scope` publishes that name a project and a path (see the
    /// module comment), to store with (or after) the operation's audit record.
    pub(super) fn event_docs(
        &self,
        meta: &RequestMeta,
        scope: &mut Scope,
        ts: DateTime<Utc>,
    ) -> Vec<EventDoc> {
        let mut docs: Vec<EventDoc> = match (&scope.project, &scope.path) {
            (Some(project), Some(path)) => scope
                .events
                .iter()
                .map(|kind| EventDoc {
                    // Numbered by the writer (with the other operations' events
                    // of its batch) unless reserved below.
                    seq: 0,
                    kind: (*kind).to_string(),
                    project: project.clone(),
                    path: path.clone(),
                    version: scope.version,
                    ts: mongodb::bson::DateTime::from_chrono(ts),
                    actor: meta.actor().to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        // Claimed: from here the caller stores them, as events or placeholders.
        let mut reserved = std::mem::take(&mut scope.event_numbers)
            .into_iter()
            .map(store::ReservedNumber::claim);
        for (doc, seq) in docs.iter_mut().zip(&mut reserved) {
            doc.seq = seq;
        }
        // Reserved and not used (the operation failed): filled, so no reader waits.
        docs.extend(reserved.map(store::placeholder));
        docs
    }

    /// Stores the events of an operation whose record is written apart.
    pub(super) async fn store_events(&self, scope: &Scope, docs: Vec<EventDoc>) {
        if docs.is_empty() {
            return;
        }
        if let Err(e) = self.audit_sink.write_events(docs).await {
            events_lost(&e, &scope.events);
        }
    }

    /// Ends every open event stream (SIGTERM); see `startup`.
    pub fn event_stream_ender(&self) -> impl Fn() + Send + Sync + 'static {
        let hub = self.event_hub.clone();
        move || hub.stop()
    }

    /// Opens `GET /api/events` for an authenticated caller: one audited
    /// `watch_events` operation, whatever the stream later sends.
    pub async fn watch_events(
        &self,
        meta: &RequestMeta,
        credentials: Credentials,
        query: EventQuery<'_>,
    ) -> Result<EventStream, ApiError> {
        let project = query.project.as_str();
        let prefix = query.prefix.unwrap_or("");
        self.run(Op::WatchEvents, meta, async |scope| {
            scope.project(Some(project));
            if !prefix.is_empty() {
                scope.target(format!("prefix:{prefix}"));
            }
            let hub = &self.event_hub;
            let resume = query
                .last_event_id
                .map(|id| hub.ids.open(id).ok_or_else(invalid_id))
                .transpose()?;
            if !self.policies.grants_anything_in_project(meta.actor(), project) {
                return Err(ApiError::forbidden(meta.actor(), project));
            }
            let slot = hub.slots.clone().try_acquire_owned().ok();
            let slot = slot.filter(|_| !*hub.stopping.borrow()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Busy,
                    format!(
                        "{} event streams are open on this replica, or it is stopping; retry shortly",
                        hub.settings.max_streams
                    ),
                )
            })?;
            self.follow_events().await?;
            // Subscribed before the watermark is read: nothing falls in between.
            let feed = hub.feed.subscribe();
            let watermark = *hub.watermark.borrow();
            let (cursor, reset) = match resume {
                None => (watermark, None),
                Some(seq) if self.resumable(seq, watermark).await? => (seq, None),
                Some(_) => (watermark, Some(hub.ids.seal(watermark))),
            };
            let now = Instant::now();
            Ok(EventStream {
                vault: self.clone(),
                meta: meta.clone(),
                credentials,
                project: project.to_string(),
                prefix: prefix.to_string(),
                feed,
                cursor,
                catch_up_to: watermark,
                backlog: VecDeque::new(),
                reset,
                next_ping: now + PING,
                next_check: now + RECHECK,
                stopping: hub.stopping.subscribe(),
                _slot: slot,
            })
        })
        .await
    }

    /// Whether every event after `seq` (up to the settled `watermark`) is
    /// still stored, so resuming after `seq` misses none.
    async fn resumable(&self, seq: i64, watermark: i64) -> Result<bool, StoreError> {
        if seq < 0 {
            return Ok(false);
        }
        if seq >= watermark {
            // Sent by a replica whose follower is ahead of this one; or from
            // another history (a number never taken here).
            return Ok(seq <= store::last_number(self.db()).await?);
        }
        let kept = store::count_between(self.db(), seq, watermark).await?;
        Ok(kept == u64::try_from(watermark - seq).unwrap_or(0))
    }

    /// Starts this replica's follower once (see the module comment).
    async fn follow_events(&self) -> Result<(), ApiError> {
        let hub = self.event_hub.clone();
        hub.started
            .get_or_try_init(|| async {
                let start = store::highest(self.db()).await?;
                hub.watermark.send_replace(start);
                let changed = Arc::new(Notify::new());
                let (vault, signal) = (self.clone(), changed.clone());
                let follower = async move { vault.follow(start, &changed).await };
                let watcher = self.clone().signal_changes(signal);
                match &hub.runtime {
                    Some(runtime) => {
                        drop(runtime.spawn(follower));
                        drop(runtime.spawn(watcher));
                    }
                    None => {
                        drop(tokio::spawn(follower));
                        drop(tokio::spawn(watcher));
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(())
    }

    /// Wakes the follower on every change to `events` while a change stream
    /// is open; re-opens it after an error, and keeps trying (quietly) where
    /// the server has none.
    async fn signal_changes(self, changed: Arc<Notify>) {
        use futures_util::StreamExt as _;
        let mut said_unavailable = false;
        loop {
            match store::changes(self.db()).await {
                Ok(mut changes) => {
                    said_unavailable = false;
                    tracing::debug!("following change events through a change stream");
                    while let Some(change) = changes.next().await {
                        if let Err(e) = change {
                            tracing::warn!(error = %e, "the events change stream failed; polling until it is back");
                            break;
                        }
                        changed.notify_one();
                    }
                }
                Err(e) if !said_unavailable => {
                    said_unavailable = true;
                    tracing::info!(error = %e, "no change streams on this server: events are polled every 200 ms");
                }
                Err(_) => {}
            }
            tokio::time::sleep(CHANGE_STREAM_RETRY).await;
        }
    }

    /// The follower: publishes stored events in sequence, forever.
    async fn follow(self, start: i64, changed: &Notify) {
        let hub = self.event_hub.clone();
        let mut wake = self.subscribe_events();
        let mut next = start + 1;
        let mut gap_since: Option<Instant> = None;
        let mut full = false;
        loop {
            if !full {
                let pause = if gap_since.is_some() {
                    GAP_POLL
                } else {
                    FOLLOW_POLL
                };
                tokio::select! {
                    _ = wake.recv() => {}
                    () = changed.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                // One read covers every local event that woke us.
                while wake.try_recv().is_ok() {}
            }
            let docs = match store::after(self.db(), next - 1, None, PAGE).await {
                Ok(docs) => docs,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read change events; retrying");
                    tokio::time::sleep(FOLLOW_POLL).await;
                    continue;
                }
            };
            full = i64::try_from(docs.len()).unwrap_or(0) == PAGE;
            for doc in docs {
                if doc.seq != next {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= GAP_TIMEOUT {
                        self.give_up(next, doc.seq - 1).await;
                        gap_since = None;
                    }
                    // Read again: the missing events, or the placeholders.
                    full = gap_since.is_none();
                    break;
                }
                gap_since = None;
                next = doc.seq + 1;
                // The watermark first: a stream that opens in between reads
                // this event from the database or gets it from the feed,
                // never neither (`watch_events` subscribes, then reads it).
                hub.watermark.send_replace(doc.seq);
                if doc.kind != LOST {
                    let _ = hub.feed.send(Arc::new(hub.stream_event(doc)));
                }
            }
        }
    }
}

impl Vault {
    /// Fills the sequence numbers `from..=to`, taken but never stored (their
    /// writer stopped between the two steps), with placeholders, so every
    /// replica and every resuming client agrees they hold nothing. A writer
    /// that was only slow then meets the duplicate `_id` and stores its event
    /// at a new number: late, never out of order before the watermark.
    async fn give_up(&self, from: i64, to: i64) {
        tracing::warn!(
            missing_from = from,
            missing_to = to,
            "change events never stored (their writer stopped?): given up"
        );
        let placeholders: Vec<EventDoc> = (from..=to).map(store::placeholder).collect();
        if let Err(e) = store::insert_missing(self.db(), &placeholders).await {
            tracing::warn!(error = %e, "could not fill a gap in the change events; retrying");
        }
    }
}

impl EventHub {
    fn stream_event(&self, doc: EventDoc) -> StreamEvent {
        StreamEvent {
            id: self.ids.seal(doc.seq),
            seq: doc.seq,
            kind: doc.kind,
            project: doc.project,
            path: doc.path,
            version: doc.version,
            ts: utc(doc.ts),
            actor: doc.actor,
        }
    }
}

fn len(docs: &[EventDoc]) -> i64 {
    i64::try_from(docs.len()).unwrap_or(i64::MAX)
}

impl EventStream {
    /// The next frame; `None` ends the stream (shutdown, a revoked caller, a
    /// database error: the client resumes with its last id).
    pub async fn next(&mut self) -> Option<Frame> {
        if let Some(id) = self.reset.take() {
            return Some(Frame::Reset { id });
        }
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            if let Some(event) = self.take_settled().await? {
                if let Some(frame) = self.offer(event).await.ok()? {
                    return Some(frame);
                }
                continue;
            }
            let woke = tokio::select! {
                _ = self.stopping.wait_for(|s| *s) => Woke::Stop,
                () = tokio::time::sleep_until(self.next_ping) => Woke::Ping,
                received = self.feed.recv() => Woke::Feed(received),
            };
            let received = match woke {
                Woke::Stop => return None,
                Woke::Ping => {
                    self.next_ping = Instant::now() + PING;
                    if Instant::now() >= self.next_check {
                        self.recheck().await.ok()?;
                    }
                    return Some(Frame::Ping);
                }
                Woke::Feed(received) => received,
            };
            match received {
                Ok(event) if event.seq <= self.cursor => {}
                Ok(event) => {
                    self.cursor = event.seq;
                    if let Some(frame) = self.offer(event).await.ok()? {
                        return Some(frame);
                    }
                }
                // Fell behind the feed: read what was missed from the database.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.catch_up_to = *self.vault.event_hub.watermark.borrow();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next stored event up to `catch_up_to`, from the database, page by
    /// page; `Some(None)` when caught up, `None` on a database error.
    async fn take_settled(&mut self) -> Option<Option<Arc<StreamEvent>>> {
        if self.backlog.is_empty() && self.cursor < self.catch_up_to {
            let page =
                store::after(self.vault.db(), self.cursor, Some(self.catch_up_to), PAGE).await;
            match page {
                // Below the watermark every number is stored (or a
                // placeholder): a hole means the TTL removed events this
                // client has not seen. End the stream: its resume gets a reset.
                Ok(docs)
                    if docs.is_empty()
                        || !docs
                            .iter()
                            .map(|d| d.seq)
                            .eq(self.cursor + 1..=self.cursor + len(&docs)) =>
                {
                    tracing::info!("an event stream fell behind the retention window; ending it");
                    return None;
                }
                Ok(docs) => {
                    let hub = &self.vault.event_hub;
                    self.backlog
                        .extend(docs.into_iter().map(|d| Arc::new(hub.stream_event(d))));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an event stream could not read missed events; ending it");
                    return None;
                }
            }
        }
        let event = self.backlog.pop_front();
        if let Some(e) = &event {
            self.cursor = e.seq;
        }
        Some(event)
    }

    /// The frame for `event`, `None` when this caller is not to see it, or
    /// the error that ends the stream. Any event in the project is a moment
    /// to notice that the caller has lost every grant there (a policy check
    /// in memory); one it is sent also authenticates it again.
    async fn offer(&mut self, event: Arc<StreamEvent>) -> Result<Option<Frame>, ApiError> {
        if event.project != self.project {
            return Ok(None);
        }
        let policies = &self.vault.policies;
        if !policies.grants_anything_in_project(self.meta.actor(), &self.project) {
            self.recheck().await?;
        }
        if !self.visible(&event) {
            return Ok(None);
        }
        self.recheck().await?;
        Ok(Some(Frame::Event(event)))
    }

    /// In the stream's project and prefix, and readable or listable by the caller now.
    fn visible(&self, e: &StreamEvent) -> bool {
        if e.project != self.project || !e.path.starts_with(&self.prefix) {
            return false;
        }
        let resource = secret_resource(&e.project, &e.path);
        self.vault.may(&self.meta, Action::Read, &resource)
            || self.vault.may(&self.meta, Action::List, &resource)
    }

    /// Authenticates the caller again (a refusal is audited by
    /// `authenticate`) and checks it still holds a grant in the project (a
    /// refusal is audited as a failed `watch_events`); either ends the stream.
    async fn recheck(&mut self) -> Result<(), ApiError> {
        let mut meta = self.meta.clone();
        meta.actor = None;
        let token = self.credentials.token.as_deref().map(String::as_str);
        self.vault
            .authenticate(&mut meta, self.credentials.service.as_deref(), token)
            .await?;
        let vault = &self.vault;
        if !vault
            .policies
            .grants_anything_in_project(meta.actor(), &self.project)
        {
            let err = ApiError::forbidden(meta.actor(), &self.project);
            let mut scope = Scope::new(Op::WatchEvents);
            scope.project(Some(&self.project));
            vault.audit_failure(&meta, &scope, &err).await;
            return Err(err);
        }
        self.next_check = Instant::now() + RECHECK;
        self.meta = meta;
        Ok(())
    }
}

/// A change event could not be stored: the change stands (it is audited),
/// the event streams miss it.
pub(super) fn events_lost(e: &StoreError, kinds: &[&'static str]) {
    tracing::error!(error = %e, kinds = ?kinds, "a change event could not be stored; event streams will miss it");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_are_deterministic_and_refuse_forgeries() {
        let ids = IdCipher::new(&[7; 32]);
        for seq in [0, 1, 42, i64::MAX] {
            let id = ids.seal(seq);
            assert_eq!(id, ids.seal(seq));
            assert_eq!(id.len(), 22);
            assert_eq!(ids.open(&id), Some(seq), "{seq}");
        }
        assert_ne!(ids.seal(1), ids.seal(2));
        let other = IdCipher::new(&[8; 32]);
        assert_eq!(other.open(&ids.seal(5)), None, "another key");
        for bad in ["", "5", "not base64!", &"A".repeat(22), &"A".repeat(500)] {
            assert_eq!(ids.open(bad), None, "{bad}");
        }
    }
}
