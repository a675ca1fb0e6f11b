//! Project/path-addressed secrets with version history (Vault KV v2 style).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;
use zeroize::Zeroizing;

use super::names::{ProjectName, SecretKey};
use super::{utc, Op, RecordRef, RequestMeta, Scope, Undo, Value, Vault};
use crate::auth::{secret_resource, Action};
use crate::crypto::NONCE_LEN;
use crate::error::{ApiError, ErrorCode};
use crate::store::group_commit::BatchError;
use crate::store::secrets::{self, Locator, SecretDoc, SecretView, VersionDoc, VersionMeta};

/// A new named secret as a caller describes it.
pub struct NewSecret<'a> {
    pub key: SecretKey,
    pub value: Value<'a>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kind: Option<String>,
}

/// One version of a secret with its value.
pub struct SecretRecord {
    pub id: String,
    pub project: String,
    pub path: String,
    pub value: Zeroizing<Vec<u8>>,
    pub version: i64,
    pub current_version: i64,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kind: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// When this version was written, and by whom.
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A secret without its value.
pub struct SecretSummary {
    pub id: String,
    pub project: String,
    pub path: String,
    pub current_version: i64,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kind: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// `missing` for a stub.
    pub state: Option<String>,
    /// For a stub: the services that asked for it.
    pub requested_by: Vec<String>,
}

/// One kept version's metadata.
pub struct VersionInfo {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A secret's kept versions, newest first.
pub struct VersionHistory {
    pub id: String,
    pub project: String,
    pub path: String,
    pub current_version: i64,
    pub versions: Vec<VersionInfo>,
}

/// What to list: everything the caller may `list`, narrowed by project and prefix.
pub struct ListQuery<'a> {
    /// Stubs only (`?state=missing`): secrets asked for that have no value yet.
    pub missing: bool,
    pub project: Option<ProjectName>,
    pub prefix: Option<&'a str>,
    /// Only paths containing this text (a substring search).
    pub contains: Option<&'a str>,
    pub limit: i64,
    pub cursor: Option<&'a str>,
}

/// A page of secrets without values.
pub struct Page {
    pub items: Vec<SecretSummary>,
    pub next_cursor: Option<String>,
}

const MAX_TAGS: usize = 32;
const MAX_DESCRIPTION: usize = 1024;
const CAS_ATTEMPTS: u64 = 40;
pub const MAX_LIST_LIMIT: i64 = 500;
pub const DEFAULT_LIST_LIMIT: i64 = 50;
/// As long as a path may be.
pub const MAX_PREFIX_LEN: usize = 512;
const MAX_CURSOR_LEN: usize = 2048;

/// A version to append: its value, the version it must follow (if any), and
/// the metadata it changes.
struct Append<'a> {
    plaintext: &'a Zeroizing<Vec<u8>>,
    expected_version: Option<i64>,
    metadata: &'a MetadataChange,
}

/// Metadata a new version changes along with the value: each field given
/// replaces the old one (an empty description or type removes it).
#[derive(Debug, Clone, Default)]
pub struct MetadataChange {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub kind: Option<String>,
}

impl MetadataChange {
    fn check(&self) -> Result<(), ApiError> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        check_metadata(
            &non_empty(&self.description),
            self.tags.as_deref().unwrap_or_default(),
            &non_empty(&self.kind),
        )
    }

    /// The fields to `$set` and to `$unset` on the secret's document.
    fn update(&self) -> (mongodb::bson::Document, mongodb::bson::Document) {
        let mut set = mongodb::bson::Document::new();
        let mut unset = mongodb::bson::Document::new();
        for (field, value) in [("description", &self.description), ("type", &self.kind)] {
            match value.as_deref() {
                Some("") => {
                    unset.insert(field, "");
                }
                Some(v) => {
                    set.insert(field, v);
                }
                None => {}
            }
        }
        if let Some(tags) = &self.tags {
            set.insert("tags", tags.clone());
        }
        (set, unset)
    }

    /// The metadata after the change.
    fn apply(
        &self,
        description: Option<String>,
        tags: Vec<String>,
        kind: Option<String>,
    ) -> (Option<String>, Vec<String>, Option<String>) {
        let pick = |new: &Option<String>, old: Option<String>| match new.as_deref() {
            Some("") => None,
            Some(v) => Some(v.to_string()),
            None => old,
        };
        (
            pick(&self.description, description),
            self.tags.clone().unwrap_or(tags),
            pick(&self.kind, kind),
        )
    }
}

fn check_metadata(
    description: &Option<String>,
    tags: &[String],
    kind: &Option<String>,
) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidMetadata, m.to_string());
    if description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(bad("`description` must be at most 1024 characters"));
    }
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(bad("`tags` must be at most 32 tags of 1-64 characters"));
    }
    if kind.as_ref().is_some_and(|k| k.is_empty() || k.len() > 64) {
        return Err(bad("`type` must be 1-64 characters"));
    }
    Ok(())
}

/// A list's `state` filter: none (live secrets) or `missing` (stubs).
pub fn missing_only(state: Option<&str>) -> Result<bool, ApiError> {
    match state {
        None | Some("") => Ok(false),
        Some("missing") => Ok(true),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "`state` must be `missing` (or absent)",
        )),
    }
}

/// A new secret's id: a time-ordered UUID (version 7: a millisecond
/// timestamp and 74 random bits). New documents then go to the end of the
/// `_id` index instead of a random place in it: on the test server a random
/// `_id` made each insert into 100,000 secrets cost the database half again
/// as much CPU as into 1,000, a time-ordered one a fifth (docs/BENCHMARKS.md).
/// Knowing an id grants nothing: every read is authorised.
pub(super) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::SecretNotFound,
        "no secret at that project and path",
    )
}

impl SecretSummary {
    fn from_view<V>(s: SecretView<V>) -> Self {
        Self {
            id: s.id,
            project: s.project,
            path: s.path,
            current_version: s.current_version,
            description: s.description,
            tags: s.tags,
            kind: s.kind,
            updated_at: utc(s.updated_at),
            updated_by: s.updated_by,
            state: s.state,
            requested_by: s.requested_by,
        }
    }
}

fn record_of(doc: SecretDoc, value: Zeroizing<Vec<u8>>) -> SecretRecord {
    let (version, updated_at, updated_by) = doc
        .versions
        .last()
        .map(|v| (v.version, v.created_at, v.created_by.clone()))
        .unwrap_or((doc.current_version, doc.updated_at, doc.updated_by.clone()));
    SecretRecord {
        id: doc.id,
        project: doc.project,
        path: doc.path,
        value,
        version,
        current_version: doc.current_version,
        description: doc.description,
        tags: doc.tags,
        kind: doc.kind,
        created_at: utc(doc.created_at),
        created_by: doc.created_by,
        updated_at: utc(updated_at),
        updated_by,
    }
}

impl Vault {
    /// `action` on the secret at `key`, or a 403 naming it.
    pub(super) fn require_on(
        &self,
        meta: &RequestMeta,
        action: Action,
        key: &SecretKey,
    ) -> Result<(), ApiError> {
        let resource = secret_resource(key.project(), key.path());
        let shown = format!("{}:{}", key.project(), key.path());
        self.require(meta, action, &resource, &shown)
    }

    /// Stores a new document. The wrapper removes it again if its audit record
    /// cannot be written.
    pub(super) async fn insert_new(
        &self,
        scope: &mut Scope,
        doc: &SecretDoc,
    ) -> Result<(), ApiError> {
        scope.secret_id(&doc.id);
        scope.version(Some(1));
        // The event's number is taken while the document is inserted, so the
        // audit record and the event can go in one command afterwards.
        let (inserted, reserved) = tokio::join!(
            self.secret_inserts.insert(doc.clone()),
            self.event_numbers.reserve()
        );
        if let Ok(reserved) = reserved {
            scope.event_numbers.push(reserved);
        }
        match inserted {
            Ok(()) => {
                scope.undo(Undo::RemoveSecret(doc.id.clone()));
                scope.event("secret_created");
                Ok(())
            }
            Err(BatchError::Duplicate) => {
                if secrets::is_deleted(self.db(), &doc.project, &doc.path).await? {
                    Err(ApiError::new(
                        ErrorCode::SecretDeleted,
                        "a deleted secret holds this path; restore it (POST .../restore) or wait until it is purged",
                    ))
                } else {
                    Err(ApiError::new(
                        ErrorCode::SecretExists,
                        "a secret already exists at this project and path",
                    ))
                }
            }
            Err(BatchError::Store(s)) => Err(s.into()),
        }
    }

    /// Stores a new document, or fills the stub at its path (a secret someone
    /// asked for before it existed): the value is sealed again under the stub's
    /// id, and the stub becomes version 1. Returns the document as stored.
    async fn insert_or_fill(
        &self,
        scope: &mut Scope,
        meta: &RequestMeta,
        doc: SecretDoc,
        plaintext: &[u8],
    ) -> Result<SecretDoc, ApiError> {
        let exists = match self.insert_new(scope, &doc).await {
            Ok(()) => return Ok(doc),
            Err(e) if e.code == ErrorCode::SecretExists => e,
            Err(e) => return Err(e),
        };
        let Some(stub_id) = secrets::find_stub(self.db(), &doc.project, &doc.path).await? else {
            return Err(exists);
        };
        let key = SecretKey::new(&doc.project, &doc.path)?;
        let mut filled = self.sealed_doc(meta, &stub_id, &key, plaintext)?;
        filled.description = doc.description;
        filled.tags = doc.tags;
        filled.kind = doc.kind;
        scope.secret_id(&stub_id);
        scope.version(Some(1));
        // Two events: the insert above reserved the first one's number, this
        // the second's, both before the change.
        let reserved = self.pending_with_number(meta, scope).await?;
        if secrets::fill_stub(self.db(), &stub_id, &filled).await? {
            scope.event_numbers.extend(reserved);
            scope.event("stub_filled");
            scope.event("secret_created");
            Ok(filled)
        } else {
            Err(exists)
        }
    }

    /// Records a miss by a service that may read `key`: a stub (state
    /// `missing`) the first time, audited as its own operation; later misses
    /// only add the service to it.
    async fn stub(&self, meta: &RequestMeta, key: &SecretKey, description: Option<&str>) {
        let now = mongodb::bson::DateTime::now();
        let stub = SecretDoc {
            id: new_id(),
            project: key.project().to_string(),
            path: key.path().to_string(),
            versions: Vec::new(),
            current_version: 0,
            description: description.map(|d| d.chars().take(MAX_DESCRIPTION).collect()),
            tags: Vec::new(),
            kind: None,
            created_at: now,
            created_by: meta.actor().to_string(),
            updated_at: now,
            updated_by: meta.actor().to_string(),
            deleted_at: None,
            purge_at: None,
            rev: None,
            state: Some(secrets::MISSING.to_string()),
            requested_by: vec![meta.actor().to_string()],
        };
        match secrets::create_stub(self.db(), &stub).await {
            // Later misses only add the service: not a transition, no record.
            Ok(false) => {}
            Ok(true) => {
                // Audited as its own operation; removed again if that fails.
                let recorded = self
                    .run(Op::StubCreate, meta, async |scope| {
                        scope.key(key);
                        scope.secret_id(&stub.id);
                        scope.undo(Undo::RemoveSecret(stub.id.clone()));
                        scope.event("stub_created");
                        Ok(())
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::warn!(error = %e, "could not audit a missing-secret stub; removed it");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record a missing secret"),
        }
    }

    pub async fn create_named(
        &self,
        meta: &RequestMeta,
        new: NewSecret<'_>,
    ) -> Result<SecretRecord, ApiError> {
        self.run(Op::Create, meta, async |scope| {
            scope.key(&new.key);
            self.require_on(meta, Action::Write, &new.key)?;
            self.create_in(scope, meta, new).await
        })
        .await
    }

    async fn create_in(
        &self,
        scope: &mut Scope,
        meta: &RequestMeta,
        new: NewSecret<'_>,
    ) -> Result<SecretRecord, ApiError> {
        check_metadata(&new.description, &new.tags, &new.kind)?;
        let plaintext = self.decode_value(new.value, "value")?;
        let mut doc = self.sealed_doc(meta, &new_id(), &new.key, &plaintext)?;
        doc.description = new.description;
        doc.tags = new.tags;
        doc.kind = new.kind;
        let doc = self.insert_or_fill(scope, meta, doc, &plaintext).await?;
        Ok(record_of(doc, plaintext))
    }

    /// Version 1 of a new secret at `key`, sealed.
    pub(super) fn sealed_doc(
        &self,
        meta: &RequestMeta,
        id: &str,
        key: &SecretKey,
        plaintext: &[u8],
    ) -> Result<SecretDoc, ApiError> {
        let at = RecordRef {
            project: key.project(),
            path: key.path(),
            id,
        };
        let first = self.seal_version(at, 1, plaintext, meta.actor())?;
        Ok(self.new_doc(id, key.project(), key.path(), first))
    }

    /// Reads a version. A miss of the current version by a service that may
    /// read the path records a stub (see `stub`); `description` says what the
    /// caller wanted (kept on the stub).
    pub async fn get(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        version: Option<i64>,
        description: Option<&str>,
    ) -> Result<SecretRecord, ApiError> {
        self.run(Op::Read, meta, async |scope| {
            scope.key(key);
            scope.version(version);
            self.require_read(meta, key).await?;
            let at = Locator::Path {
                project: key.project(),
                path: key.path(),
            };
            let Some(found) = secrets::find_live(self.db(), &self.reads, at, version).await? else {
                if version.is_none() {
                    self.stub(meta, key, description).await;
                }
                return Err(not_found());
            };
            scope.secret_id(&found.id);
            self.refuse_expired(found.expires_at)?;
            let Some(v) = found.versions.first() else {
                return Err(ApiError::new(
                    ErrorCode::VersionNotFound,
                    "that version does not exist (or is no longer kept)",
                ));
            };
            scope.version(Some(v.version));
            let value = self
                .open_checked(RecordRef::of(&found), found.current_version, version, v)
                .await?;
            Ok(SecretRecord {
                value,
                version: v.version,
                updated_at: utc(v.created_at),
                updated_by: v.created_by.clone(),
                id: found.id,
                project: found.project,
                path: found.path,
                current_version: found.current_version,
                description: found.description,
                tags: found.tags,
                kind: found.kind,
                created_at: utc(found.created_at),
                created_by: found.created_by,
            })
        })
        .await
    }

    /// Adds a new version. With `expected_version`, only if it is still current
    /// (409 otherwise); without, after whatever version is current, retrying on races.
    pub async fn update(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        value: Value<'_>,
        expected_version: Option<i64>,
        metadata: MetadataChange,
    ) -> Result<SecretRecord, ApiError> {
        self.run(Op::Update, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Write, key)?;
            metadata.check()?;
            let plaintext = self.decode_value(value, "value")?;
            if let Some(record) = self
                .append(
                    scope,
                    meta,
                    key,
                    Append {
                        plaintext: &plaintext,
                        expected_version,
                        metadata: &metadata,
                    },
                    None,
                )
                .await?
            {
                return Ok(record);
            }
            // A stub is filled by a PATCH as by a create (it counts as version 0).
            if expected_version.is_some_and(|v| v != 0)
                || secrets::find_stub(self.db(), key.project(), key.path())
                    .await?
                    .is_none()
            {
                return Err(not_found());
            }
            let doc = self.sealed_doc(meta, &new_id(), key, &plaintext)?;
            let doc = self
                .insert_or_fill(scope, meta, doc, &plaintext)
                .await
                .map_err(|e| {
                    if e.code == ErrorCode::SecretExists {
                        not_found()
                    } else {
                        e
                    }
                })?;
            Ok(record_of(doc, plaintext))
        })
        .await
    }

    /// Creates the secret, or writes a new version when it exists (NATS `set`).
    /// Audited as `create` or `update`, whichever it is, with the checks in the
    /// order HTTP's `POST` and `PATCH` make them. `value` is `(value, value_b64)`.
    pub async fn put(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
        value: (Option<&str>, Option<&str>),
        expected_version: Option<i64>,
    ) -> Result<SecretRecord, ApiError> {
        self.run(Op::Update, meta, async |scope| {
            scope.key(key);
            let at = Locator::Path {
                project: key.project(),
                path: key.path(),
            };
            let mut read = secrets::find_live(self.db(), &self.reads, at, None).await?;
            if read.is_none() {
                scope.op(Op::Create);
            }
            let value = Value::one_of(value.0, value.1)?;
            self.require_on(meta, Action::Write, key)?;
            let plaintext = self.decode_value(value, "value")?;
            // Nothing there at the first read: try the insert first (one
            // round trip less for the common create).
            let mut absent = read.is_none();
            for _ in 0..CAS_ATTEMPTS {
                if !std::mem::take(&mut absent) {
                    if let Some(record) = self
                        .append(
                            scope,
                            meta,
                            key,
                            Append {
                                plaintext: &plaintext,
                                expected_version,
                                metadata: &MetadataChange::default(),
                            },
                            read.take(),
                        )
                        .await?
                    {
                        return Ok(record);
                    }
                }
                scope.op(Op::Create);
                let doc = self.sealed_doc(meta, &new_id(), key, &plaintext)?;
                match self.insert_or_fill(scope, meta, doc, &plaintext).await {
                    Ok(doc) => return Ok(record_of(doc, plaintext)),
                    // Created by someone else meanwhile: write a new version instead.
                    Err(e) if e.code == ErrorCode::SecretExists => scope.op(Op::Update),
                    Err(e) => return Err(e),
                }
            }
            Err(ApiError::new(
                ErrorCode::VersionConflict,
                "too many concurrent writers; retry",
            ))
        })
        .await
    }

    /// Appends a version by compare-and-set; `None` when no live secret is there.
    /// `read` is what the caller already read of the secret, used for the
    /// first attempt instead of reading it again.
    async fn append(
        &self,
        scope: &mut Scope,
        meta: &RequestMeta,
        key: &SecretKey,
        new: Append<'_>,
        mut read: Option<SecretView<VersionDoc>>,
    ) -> Result<Option<SecretRecord>, ApiError> {
        let Append {
            plaintext,
            expected_version,
            metadata,
        } = new;
        let at = Locator::Path {
            project: key.project(),
            path: key.path(),
        };
        for attempt in 0..CAS_ATTEMPTS {
            let current = match read.take() {
                Some(current) => current,
                None => match secrets::find_live(self.db(), &self.reads, at, None).await? {
                    Some(current) => current,
                    None => return Ok(None),
                },
            };
            scope.secret_id(&current.id);
            let base = current.current_version;
            if let Some(expected) = expected_version.filter(|e| *e != base) {
                return Err(ApiError::new(
                    ErrorCode::VersionConflict,
                    format!("expected version {expected} but the current version is {base}"),
                ));
            }
            // Above a rotation's pending (or failed) version, never onto it.
            let top = current.top_version;
            let next = base.max(top.unwrap_or(0)) + 1;
            scope.version(Some(next));
            let version =
                self.seal_version(RecordRef::of(&current), next, plaintext, meta.actor())?;
            // Again on every attempt: taken after this attempt's read.
            let reserved = self.pending_with_number(meta, scope).await?;
            let max_versions = self.limits().max_versions;
            let (set, unset) = metadata.update();
            if secrets::append_version(
                self.db(),
                &current.id,
                base,
                top,
                &version,
                max_versions,
                set,
                unset,
            )
            .await?
            {
                scope.event_numbers.extend(reserved);
                scope.event("secret_updated");
                let (description, tags, kind) =
                    metadata.apply(current.description, current.tags, current.kind);
                // An audit failure after this leaves the version standing (it
                // cannot be removed without racing other writers); the caller is told to retry.
                return Ok(Some(SecretRecord {
                    id: current.id,
                    project: current.project,
                    path: current.path,
                    value: plaintext.clone(),
                    version: next,
                    current_version: next,
                    description,
                    tags,
                    kind,
                    created_at: utc(current.created_at),
                    created_by: current.created_by,
                    updated_at: utc(version.created_at),
                    updated_by: version.created_by,
                }));
            }
            if expected_version.is_some() {
                return Err(ApiError::new(
                    ErrorCode::VersionConflict,
                    format!("version {base} was superseded by a concurrent update"),
                ));
            }
            // Lost a race to another writer: back off a little, with jitter, and go again.
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=attempt.min(20) + 1);
            tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
        }
        Err(ApiError::new(
            ErrorCode::VersionConflict,
            "too many concurrent updates; retry",
        ))
    }

    /// Writes the operation's `pending` record (see `Vault::pending`) and
    /// meanwhile reserves the number of the event its change will publish.
    /// Taken before the change, so whoever changes the same secret next
    /// (having read this change) takes a higher number: a secret's events run
    /// in the order of its changes, across replicas. A number the operation
    /// does not use (its change lost a race, or failed) is filled with a
    /// placeholder; none (the counter could not be reached) leaves the event
    /// to be numbered when it is stored.
    pub(super) async fn pending_with_number(
        &self,
        meta: &RequestMeta,
        scope: &mut Scope,
    ) -> Result<Option<crate::store::events::ReservedNumber>, ApiError> {
        let (pending, reserved) =
            tokio::join!(self.pending(meta, scope), self.event_numbers.reserve());
        pending?;
        Ok(reserved.ok())
    }

    pub async fn delete(&self, meta: &RequestMeta, key: &SecretKey) -> Result<(), ApiError> {
        self.run(Op::Delete, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Delete, key)?;
            let days = i64::from(self.limits().delete_recovery_days);
            let purge_at = BsonDateTime::from_millis(
                BsonDateTime::now().timestamp_millis() + days * 86_400_000,
            );
            let reserved = self.pending_with_number(meta, scope).await?;
            let id = secrets::soft_delete(self.db(), key.project(), key.path(), purge_at)
                .await?
                .ok_or_else(not_found)?;
            scope.secret_id(&id);
            scope.event_numbers.extend(reserved);
            scope.event("secret_deleted");
            Ok(())
        })
        .await
    }

    pub async fn restore(&self, meta: &RequestMeta, key: &SecretKey) -> Result<(), ApiError> {
        self.run(Op::Restore, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::Delete, key)?;
            let reserved = self.pending_with_number(meta, scope).await?;
            let id = secrets::restore(self.db(), key.project(), key.path())
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::DeletedSecretNotFound,
                        "no deleted secret at that project and path (or it was purged)",
                    )
                })?;
            scope.secret_id(&id);
            scope.event_numbers.extend(reserved);
            scope.event("secret_restored");
            Ok(())
        })
        .await
    }

    pub async fn versions(
        &self,
        meta: &RequestMeta,
        key: &SecretKey,
    ) -> Result<VersionHistory, ApiError> {
        self.run(Op::Versions, meta, async |scope| {
            scope.key(key);
            self.require_on(meta, Action::List, key)?;
            let view = secrets::versions(self.db(), key.project(), key.path())
                .await?
                .ok_or_else(not_found)?;
            scope.secret_id(&view.id);
            Ok(VersionHistory {
                versions: view
                    .versions
                    .into_iter()
                    .map(|v: VersionMeta| VersionInfo {
                        version: v.version,
                        created_at: utc(v.created_at),
                        created_by: v.created_by,
                    })
                    .collect(),
                id: view.id,
                project: view.project,
                path: view.path,
                current_version: view.current_version,
            })
        })
        .await
    }

    /// Secrets the caller may `list`, in stable `(project, path)` order.
    pub async fn list(&self, meta: &RequestMeta, q: ListQuery<'_>) -> Result<Page, ApiError> {
        self.run(Op::List, meta, async |scope| {
            let project = q.project.as_ref().map(ProjectName::as_str);
            scope.project(project);
            scope.path(q.prefix);
            let limit = q.limit;
            if !(1..=MAX_LIST_LIMIT).contains(&limit) {
                return Err(ApiError::new(
                    ErrorCode::InvalidLimit,
                    format!("`limit` must be 1-{MAX_LIST_LIMIT}"),
                ));
            }
            if q.prefix.is_some_and(|p| p.chars().count() > MAX_PREFIX_LEN) {
                return Err(ApiError::new(
                    ErrorCode::InvalidPrefix,
                    format!("`prefix` must be at most {MAX_PREFIX_LEN} characters"),
                ));
            }
            // No path holds a control character: such a search is a mistake.
            if q.contains.is_some_and(|c| {
                c.chars().count() > MAX_PREFIX_LEN || c.chars().any(char::is_control)
            }) {
                return Err(ApiError::new(
                    ErrorCode::InvalidPrefix,
                    format!(
                        "`contains` must be at most {MAX_PREFIX_LEN} characters, none of them a control character"
                    ),
                ));
            }
            let aad = cursor_aad(meta.actor(), project, q.prefix, q.contains, q.missing);
            let mut after = q.cursor.map(|c| self.decode_cursor(&aad, c)).transpose()?;
            let mut items = Vec::new();
            let mut exhausted = false;
            // Bounded: a caller that may list little of a large project gets short pages.
            for _ in 0..20 {
                let after_ref = after.as_ref().map(|(p, q)| (p.as_str(), q.as_str()));
                let batch =
                    secrets::list_page(self.db(), project, q.prefix, q.contains, after_ref, limit)
                        .await?;
                exhausted = (batch.len() as i64) < limit;
                for item in batch {
                    after = Some((item.project.clone(), item.path.clone()));
                    let wanted = if q.missing {
                        item.deleted_at.is_none() && item.state.as_deref() == Some(secrets::MISSING)
                    } else {
                        item.is_live()
                    };
                    // A substring search is checked here too: the page's filter
                    // holds only the index's fields (see `secrets::list_page`).
                    let found = q.contains.is_none_or(|c| item.path.contains(c));
                    if !wanted || !found {
                        continue;
                    }
                    let resource = secret_resource(&item.project, &item.path);
                    if self.may(meta, Action::List, &resource) {
                        items.push(SecretSummary::from_view(item));
                        if items.len() as i64 == limit {
                            break;
                        }
                    }
                }
                if exhausted || items.len() as i64 == limit {
                    break;
                }
            }
            let more = !exhausted || items.len() as i64 == limit;
            let next_cursor = match after.filter(|_| more) {
                Some((p, path)) => Some(self.encode_cursor(&aad, &p, &path)?),
                None => None,
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }
}

/// What a cursor is bound to: the caller and the query it continues.
fn cursor_aad(
    actor: &str,
    project: Option<&str>,
    prefix: Option<&str>,
    contains: Option<&str>,
    missing: bool,
) -> Vec<u8> {
    // Lengths first: a `|` inside the prefix cannot shift text into `contains`.
    let prefix = prefix.unwrap_or("");
    let contains = contains.unwrap_or("");
    format!(
        "list-cursor|{actor}|{}|{missing}|{}:{prefix}|{}:{contains}",
        project.unwrap_or(""),
        prefix.len(),
        contains.len(),
    )
    .into_bytes()
}

impl Vault {
    /// An opaque, authenticated cursor: the scan position sealed (AES-256-GCM
    /// under a key derived from the master key) and bound to the caller and
    /// the query, so it reveals no name and only this caller can continue it.
    fn encode_cursor(&self, aad: &[u8], project: &str, path: &str) -> Result<String, ApiError> {
        let position = Zeroizing::new(format!("{project}\n{path}").into_bytes());
        let sealed = self.cursor_key.seal(&position, aad)?;
        let mut bytes = sealed.nonce.to_vec();
        bytes.extend_from_slice(&sealed.ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn decode_cursor(&self, aad: &[u8], cursor: &str) -> Result<(String, String), ApiError> {
        let bad = || {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "`cursor` is not one this service returned for this query",
            )
        };
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let position = self
            .cursor_key
            .open(nonce, ciphertext, aad)
            .map_err(|_| bad())?;
        let text = std::str::from_utf8(&position).map_err(|_| bad())?;
        let (project, path) = text.split_once('\n').ok_or_else(bad)?;
        Ok((project.to_string(), path.to_string()))
    }
}
