//! The `audit_logs` collection: one record per access, never a value or token.

use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::StoreError;

pub const COLLECTION: &str = "audit_logs";
pub const TTL_INDEX: &str = "ts_ttl";
/// Serves the per-secret access log (`project` + `path`, newest first) and its totals.
pub const SECRET_INDEX: &str = "project_path_ts";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// Set only on a record written as `pending` before a change, so the
    /// change's outcome can settle that same record.
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub ts: DateTime,
    pub action: String,
    pub outcome: String,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// What an operation on something other than a secret acted on
    /// (`service_token:<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// On aggregated refused authentications: how many refused requests this record stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// On an `alert` record: which rule fired, about whom, over what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertDetail>,
}

/// What an `alert` audit record says besides its action (see `vault::alerts`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AlertDetail {
    /// `auth_failures`, `denials`, `new_address` or `read_rate`.
    pub rule: String,
    /// `service` (a claimed or authenticated service name) or `address`.
    pub subject_kind: String,
    pub subject: String,
    /// `new_address`: the address the service read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What was counted in the window.
    pub count: i64,
    /// The alert fired because `count` exceeded this.
    pub threshold: i64,
    pub window_start: DateTime,
    pub window_end: DateTime,
}

fn collection(db: &Database) -> Collection<AuditRecord> {
    db.collection(COLLECTION)
}

pub async fn insert(db: &Database, record: &AuditRecord) -> Result<(), StoreError> {
    collection(db).insert_one(record).await?;
    Ok(())
}

/// Settles a `pending` record with the operation's outcome and what it touched.
pub async fn settle(db: &Database, record: &AuditRecord) -> Result<(), StoreError> {
    let Some(id) = &record.id else {
        return Err(StoreError::Other("a pending audit record has no id".into()));
    };
    let mut set = doc! { "outcome": &record.outcome, "settled_at": DateTime::now() };
    for (field, value) in [
        ("error_code", &record.error_code),
        ("secret_id", &record.secret_id),
        ("project", &record.project),
        ("path", &record.path),
        ("target", &record.target),
    ] {
        if let Some(v) = value {
            set.insert(field, v);
        }
    }
    if let Some(v) = record.version {
        set.insert("version", v);
    }
    let r = collection(db)
        .update_one(
            doc! { "_id": id, "outcome": "pending" },
            doc! { "$set": set },
        )
        .await?;
    if r.matched_count == 1 {
        Ok(())
    } else {
        Err(StoreError::Other("the pending audit record is gone".into()))
    }
}

/// Keeps the `ts` index in line with `AUDIT_TTL_DAYS`: a TTL index when > 0,
/// a plain index when 0. A changed setting updates the index in place
/// (`collMod`), or rebuilds it; records are never dropped by the change.
pub async fn ensure_indexes(db: &Database, ttl_days: u32) -> Result<(), StoreError> {
    let coll = collection(db);
    let per_secret = IndexModel::builder()
        .keys(doc! { "project": 1, "path": 1, "ts": -1 })
        .options(
            IndexOptions::builder()
                .name(SECRET_INDEX.to_string())
                .build(),
        )
        .build();
    coll.create_index(per_secret).await?;
    let wanted: Option<i64> = (ttl_days > 0).then(|| i64::from(ttl_days) * 86_400);
    let existing = current_ttl(db).await?;
    match existing {
        Some(current) if current == wanted => return Ok(()),
        Some(Some(_)) if wanted.is_some() => {
            let modified = db
                .run_command(doc! {
                    "collMod": COLLECTION,
                    "index": { "name": TTL_INDEX, "expireAfterSeconds": wanted },
                })
                .await;
            if modified.is_ok() {
                return Ok(());
            }
            drop_index_tolerant(&coll).await?;
        }
        Some(_) => drop_index_tolerant(&coll).await?,
        None => {}
    }
    let mut options = IndexOptions::builder().name(TTL_INDEX.to_string()).build();
    if let Some(secs) = wanted {
        options.expire_after = Some(std::time::Duration::from_secs(secs.unsigned_abs()));
    }
    let model = IndexModel::builder()
        .keys(doc! { "ts": 1 })
        .options(options)
        .build();
    if let Err(e) = coll.create_index(model).await {
        // Another replica may have created it with the same settings meanwhile.
        if current_ttl(db).await? != Some(wanted) {
            return Err(e.into());
        }
    }
    Ok(())
}

async fn drop_index_tolerant(coll: &Collection<AuditRecord>) -> Result<(), StoreError> {
    match coll.drop_index(TTL_INDEX).await {
        Ok(()) => Ok(()),
        // Already dropped by another replica starting at the same time.
        Err(e)
            if e.to_string().contains("not found") || e.to_string().contains("IndexNotFound") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `None` when there is no `ts` index; `Some(None)` for a plain one;
/// `Some(Some(secs))` for a TTL index.
pub async fn current_ttl(db: &Database) -> Result<Option<Option<i64>>, StoreError> {
    let reply = db.run_command(doc! { "listIndexes": COLLECTION }).await;
    let reply = match reply {
        Ok(r) => r,
        // The collection does not exist yet.
        Err(e)
            if e.to_string().contains("NamespaceNotFound")
                || e.to_string().contains("ns does not exist") =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let batch = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .map_err(|e| StoreError::Other(format!("unexpected listIndexes reply: {e}")))?;
    for index in batch.iter().filter_map(|b| b.as_document()) {
        if index.get_str("name").ok() == Some(TTL_INDEX) {
            return Ok(Some(expire_after(index)));
        }
    }
    Ok(None)
}

fn expire_after(index: &Document) -> Option<i64> {
    index.get("expireAfterSeconds").and_then(|v| match v {
        mongodb::bson::Bson::Int32(i) => Some(i64::from(*i)),
        mongodb::bson::Bson::Int64(i) => Some(*i),
        mongodb::bson::Bson::Double(d) => Some(*d as i64),
        _ => None,
    })
}

/// Filters for reading the audit trail.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub project: Option<String>,
    pub path: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime>,
    /// Only records before this time.
    pub until: Option<DateTime>,
    pub outcome: Option<OutcomeFilter>,
    pub limit: i64,
}

/// One outcome, or every failed one (any outcome but `success` and `pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeFilter {
    Is(String),
    Failed,
}

fn filter_document(f: &AuditFilter) -> Document {
    let mut filter = Document::new();
    if let Some(p) = &f.project {
        filter.insert("project", p);
    }
    if let Some(p) = &f.path {
        filter.insert("path", p);
    }
    if let Some(a) = &f.actor {
        filter.insert("actor", a);
    }
    if let Some(a) = &f.action {
        filter.insert("action", a);
    }
    let mut ts = Document::new();
    if let Some(since) = f.since {
        ts.insert("$gte", since);
    }
    if let Some(until) = f.until {
        ts.insert("$lt", until);
    }
    if !ts.is_empty() {
        filter.insert("ts", ts);
    }
    match &f.outcome {
        Some(OutcomeFilter::Is(o)) => {
            filter.insert("outcome", o);
        }
        Some(OutcomeFilter::Failed) => {
            filter.insert("outcome", doc! { "$nin": ["success", "pending"] });
        }
        None => {}
    }
    filter
}

/// Newest first.
pub async fn query(db: &Database, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
    use futures_util::TryStreamExt as _;
    let filter = filter_document(f);
    let cursor = collection(db)
        .find(filter)
        .sort(doc! { "ts": -1 })
        .limit(f.limit)
        .projection(doc! { "_id": 0 })
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Accesses recorded by the records matching `f` (all of them, not only one
/// page): successful ones, and failed ones (every outcome but `success` and
/// `pending`; an aggregated refusal counts as the requests it stands for).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditTotals {
    pub success: u64,
    pub failed: u64,
}

pub async fn totals(db: &Database, f: &AuditFilter) -> Result<AuditTotals, StoreError> {
    use futures_util::TryStreamExt as _;
    let pipeline = [
        doc! { "$match": filter_document(f) },
        doc! { "$group": {
            "_id": "$outcome",
            "n": { "$sum": { "$ifNull": ["$count", 1] } },
        } },
    ];
    let groups: Vec<Document> = collection(db)
        .aggregate(pipeline)
        .await?
        .try_collect()
        .await?;
    let mut totals = AuditTotals::default();
    for group in groups {
        let n = match group.get("n") {
            Some(mongodb::bson::Bson::Int32(i)) => u64::try_from(*i).unwrap_or(0),
            Some(mongodb::bson::Bson::Int64(i)) => u64::try_from(*i).unwrap_or(0),
            Some(mongodb::bson::Bson::Double(d)) => *d as u64,
            _ => 0,
        };
        match group.get_str("_id") {
            Ok("success") => totals.success += n,
            Ok("pending") => {}
            _ => totals.failed += n,
        }
    }
    Ok(totals)
}

/// Successful and failed accesses of one group (a secret, or an actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// `(project, path)` or `(actor, "")`.
    pub key: (String, String),
    pub totals: AuditTotals,
}

/// Groups (after `$group`) read at most; beyond, the summary says it is cut.
pub const MAX_SUMMARY_GROUPS: i64 = 20_000;

fn count_of(group: &Document) -> u64 {
    match group.get("n") {
        Some(mongodb::bson::Bson::Int32(i)) => u64::try_from(*i).unwrap_or(0),
        Some(mongodb::bson::Bson::Int64(i)) => u64::try_from(*i).unwrap_or(0),
        Some(mongodb::bson::Bson::Double(d)) => *d as u64,
        _ => 0,
    }
}

/// Accesses per secret and per actor among the records matching `f`, by an
/// aggregation (`$match` on the `(project, path, ts)` index's fields, then
/// `$group` by key and outcome). `true` when there were more groups than
/// `MAX_SUMMARY_GROUPS` (the rows are then partial).
pub async fn summary(
    db: &Database,
    f: &AuditFilter,
) -> Result<(Vec<SummaryRow>, Vec<SummaryRow>, bool), StoreError> {
    use futures_util::TryStreamExt as _;
    let mut truncated = false;
    let group_by = |id: Document| {
        [
            doc! { "$match": filter_document(f) },
            doc! { "$group": { "_id": id, "n": { "$sum": { "$ifNull": ["$count", 1] } } } },
            doc! { "$limit": MAX_SUMMARY_GROUPS + 1 },
        ]
    };
    let per_secret_pipeline =
        group_by(doc! { "project": "$project", "path": "$path", "outcome": "$outcome" });
    let per_actor_pipeline = group_by(doc! { "actor": "$actor", "outcome": "$outcome" });
    let mut fold = |groups: Vec<Document>, fields: (&str, &str)| {
        if groups.len() as i64 > MAX_SUMMARY_GROUPS {
            truncated = true;
        }
        let mut rows: std::collections::BTreeMap<(String, String), AuditTotals> =
            std::collections::BTreeMap::new();
        for g in groups.iter().take(MAX_SUMMARY_GROUPS as usize) {
            let Ok(id) = g.get_document("_id") else {
                continue;
            };
            let text = |k: &str| id.get_str(k).unwrap_or("").to_string();
            let key = (
                text(fields.0),
                if fields.1.is_empty() {
                    String::new()
                } else {
                    text(fields.1)
                },
            );
            if key.0.is_empty() {
                // Not about a secret (or no actor): no row.
                continue;
            }
            let totals = rows.entry(key).or_default();
            match id.get_str("outcome") {
                Ok("success") => totals.success += count_of(g),
                Ok("pending") => {}
                _ => totals.failed += count_of(g),
            }
        }
        rows.into_iter()
            .map(|(key, totals)| SummaryRow { key, totals })
            .collect::<Vec<_>>()
    };
    let per_secret: Vec<Document> = collection(db)
        .aggregate(per_secret_pipeline)
        .await?
        .try_collect()
        .await?;
    let per_secret = fold(per_secret, ("project", "path"));
    let per_actor: Vec<Document> = collection(db)
        .aggregate(per_actor_pipeline)
        .await?
        .try_collect()
        .await?;
    let per_actor = fold(per_actor, ("actor", ""));
    Ok((per_secret, per_actor, truncated))
}
