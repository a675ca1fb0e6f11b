//! Rotation state in MongoDB: the staging labels on a secret's document
//! (`pending_version`, `previous_version`, `failed_versions` beside
//! `current_version`), the schedules (`rotation_schedules`, one per secret,
//! keyed by the secret's id) and the scheduler's lease (`scheduler_lease`).
//!
//! Every write a rotation makes to a secret is a compare-and-set on what it
//! read (the current version, the pending version, `rev`) and on the
//! scheduler's fencing token: the document keeps the highest `lease_epoch`
//! that wrote it, and a write carrying a lower one matches nothing, so a
//! paused old leader cannot act once a newer one has touched the secret.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::secrets::{VersionDoc, COLLECTION as SECRETS};
use super::{is_duplicate_key, StoreError};

pub const SCHEDULES: &str = "rotation_schedules";
pub const LEASES: &str = "scheduler_lease";
/// The one lease the rotation scheduler holds.
pub const ROTATION_LEASE: &str = "rotation";
/// How many rotation outcomes a schedule keeps.
pub const HISTORY_KEPT: i64 = 20;

/// A secret's document as a rotation sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Staged {
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub path: String,
    pub current_version: i64,
    #[serde(default)]
    pub versions: Vec<VersionDoc>,
    #[serde(default)]
    pub rev: Option<i64>,
    #[serde(default)]
    pub top_version: Option<i64>,
    #[serde(default)]
    pub pending_version: Option<i64>,
    #[serde(default)]
    pub previous_version: Option<i64>,
    #[serde(default)]
    pub failed_versions: Vec<i64>,
    #[serde(default)]
    pub pending_token: Option<PendingToken>,
    #[serde(default)]
    pub pending_since: Option<DateTime>,
    #[serde(default)]
    pub pending_epoch: Option<i64>,
    #[serde(default)]
    pub deleted_at: Option<DateTime>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub created_at: DateTime,
    pub created_by: String,
}

impl Staged {
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none() && self.state.as_deref() != Some(super::secrets::MISSING)
    }

    /// The highest version number written so far.
    pub fn top(&self) -> i64 {
        let kept = self.versions.iter().map(|v| v.version).max().unwrap_or(0);
        self.current_version
            .max(self.top_version.unwrap_or(0))
            .max(kept)
    }
}

/// The single-use read token of a pending version: only its SHA-256 is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingToken {
    pub hash: Binary,
    pub version: i64,
    pub expires_at: DateTime,
}

impl PendingToken {
    pub fn new(hash: [u8; 32], version: i64, expires_at: DateTime) -> Self {
        Self {
            hash: binary(hash.to_vec()),
            version,
            expires_at,
        }
    }
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn secrets(db: &Database) -> Collection<Document> {
    db.collection(SECRETS)
}

fn int_or_null(v: Option<i64>) -> Bson {
    v.map_or(Bson::Null, Bson::Int64)
}

/// Matches a document no newer leader has written: its `lease_epoch` is at
/// most `epoch` (or absent).
fn fenced(mut filter: Document, epoch: i64) -> Document {
    filter.insert(
        "$or",
        vec![
            doc! { "lease_epoch": { "$lte": epoch } },
            doc! { "lease_epoch": Bson::Null },
        ],
    );
    filter
}

/// The secret with id `id`, whatever its state.
pub async fn load(db: &Database, id: &str) -> Result<Option<Staged>, StoreError> {
    Ok(db
        .collection::<Staged>(SECRETS)
        .find_one(doc! { "_id": id })
        .await?)
}

/// The secret at `project/path` (exactly the unique index's fields).
pub async fn load_at(
    db: &Database,
    project: &str,
    path: &str,
) -> Result<Option<Staged>, StoreError> {
    Ok(db
        .collection::<Staged>(SECRETS)
        .find_one(doc! { "project": project, "path": path })
        .await?)
}

/// What a rotation stages.
pub struct Stage<'a> {
    pub id: &'a str,
    /// `rev` and `current_version` as read.
    pub rev: Option<i64>,
    pub current: i64,
    pub epoch: i64,
    /// The whole kept history with the pending version last.
    pub versions: &'a [VersionDoc],
    pub pending: i64,
    pub token: Option<PendingToken>,
    /// A stale pending version this one replaces: marked failed.
    pub replaces: Option<i64>,
}

/// Writes the pending version (compare-and-set on `rev`, the current
/// version and the fence). `false` when anything moved.
pub async fn stage(db: &Database, s: Stage<'_>) -> Result<bool, StoreError> {
    let versions =
        mongodb::bson::to_bson(s.versions).map_err(|e| StoreError::Other(e.to_string()))?;
    let mut set = doc! {
        "versions": versions,
        "pending_version": s.pending,
        "top_version": s.pending,
        "pending_since": DateTime::now(),
        "pending_epoch": s.epoch,
        "lease_epoch": s.epoch,
    };
    let mut change = doc! { "$inc": { "rev": 1_i64 } };
    match s.token {
        Some(t) => {
            set.insert(
                "pending_token",
                mongodb::bson::to_bson(&t).map_err(|e| StoreError::Other(e.to_string()))?,
            );
        }
        None => {
            change.insert("$unset", doc! { "pending_token": "" });
        }
    }
    change.insert("$set", set);
    if let Some(old) = s.replaces {
        change.insert("$addToSet", doc! { "failed_versions": old });
    }
    let filter = fenced(
        doc! {
            "_id": s.id,
            "rev": int_or_null(s.rev),
            "current_version": s.current,
            "deleted_at": Bson::Null,
        },
        s.epoch,
    );
    Ok(secrets(db).update_one(filter, change).await?.matched_count == 1)
}

const PENDING_FIELDS: [&str; 4] = [
    "pending_version",
    "pending_token",
    "pending_since",
    "pending_epoch",
];

fn unset_pending() -> Document {
    PENDING_FIELDS
        .iter()
        .map(|f| (f.to_string(), Bson::String(String::new())))
        .collect()
}

/// A pending version that will not be promoted: marked `failed`, no longer pending.
pub async fn discard(
    db: &Database,
    id: &str,
    pending: i64,
    epoch: i64,
) -> Result<bool, StoreError> {
    let r = secrets(db)
        .update_one(
            fenced(doc! { "_id": id, "pending_version": pending }, epoch),
            doc! {
                "$unset": unset_pending(),
                "$addToSet": { "failed_versions": pending },
                "$set": { "lease_epoch": epoch },
            },
        )
        .await?;
    Ok(r.matched_count == 1)
}

/// `pending` becomes current and the old current `previous`, if the secret
/// is still at `base` with that pending version (and the fence holds). The
/// new value's expiry is `expires_at` (none when `None`: a fixed expiry
/// belonged to the value it replaces).
pub async fn promote(
    db: &Database,
    id: &str,
    base: i64,
    pending: i64,
    epoch: i64,
    by: &str,
    expires_at: Option<DateTime>,
) -> Result<bool, StoreError> {
    let mut set = doc! {
        "current_version": pending,
        "previous_version": base,
        "updated_at": DateTime::now(),
        "updated_by": by,
        "lease_epoch": epoch,
    };
    let mut unset = unset_pending();
    match expires_at {
        Some(t) => {
            set.insert("expires_at", t);
        }
        None => {
            unset.insert("expires_at", "");
        }
    }
    let r = secrets(db)
        .update_one(
            fenced(
                doc! {
                    "_id": id,
                    "current_version": base,
                    "pending_version": pending,
                    "deleted_at": Bson::Null,
                },
                epoch,
            ),
            doc! { "$set": set, "$unset": unset, "$inc": { "rev": 1_i64 } },
        )
        .await?;
    Ok(r.matched_count == 1)
}

/// `previous` becomes current again and `failed` is marked failed, if
/// `failed` is still current after `previous` (and the fence holds).
pub async fn rollback(
    db: &Database,
    id: &str,
    failed: i64,
    previous: i64,
    epoch: i64,
    by: &str,
) -> Result<bool, StoreError> {
    let r = secrets(db)
        .update_one(
            fenced(
                doc! { "_id": id, "current_version": failed, "previous_version": previous },
                epoch,
            ),
            doc! {
                "$set": {
                    "current_version": previous,
                    "updated_at": DateTime::now(),
                    "updated_by": by,
                    "lease_epoch": epoch,
                },
                "$unset": { "previous_version": "" },
                "$addToSet": { "failed_versions": failed },
                "$inc": { "rev": 1_i64 },
            },
        )
        .await?;
    Ok(r.matched_count == 1)
}

/// Uses up the read token whose hash is `hash` on secret `id`: the token as
/// it was (the caller checks its version and expiry), or `None` when no such
/// token is there (never issued, or already used).
pub async fn consume_token(
    db: &Database,
    id: &str,
    hash: [u8; 32],
) -> Result<Option<(PendingToken, Option<i64>)>, StoreError> {
    #[derive(Deserialize)]
    struct Before {
        pending_token: Option<PendingToken>,
        pending_version: Option<i64>,
    }
    let found = db
        .collection::<Before>(SECRETS)
        .find_one_and_update(
            doc! { "_id": id, "pending_token.hash": binary(hash.to_vec()) },
            doc! { "$unset": { "pending_token": "" } },
        )
        .projection(doc! { "pending_token": 1, "pending_version": 1 })
        .return_document(ReturnDocument::Before)
        .await?;
    Ok(found.and_then(|b| b.pending_token.map(|t| (t, b.pending_version))))
}

/// Sets (or with `None` removes) the expiry of secret `id`.
pub async fn set_expiry(db: &Database, id: &str, at: Option<DateTime>) -> Result<(), StoreError> {
    let change = match at {
        Some(t) => doc! { "$set": { "expires_at": t } },
        None => doc! { "$unset": { "expires_at": "" } },
    };
    secrets(db).update_one(doc! { "_id": id }, change).await?;
    Ok(())
}

/// How new values are made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GeneratorDoc {
    pub kind: String,
    pub length: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
}

/// One rotation's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time: DateTime,
    /// `success`, `failed` or `rolled_back`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<i64>,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// Why it failed (never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A secret's rotation schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    /// The secret's id.
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<i64>,
    pub generator: GeneratorDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    /// Each promotion sets the secret's `expires_at` this far ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// Indexed: what the scheduler scans.
    pub next_rotation_at: DateTime,
    /// Indexed: when the `secret_expiring` event is due (removed once sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<DateTime>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    pub updated_at: DateTime,
    pub updated_by: String,
}

fn schedules(db: &Database) -> Collection<Schedule> {
    db.collection(SCHEDULES)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let next = IndexModel::builder()
        .keys(doc! { "next_rotation_at": 1 })
        .options(
            IndexOptions::builder()
                .name("next_rotation_at".to_string())
                .build(),
        )
        .build();
    let warn = IndexModel::builder()
        .keys(doc! { "warn_at": 1 })
        .options(IndexOptions::builder().name("warn_at".to_string()).build())
        .build();
    schedules(db).create_index(next).await?;
    schedules(db).create_index(warn).await?;
    Ok(())
}

/// Creates or replaces a schedule (its history is kept by the caller).
pub async fn put(db: &Database, s: &Schedule) -> Result<(), StoreError> {
    schedules(db)
        .replace_one(doc! { "_id": &s.id }, s)
        .upsert(true)
        .await?;
    Ok(())
}

pub async fn get(db: &Database, id: &str) -> Result<Option<Schedule>, StoreError> {
    Ok(schedules(db).find_one(doc! { "_id": id }).await?)
}

/// `true` when there was one.
pub async fn remove(db: &Database, id: &str) -> Result<bool, StoreError> {
    Ok(schedules(db)
        .delete_one(doc! { "_id": id })
        .await?
        .deleted_count
        == 1)
}

/// Schedules whose rotation is due, earliest first (the `next_rotation_at` index alone).
pub async fn due(db: &Database, now: DateTime, limit: i64) -> Result<Vec<Schedule>, StoreError> {
    let cursor = schedules(db)
        .find(doc! { "next_rotation_at": { "$lte": now } })
        .sort(doc! { "next_rotation_at": 1 })
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Schedules whose expiry warning is due (the `warn_at` index alone).
pub async fn warnings_due(
    db: &Database,
    now: DateTime,
    limit: i64,
) -> Result<Vec<Schedule>, StoreError> {
    let cursor = schedules(db)
        .find(doc! { "warn_at": { "$lte": now } })
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Takes the warning `warn_at` of schedule `id`: `true` for the one caller that did.
pub async fn take_warning(db: &Database, id: &str, warn_at: DateTime) -> Result<bool, StoreError> {
    let r = schedules(db)
        .update_one(
            doc! { "_id": id, "warn_at": warn_at },
            doc! { "$unset": { "warn_at": "" } },
        )
        .await?;
    Ok(r.modified_count == 1)
}

/// Records a rotation's outcome (the newest `HISTORY_KEPT` are kept) and the
/// next rotation time; with `expiry`, the new expiry and its warning time
/// (`Some(None)`: no expiry any more).
pub async fn record(
    db: &Database,
    id: &str,
    entry: &HistoryEntry,
    next: DateTime,
    expiry: Option<Option<(DateTime, DateTime)>>,
) -> Result<(), StoreError> {
    let entry = mongodb::bson::to_bson(entry).map_err(|e| StoreError::Other(e.to_string()))?;
    let mut set = doc! { "next_rotation_at": next };
    let mut change = doc! {
        "$push": { "history": { "$each": [entry], "$slice": -HISTORY_KEPT } },
    };
    match expiry {
        Some(Some((at, warn))) => {
            set.insert("expires_at", at);
            set.insert("warn_at", warn);
        }
        Some(None) => {
            change.insert("$unset", doc! { "expires_at": "", "warn_at": "" });
        }
        None => {}
    }
    change.insert("$set", set);
    db.collection::<Document>(SCHEDULES)
        .update_one(doc! { "_id": id }, change)
        .await?;
    Ok(())
}

/// Moves a schedule's next rotation (a skipped or postponed one).
pub async fn postpone(db: &Database, id: &str, next: DateTime) -> Result<(), StoreError> {
    schedules(db)
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "next_rotation_at": next } },
        )
        .await?;
    Ok(())
}

/// The scheduler's lease: who holds it, until when, and the fencing token
/// (`epoch`), incremented on every acquisition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    #[serde(rename = "_id")]
    pub name: String,
    pub holder: String,
    pub expires_at: DateTime,
    pub epoch: i64,
}

fn leases(db: &Database) -> Collection<Lease> {
    db.collection(LEASES)
}

fn later(ms: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + ms)
}

/// Takes the lease `name` for `holder` when nobody holds it or it ran out:
/// the new fencing token, or `None` while another holds it.
pub async fn acquire(
    db: &Database,
    name: &str,
    holder: &str,
    ttl_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let fresh = Lease {
        name: name.to_string(),
        holder: holder.to_string(),
        expires_at: later(ttl_ms),
        epoch: 1,
    };
    match leases(db).insert_one(&fresh).await {
        Ok(_) => return Ok(Some(1)),
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let taken = leases(db)
        .find_one_and_update(
            doc! { "_id": name, "expires_at": { "$lt": DateTime::now() } },
            doc! {
                "$set": { "holder": holder, "expires_at": later(ttl_ms) },
                "$inc": { "epoch": 1_i64 },
            },
        )
        .return_document(ReturnDocument::After)
        .await?;
    Ok(taken.map(|l| l.epoch))
}

/// Extends the lease if `holder` still holds it at `epoch`.
pub async fn renew(
    db: &Database,
    name: &str,
    holder: &str,
    epoch: i64,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let r = leases(db)
        .update_one(
            doc! { "_id": name, "holder": holder, "epoch": epoch },
            doc! { "$set": { "expires_at": later(ttl_ms) } },
        )
        .await?;
    Ok(r.matched_count == 1)
}

/// The lease as stored.
pub async fn lease(db: &Database, name: &str) -> Result<Option<Lease>, StoreError> {
    Ok(leases(db).find_one(doc! { "_id": name }).await?)
}
