//! The `access_requests` collection: a read that policy denied leaves a
//! request an admin can grant (optionally for a limited time) or deny. One
//! pending request per (service, secret): while pending, a request carries
//! `pending_key`, unique among pending requests, so repeated or concurrent
//! denials add to one request instead of making many.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

pub const COLLECTION: &str = "access_requests";
const PENDING: &str = "access_requests_pending";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessRequestDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub service_name: String,
    pub project: String,
    pub path: String,
    /// `pending`, `granted` or `denied` (a grant past `expires_at` reads as expired).
    pub status: String,
    pub requested_at: DateTime,
    /// Denied reads while pending.
    #[serde(default)]
    pub attempts: i64,
    /// The marker key (service, project, path) of this request.
    pub pending_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// Reads made under the grant.
    #[serde(default)]
    pub access_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_at: Option<DateTime>,
}

fn collection<T: Send + Sync>(db: &Database) -> Collection<T> {
    db.collection(COLLECTION)
}

pub fn pending_key(service: &str, project: &str, path: &str) -> String {
    format!("{service}\n{project}\n{path}")
}

/// How many requests are stored in each state (`status`).
pub async fn count_by_state(db: &Database) -> Result<Vec<(String, i64)>, StoreError> {
    let rows: Vec<mongodb::bson::Document> = collection::<AccessRequestDoc>(db)
        .aggregate([doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } }])
        .await?
        .try_collect()
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let state = r.get_str("_id").ok()?.to_string();
            let n = match r.get("n")? {
                mongodb::bson::Bson::Int32(n) => i64::from(*n),
                mongodb::bson::Bson::Int64(n) => *n,
                _ => return None,
            };
            Some((state, n))
        })
        .collect())
}

pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let grants = IndexModel::builder()
        .keys(doc! { "service_name": 1, "project": 1, "path": 1, "status": 1 })
        .options(
            IndexOptions::builder()
                .name("grant_lookup".to_string())
                .build(),
        )
        .build();
    collection::<Document>(db).create_index(grants).await?;
    Ok(())
}

fn markers(db: &Database) -> Collection<Document> {
    db.collection(PENDING)
}

/// Records a denied read. `Ok(true)` when this made a new pending request.
/// The request is written before its marker, so a marker always points at a
/// stored request; a denial that loses the race for the marker removes its own
/// request again and counts on the winner's.
pub async fn record(db: &Database, request: &AccessRequestDoc) -> Result<bool, StoreError> {
    collection::<AccessRequestDoc>(db)
        .insert_one(request)
        .await?;
    for _ in 0..5 {
        let marker = doc! { "_id": &request.pending_key, "request_id": &request.id };
        match markers(db).insert_one(marker).await {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => {
                remove(db, &request.id).await?;
                return Err(e.into());
            }
        }
        let Some(existing) = markers(db)
            .find_one(doc! { "_id": &request.pending_key })
            .await?
        else {
            continue; // Decided meanwhile: try again.
        };
        let target = existing
            .get_str("request_id")
            .unwrap_or_default()
            .to_string();
        let counted = collection::<Document>(db)
            .update_one(
                doc! { "_id": &target, "status": "pending" },
                doc! { "$inc": { "attempts": 1_i64 } },
            )
            .await?;
        if counted.matched_count == 1 {
            remove(db, &request.id).await?;
            return Ok(false);
        }
        // A marker left by a decision that stopped half-way: clear it, go again.
        markers(db)
            .delete_one(doc! { "_id": &request.pending_key, "request_id": &target })
            .await?;
    }
    remove(db, &request.id).await?;
    Ok(false)
}

/// The grant in force for this service on this secret, if any; counts the read.
pub async fn use_grant(
    db: &Database,
    service: &str,
    project: &str,
    path: &str,
) -> Result<bool, StoreError> {
    let now = DateTime::now();
    let r = collection::<Document>(db)
        .update_one(
            doc! {
                "service_name": service, "project": project, "path": path, "status": "granted",
                "$or": [ { "expires_at": null }, { "expires_at": { "$gt": now } } ],
            },
            doc! { "$inc": { "access_count": 1_i64 }, "$set": { "last_accessed_at": now } },
        )
        .await?;
    Ok(r.matched_count > 0)
}

/// Whether a grant is in force for this service on this secret (not counted as a read).
pub async fn has_grant(
    db: &Database,
    service: &str,
    project: &str,
    path: &str,
) -> Result<bool, StoreError> {
    let n = collection::<Document>(db)
        .count_documents(doc! {
            "service_name": service, "project": project, "path": path, "status": "granted",
            "$or": [ { "expires_at": null }, { "expires_at": { "$gt": DateTime::now() } } ],
        })
        .limit(1)
        .await?;
    Ok(n > 0)
}

pub async fn list(
    db: &Database,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<AccessRequestDoc>, StoreError> {
    let now = DateTime::now();
    let filter = match status {
        None => doc! {},
        Some("expired") => doc! { "$or": [
            { "status": "expired" },
            { "status": "granted", "expires_at": { "$lte": now } },
        ] },
        Some("granted") => doc! {
            "status": "granted",
            "$or": [ { "expires_at": null }, { "expires_at": { "$gt": now } } ],
        },
        Some(s) => doc! { "status": s },
    };
    let cursor = collection::<AccessRequestDoc>(db)
        .find(filter)
        .sort(doc! { "requested_at": -1 })
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}

pub async fn get(db: &Database, id: &str) -> Result<Option<AccessRequestDoc>, StoreError> {
    Ok(collection::<AccessRequestDoc>(db)
        .find_one(doc! { "_id": id })
        .await?)
}

/// Moves a pending request to `granted` or `denied`; `Ok(false)` when it is
/// not pending any more (another admin decided first).
pub async fn decide(
    db: &Database,
    id: &str,
    granted: bool,
    by: &str,
    expires_at: Option<DateTime>,
) -> Result<bool, StoreError> {
    let now = DateTime::now();
    let mut set = doc! {
        "status": if granted { "granted" } else { "denied" },
        "decided_at": now, "decided_by": by,
    };
    if granted {
        set.insert("granted_at", now);
        set.insert("granted_by", by);
        if let Some(t) = expires_at {
            set.insert("expires_at", t);
        }
    }
    let r = collection::<Document>(db)
        .update_one(
            doc! { "_id": id, "status": "pending" },
            doc! { "$set": set },
        )
        .await?;
    if r.modified_count != 1 {
        return Ok(false);
    }
    if let Some(request) = get(db, id).await? {
        markers(db)
            .delete_one(doc! { "_id": &request.pending_key, "request_id": id })
            .await?;
    }
    Ok(true)
}

/// Removes a request whose creation could not be audited.
pub async fn remove(db: &Database, id: &str) -> Result<(), StoreError> {
    collection::<Document>(db)
        .delete_one(doc! { "_id": id })
        .await?;
    Ok(())
}

/// Marks this service's grants on this secret that have run out as `expired`;
/// returns the ids it marked (each is a transition to record once).
pub async fn expire_due(
    db: &Database,
    service: &str,
    project: &str,
    path: &str,
) -> Result<Vec<String>, StoreError> {
    let now = DateTime::now();
    let due: Vec<Document> = collection::<Document>(db)
        .find(doc! {
            "service_name": service, "project": project, "path": path,
            "status": "granted", "expires_at": { "$lte": now },
        })
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    let mut marked = Vec::new();
    for d in due {
        let Ok(id) = d.get_str("_id") else { continue };
        let r = collection::<Document>(db)
            .update_one(
                doc! { "_id": id, "status": "granted" },
                doc! { "$set": { "status": "expired" } },
            )
            .await?;
        if r.modified_count == 1 {
            marked.push(id.to_string());
        }
    }
    Ok(marked)
}
