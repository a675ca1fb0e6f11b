//! `events`: secret change events kept for `EVENTS_RETENTION` (TTL index on
//! `ts`), so every replica and every reconnecting client sees them.
//!
//! Each event's `_id` is a sequence number taken from one counter document
//! (`event_seq`, `$inc`), so the order is the same on every replica whatever
//! their clocks say. Numbers are taken before the insert, so concurrent
//! writers can make a later number visible before an earlier one: readers
//! (`vault::event_stream`) hold back after a gap until it fills, or give up on
//! it after a timeout (a writer that died between the two steps) by storing a
//! placeholder of kind [`LOST`] there. The audit trail's writer
//! (`store::audit_sink`) takes the numbers for a batch's events with one `$inc`
//! and stores them with, or right after, their operations' audit records.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::StoreError;

pub const COLLECTION: &str = "events";
const COUNTER: &str = "event_seq";
const TTL_INDEX: &str = "ts_ttl";

/// One stored event: names and a version, never a value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDoc {
    /// The sequence number.
    #[serde(rename = "_id")]
    pub seq: i64,
    pub kind: String,
    pub project: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub ts: DateTime,
    pub actor: String,
}

fn collection(db: &Database) -> Collection<EventDoc> {
    db.collection(COLLECTION)
}

#[derive(Deserialize)]
struct Counter {
    seq: i64,
}

/// The TTL index on `ts` (changed in place, or rebuilt, when the retention changed).
pub async fn ensure_indexes(db: &Database, retention: Duration) -> Result<(), StoreError> {
    let coll = collection(db);
    let model = || {
        IndexModel::builder()
            .keys(doc! { "ts": 1 })
            .options(
                IndexOptions::builder()
                    .name(TTL_INDEX.to_string())
                    .expire_after(retention)
                    .build(),
            )
            .build()
    };
    if coll.create_index(model()).await.is_ok() {
        return Ok(());
    }
    let secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let modified = db
        .run_command(doc! {
            "collMod": COLLECTION,
            "index": { "name": TTL_INDEX, "expireAfterSeconds": secs },
        })
        .await;
    if modified.is_ok() {
        return Ok(());
    }
    // Another replica may drop and rebuild it at the same moment: tolerate that.
    let _ = coll.drop_index(TTL_INDEX).await;
    if let Err(e) = coll.create_index(model()).await {
        if coll.create_index(model()).await.is_err() {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Every change to the collection, as a bare signal (what changed is read
/// with [`after`], in sequence). Fails where the server has no change
/// streams (a standalone `mongod`).
pub async fn changes(
    db: &Database,
) -> Result<impl futures_util::Stream<Item = Result<(), StoreError>> + Send + Unpin, StoreError> {
    use futures_util::StreamExt as _;
    let stream = db
        .collection::<mongodb::bson::Document>(COLLECTION)
        .watch()
        .await?;
    Ok(stream.map(|change| change.map(|_| ()).map_err(StoreError::from)))
}

/// Takes the next `n` sequence numbers; returns the first one.
pub async fn take_numbers(db: &Database, n: usize) -> Result<i64, StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let counter = db
        .collection::<Counter>(COUNTER)
        .find_one_and_update(doc! { "_id": COLLECTION }, doc! { "$inc": { "seq": n } })
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await?
        .ok_or_else(|| StoreError::Other("the event counter was not returned".into()))?;
    Ok(counter.seq - n + 1)
}

/// The last sequence number taken (0 before the first event).
pub async fn last_number(db: &Database) -> Result<i64, StoreError> {
    Ok(db
        .collection::<Counter>(COUNTER)
        .find_one(doc! { "_id": COLLECTION })
        .await?
        .map_or(0, |c| c.seq))
}

/// Inserts the documents whose `_id` is not taken yet (another replica may
/// insert the same placeholders at the same moment).
pub async fn insert_missing(db: &Database, events: &[EventDoc]) -> Result<(), StoreError> {
    match collection(db).insert_many(events).ordered(false).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Events with `after < seq <= upto` (or any above `after`), in order, at most `limit`.
/// A range on `_id` only: always indexed.
pub async fn after(
    db: &Database,
    after: i64,
    upto: Option<i64>,
    limit: i64,
) -> Result<Vec<EventDoc>, StoreError> {
    let mut range = doc! { "$gt": after };
    if let Some(upto) = upto {
        range.insert("$lte", upto);
    }
    Ok(collection(db)
        .find(doc! { "_id": range })
        .sort(doc! { "_id": 1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?)
}

/// The highest stored sequence number (0 when there is none).
pub async fn highest(db: &Database) -> Result<i64, StoreError> {
    Ok(collection(db)
        .find_one(doc! {})
        .sort(doc! { "_id": -1 })
        .await?
        .map_or(0, |e| e.seq))
}

/// How many events with `after < seq <= upto` are stored.
pub async fn count_between(db: &Database, after: i64, upto: i64) -> Result<u64, StoreError> {
    Ok(collection(db)
        .count_documents(doc! { "_id": { "$gt": after, "$lte": upto } })
        .await?)
}

/// The kind of a placeholder for a number whose event was never stored.
pub const LOST: &str = "lost";

/// A placeholder at `seq`: it holds nothing, and every reader skips it.
pub fn placeholder(seq: i64) -> EventDoc {
    EventDoc {
        seq,
        kind: LOST.to_string(),
        project: String::new(),
        path: String::new(),
        version: None,
        ts: DateTime::now(),
        actor: String::new(),
    }
}

/// How many times events are numbered again after their numbers turned out
/// taken, before their writers are told they failed.
const MAX_TRIES: usize = 8;

/// Numbers the events of `docs` that have no number yet (`seq` 0; the others
/// were reserved) and stores them all.
pub(crate) async fn store(db: &Database, mut docs: Vec<EventDoc>) -> Result<(), StoreError> {
    number(db, docs.iter_mut()).await?;
    if docs.is_empty() {
        return Ok(());
    }
    insert_numbered(db, docs).await
}

/// Gives the events without a number (`seq` 0) the next ones, with one `$inc`
/// (none when they all have one).
pub(crate) async fn number(
    db: &Database,
    docs: impl Iterator<Item = &mut EventDoc>,
) -> Result<(), StoreError> {
    let mut unnumbered: Vec<&mut EventDoc> = docs.filter(|d| d.seq == 0).collect();
    if unnumbered.is_empty() {
        return Ok(());
    }
    let first = take_numbers(db, unnumbered.len()).await?;
    for (doc, seq) in unnumbered.iter_mut().zip(first..) {
        doc.seq = seq;
    }
    Ok(())
}

/// Stores `docs` at the numbers they carry. One whose number is taken (a
/// reader gave up waiting for this writer and stored a placeholder there)
/// gets a new number: late rather than lost.
pub(crate) async fn insert_numbered(
    db: &Database,
    mut docs: Vec<EventDoc>,
) -> Result<(), StoreError> {
    for attempt in 1..=MAX_TRIES {
        let e = match collection(db).insert_many(&docs).ordered(false).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(taken) = duplicates_only(&e) else {
            return Err(e.into());
        };
        if attempt == MAX_TRIES {
            // No number taken that would not be stored.
            break;
        }
        docs = taken
            .into_iter()
            .filter_map(|i| docs.get(i).cloned())
            .collect();
        let first = take_numbers(db, docs.len()).await?;
        for (doc, seq) in docs.iter_mut().zip(first..) {
            doc.seq = seq;
        }
    }
    Err(StoreError::Other(
        "change events could not be stored: their numbers kept turning out taken".into(),
    ))
}

/// The documents of an unordered `insert_many` refused for a duplicate `_id`,
/// when that is its only kind of failure.
fn duplicates_only(e: &mongodb::error::Error) -> Option<Vec<usize>> {
    use mongodb::error::ErrorKind;
    let ErrorKind::InsertMany(im) = &*e.kind else {
        return None;
    };
    if im.write_concern_error.is_some() {
        return None;
    }
    let errors = im.write_errors.as_deref()?;
    errors
        .iter()
        .map(|w| (w.code == 11000).then_some(w.index))
        .collect()
}

type Reservation = tokio::sync::oneshot::Sender<Result<ReservedNumber, StoreError>>;

/// A number reserved for an event. Dropped without [`ReservedNumber::claim`]
/// (the operation ended without storing it, or its request was cancelled),
/// it stores a placeholder there in the background, so no reader waits for it.
#[derive(Debug)]
pub struct ReservedNumber {
    seq: i64,
    db: Option<Database>,
}

impl ReservedNumber {
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The number, now the caller's to store (as its event or a placeholder).
    pub fn claim(mut self) -> i64 {
        self.db = None;
        self.seq
    }
}

impl Drop for ReservedNumber {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            fill_in_background(db, vec![self.seq]);
        }
    }
}

/// Stores placeholders at `numbers` from a spawned task (none outside a runtime).
fn fill_in_background(db: Database, numbers: Vec<i64>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let placeholders: Vec<EventDoc> = numbers.into_iter().map(placeholder).collect();
        if let Err(e) = insert_missing(&db, &placeholders).await {
            tracing::warn!(error = %e, "could not fill reserved event numbers; readers wait for them");
        }
    });
}

/// Hands out sequence numbers ahead of their events, so a write can take its
/// event's number while its document is inserted rather than after: its
/// audit record and event then go in one command (`store::audit_sink`).
/// Concurrent reservations share one `$inc`. A number reserved and not used
/// must be filled with a [`placeholder`], or readers wait for it.
#[derive(Clone)]
pub struct NumberReserve {
    tx: tokio::sync::mpsc::Sender<Reservation>,
}

/// Most numbers one `$inc` reserves.
const MAX_RESERVATIONS: usize = 256;

impl NumberReserve {
    /// Starts the reserving task on the current tokio runtime.
    pub fn spawn(db: &Database) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_RESERVATIONS * 4);
        tokio::spawn(reserve_numbers(db.clone(), rx));
        Self { tx }
    }

    /// One number, taken from the counter.
    pub async fn reserve(&self) -> Result<ReservedNumber, StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .send(ack)
            .await
            .map_err(|_| StoreError::Other("the number reserver stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Other("the number reserver dropped a request".into()))?
    }
}

async fn reserve_numbers(db: Database, mut rx: tokio::sync::mpsc::Receiver<Reservation>) {
    let mut batch = Vec::with_capacity(MAX_RESERVATIONS);
    while rx.recv_many(&mut batch, MAX_RESERVATIONS).await > 0 {
        let taken = take_numbers(&db, batch.len()).await;
        for (ack, i) in batch.drain(..).zip(0..) {
            let reserved = taken.clone().map(|first| ReservedNumber {
                seq: first + i,
                db: Some(db.clone()),
            });
            // A caller that went away drops its number here: filled.
            let _ = ack.send(reserved);
        }
    }
}
