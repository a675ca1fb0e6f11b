//! The audit trail's writer, which also stores the change events of the
//! operations it audits.
//!
//! Concurrent audit records are group-committed: one command per batch, and
//! each caller still waits until its own record is acknowledged (an
//! operation never succeeds without its record). A successful write hands
//! its change events over with its record, and they are stored only once
//! the record is. A small batch (a lone write) on a server with the
//! `bulkWrite` command (MongoDB 8.0+, and the test server) goes in one
//! ordered command, records first, so it pays one round trip for both where
//! it paid two (docs/BENCHMARKS.md). Otherwise the records go in one
//! `insert_many` and then the events of the stored ones in a second. Events are numbered as
//! `store::events` says: at the numbers after the last one stored, again
//! after the highest when another replica got there first.

use std::time::{Duration, Instant};

use mongodb::error::ErrorKind;
use mongodb::options::{InsertManyOptions, WriteModel};
use mongodb::{Collection, Database};
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditRecord, COLLECTION};
use super::events::{self, EventDoc};
use super::group_commit::failed_documents;
use super::StoreError;

/// Most audit records one batch carries.
const MAX_BATCH: usize = 256;
/// How many commands one batch may take (after a refused record, or after
/// other replicas took its events' numbers) before what is left fails.
const MAX_TRIES: usize = 32;
/// The first wire version of MongoDB 8.0, which has `bulkWrite`.
const BULK_WRITE_WIRE_VERSION: i32 = 25;
/// Most documents (records and events) a batch writes in one `bulkWrite`.
/// On the test server a `bulkWrite` costs about the same per document
/// whatever its size, while an `insert_many`'s cost per document falls with
/// its size: one command saves CPU up to two records with their events, and
/// bigger batches cost less as two `insert_many`s (docs/BENCHMARKS.md). So
/// a lone write takes one round trip, and a busy replica batches as before.
const BULK_WRITE_MAX_DOCS: usize = 4;

/// Whether records and events may share one `bulkWrite` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkWrites {
    /// When the server has the command (asked once, with `hello`).
    Auto,
    /// Never: records and events in two commands, as on MongoDB before 8.0.
    Never,
}

/// What became of one caller's record and events.
#[derive(Clone, Debug)]
pub struct Written {
    pub record: Result<(), StoreError>,
    pub events: Result<(), StoreError>,
}

struct Entry {
    record: Option<AuditRecord>,
    events: Vec<EventDoc>,
    ack: oneshot::Sender<Written>,
}

/// Hands records and events to the writing task. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Entry>,
}

impl AuditSink {
    /// Starts the writing task on the current tokio runtime.
    pub fn spawn(db: &Database) -> Self {
        Self::spawn_with(db, BulkWrites::Auto)
    }

    pub fn spawn_with(db: &Database, bulk: BulkWrites) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 16);
        tokio::spawn(run(db.clone(), rx, bulk));
        Self { tx }
    }

    /// Resolves once MongoDB has acknowledged this record.
    pub async fn write(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.send(Some(record), Vec::new()).await.record
    }

    /// Numbers `events` and stores them (events of an operation audited
    /// apart, or of a failed one).
    pub async fn write_events(&self, events: Vec<EventDoc>) -> Result<(), StoreError> {
        self.send(None, events).await.events
    }

    /// Stores `record`, then numbers and stores `events`, which are not
    /// stored if the record is not.
    pub async fn write_with_events(&self, record: AuditRecord, events: Vec<EventDoc>) -> Written {
        self.send(Some(record), events).await
    }

    async fn send(&self, record: Option<AuditRecord>, events: Vec<EventDoc>) -> Written {
        let stopped = |what: &str| {
            let e = StoreError::Other(format!("the audit writer {what}"));
            Written {
                record: Err(e.clone()),
                events: Err(e),
            }
        };
        let (ack, done) = oneshot::channel();
        let entry = Entry {
            record,
            events,
            ack,
        };
        if self.tx.send(entry).await.is_err() {
            return stopped("stopped");
        }
        done.await.unwrap_or_else(|_| stopped("dropped a record"))
    }
}

async fn run(db: Database, mut rx: mpsc::Receiver<Entry>, bulk: BulkWrites) {
    let mut batch: Vec<Entry> = Vec::with_capacity(MAX_BATCH);
    let mut has_bulk_write = match bulk {
        BulkWrites::Auto => None,
        BulkWrites::Never => Some(false),
    };
    // Whatever queued while the previous batch was written goes in this one.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let entries = std::mem::take(&mut batch);
        let (mut records, mut events, mut acks) = (vec![], vec![], vec![]);
        for entry in entries {
            records.push(entry.record);
            events.push(entry.events);
            acks.push(entry.ack);
        }
        let n_events: usize = events.iter().map(Vec::len).sum();
        let n_records = records.iter().filter(|r| r.is_some()).count();
        let small = n_events > 0 && n_records + n_events <= BULK_WRITE_MAX_DOCS;
        if small && has_bulk_write.is_none() {
            // When the server cannot be asked: asked again with the next batch.
            has_bulk_write = server_has_bulk_write(&db).await;
        }
        let bulk = small && has_bulk_write == Some(true);
        let mut work = Batch::new(records, events);
        let started = Instant::now();
        if !bulk || !work.write_together(&db).await {
            if bulk {
                tracing::warn!(
                    "the server refused bulkWrite; records and events go in two commands"
                );
                has_bulk_write = Some(false);
            }
            work.write_apart(&db).await;
        }
        observe(&work, started.elapsed());
        for (ack, written) in acks.into_iter().zip(work.results()) {
            let _ = ack.send(written);
        }
    }
}

/// Whether the server has `bulkWrite`; `None` when it could not be asked.
async fn server_has_bulk_write(db: &Database) -> Option<bool> {
    let hello = db
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .await
        .ok()?;
    let version = match hello.get("maxWireVersion") {
        Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
        Some(mongodb::bson::Bson::Int64(v)) => *v,
        _ => return Some(false),
    };
    Some(version >= i64::from(BULK_WRITE_WIRE_VERSION))
}

fn observe(work: &Batch, took: Duration) {
    if !crate::metrics::enabled() {
        return;
    }
    let size = work.records.iter().filter(|r| r.is_some()).count();
    if size == 0 {
        return;
    }
    let metrics = &crate::metrics::METRICS;
    metrics.audit_batch_size.observe(size as f64);
    metrics.audit_write_duration.observe(took.as_secs_f64());
    let failed = work.record_results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        metrics.audit_write_failures.inc_by(failed as u64);
    }
}

/// One batch: each caller's record and events, and what became of them.
struct Batch {
    records: Vec<Option<AuditRecord>>,
    /// Every event, with the index of its caller, in order.
    events: Vec<(usize, EventDoc)>,
    /// `Ok` until it fails: a caller without a record is `Ok`.
    record_results: Vec<Result<(), StoreError>>,
    event_results: Vec<Result<(), StoreError>>,
}

/// Where a record or an event stands in the batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Record(usize),
    Event(usize),
}

impl Batch {
    fn new(records: Vec<Option<AuditRecord>>, events: Vec<Vec<EventDoc>>) -> Self {
        let n = records.len();
        Self {
            records,
            events: events
                .into_iter()
                .enumerate()
                .flat_map(|(owner, docs)| docs.into_iter().map(move |d| (owner, d)))
                .collect(),
            record_results: vec![Ok(()); n],
            event_results: vec![Ok(()); n],
        }
    }

    fn results(self) -> impl Iterator<Item = Written> {
        self.record_results
            .into_iter()
            .zip(self.event_results)
            .map(|(record, events)| Written { record, events })
    }

    fn fail_record(&mut self, owner: usize, e: StoreError) {
        self.event_results[owner] = Err(StoreError::Other(
            "not stored: the operation's audit record was not".into(),
        ));
        self.record_results[owner] = Err(e);
    }

    /// Records in one `insert_many`, then the events of the callers whose
    /// record (if any) is stored, numbered, in a second command.
    async fn write_apart(&mut self, db: &Database) {
        let owners: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].is_some())
            .collect();
        if !owners.is_empty() {
            let docs: Vec<&AuditRecord> = owners
                .iter()
                .filter_map(|i| self.records[*i].as_ref())
                .collect();
            let options = InsertManyOptions::builder().ordered(false).build();
            let coll: Collection<AuditRecord> = db.collection(COLLECTION);
            if let Err(e) = coll.insert_many(docs).with_options(options).await {
                let failed = failed_documents(&e, owners.len());
                let shared = StoreError::from(e);
                for (at, code) in failed {
                    if let Some(owner) = owners.get(at) {
                        self.fail_record(*owner, record_error(code, &shared));
                    }
                }
            }
        }
        let mut docs: Vec<EventDoc> = Vec::new();
        let mut with: Vec<usize> = Vec::new();
        for (owner, doc) in &self.events {
            if self.record_results[*owner].is_ok() {
                docs.push(doc.clone());
                with.push(*owner);
            } else if doc.seq != 0 {
                // A reserved number of a refused record: filled, so no reader waits.
                docs.push(events::placeholder(doc.seq));
            }
        }
        if docs.is_empty() {
            return;
        }
        if let Err(e) = events::store(db, docs).await {
            for owner in with {
                self.event_results[owner] = Err(e.clone());
            }
        }
    }

    /// Records, then events, in one ordered `bulkWrite`: the command stops
    /// at the first failure, so no event is stored before its record. The
    /// events' numbers are taken first; those of a refused record are
    /// filled with placeholders, so the readers wait for no number. `false`
    /// when the server has no such command after all (nothing was written).
    async fn write_together(&mut self, db: &Database) -> bool {
        let records: Collection<AuditRecord> = db.collection(COLLECTION);
        let event_coll: Collection<EventDoc> = db.collection(events::COLLECTION);
        let mut records_left: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].is_some())
            .collect();
        let mut events_left: Vec<usize> = (0..self.events.len()).collect();
        if let Err(e) = events::number(db, self.events.iter_mut().map(|(_, d)| d)).await {
            self.fail_left(&records_left, &events_left, &e);
            return true;
        }
        for attempt in 0..MAX_TRIES {
            let mut steps = Vec::with_capacity(records_left.len() + events_left.len());
            let mut models: Vec<WriteModel> = Vec::with_capacity(steps.capacity());
            let mut unserialisable: Vec<(usize, StoreError)> = Vec::new();
            for owner in &records_left {
                let Some(record) = &self.records[*owner] else {
                    continue;
                };
                match records.insert_one_model(record) {
                    Ok(model) => {
                        models.push(model.into());
                        steps.push(Step::Record(*owner));
                    }
                    Err(e) => unserialisable.push((*owner, e.into())),
                }
            }
            for (owner, e) in unserialisable {
                records_left.retain(|o| *o != owner);
                self.refuse(owner, e);
            }
            for i in &events_left {
                // An event's fields are strings, numbers and a date: it serialises.
                if let Ok(model) = event_coll.insert_one_model(&self.events[*i].1) {
                    models.push(model.into());
                    steps.push(Step::Event(*i));
                }
            }
            let (done, failure) = match db.client().bulk_write(models).ordered(true).await {
                Ok(_) => (steps.len(), None),
                Err(e) if attempt == 0 && is_unknown_command(&e) => return false,
                Err(e) => match one_write_error(&e) {
                    Some((at, code)) => (at, Some((at, code, StoreError::from(e)))),
                    None => {
                        self.fail_left(&records_left, &events_left, &e.into());
                        return true;
                    }
                },
            };
            let done = &steps[..done.min(steps.len())];
            records_left.retain(|o| !done.contains(&Step::Record(*o)));
            events_left.retain(|i| !done.contains(&Step::Event(*i)));
            let Some((at, code, e)) = failure else {
                return true;
            };
            match steps.get(at) {
                Some(Step::Record(owner)) => {
                    let owner = *owner;
                    records_left.retain(|o| *o != owner);
                    self.refuse(owner, record_error(Some(code), &e));
                }
                // A reader gave up on this number: the rest are stored apart,
                // a taken number renumbered.
                Some(Step::Event(_)) if code == 11000 => {
                    let docs = events_left
                        .iter()
                        .map(|i| self.events[*i].1.clone())
                        .collect();
                    if let Err(e) = events::insert_numbered(db, docs).await {
                        self.fail_left(&[], &events_left, &e);
                    }
                    return true;
                }
                Some(Step::Event(_)) | None => {
                    self.fail_left(&records_left, &events_left, &e);
                    return true;
                }
            }
        }
        let e = StoreError::Other(
            "the audit batch was refused too many times; its remaining writes failed".into(),
        );
        self.fail_left(&records_left.clone(), &events_left.clone(), &e);
        true
    }

    /// A refused record: its operation fails, and its events (already
    /// numbered) become placeholders.
    fn refuse(&mut self, owner: usize, e: StoreError) {
        self.fail_record(owner, e);
        for (o, doc) in &mut self.events {
            if *o == owner {
                *doc = events::placeholder(doc.seq);
            }
        }
    }

    fn fail_left(&mut self, records: &[usize], events: &[usize], e: &StoreError) {
        for owner in records {
            self.fail_record(*owner, e.clone());
        }
        for i in events {
            let owner = self.events[*i].0;
            if self.event_results[owner].is_ok() {
                self.event_results[owner] = Err(e.clone());
            }
        }
    }
}

fn record_error(code: Option<i32>, shared: &StoreError) -> StoreError {
    match code {
        Some(11000) => StoreError::Other("duplicate audit record id".into()),
        _ => shared.clone(),
    }
}

/// The index and code of the one write error that stopped an ordered
/// `bulkWrite`; `None` for any other failure (network, write concern).
fn one_write_error(e: &mongodb::error::Error) -> Option<(usize, i32)> {
    let ErrorKind::BulkWrite(bw) = &*e.kind else {
        return None;
    };
    if !bw.write_concern_errors.is_empty() || bw.write_errors.len() != 1 {
        return None;
    }
    bw.write_errors.iter().next().map(|(at, w)| (*at, w.code))
}

/// The server does not know the command (`CommandNotFound`).
fn is_unknown_command(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == 59)
}
