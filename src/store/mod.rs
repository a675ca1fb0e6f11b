//! MongoDB access: one module per collection, plus connection and index setup.
//! No HTTP types here.

pub mod access_requests;
pub mod alerts;
pub mod audit;
pub mod audit_sink;
pub mod events;
pub mod group_commit;
pub mod keyring;
pub mod policies;
pub mod projects;
pub mod read_batch;
pub mod rotation;
pub mod secrets;
pub mod service_tokens;

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Database};
use secrecy::{ExposeSecret, SecretString};

/// Where and how to connect to MongoDB.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The connection string; it may hold a password.
    pub uri: SecretString,
    pub db: String,
    /// Server-selection and connect timeout.
    pub timeout: Duration,
    pub max_pool_size: u32,
    /// How many replica-set members must acknowledge a write (always journaled).
    pub write_concern: WriteAcknowledgement,
}

/// `MONGO_WRITE_CONCERN`: `majority` (the default) or a number of members from 1.
/// Unacknowledged writes (`0`) are refused: a write is acknowledged to the
/// client only after MongoDB acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteAcknowledgement {
    #[default]
    Majority,
    Nodes(u32),
}

impl WriteAcknowledgement {
    /// Parses the setting's text; the error names `MONGO_WRITE_CONCERN`, never anything else.
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Self::default()),
            Some(t) if t.eq_ignore_ascii_case("majority") => Ok(Self::Majority),
            Some(t) => match t.parse::<u32>() {
                Ok(n) if (1..=50).contains(&n) => Ok(Self::Nodes(n)),
                _ => Err(format!(
                    "`MONGO_WRITE_CONCERN` must be `majority` or a number of members from 1 to 50 (got `{t}`)"
                )),
            },
        }
    }

    /// The driver's write concern: this acknowledgement, journaled.
    pub fn write_concern(self) -> WriteConcern {
        let w = match self {
            Self::Majority => Acknowledgment::Majority,
            Self::Nodes(n) => Acknowledgment::Nodes(n),
        };
        WriteConcern::builder().w(w).journal(true).build()
    }
}

/// Cloned when one failed batch command answers every caller in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<mongodb::error::Error> for StoreError {
    fn from(e: mongodb::error::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Other(e.to_string())
        }
    }
}

fn is_unavailable(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError")
}

/// MongoDB's duplicate-key error code.
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::WriteFailure;
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

/// Connects with short timeouts and the configured write concern (journaled),
/// and checks the server answers.
pub async fn connect(settings: &StoreSettings) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(settings.uri.expose_secret())
        .await
        .map_err(|e| StoreError::Other(format!("`MONGO_URI` could not be parsed: {}", e.kind)))?;
    options.app_name = Some("secret-manager".into());
    options.server_selection_timeout = Some(settings.timeout);
    options.connect_timeout = Some(settings.timeout);
    options.max_pool_size = Some(settings.max_pool_size);
    options.write_concern = Some(settings.write_concern.write_concern());
    if crate::metrics::db_commands() {
        // Opt-in (`METRICS_DB_COMMANDS`): the driver copies every command and
        // reply into its events, which cost ~20% of a request's CPU here
        // (docs/BENCHMARKS.md). Only the name and the time are kept; the driver's copy of the
        // command and reply (ciphertexts, never a plaintext) is dropped at once.
        options.command_event_handler = Some(mongodb::event::EventHandler::callback(
            |event: mongodb::event::command::CommandEvent| {
                use mongodb::event::command::CommandEvent;
                match event {
                    CommandEvent::Succeeded(e) => {
                        crate::metrics::db_command(&e.command_name, true, e.duration)
                    }
                    CommandEvent::Failed(e) => {
                        crate::metrics::db_command(&e.command_name, false, e.duration)
                    }
                    _ => {}
                }
            },
        ));
    }
    let client = Client::with_options(options)?;
    let db = client.database(&settings.db);
    ping(&db).await?;
    Ok(db)
}

pub async fn ping(db: &Database) -> Result<(), StoreError> {
    db.run_command(doc! { "ping": 1 }).await?;
    Ok(())
}

/// Creates every index the service needs. Idempotent, and safe when several
/// replicas start at the same moment.
pub async fn ensure_indexes(db: &Database, audit_ttl_days: u32) -> Result<(), StoreError> {
    secrets::ensure_indexes(db).await?;
    rotation::ensure_indexes(db).await?;
    access_requests::ensure_indexes(db).await?;
    projects::ensure_indexes(db).await?;
    service_tokens::ensure_indexes(db).await?;
    audit::ensure_indexes(db, audit_ttl_days).await?;
    alerts::ensure_indexes(db).await?;
    Ok(())
}
