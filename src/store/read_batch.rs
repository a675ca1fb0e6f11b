//! Read coalescing: concurrent point reads of secrets (the newest version of
//! each, by id or by project and path) go to MongoDB as one `find` with `$in`,
//! the way `group_commit` does for inserts. Each caller still gets exactly its
//! own document. On the test server a `$in` of 8 ids costs the database about
//! a quarter of the CPU per document that 8 single `find_one`s do, and a `$in`
//! of 32 about a sixth (docs/BENCHMARKS.md), and the database's CPU is what
//! bounds the read rate on one machine.
//!
//! A read that arrives alone goes out alone (a plain `find_one`); at most
//! [`IN_FLIGHT`] queries run at once, and whatever queues meanwhile goes in
//! the next one.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::secrets::{Locator, SecretView, VersionDoc};
use super::StoreError;

/// A secret with only its newest kept version.
pub type Newest = SecretView<VersionDoc>;

type Reply = oneshot::Sender<Result<Option<Newest>, StoreError>>;

/// An owned [`Locator`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(String),
    Path { project: String, path: String },
}

impl Key {
    fn of(at: Locator<'_>) -> Self {
        match at {
            Locator::Id(id) => Key::Id(id.to_string()),
            Locator::Path { project, path } => Key::Path {
                project: project.to_string(),
                path: path.to_string(),
            },
        }
    }

    fn filter(&self) -> Document {
        match self {
            Key::Id(id) => doc! { "_id": id },
            Key::Path { project, path } => doc! { "project": project, "path": path },
        }
    }
}

/// Most keys one query carries.
const MAX_BATCH: usize = 128;
/// Most queries in flight at once.
const IN_FLIGHT: usize = 2;

/// Hands point reads to the coalescing task. Cheap to clone.
#[derive(Clone)]
pub struct ReadBatch {
    tx: mpsc::Sender<(Key, Reply)>,
}

impl ReadBatch {
    /// Starts the coalescing task on the current tokio runtime.
    pub fn spawn(coll: Collection<Newest>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 16);
        tokio::spawn(run(coll, rx));
        Self { tx }
    }

    /// The secret at `at` with only its newest kept version (live or not:
    /// the caller checks), or `None` when there is none.
    pub async fn newest(&self, at: Locator<'_>) -> Result<Option<Newest>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((Key::of(at), reply))
            .await
            .map_err(|_| StoreError::Other("read batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Other("read batcher dropped a read".into()))?
    }
}

async fn run(coll: Collection<Newest>, mut rx: mpsc::Receiver<(Key, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch: Vec<(Key, Reply)> = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for a free slot first: whatever arrives meanwhile joins the batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let reads = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        let coll = coll.clone();
        tokio::spawn(async move {
            answer(&coll, reads).await;
            drop(slot);
        });
    }
}

async fn answer(coll: &Collection<Newest>, reads: Vec<(Key, Reply)>) {
    if crate::metrics::enabled() {
        crate::metrics::METRICS
            .read_batch_size
            .observe(reads.len() as f64);
    }
    let projection = doc! { "versions": { "$slice": -1 } };
    if let [(key, _)] = reads.as_slice() {
        let found = coll
            .find_one(key.filter())
            .projection(projection)
            .await
            .map_err(StoreError::from);
        let (_, reply) = reads.into_iter().next().expect("one read");
        let _ = reply.send(found);
        return;
    }
    let found: Result<Vec<Newest>, StoreError> = async {
        let cursor = coll
            .find(batch_filter(reads.iter().map(|(k, _)| k)))
            .projection(projection)
            .await?;
        Ok(cursor.try_collect().await?)
    }
    .await;
    match found {
        Ok(docs) => {
            let mut by_key: HashMap<Key, usize> = HashMap::with_capacity(docs.len() * 2);
            for (i, d) in docs.iter().enumerate() {
                by_key.insert(Key::Id(d.id.clone()), i);
                by_key.insert(
                    Key::Path {
                        project: d.project.clone(),
                        path: d.path.clone(),
                    },
                    i,
                );
            }
            for (key, reply) in reads {
                let _ = reply.send(Ok(by_key.get(&key).map(|&i| docs[i].clone())));
            }
        }
        Err(e) => {
            for (_, reply) in reads {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// One filter for many keys: ids as one `$in` on `_id`, paths as one `$in`
/// per project (each uses an index: `_id`, or the unique `(project, path)`),
/// joined by `$or` when there is more than one.
fn batch_filter<'a>(keys: impl Iterator<Item = &'a Key>) -> Document {
    let mut ids: Vec<&str> = Vec::new();
    let mut paths: HashMap<&str, Vec<&str>> = HashMap::new();
    for key in keys {
        match key {
            Key::Id(id) => {
                if !ids.contains(&id.as_str()) {
                    ids.push(id)
                }
            }
            Key::Path { project, path } => {
                let of = paths.entry(project).or_default();
                if !of.contains(&path.as_str()) {
                    of.push(path)
                }
            }
        }
    }
    let mut clauses: Vec<Document> = Vec::new();
    if !ids.is_empty() {
        clauses.push(doc! { "_id": { "$in": ids } });
    }
    for (project, of) in paths {
        clauses.push(doc! { "project": project, "path": { "$in": of } });
    }
    if clauses.len() == 1 {
        clauses.pop().expect("one clause")
    } else {
        doc! { "$or": clauses.into_iter().map(Bson::Document).collect::<Vec<_>>() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kind_of_key_needs_no_or() {
        let keys = [
            Key::Id("a".into()),
            Key::Id("b".into()),
            Key::Id("a".into()),
        ];
        assert_eq!(
            batch_filter(keys.iter()),
            doc! { "_id": { "$in": ["a", "b"] } }
        );
        let keys = [
            Key::Path {
                project: "p".into(),
                path: "x".into(),
            },
            Key::Path {
                project: "p".into(),
                path: "y".into(),
            },
        ];
        assert_eq!(
            batch_filter(keys.iter()),
            doc! { "project": "p", "path": { "$in": ["x", "y"] } }
        );
    }

    #[test]
    fn mixed_keys_are_an_or_of_indexed_clauses() {
        let keys = [
            Key::Id("a".into()),
            Key::Path {
                project: "p".into(),
                path: "x".into(),
            },
            Key::Path {
                project: "q".into(),
                path: "x".into(),
            },
        ];
        let filter = batch_filter(keys.iter());
        let clauses = filter.get_array("$or").expect("an $or");
        assert_eq!(clauses.len(), 3);
        assert!(clauses.contains(&Bson::Document(doc! { "_id": { "$in": ["a"] } })));
        assert!(clauses.contains(&Bson::Document(
            doc! { "project": "q", "path": { "$in": ["x"] } }
        )));
    }
}
