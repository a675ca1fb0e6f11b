//! The `secrets` collection: one document per secret with its recent versions.

use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime};
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
    pub created_at: DateTime,
    pub created_by: String,
    pub updated_at: DateTime,
    pub updated_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime>,
}

/// One sealed version. `ciphertext` and `nonce` are BSON binary, never text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionDoc {
    pub version: i64,
    pub ciphertext: Binary,
    pub nonce: Binary,
    pub key_id: String,
    pub created_at: DateTime,
    pub created_by: String,
}

impl VersionDoc {
    pub fn new(version: i64, nonce: &[u8], ciphertext: Vec<u8>, key_id: &str, by: &str) -> Self {
        Self {
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

/// What a read needs: the record's identity and the one version asked for.
#[derive(Debug, Clone, Deserialize)]
pub struct CurrentVersion {
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub path: String,
    pub versions: Vec<VersionDoc>,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("a secret with that id or path exists")]
    Exists,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn collection<T: Send + Sync>(db: &Database) -> Collection<T> {
    db.collection(COLLECTION)
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
    collection::<SecretDoc>(db)
        .create_index(unique_path)
        .await?;
    Ok(())
}

pub async fn insert(db: &Database, doc: &SecretDoc) -> Result<(), InsertError> {
    match collection::<SecretDoc>(db).insert_one(doc).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Err(InsertError::Exists),
        Err(e) => Err(InsertError::Store(e.into())),
    }
}

/// Removes a secret outright. Used only to undo a create whose audit record
/// could not be written.
pub async fn remove(db: &Database, id: &str) -> Result<(), StoreError> {
    collection::<SecretDoc>(db)
        .delete_one(doc! { "_id": id })
        .await?;
    Ok(())
}

/// The newest version of a live (not deleted) secret, fetched with one round
/// trip that projects only that version.
pub async fn find_current(db: &Database, id: &str) -> Result<Option<CurrentVersion>, StoreError> {
    let found = collection::<CurrentVersion>(db)
        .find_one(doc! { "_id": id, "deleted_at": null })
        .projection(doc! { "project": 1, "path": 1, "versions": { "$slice": -1 } })
        .await?;
    Ok(found)
}
