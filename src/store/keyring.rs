//! The `keyring` collection (data keys sealed by the master key) and the
//! `keyring_state` pointer to the active key.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Binary, DateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

pub const COLLECTION: &str = "keyring";
pub const STATE_COLLECTION: &str = "keyring_state";
const ACTIVE: &str = "active";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyDoc {
    /// `dk-…` for data keys; `mk-…` for the legacy entry of a master key.
    #[serde(rename = "_id")]
    pub id: String,
    /// The 32-byte key sealed with AES-256-GCM under the master key (AAD = key id).
    pub wrapped: Binary,
    pub nonce: Binary,
    /// Which master key sealed it (its fingerprint).
    pub master_key_id: String,
    /// `active` or `retired` (informational; `keyring_state` is authoritative).
    pub state: String,
    pub created_at: DateTime,
    #[serde(default)]
    pub retired_at: Option<DateTime>,
    /// Seals made under this key (flushed in batches by each replica).
    #[serde(default)]
    pub seals: i64,
    #[serde(default)]
    pub legacy: bool,
}

fn keys(db: &Database) -> Collection<KeyDoc> {
    db.collection(COLLECTION)
}

fn state(db: &Database) -> Collection<Document> {
    db.collection(STATE_COLLECTION)
}

pub async fn all(db: &Database) -> Result<Vec<KeyDoc>, StoreError> {
    let cursor = keys(db)
        .find(doc! {})
        .sort(doc! { "created_at": 1 })
        .await?;
    Ok(cursor.try_collect().await?)
}

/// `Ok(false)` when the id exists.
pub async fn insert(db: &Database, key: &KeyDoc) -> Result<bool, StoreError> {
    match keys(db).insert_one(key).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove(db: &Database, id: &str) -> Result<bool, StoreError> {
    Ok(keys(db).delete_one(doc! { "_id": id }).await?.deleted_count == 1)
}

/// Replaces the sealed bytes of a key if it is still sealed under `from_master`.
pub async fn reseal(
    db: &Database,
    id: &str,
    from_master: &str,
    to_master: &str,
    wrapped: Binary,
    nonce: Binary,
) -> Result<bool, StoreError> {
    let r = keys(db)
        .update_one(
            doc! { "_id": id, "master_key_id": from_master },
            doc! { "$set": { "wrapped": wrapped, "nonce": nonce, "master_key_id": to_master } },
        )
        .await?;
    Ok(r.modified_count == 1)
}

pub async fn add_seals(db: &Database, id: &str, n: u64) -> Result<(), StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    keys(db)
        .update_one(doc! { "_id": id }, doc! { "$inc": { "seals": n } })
        .await?;
    Ok(())
}

pub async fn mark(db: &Database, id: &str, new_state: &str) -> Result<(), StoreError> {
    let mut set = doc! { "state": new_state };
    if new_state == "retired" {
        set.insert("retired_at", DateTime::now());
    }
    keys(db)
        .update_one(doc! { "_id": id }, doc! { "$set": set })
        .await?;
    Ok(())
}

/// The active key id, if one was ever chosen.
pub async fn active_id(db: &Database) -> Result<Option<String>, StoreError> {
    let found = state(db).find_one(doc! { "_id": ACTIVE }).await?;
    Ok(found.and_then(|d| d.get_str("key_id").ok().map(str::to_string)))
}

/// Makes `new` the active key if the active key is still `expected`
/// (`None`: no active key yet). Exactly one of several racing callers wins.
pub async fn swap_active(
    db: &Database,
    expected: Option<&str>,
    new: &str,
) -> Result<bool, StoreError> {
    match expected {
        None => match state(db)
            .insert_one(doc! { "_id": ACTIVE, "key_id": new, "since": DateTime::now() })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        },
        Some(old) => {
            let r = state(db)
                .update_one(
                    doc! { "_id": ACTIVE, "key_id": old },
                    doc! { "$set": { "key_id": new, "since": DateTime::now() } },
                )
                .await?;
            Ok(r.modified_count == 1)
        }
    }
}
