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

/// Group commit for change events: the events of concurrent operations are
/// numbered by one `$inc` of the counter and stored by one `insert_many`, so
/// a busy replica pays two round trips per batch, not per write. Every number
/// a batch takes is inserted by that batch's one command, as before: no gap
/// is made that the followers would have to wait out.
#[derive(Clone)]
pub struct EventWriter {
    tx: tokio::sync::mpsc::Sender<(Vec<EventDoc>, EventAck)>,
}

type EventAck = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// Most events one batch numbers and inserts.
const MAX_EVENT_BATCH: usize = 256;

impl EventWriter {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(db: &Database) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_EVENT_BATCH * 4);
        tokio::spawn(write_batches(db.clone(), rx));
        Self { tx }
    }

    /// Numbers `events` (their `seq` is overwritten) and stores them; resolves
    /// once MongoDB has acknowledged them.
    pub async fn write(&self, events: Vec<EventDoc>) -> Result<(), StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .send((events, ack))
            .await
            .map_err(|_| StoreError::Other("event writer stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Other("event writer dropped an event".into()))?
    }
}

async fn write_batches(
    db: Database,
    mut rx: tokio::sync::mpsc::Receiver<(Vec<EventDoc>, EventAck)>,
) {
    let mut batch = Vec::with_capacity(MAX_EVENT_BATCH);
    while rx.recv_many(&mut batch, MAX_EVENT_BATCH).await > 0 {
        let (groups, acks): (Vec<Vec<EventDoc>>, Vec<EventAck>) = batch.drain(..).unzip();
        let mut docs: Vec<EventDoc> = groups.into_iter().flatten().collect();
        let result = async {
            let n = i64::try_from(docs.len()).unwrap_or(i64::MAX);
            if n == 0 {
                return Ok(());
            }
            let last = take_numbers(&db, n).await?;
            for (doc, seq) in docs.iter_mut().zip(last - n + 1..) {
                doc.seq = seq;
            }
            insert(&db, &docs).await
        }
        .await;
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}
