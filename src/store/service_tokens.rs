//! The `service_tokens` collection: self-registered service tokens awaiting
//! (or holding) an admin's approval. Only a token's SHA-256 is stored, under a
//! unique index, so a token is registered once however many replicas race to
//! insert it. Every state change is a compare-and-set on `state`: of two
//! admins acting at once, exactly one update matches.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

pub const COLLECTION: &str = "service_tokens";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceTokenDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub service_name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    pub service_version: String,
    pub requested_at: DateTime,
    pub approved: bool,
    #[serde(default)]
    pub approved_at: Option<DateTime>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<DateTime>,
    #[serde(default)]
    pub access_count: i64,
    /// `pending`, `approved`, `denied` or `revoked`.
    pub state: String,
}

fn collection(db: &Database) -> Collection<ServiceTokenDoc> {
    db.collection(COLLECTION)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let unique = IndexModel::builder()
        .keys(doc! { "token_hash": 1 })
        .options(
            IndexOptions::builder()
                .name("token_hash_unique".to_string())
                .unique(true)
                .build(),
        )
        .build();
    let by_state = IndexModel::builder()
        .keys(doc! { "state": 1, "requested_at": 1 })
        .options(IndexOptions::builder().name("state".to_string()).build())
        .build();
    collection(db).create_index(unique).await?;
    collection(db).create_index(by_state).await?;
    Ok(())
}

/// `Ok(false)` when the token is already registered.
pub async fn insert(db: &Database, token: &ServiceTokenDoc) -> Result<bool, StoreError> {
    match collection(db).insert_one(token).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn find_by_hash(
    db: &Database,
    token_hash: &str,
) -> Result<Option<ServiceTokenDoc>, StoreError> {
    Ok(collection(db)
        .find_one(doc! { "token_hash": token_hash })
        .await?)
}

pub async fn find(db: &Database, id: &str) -> Result<Option<ServiceTokenDoc>, StoreError> {
    Ok(collection(db).find_one(doc! { "_id": id }).await?)
}

pub async fn count_in_state(db: &Database, state: &str) -> Result<u64, StoreError> {
    Ok(collection(db)
        .count_documents(doc! { "state": state })
        .await?)
}

/// Oldest first; every state when `state` is `None`.
pub async fn list(db: &Database, state: Option<&str>) -> Result<Vec<ServiceTokenDoc>, StoreError> {
    let filter = match state {
        Some(s) => doc! { "state": s },
        None => doc! {},
    };
    let cursor = collection(db)
        .find(filter)
        .sort(doc! { "requested_at": 1, "_id": 1 })
        .limit(10_000)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Moves the token from `from` to `to` when it is still in `from`; `set` adds
/// fields. The updated document, or `None` when nothing matched.
pub async fn transition(
    db: &Database,
    id: &str,
    from: &str,
    to: &str,
    mut set: Document,
) -> Result<Option<ServiceTokenDoc>, StoreError> {
    set.insert("state", to);
    Ok(collection(db)
        .find_one_and_update(doc! { "_id": id, "state": from }, doc! { "$set": set })
        .return_document(mongodb::options::ReturnDocument::After)
        .await?)
}

/// Adds `count` uses, the last at `last_used_at` (never moving it back).
pub async fn record_use(
    db: &Database,
    id: &str,
    count: i64,
    last_used_at: DateTime,
) -> Result<(), StoreError> {
    collection(db)
        .update_one(
            doc! { "_id": id },
            doc! {
                "$inc": { "access_count": count },
                "$max": { "last_used_at": last_used_at },
            },
        )
        .await?;
    Ok(())
}
