//! The run-time policy collections: `policies` (one document per policy,
//! `_id` = its name), `role_bindings` (one per service, `_id` = the service)
//! and `policy_state` (`{_id: "version", n}`). Every change is written first
//! and then counted with `$inc` on the version; replicas poll the version and
//! reload both collections when it moved. Reading the version before loading
//! means a change made meanwhile is seen by the next poll, never lost. No field
//! but `_id` is indexed, and `_id` is never changed (replace or delete only).

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

const POLICIES: &str = "policies";
const BINDINGS: &str = "role_bindings";
const STATE: &str = "policy_state";
const VERSION_ID: &str = "version";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PermissionDoc {
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDoc {
    #[serde(rename = "_id")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<PermissionDoc>,
    pub updated_at: DateTime,
    pub updated_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingDoc {
    #[serde(rename = "_id")]
    pub service: String,
    pub roles: Vec<String>,
    pub updated_at: DateTime,
    pub updated_by: String,
}

fn policies<T: Send + Sync>(db: &Database) -> Collection<T> {
    db.collection(POLICIES)
}

fn bindings<T: Send + Sync>(db: &Database) -> Collection<T> {
    db.collection(BINDINGS)
}

fn state(db: &Database) -> Collection<Document> {
    db.collection(STATE)
}

/// The change counter (0 before the first change).
pub async fn version(db: &Database) -> Result<i64, StoreError> {
    let found = state(db).find_one(doc! { "_id": VERSION_ID }).await?;
    Ok(found
        .and_then(|d| {
            d.get("n")
                .and_then(|n| n.as_i64().or(n.as_i32().map(i64::from)))
        })
        .unwrap_or(0))
}

/// Counts one change, so every replica reloads.
pub async fn bump(db: &Database) -> Result<(), StoreError> {
    for _ in 0..5 {
        let r = state(db)
            .update_one(doc! { "_id": VERSION_ID }, doc! { "$inc": { "n": 1_i64 } })
            .await?;
        if r.matched_count == 1 {
            return Ok(());
        }
        match state(db)
            .insert_one(doc! { "_id": VERSION_ID, "n": 1_i64 })
            .await
        {
            Ok(_) => return Ok(()),
            // Another replica made the counter first: count on it.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Other("could not count a policy change".into()))
}

pub async fn list(db: &Database) -> Result<Vec<PolicyDoc>, StoreError> {
    let cursor = policies::<PolicyDoc>(db)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await?;
    Ok(cursor.try_collect().await?)
}

pub async fn get(db: &Database, name: &str) -> Result<Option<PolicyDoc>, StoreError> {
    Ok(policies::<PolicyDoc>(db)
        .find_one(doc! { "_id": name })
        .await?)
}

/// Creates or replaces a policy. `Ok(true)` when it was new.
pub async fn put(db: &Database, policy: &PolicyDoc) -> Result<bool, StoreError> {
    let r = policies::<PolicyDoc>(db)
        .replace_one(doc! { "_id": &policy.name }, policy)
        .upsert(true)
        .await?;
    Ok(r.matched_count == 0)
}

/// `Ok(false)` when there was no such policy.
pub async fn remove(db: &Database, name: &str) -> Result<bool, StoreError> {
    let r = policies::<Document>(db)
        .delete_one(doc! { "_id": name })
        .await?;
    Ok(r.deleted_count == 1)
}

pub async fn list_bindings(db: &Database) -> Result<Vec<BindingDoc>, StoreError> {
    let cursor = bindings::<BindingDoc>(db).find(doc! {}).await?;
    Ok(cursor.try_collect().await?)
}

/// Sets a service's run-time roles; an empty list removes its binding.
pub async fn bind(db: &Database, binding: &BindingDoc) -> Result<(), StoreError> {
    if binding.roles.is_empty() {
        bindings::<Document>(db)
            .delete_one(doc! { "_id": &binding.service })
            .await?;
    } else {
        bindings::<BindingDoc>(db)
            .replace_one(doc! { "_id": &binding.service }, binding)
            .upsert(true)
            .await?;
    }
    Ok(())
}
