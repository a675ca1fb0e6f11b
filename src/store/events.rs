//! `events`: secret change events kept for `EVENTS_RETENTION` (TTL index on
//! `ts`), so every replica and every reconnecting client sees them.
//!
//! Each event's `_id` is a sequence number taken from one counter document
//! (`event_seq`, `$inc`), so the order is the same on every replica whatever
//! their clocks say. Numbers are taken before the insert, so concurrent
//! writers can make a later number visible before an earlier one: readers
//! (`vault::event_stream`) hold back after a gap until it fills, or give up on
//! it after a timeout (a writer that died between the two steps).

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

/// Takes the next `n` sequence numbers; returns the last one.
pub async fn take_numbers(db: &Database, n: i64) -> Result<i64, StoreError> {
    let counter = db
        .collection::<Counter>(COUNTER)
        .find_one_and_update(doc! { "_id": COLLECTION }, doc! { "$inc": { "seq": n } })
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await?
        .ok_or_else(|| StoreError::Other("the event counter was not returned".into()))?;
    Ok(counter.seq)
}

/// The last sequence number taken (0 before the first event).
pub async fn last_number(db: &Database) -> Result<i64, StoreError> {
    Ok(db
        .collection::<Counter>(COUNTER)
        .find_one(doc! { "_id": COLLECTION })
        .await?
        .map_or(0, |c| c.seq))
}

pub async fn insert(db: &Database, events: &[EventDoc]) -> Result<(), StoreError> {
    collection(db).insert_many(events).await?;
    Ok(())
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

/// Group commit for change events, in two steps that may run apart: numbers
/// are taken for the events of concurrent operations by one `$inc` of the
/// counter ([`EventWriter::reserve`]), and numbered events are stored by one
/// `insert_many` ([`EventWriter::store`]), so a busy replica pays two round
/// trips per batch, not per write. A write can take its numbers while its
/// other work is in flight (a create takes them beside its secret insert and
/// audit record) and store the events once the operation stands. A number
/// taken for an operation that then failed is stored as a placeholder at once
/// ([`EventWriter::void`]); one whose writer died is filled by the followers
/// after `GAP_TIMEOUT` (see `vault::event_stream`).
#[derive(Clone)]
pub struct EventWriter {
    numbers: tokio::sync::mpsc::Sender<(i64, NumbersAck)>,
    inserts: super::group_commit::GroupCommit<EventDoc>,
    db: Database,
}

type NumbersAck = tokio::sync::oneshot::Sender<Result<i64, StoreError>>;

/// Most reservations one `$inc` serves.
const MAX_EVENT_BATCH: usize = 256;

/// Sequence numbers taken for one operation's events: `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    pub first: i64,
    pub count: i64,
}

impl EventWriter {
    /// Starts the batching tasks on the current tokio runtime.
    pub fn spawn(db: &Database) -> Self {
        let (numbers, rx) = tokio::sync::mpsc::channel(MAX_EVENT_BATCH * 4);
        tokio::spawn(take_batches(db.clone(), rx));
        Self {
            numbers,
            inserts: super::group_commit::GroupCommit::spawn(collection(db), None),
            db: db.clone(),
        }
    }

    /// Takes `count` consecutive sequence numbers (batched with concurrent callers).
    pub async fn reserve(&self, count: i64) -> Result<Numbers, StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.numbers
            .send((count, ack))
            .await
            .map_err(|_| StoreError::Other("event writer stopped".into()))?;
        let last = done
            .await
            .map_err(|_| StoreError::Other("event writer dropped a reservation".into()))??;
        Ok(Numbers {
            first: last - count + 1,
            count,
        })
    }

    /// Stores events numbered from `numbers` (their `seq` is overwritten;
    /// there must be exactly `numbers.count` of them); resolves once MongoDB
    /// has acknowledged them all.
    pub async fn store(
        &self,
        numbers: Numbers,
        mut events: Vec<EventDoc>,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(i64::try_from(events.len()).ok(), Some(numbers.count));
        for (doc, seq) in events.iter_mut().zip(numbers.first..) {
            doc.seq = seq;
        }
        let stored =
            futures_util::future::join_all(events.into_iter().map(|e| self.inserts.insert(e)))
                .await;
        for r in stored {
            r.map_err(|e| match e {
                super::group_commit::BatchError::Store(e) => e,
                // Someone filled the number first (a follower gave up on it).
                super::group_commit::BatchError::Duplicate => {
                    StoreError::Other("the event's sequence number was given up".into())
                }
            })?;
        }
        Ok(())
    }

    /// Numbers `events` and stores them.
    pub async fn write(&self, events: Vec<EventDoc>) -> Result<(), StoreError> {
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        if count == 0 {
            return Ok(());
        }
        let numbers = self.reserve(count).await?;
        self.store(numbers, events).await
    }

    /// Stores placeholders of `kind` for numbers whose events will never be
    /// stored (their operation failed), so followers need not wait for them.
    pub async fn void(&self, numbers: Numbers, kind: &str) -> Result<(), StoreError> {
        let now = DateTime::now();
        let placeholders: Vec<EventDoc> = (numbers.first..numbers.first + numbers.count)
            .map(|seq| EventDoc {
                seq,
                kind: kind.to_string(),
                project: String::new(),
                path: String::new(),
                version: None,
                ts: now,
                actor: String::new(),
            })
            .collect();
        insert_missing(&self.db, &placeholders).await
    }
}

async fn take_batches(db: Database, mut rx: tokio::sync::mpsc::Receiver<(i64, NumbersAck)>) {
    let mut batch = Vec::with_capacity(MAX_EVENT_BATCH);
    while rx.recv_many(&mut batch, MAX_EVENT_BATCH).await > 0 {
        let total: i64 = batch.iter().map(|(n, _)| *n).sum();
        let result = take_numbers(&db, total).await;
        // Hand out the batch's numbers in order: the first caller gets the lowest.
        let mut next = result.as_ref().map(|last| last - total + 1).ok();
        for (n, ack) in batch.drain(..) {
            let _ = ack.send(match (&result, next.as_mut()) {
                (Ok(_), Some(next)) => {
                    *next += n;
                    Ok(*next - 1)
                }
                (Err(StoreError::Unavailable(m)), _) => Err(StoreError::Unavailable(m.clone())),
                (Err(StoreError::Other(m)), _) => Err(StoreError::Other(m.clone())),
                (Ok(_), None) => Err(StoreError::Other("no numbers".into())),
            });
        }
    }
}
