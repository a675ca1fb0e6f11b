//! The `secrets` collection: one document per secret with its recent versions.
//! Every write is a single-document update, so it is atomic without
//! transactions; a compare-and-set on `current_version` stops lost updates.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

pub const COLLECTION: &str = "secrets";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub path: String,
    pub versions: Vec<VersionDoc>,
    pub current_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub created_at: DateTime,
    pub created_by: String,
    pub updated_at: DateTime,
    pub updated_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<DateTime>,
    /// Write counter for compare-and-set by background rewrites (rewrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<i64>,
    /// `missing` for a stub: a secret someone asked for that has no value yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For a stub: the services that asked for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_by: Vec<String>,
}

/// The `state` of a stub.
pub const MISSING: &str = "missing";

/// One sealed version. `ciphertext` and `nonce` are BSON binary, never text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionDoc {
    pub version: i64,
    pub ciphertext: Binary,
    pub nonce: Binary,
    pub key_id: String,
    pub created_at: DateTime,
    pub created_by: String,
    /// The associated-data format it was sealed with; absent = the first format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad: Option<i32>,
    /// Leak fingerprint: HMAC-SHA256 under a key derived from the master key
    /// over SHA-256 of the value (see `Vault::fingerprint`); absent on
    /// versions written before fingerprints (rewrap adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<Binary>,
}

impl VersionDoc {
    pub fn new(
        version: i64,
        nonce: &[u8],
        ciphertext: Vec<u8>,
        key_id: &str,
        by: &str,
        aad: i32,
    ) -> Self {
        Self {
            aad: Some(aad),
            fp: None,
            version,
            ciphertext: Binary {
                subtype: BinarySubtype::Generic,
                bytes: ciphertext,
            },
            nonce: Binary {
                subtype: BinarySubtype::Generic,
                bytes: nonce.to_vec(),
            },
            key_id: key_id.to_string(),
            created_at: DateTime::now(),
            created_by: by.to_string(),
        }
    }
}

/// Version metadata without the sealed value.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionMeta {
    pub version: i64,
    pub key_id: String,
    pub created_at: DateTime,
    pub created_by: String,
}

/// A secret without its values (lists), or with only the versions projected.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretView<V> {
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub path: String,
    #[serde(default = "Vec::new")]
    pub versions: Vec<V>,
    pub current_version: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub created_at: DateTime,
    pub created_by: String,
    pub updated_at: DateTime,
    pub updated_by: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub requested_by: Vec<String>,
    #[serde(default)]
    pub deleted_at: Option<DateTime>,
    /// After this, reads answer 410 `secret_expired` (see `vault::rotation`).
    #[serde(default)]
    pub expires_at: Option<DateTime>,
    /// The highest version number ever written: a rotation's `pending`
    /// version may be above `current_version` (see `store::rotation`).
    #[serde(default)]
    pub top_version: Option<i64>,
}

impl<V> SecretView<V> {
    /// Not soft-deleted and not a stub.
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none() && self.state.as_deref() != Some(MISSING)
    }
}

/// How a secret is addressed.
#[derive(Debug, Clone, Copy)]
pub enum Locator<'a> {
    Id(&'a str),
    Path { project: &'a str, path: &'a str },
}

impl Locator<'_> {
    fn filter(&self) -> Document {
        match self {
            Locator::Id(id) => doc! { "_id": *id },
            Locator::Path { project, path } => doc! { "project": *project, "path": *path },
        }
    }
}

pub(crate) fn collection<T: Send + Sync>(db: &Database) -> Collection<T> {
    db.collection(COLLECTION)
}

/// The id of the one document at `project/path` (the unique index allows one).
///
/// Point lookups by path filter on exactly `{project, path}` and check the
/// rest in Rust, and writes go by `_id` once it is known: with any further
/// predicate in the filter, the test database (SecantusDB) answers by a
/// collection scan instead of the `(project, path)` index, which made a read
/// cost grow with the project's size (see docs/BENCHMARKS.md).
async fn id_at(db: &Database, project: &str, path: &str) -> Result<Option<String>, StoreError> {
    Ok(path_state(db, project, path).await?.map(|s| s.id))
}

/// Adds "live": not soft-deleted and not a stub.
fn live(mut filter: Document) -> Document {
    filter.insert("deleted_at", mongodb::bson::Bson::Null);
    filter.insert("state", doc! { "$ne": MISSING });
    filter
}

pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let unique_path = IndexModel::builder()
        .keys(doc! { "project": 1, "path": 1 })
        .options(
            IndexOptions::builder()
                .name("project_path_unique".to_string())
                .unique(true)
                .build(),
        )
        .build();
    // Soft-deleted secrets are purged by MongoDB once `purge_at` passes.
    let purge = IndexModel::builder()
        .keys(doc! { "purge_at": 1 })
        .options(
            IndexOptions::builder()
                .name("purge_at_ttl".to_string())
                .expire_after(std::time::Duration::from_secs(0))
                .build(),
        )
        .build();
    let coll = collection::<SecretDoc>(db);
    coll.create_index(unique_path).await?;
    coll.create_index(purge).await?;
    Ok(())
}

/// Removes a secret outright. Used only to undo a create whose audit record
/// could not be written.
pub async fn remove(db: &Database, id: &str) -> Result<(), StoreError> {
    collection::<SecretDoc>(db)
        .delete_one(doc! { "_id": id })
        .await?;
    Ok(())
}

/// Records that a service asked for a secret that does not exist: inserts the
/// stub, or adds the service to an existing stub. `Ok(true)` when this call
/// created it; `Ok(false)` when a stub (or a deleted secret) already holds the
/// path. The unique `(project, path)` index makes concurrent misses create one.
pub async fn create_stub(db: &Database, stub: &SecretDoc) -> Result<bool, StoreError> {
    match collection::<SecretDoc>(db).insert_one(stub).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => {
            let Some(id) = id_at(db, &stub.project, &stub.path).await? else {
                return Ok(false);
            };
            collection::<Document>(db)
                .update_one(
                    doc! { "_id": id, "state": MISSING },
                    doc! { "$addToSet": { "requested_by": { "$each": &stub.requested_by } } },
                )
                .await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The id of the stub at `project/path`, if one is there.
pub async fn find_stub(
    db: &Database,
    project: &str,
    path: &str,
) -> Result<Option<String>, StoreError> {
    Ok(path_state(db, project, path)
        .await?
        .filter(|s| s.state.as_deref() == Some(MISSING) && s.deleted_at.is_none())
        .map(|s| s.id))
}

/// Turns the stub `id` into a secret whose version 1 is `first`, if it is
/// still a stub (another writer may have filled it first).
pub async fn fill_stub(db: &Database, id: &str, filled: &SecretDoc) -> Result<bool, StoreError> {
    let versions =
        mongodb::bson::to_bson(&filled.versions).map_err(|e| StoreError::Other(e.to_string()))?;
    let mut set = doc! {
        "versions": versions,
        "current_version": filled.current_version,
        "tags": &filled.tags,
        "created_at": filled.created_at,
        "created_by": &filled.created_by,
        "updated_at": filled.updated_at,
        "updated_by": &filled.updated_by,
    };
    if let Some(d) = &filled.description {
        set.insert("description", d);
    }
    if let Some(k) = &filled.kind {
        set.insert("type", k);
    }
    let r = collection::<Document>(db)
        .update_one(
            doc! { "_id": id, "state": MISSING, "deleted_at": null },
            doc! { "$set": set, "$unset": { "state": "", "requested_by": "" } },
        )
        .await?;
    Ok(r.modified_count == 1)
}

/// Marks a document whose create could be neither audited nor undone.
pub async fn mark_unaudited(db: &Database, id: &str) -> Result<(), StoreError> {
    collection::<Document>(db)
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "unaudited": true, "unaudited_at": DateTime::now() } },
        )
        .await?;
    Ok(())
}

/// A live secret with one version: the newest (`None`, projected alone) or a
/// given one. `versions` is empty when that version is no longer kept.
///
/// The newest version is read through `reads` (coalesced with concurrent
/// reads into one query, see `read_batch`).
pub async fn find_live(
    db: &Database,
    reads: &super::read_batch::ReadBatch,
    at: Locator<'_>,
    version: Option<i64>,
) -> Result<Option<SecretView<VersionDoc>>, StoreError> {
    // Exactly the key's fields (see `id_at`); liveness is checked here.
    let filter = at.filter();
    let coll = collection::<SecretView<VersionDoc>>(db);
    let found = match version {
        None => {
            let newest = reads.newest(at).await?;
            match newest {
                // The newest kept version is not always the current one: a
                // rotation's `pending` (or a rolled-back, `failed`) version
                // sits above it. Then read them all and keep the current one.
                Some(found)
                    if found
                        .versions
                        .last()
                        .is_some_and(|v| v.version != found.current_version) =>
                {
                    let newest = found;
                    coll.find_one(filter).await?.map(|mut all| {
                        let current = all.current_version;
                        all.versions.retain(|x| x.version == current);
                        if all.versions.is_empty() {
                            // The current version is gone: hand back the newest,
                            // which the read refuses as an integrity error.
                            newest
                        } else {
                            all
                        }
                    })
                }
                other => other,
            }
        }
        // At most MAX_VERSIONS are kept, so reading them all and picking one is cheap.
        Some(v) => coll.find_one(filter).await?.map(|mut found| {
            found.versions.retain(|x| x.version == v);
            found
        }),
    };
    Ok(found.filter(SecretView::is_live))
}

/// Whether a soft-deleted secret holds this path.
pub async fn is_deleted(db: &Database, project: &str, path: &str) -> Result<bool, StoreError> {
    Ok(path_state(db, project, path)
        .await?
        .is_some_and(|s| s.deleted_at.is_some()))
}

/// Appends `version` if the secret is live and still at `expected` and at
/// `top` (its highest version, see `SecretView::top_version`; compare-and-set),
/// keeping the newest `max_versions`, and `$set`s / `$unset`s the metadata fields
/// given; the old current version becomes `previous`. `false` when the secret
/// moved on or is gone.
#[allow(clippy::too_many_arguments)]
pub async fn append_version(
    db: &Database,
    id: &str,
    expected: i64,
    top: Option<i64>,
    version: &VersionDoc,
    max_versions: usize,
    mut set: Document,
    unset: Document,
) -> Result<bool, StoreError> {
    let encoded = mongodb::bson::to_bson(version).map_err(|e| StoreError::Other(e.to_string()))?;
    let keep = -i64::try_from(max_versions).unwrap_or(i64::MAX);
    set.insert("current_version", version.version);
    set.insert("top_version", version.version);
    if expected > 0 {
        set.insert("previous_version", expected);
    }
    set.insert("updated_at", version.created_at);
    set.insert("updated_by", &version.created_by);
    let mut change = doc! {
        "$push": { "versions": { "$each": [encoded], "$slice": keep } },
        "$set": set,
        "$inc": { "rev": 1_i64 },
    };
    if !unset.is_empty() {
        change.insert("$unset", unset);
    }
    let result = collection::<Document>(db)
        .update_one(
            doc! {
                "_id": id,
                "current_version": expected,
                "top_version": top.map_or(mongodb::bson::Bson::Null, mongodb::bson::Bson::Int64),
                "deleted_at": null,
            },
            change,
        )
        .await?;
    Ok(result.matched_count == 1)
}

/// Soft delete: hidden from reads and lists, purged by the TTL index at `purge_at`.
pub async fn soft_delete(
    db: &Database,
    project: &str,
    path: &str,
    purge_at: DateTime,
) -> Result<Option<String>, StoreError> {
    let Some(id) = id_at(db, project, path).await? else {
        return Ok(None);
    };
    let found = collection::<Document>(db)
        .find_one_and_update(
            live(doc! { "_id": id }),
            doc! { "$set": { "deleted_at": DateTime::now(), "purge_at": purge_at } },
        )
        .projection(doc! { "_id": 1 })
        .await?;
    Ok(found.and_then(|d| d.get_str("_id").ok().map(str::to_string)))
}

/// Undoes a soft delete that has not been purged yet.
pub async fn restore(
    db: &Database,
    project: &str,
    path: &str,
) -> Result<Option<String>, StoreError> {
    let Some(id) = id_at(db, project, path).await? else {
        return Ok(None);
    };
    let found = collection::<Document>(db)
        .find_one_and_update(
            doc! {
                "_id": id,
                "deleted_at": { "$ne": null },
                "purge_at": { "$gt": DateTime::now() },
            },
            doc! { "$unset": { "deleted_at": "", "purge_at": "" } },
        )
        .projection(doc! { "_id": 1 })
        .await?;
    Ok(found.and_then(|d| d.get_str("_id").ok().map(str::to_string)))
}

/// What a watcher sees of a path: no values, only the current version and
/// whether the secret is live, a stub, or deleted.
#[derive(Debug, Clone, Deserialize)]
pub struct PathState {
    #[serde(rename = "_id")]
    pub id: String,
    pub current_version: i64,
    pub updated_at: DateTime,
    pub updated_by: String,
    #[serde(default)]
    pub deleted_at: Option<DateTime>,
    #[serde(default)]
    pub state: Option<String>,
}

/// The document at `project/path` (live, a stub, or deleted awaiting purge),
/// without values; `None` when there is none. Every point lookup by path
/// that needs no versions goes through here (see `id_at`).
pub async fn path_state(
    db: &Database,
    project: &str,
    path: &str,
) -> Result<Option<PathState>, StoreError> {
    Ok(collection::<PathState>(db)
        .find_one(doc! { "project": project, "path": path })
        .projection(doc! {
            "current_version": 1, "updated_at": 1, "updated_by": 1,
            "deleted_at": 1, "state": 1,
        })
        .await?)
}

/// Version metadata of a live secret, newest first.
pub async fn versions(
    db: &Database,
    project: &str,
    path: &str,
) -> Result<Option<SecretView<VersionMeta>>, StoreError> {
    let found = collection::<SecretView<VersionMeta>>(db)
        .find_one(doc! { "project": project, "path": path })
        .projection(doc! {
            "versions.ciphertext": 0, "versions.nonce": 0,
        })
        .await?;
    Ok(found.filter(SecretView::is_live).map(|mut s| {
        s.versions.reverse();
        s
    }))
}

/// Secret documents in `(project, path)` order after `after`, without values:
/// live ones, stubs and deleted ones alike (the caller keeps what it lists,
/// see `SecretView::is_live`), so a short page means the end.
///
/// The filter holds only the index's fields, and a prefix is a range, not a
/// regular expression: the test database (SecantusDB) reads every document
/// that matches the filter before it sorts and limits, so a tight range is
/// what keeps a page cheap in a large project.
///
/// `contains` (a substring search) is an unanchored regular expression on
/// `path`, an index field too: the database then reads only the matching
/// documents, so a search that matches few secrets in a large project still
/// answers in one page instead of many short ones.
pub async fn list_page(
    db: &Database,
    project: Option<&str>,
    prefix: Option<&str>,
    contains: Option<&str>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<SecretView<VersionMeta>>, StoreError> {
    let prefix = prefix.filter(|p| !p.is_empty());
    let mut filter = Document::new();
    let mut path = Document::new();
    if let Some(prefix) = prefix {
        // Every path that starts with `prefix` sorts in [prefix, prefix + U+10FFFF).
        path.insert("$gte", prefix);
        path.insert("$lt", format!("{prefix}\u{10FFFF}"));
    }
    if let Some(contains) = contains.filter(|c| !c.is_empty()) {
        path.insert("$regex", regex::escape(contains));
    }
    match (project, after) {
        (Some(p), Some((after_p, after_path))) if p == after_p => {
            filter.insert("project", p);
            path.insert("$gt", after_path);
        }
        (Some(p), _) => {
            filter.insert("project", p);
        }
        (None, Some((after_p, after_path))) => {
            let mut same = path.clone();
            same.insert("$gt", after_path);
            let mut later = doc! { "project": { "$gt": after_p } };
            if !path.is_empty() {
                later.insert("path", path.clone());
            }
            filter.insert(
                "$or",
                vec![later, doc! { "project": after_p, "path": same }],
            );
            path = Document::new();
        }
        (None, None) => {}
    }
    if !path.is_empty() {
        filter.insert("path", path);
    }
    let cursor = collection::<SecretView<VersionMeta>>(db)
        .find(filter)
        .sort(doc! { "project": 1, "path": 1 })
        .limit(limit)
        .projection(doc! { "versions": 0 })
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Whether any stored version (live or deleted) is sealed under `key_id`.
pub async fn any_sealed_with(db: &Database, key_id: &str) -> Result<bool, StoreError> {
    let n = collection::<Document>(db)
        .count_documents(doc! { "versions.key_id": key_id })
        .limit(1)
        .await?;
    Ok(n > 0)
}

/// Versions per key id over every secret, live or deleted.
pub async fn versions_per_key(
    db: &Database,
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    let mut counts = std::collections::HashMap::new();
    let mut cursor = collection::<Document>(db)
        .find(doc! {})
        .projection(doc! { "versions.key_id": 1 })
        .await?;
    while let Some(d) = cursor.try_next().await? {
        for v in d.get_array("versions").map(|a| a.as_slice()).unwrap_or(&[]) {
            if let Some(k) = v.as_document().and_then(|v| v.get_str("key_id").ok()) {
                *counts.entry(k.to_string()).or_insert(0) += 1;
            }
        }
    }
    Ok(counts)
}

/// A page of whole documents in `_id` order, deleted ones included (rewrap).
pub async fn scan(
    db: &Database,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<SecretDoc>, StoreError> {
    let filter = match after {
        Some(id) => doc! { "_id": { "$gt": id } },
        None => doc! {},
    };
    let cursor = collection::<SecretDoc>(db)
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// A secret one of whose kept versions carries one of `fps`.
#[derive(Debug, Clone, Deserialize)]
pub struct FingerprintHit {
    pub project: String,
    pub path: String,
    pub current_version: i64,
    #[serde(default)]
    pub deleted_at: Option<DateTime>,
    pub versions: Vec<FingerprintVersion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FingerprintVersion {
    pub version: i64,
    #[serde(default)]
    pub fp: Option<Binary>,
}

/// Secrets with a kept version whose fingerprint is one of `fps` (at most `limit`).
pub async fn find_fingerprints(
    db: &Database,
    fps: &[Vec<u8>],
    limit: i64,
) -> Result<Vec<FingerprintHit>, StoreError> {
    let any: Vec<Binary> = fps
        .iter()
        .map(|f| Binary {
            subtype: BinarySubtype::Generic,
            bytes: f.clone(),
        })
        .collect();
    let cursor = collection::<FingerprintHit>(db)
        .find(doc! { "versions.fp": { "$in": any } })
        .projection(doc! {
            "project": 1, "path": 1, "current_version": 1, "deleted_at": 1,
            "versions.version": 1, "versions.fp": 1,
        })
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Replaces a document's versions if nothing else wrote to it since it was
/// read (`rev` and `current_version` unchanged).
pub async fn replace_versions(
    db: &Database,
    id: &str,
    rev: Option<i64>,
    current_version: i64,
    versions: &[VersionDoc],
) -> Result<bool, StoreError> {
    let encoded = mongodb::bson::to_bson(versions).map_err(|e| StoreError::Other(e.to_string()))?;
    let rev_filter = match rev {
        Some(r) => mongodb::bson::Bson::Int64(r),
        None => mongodb::bson::Bson::Null,
    };
    let r = collection::<Document>(db)
        .update_one(
            doc! { "_id": id, "rev": rev_filter, "current_version": current_version },
            doc! { "$set": { "versions": encoded }, "$inc": { "rev": 1_i64 } },
        )
        .await?;
    Ok(r.modified_count == 1)
}
