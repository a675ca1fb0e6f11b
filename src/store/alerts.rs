//! What the failed-access alerts (`vault::alerts`) share between replicas.
//!
//! - `alert_counts`: counters keyed by `_id` (`<rule>|<window start ms>|<kind>|<subject>`,
//!   the subject last so no subject can be mistaken for another key), each
//!   `{n, expires_at}`. Replicas add what they counted since their last flush
//!   with one `$inc` upsert per key and get the shared total back, so every
//!   replica decides on the same number. The same collection holds the
//!   per-hour read tallies of the rate rule (`{n, minutes}`) and the claims
//!   (`fired|...`): an alert is raised by the replica whose insert of the
//!   claim's `_id` succeeds, so across replicas it is raised once.
//! - `alert_addresses`: `_id` `pair|<service>|<address>` and `service|<service>`,
//!   each `{seen_at, expires_at}`: the addresses a service read from within the
//!   baseline. A find-and-update returning the previous document tells, in one
//!   atomic step, whether the pair (or the service) was already known, so two
//!   replicas seeing the same new address cannot both report it.
//!
//! Every lookup is by `_id` (the only index besides the TTL on `expires_at`).

use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};

use super::{is_duplicate_key, StoreError};

pub const COUNTS: &str = "alert_counts";
pub const ADDRESSES: &str = "alert_addresses";

fn counts(db: &Database) -> Collection<Document> {
    db.collection(COUNTS)
}

fn addresses(db: &Database) -> Collection<Document> {
    db.collection(ADDRESSES)
}

/// TTL indexes: MongoDB removes each document once its `expires_at` passed.
pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    for coll in [counts(db), addresses(db)] {
        let ttl = IndexModel::builder()
            .keys(doc! { "expires_at": 1 })
            .options(
                IndexOptions::builder()
                    .name("expires_at_ttl".to_string())
                    .expire_after(std::time::Duration::ZERO)
                    .build(),
            )
            .build();
        coll.create_index(ttl).await?;
    }
    Ok(())
}

/// Adds `delta` to the counter `id` (made when missing) and returns the
/// shared total after the addition.
pub async fn add(
    db: &Database,
    id: &str,
    delta: i64,
    expires_at: DateTime,
) -> Result<i64, StoreError> {
    let update = doc! { "$inc": { "n": delta }, "$setOnInsert": { "expires_at": expires_at } };
    // Two replicas making the same counter at once: one upsert loses with a
    // duplicate key, and its retry finds the document.
    for _ in 0..3 {
        match counts(db)
            .find_one_and_update(doc! { "_id": id }, update.clone())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
        {
            Ok(found) => return Ok(found.map_or(delta, |d| number(&d, "n"))),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Other(
        "could not add to an alert counter".into(),
    ))
}

/// Adds reads to an hour's tally; `new_minute` when they opened a minute
/// with reads in it.
pub async fn add_hour(
    db: &Database,
    id: &str,
    delta: i64,
    new_minute: bool,
    expires_at: DateTime,
) -> Result<(), StoreError> {
    let update = doc! {
        "$inc": { "n": delta, "minutes": i64::from(new_minute) },
        "$setOnInsert": { "expires_at": expires_at },
    };
    for _ in 0..3 {
        match counts(db)
            .update_one(doc! { "_id": id }, update.clone())
            .upsert(true)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Other("could not add to an hour's reads".into()))
}

/// The reads and the minutes with reads of the hour tallies `ids` that exist.
/// One lookup by `_id` each, concurrently (an `$in` over `_id` is not
/// served by the index on every server).
pub async fn hours(db: &Database, ids: &[String]) -> Result<(i64, i64), StoreError> {
    let coll = counts(db);
    let found = futures_util::future::try_join_all(ids.iter().map(|id| {
        let coll = coll.clone();
        async move { coll.find_one(doc! { "_id": id }).await }
    }))
    .await?;
    Ok(found.iter().flatten().fold((0, 0), |(n, m), d| {
        (n + number(d, "n"), m + number(d, "minutes"))
    }))
}

/// The claim `id`: `Ok(true)` for the one caller, on any replica, that made it.
pub async fn claim(db: &Database, id: &str, expires_at: DateTime) -> Result<bool, StoreError> {
    match counts(db)
        .insert_one(doc! { "_id": id, "expires_at": expires_at })
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Marks the address entry `id` seen now and returns when it was seen before
/// (`None`: never; an expired entry MongoDB has not removed yet is returned
/// as stored, and the caller checks its age).
pub async fn touch(
    db: &Database,
    id: &str,
    now: DateTime,
    expires_at: DateTime,
) -> Result<Option<DateTime>, StoreError> {
    let update = doc! { "$set": { "seen_at": now, "expires_at": expires_at } };
    match addresses(db)
        .find_one_and_update(doc! { "_id": id }, update)
        .upsert(true)
        .return_document(ReturnDocument::Before)
        .await
    {
        Ok(before) => Ok(before.and_then(|d| d.get_datetime("seen_at").ok().copied())),
        // Another replica made it a moment ago: it is known now.
        Err(e) if is_duplicate_key(&e) => Ok(Some(now)),
        Err(e) => Err(e.into()),
    }
}

fn number(d: &Document, field: &str) -> i64 {
    match d.get(field) {
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}
