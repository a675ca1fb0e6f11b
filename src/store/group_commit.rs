//! Group commit: concurrent inserts into one collection go to MongoDB in one
//! `insert_many` (unordered), and each caller still waits until its own
//! document is acknowledged. Used for new secrets (a create answers only
//! once its document is stored); the audit trail's writer (`audit_sink`)
//! does the same for audit records. One command per batch instead of one per
//! document: on the test server a batch of 32 costs about a fifth of the
//! database CPU per document that 32 single inserts do (docs/BENCHMARKS.md).

use mongodb::error::ErrorKind;
use mongodb::options::InsertManyOptions;
use mongodb::Collection;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Why one document of a batch was not written.
#[derive(Debug)]
pub enum BatchError {
    /// A unique index already holds its key (code 11000).
    Duplicate,
    Store(StoreError),
}

type Ack = oneshot::Sender<Result<(), BatchError>>;

/// Hands documents to the batching task of one collection. Cheap to clone.
pub struct GroupCommit<T> {
    tx: mpsc::Sender<(T, Ack)>,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// Most documents one `insert_many` carries.
const MAX_BATCH: usize = 256;

impl<T: Serialize + Send + Sync + 'static> GroupCommit<T> {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(coll: Collection<T>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 16);
        tokio::spawn(run(coll, rx));
        Self { tx }
    }

    /// Resolves once MongoDB has acknowledged this document (or refused it).
    pub async fn insert(&self, doc: T) -> Result<(), BatchError> {
        let (ack, done) = oneshot::channel();
        self.tx.send((doc, ack)).await.map_err(|_| {
            BatchError::Store(StoreError::Other("group-commit writer stopped".into()))
        })?;
        done.await.map_err(|_| {
            BatchError::Store(StoreError::Other(
                "group-commit writer dropped a document".into(),
            ))
        })?
    }
}

async fn run<T: Serialize + Send + Sync>(coll: Collection<T>, mut rx: mpsc::Receiver<(T, Ack)>) {
    let mut batch: Vec<(T, Ack)> = Vec::with_capacity(MAX_BATCH);
    // Whatever queued while the previous insert was in flight goes in the next one.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (docs, acks): (Vec<T>, Vec<Ack>) = batch.drain(..).unzip();
        let options = InsertManyOptions::builder().ordered(false).build();
        let result = coll.insert_many(&docs).with_options(options).await;
        match result {
            Ok(_) => acks.into_iter().for_each(|a| {
                let _ = a.send(Ok(()));
            }),
            Err(e) => {
                let failed = failed_documents(&e, docs.len());
                let shared = StoreError::from(e);
                for (i, a) in acks.into_iter().enumerate() {
                    let r = match failed.iter().find(|(at, _)| *at == i) {
                        None => Ok(()),
                        Some((_, Some(11000))) => Err(BatchError::Duplicate),
                        Some(_) => Err(BatchError::Store(shared.clone())),
                    };
                    let _ = a.send(r);
                }
            }
        }
    }
}

/// Which documents of a failed `insert_many` were not written, with the
/// per-document error code where there is one. Only per-document write
/// errors spare the others; any other failure fails the whole batch.
pub(super) fn failed_documents(e: &mongodb::error::Error, n: usize) -> Vec<(usize, Option<i32>)> {
    if let ErrorKind::InsertMany(im) = &*e.kind {
        if im.write_concern_error.is_none() {
            if let Some(errs) = &im.write_errors {
                return errs.iter().map(|w| (w.index, Some(w.code))).collect();
            }
        }
    }
    (0..n).map(|i| (i, None)).collect()
}
