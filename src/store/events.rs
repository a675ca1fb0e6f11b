//! `events`: secret change events kept for `EVENTS_RETENTION` (TTL index on
//! `ts`), so every replica and every reconnecting client sees them.
//!
//! Each event's `_id` is a sequence number, so the order is the same on every
//! replica whatever their clocks say. The unique `_id` itself hands the
//! numbers out: a writer inserts its events at the numbers after the last one
//! it knows is stored, and when another replica got there first (a duplicate
//! `_id`) it asks for the highest stored number and tries again after it. So
//! a number is only ever inserted once the one before it is stored, and a
//! lone write costs one command (an `$inc` of a counter first cost two). The
//! counter document (`event_seq`) is kept as a floor, raised now and then,
//! for when every stored event has expired. Readers (`vault::event_stream`)
//! still hold back after a gap until it fills, or give up on it after a
//! timeout: a safety net for writers of an older build.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime};
use mongodb::options::IndexOptions;
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

/// Raises the floor document to `seq` (never lowers it).
async fn raise_floor(db: &Database, seq: i64) -> Result<(), StoreError> {
    db.collection::<Counter>(COUNTER)
        .update_one(doc! { "_id": COLLECTION }, doc! { "$max": { "seq": seq } })
        .upsert(true)
        .await?;
    Ok(())
}

/// The last sequence number used (0 before the first event): the highest
/// stored, or the floor when every stored event has expired.
pub async fn last_number(db: &Database) -> Result<i64, StoreError> {
    let floor = db
        .collection::<Counter>(COUNTER)
        .find_one(doc! { "_id": COLLECTION })
        .await?
        .map_or(0, |c| c.seq);
    Ok(floor.max(highest(db).await?))
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

/// How often, at most, the floor document is raised to the last number used.
const FLOOR_EVERY: Duration = Duration::from_secs(1);
/// How many times events are numbered again after other replicas took their
/// numbers, before their writers are told they failed.
const MAX_TRIES: usize = 32;

/// One writer's view of the sequence (see the module comment).
#[derive(Default)]
pub(crate) struct Numbers {
    /// The number its next event gets, when known (after its own last insert).
    next: Option<i64>,
    /// The last number the floor document was raised to, and when.
    floor: i64,
    floor_at: Option<std::time::Instant>,
}

impl Numbers {
    /// The number the next event gets: after this writer's last one, or
    /// (first, or after an error) after whatever is stored.
    pub(crate) async fn first(&mut self, db: &Database) -> Result<i64, StoreError> {
        match self.next {
            Some(next) => Ok(next),
            None => Ok(last_number(db).await? + 1),
        }
    }

    /// `n` events were stored at the numbers from `first` on.
    pub(crate) fn used(&mut self, first: i64, n: usize) {
        if n > 0 {
            self.next = Some(first + i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Another writer holds the next number: go on after the highest stored.
    pub(crate) async fn taken(&mut self, db: &Database) -> Result<(), StoreError> {
        self.next = None;
        self.next = Some(highest(db).await? + 1);
        Ok(())
    }

    /// After a failure that may or may not have stored something: ask again.
    pub(crate) fn forget(&mut self) {
        self.next = None;
    }

    /// Stores `docs` in order at the next free numbers.
    pub(crate) async fn store(
        &mut self,
        db: &Database,
        docs: &mut [EventDoc],
    ) -> Result<(), StoreError> {
        let mut from = 0;
        for _ in 0..MAX_TRIES {
            if from == docs.len() {
                return Ok(());
            }
            let first = self.first(db).await?;
            for (doc, seq) in docs[from..].iter_mut().zip(first..) {
                doc.seq = seq;
            }
            let rest = &docs[from..];
            let last = first + i64::try_from(rest.len()).unwrap_or(i64::MAX) - 1;
            match collection(db).insert_many(rest).ordered(true).await {
                Ok(_) => {
                    self.next = Some(last + 1);
                    return Ok(());
                }
                Err(e) => match stored_before_duplicate(&e) {
                    // Another writer holds the number of `rest[stored]`: the
                    // ones before it are stored, the rest go after the highest.
                    Some(stored) => {
                        from += stored;
                        self.taken(db).await?;
                    }
                    None => {
                        self.next = None;
                        return Err(e.into());
                    }
                },
            }
        }
        self.next = None;
        Err(StoreError::Other(
            "change events could not be numbered: other writers kept taking the numbers".into(),
        ))
    }

    /// The last number this writer used, when the floor document is behind it.
    fn unraised(&self) -> Option<i64> {
        self.next.map(|n| n - 1).filter(|last| *last > self.floor)
    }

    /// When the floor is next due to be raised, if it is behind.
    pub(crate) fn floor_due(&self) -> Option<tokio::time::Instant> {
        self.unraised()?;
        Some(self.floor_at.map_or_else(tokio::time::Instant::now, |at| {
            tokio::time::Instant::from_std(at + FLOOR_EVERY)
        }))
    }

    /// Raises the floor document (in the background, at most every
    /// [`FLOOR_EVERY`], and once the writes stop) so a restart after every
    /// event expired goes on from the last number, not from 1.
    pub(crate) fn raise_floor(&mut self, db: &Database) {
        let Some(last) = self.unraised() else {
            return;
        };
        if self.floor_at.is_some_and(|at| at.elapsed() < FLOOR_EVERY) {
            return;
        }
        self.floor = last;
        self.floor_at = Some(std::time::Instant::now());
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(e) = raise_floor(&db, last).await {
                tracing::warn!(error = %e, "could not raise the change events' floor");
            }
        });
    }
}

/// How many documents of an ordered `insert_many` were stored before a
/// duplicate `_id` stopped it; `None` for any other failure.
fn stored_before_duplicate(e: &mongodb::error::Error) -> Option<usize> {
    use mongodb::error::ErrorKind;
    let ErrorKind::InsertMany(im) = &*e.kind else {
        return None;
    };
    if im.write_concern_error.is_some() {
        return None;
    }
    match im.write_errors.as_deref() {
        Some([only]) if only.code == 11000 => Some(only.index),
        _ => None,
    }
}
