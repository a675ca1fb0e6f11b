//! Group commit for audit records: concurrent records go to MongoDB in one
//! `insert_many`, and each caller still waits until its own record is
//! acknowledged, so an operation never succeeds without its audit record.

use mongodb::error::ErrorKind;
use mongodb::options::InsertManyOptions;
use mongodb::{Collection, Database};
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditRecord, COLLECTION};
use super::StoreError;

type Ack = oneshot::Sender<Result<(), StoreError>>;

/// Hands records to the batching task. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<(AuditRecord, Ack)>,
}

/// Most records one `insert_many` carries.
const MAX_BATCH: usize = 256;

impl AuditSink {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(db: &Database) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 16);
        let coll: Collection<AuditRecord> = db.collection(COLLECTION);
        tokio::spawn(run(coll, rx));
        Self { tx }
    }

    /// Resolves once MongoDB has acknowledged this record.
    pub async fn write(&self, record: AuditRecord) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((record, ack))
            .await
            .map_err(|_| StoreError::Other("audit writer stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Other("audit writer dropped a record".into()))?
    }
}

async fn run(coll: Collection<AuditRecord>, mut rx: mpsc::Receiver<(AuditRecord, Ack)>) {
    let mut batch: Vec<(AuditRecord, Ack)> = Vec::with_capacity(MAX_BATCH);
    // Whatever queued while the previous insert was in flight goes in the next one.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, acks): (Vec<AuditRecord>, Vec<Ack>) = batch.drain(..).unzip();
        let options = InsertManyOptions::builder().ordered(false).build();
        let metrics = &crate::metrics::METRICS;
        let on = crate::metrics::enabled();
        if on {
            metrics.audit_batch_size.observe(records.len() as f64);
        }
        let started = std::time::Instant::now();
        let result = coll.insert_many(&records).with_options(options).await;
        if on {
            metrics
                .audit_write_duration
                .observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(_) => acks.into_iter().for_each(|a| {
                let _ = a.send(Ok(()));
            }),
            Err(e) => {
                let failed = failed_indexes(&e, records.len());
                metrics.audit_write_failures.inc_by(failed.len() as u64);
                let shared = StoreError::from(e);
                for (i, a) in acks.into_iter().enumerate() {
                    let r = if failed.contains(&i) {
                        Err(match &shared {
                            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                            StoreError::Other(m) => StoreError::Other(m.clone()),
                        })
                    } else {
                        Ok(())
                    };
                    let _ = a.send(r);
                }
            }
        }
    }
}

/// Which records of a failed `insert_many` were not written. Only per-record
/// write errors spare the others; any other failure fails the whole batch.
fn failed_indexes(e: &mongodb::error::Error, n: usize) -> Vec<usize> {
    if let ErrorKind::InsertMany(im) = &*e.kind {
        if im.write_concern_error.is_none() {
            if let Some(errs) = &im.write_errors {
                return errs.iter().map(|w| w.index).collect();
            }
        }
    }
    (0..n).collect()
}
