//! The `projects` collection: named groups of secrets.

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, DateTime};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{is_duplicate_key, StoreError};

pub const COLLECTION: &str = "projects";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: DateTime,
    pub created_by: String,
}

fn collection(db: &Database) -> Collection<ProjectDoc> {
    db.collection(COLLECTION)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let unique = IndexModel::builder()
        .keys(doc! { "name": 1 })
        .options(
            IndexOptions::builder()
                .name("name_unique".to_string())
                .unique(true)
                .build(),
        )
        .build();
    collection(db).create_index(unique).await?;
    Ok(())
}

/// `Ok(false)` when a project of that name exists.
pub async fn insert(db: &Database, project: &ProjectDoc) -> Result<bool, StoreError> {
    match collection(db).insert_one(project).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &Database) -> Result<Vec<ProjectDoc>, StoreError> {
    let cursor = collection(db)
        .find(doc! {})
        .sort(doc! { "name": 1 })
        .limit(10_000)
        .await?;
    Ok(cursor.try_collect().await?)
}
