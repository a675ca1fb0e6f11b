//! Envelope encryption: values are sealed with data keys, data keys with the
//! master key. Every replica caches the unsealed keyring (zeroized on drop)
//! and refreshes it on an unknown key id and at a short interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mongodb::bson::{spec::BinarySubtype, Binary, DateTime};
use mongodb::Database;
use rand::RngCore;
use zeroize::Zeroizing;

use super::{Cipher, MasterKey};
use crate::store::keyring::{self as store, KeyDoc};
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct KeyringSettings {
    pub rotation_days: u32,
    pub max_seals: u64,
    pub refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "the keyring is sealed under master key {found}, not the configured one ({configured}); \
         start with the right `MASTER_KEY`, or with the new key in `MASTER_KEY` and the old one in \
         `MASTER_KEY_PREVIOUS` to re-seal the keyring"
    )]
    WrongMasterKey { found: String, configured: String },
    #[error("key check failed: no keyring entry opens with the configured `MASTER_KEY` ({0})")]
    KeyCheckFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no active data key")]
    NoActiveKey,
    #[error("a key could not be derived from the master key")]
    Derive,
}

/// What one replica knows of the keyring.
#[derive(Default)]
struct Loaded {
    active: Option<(String, Arc<Cipher>)>,
    keys: HashMap<String, Arc<Cipher>>,
    docs: Vec<KeyDoc>,
}

pub struct Keyring {
    db: Database,
    master: MasterKey,
    settings: KeyringSettings,
    loaded: RwLock<Arc<Loaded>>,
    unflushed_seals: AtomicU64,
    last_miss_reload: std::sync::Mutex<Option<Instant>>,
    healthy: AtomicBool,
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn wrap_aad(id: &str) -> Vec<u8> {
    format!("keyring|{id}").into_bytes()
}

fn seal_key(master: &MasterKey, id: &str, key: &[u8; 32]) -> Result<(Binary, Binary), StoreError> {
    let sealed = Cipher::from_master(master)
        .seal(key, &wrap_aad(id))
        .map_err(|e| StoreError::Other(e.to_string()))?;
    Ok((binary(sealed.ciphertext), binary(sealed.nonce.to_vec())))
}

fn unseal_key(master: &MasterKey, doc: &KeyDoc) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Cipher::from_master(master)
        .open(&doc.nonce.bytes, &doc.wrapped.bytes, &wrap_aad(&doc.id))
        .ok()?;
    let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(key))
}

fn new_key_id() -> String {
    format!("dk-{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

impl Keyring {
    /// Loads the keyring at start-up: re-seals it under a new master key when
    /// `previous` is given, refuses a wrong master key, adds the legacy entry for
    /// values sealed directly under the master key, and makes sure a key is active.
    pub async fn open(
        db: Database,
        master: MasterKey,
        previous: Option<MasterKey>,
        settings: KeyringSettings,
    ) -> Result<Arc<Self>, KeyringError> {
        let keyring = Arc::new(Self {
            db,
            master,
            settings,
            loaded: RwLock::new(Arc::new(Loaded::default())),
            unflushed_seals: AtomicU64::new(0),
            last_miss_reload: std::sync::Mutex::new(None),
            healthy: AtomicBool::new(true),
        });
        keyring.reseal_from(previous.as_ref()).await?;
        keyring.add_legacy_entries(previous.as_ref()).await?;
        keyring.reload().await?;
        if keyring.active_id().is_none() {
            keyring.rotate().await?;
        }
        Ok(keyring)
    }

    async fn reseal_from(&self, previous: Option<&MasterKey>) -> Result<(), KeyringError> {
        let current = self.master.key_id().to_string();
        let mut resealed = 0;
        for doc in store::all(&self.db).await? {
            if doc.master_key_id == current {
                continue;
            }
            let prev = previous
                .filter(|p| p.key_id() == doc.master_key_id)
                .ok_or_else(|| KeyringError::WrongMasterKey {
                    found: doc.master_key_id.clone(),
                    configured: current.clone(),
                })?;
            let key = unseal_key(prev, &doc).ok_or_else(|| {
                KeyringError::KeyCheckFailed(format!(
                    "entry {} does not open with `MASTER_KEY_PREVIOUS`",
                    doc.id
                ))
            })?;
            let (wrapped, nonce) = seal_key(&self.master, &doc.id, &key)?;
            if store::reseal(&self.db, &doc.id, prev.key_id(), &current, wrapped, nonce).await? {
                resealed += 1;
            }
        }
        if resealed > 0 {
            tracing::info!(keys = resealed, master_key_id = %current, "keyring re-sealed under the new master key");
        }
        Ok(())
    }

    /// Values written before the keyring existed carry the master key's
    /// fingerprint as key id; the keyring holds that key as a retired entry.
    async fn add_legacy_entries(&self, previous: Option<&MasterKey>) -> Result<(), KeyringError> {
        for key in std::iter::once(&self.master).chain(previous) {
            if !crate::store::secrets::any_sealed_with(&self.db, key.key_id()).await? {
                continue;
            }
            let (wrapped, nonce) = seal_key(&self.master, key.key_id(), key.bytes())?;
            let doc = KeyDoc {
                id: key.key_id().to_string(),
                wrapped,
                nonce,
                master_key_id: self.master.key_id().to_string(),
                state: "retired".into(),
                created_at: DateTime::now(),
                retired_at: Some(DateTime::now()),
                seals: 0,
                legacy: true,
            };
            if store::insert(&self.db, &doc).await? {
                tracing::info!(key_id = %doc.id, "added legacy keyring entry for values sealed directly under a master key");
            }
        }
        Ok(())
    }

    /// Reads the keyring again and unseals every entry it can. Entries sealed
    /// under another master key mean a master-key change is under way and this
    /// replica runs the old key: it keeps the keys it already had (its last good
    /// keyring), logs loudly and reports itself unhealthy (readiness fails).
    pub async fn reload(&self) -> Result<(), KeyringError> {
        // The pointer first: a key is stored before the pointer names it, so
        // the documents read next always hold the key it names (read the other
        // way round, a rotation in between left this replica with no active key).
        let active_id = store::active_id(&self.db).await?;
        let docs = store::all(&self.db).await?;
        let previous = self.snapshot();
        let mut keys = HashMap::new();
        let mut failed = Vec::new();
        let mut foreign = Vec::new();
        for doc in &docs {
            if doc.master_key_id != self.master.key_id() {
                foreign.push(doc.id.clone());
                if let Some(kept) = previous.keys.get(&doc.id) {
                    keys.insert(doc.id.clone(), kept.clone());
                }
                continue;
            }
            match unseal_key(&self.master, doc) {
                Some(key) => {
                    keys.insert(doc.id.clone(), Arc::new(Cipher::new(&key, doc.id.clone())));
                }
                None => failed.push(doc.id.clone()),
            }
        }
        for id in &failed {
            tracing::error!(key_id = %id, "keyring entry failed to authenticate; values under it cannot be read");
        }
        if keys.is_empty() && !failed.is_empty() {
            return Err(KeyringError::KeyCheckFailed(
                self.master.key_id().to_string(),
            ));
        }
        let healthy = foreign.is_empty();
        if !healthy {
            tracing::error!(
                keys = ?foreign,
                master_key_id = %self.master.key_id(),
                "keyring entries are sealed under another master key: a master-key change is under way; \
                 restart this replica with the new MASTER_KEY (it reports not ready until then)"
            );
        }
        self.healthy.store(healthy, Ordering::Relaxed);
        let active = active_id
            .and_then(|id| keys.get(&id).map(|c| (id, c.clone())))
            // Never sealing is worse than sealing under the last good key, which
            // the replicas on the new master key can still open.
            .or_else(|| previous.active.clone().filter(|_| !healthy));
        let loaded = Loaded { active, keys, docs };
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// False while entries are sealed under a master key this replica does not hold.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn active_id(&self) -> Option<String> {
        self.snapshot().active.as_ref().map(|(id, _)| id.clone())
    }

    /// The active data key, for a new seal (counted).
    pub fn active(&self) -> Result<(String, Arc<Cipher>), KeyringError> {
        let loaded = self.snapshot();
        let (id, cipher) = loaded.active.as_ref().ok_or(KeyringError::NoActiveKey)?;
        self.unflushed_seals.fetch_add(1, Ordering::Relaxed);
        Ok((id.clone(), cipher.clone()))
    }

    /// The data key with this id; an unknown id triggers one reload (at most
    /// every 250 ms), so a key rotated through another replica is found at once.
    pub async fn cipher_for(&self, key_id: &str) -> Option<Arc<Cipher>> {
        if let Some(c) = self.snapshot().keys.get(key_id) {
            return Some(c.clone());
        }
        let may_reload = {
            let mut last = self
                .last_miss_reload
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() > Duration::from_millis(250));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if may_reload {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "keyring reload failed");
            }
        }
        self.snapshot().keys.get(key_id).cloned()
    }

    /// Makes a new data key active. When replicas rotate at the same moment one
    /// wins and the others adopt its key, so there is always exactly one active key.
    pub async fn rotate(&self) -> Result<String, KeyringError> {
        // A replica still on the old master key must not add a data key that
        // the replicas on the new one cannot open.
        if let Some(doc) = store::all(&self.db)
            .await?
            .into_iter()
            .find(|d| d.master_key_id != self.master.key_id())
        {
            self.healthy.store(false, Ordering::Relaxed);
            return Err(KeyringError::WrongMasterKey {
                found: doc.master_key_id,
                configured: self.master.key_id().to_string(),
            });
        }
        let current = store::active_id(&self.db).await?;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        let id = new_key_id();
        let (wrapped, nonce) = seal_key(&self.master, &id, &key)?;
        let doc = KeyDoc {
            id: id.clone(),
            wrapped,
            nonce,
            master_key_id: self.master.key_id().to_string(),
            state: "pending".into(),
            created_at: DateTime::now(),
            retired_at: None,
            seals: 0,
            legacy: false,
        };
        store::insert(&self.db, &doc).await?;
        if store::swap_active(&self.db, current.as_deref(), &id).await? {
            store::mark(&self.db, &id, "active").await?;
            if let Some(old) = &current {
                store::mark(&self.db, old, "retired").await?;
            }
            tracing::info!(key_id = %id, "rotated to a new data key");
        } else {
            // Another replica rotated first: its key is the active one.
            store::remove(&self.db, &id).await?;
        }
        self.flush_seals().await?;
        self.reload().await?;
        self.active_id().ok_or(KeyringError::NoActiveKey)
    }

    async fn flush_seals(&self) -> Result<(), StoreError> {
        let n = self.unflushed_seals.swap(0, Ordering::Relaxed);
        if n == 0 {
            return Ok(());
        }
        let Some(active) = self.active_id() else {
            return Ok(());
        };
        if let Err(e) = store::add_seals(&self.db, &active, n).await {
            self.unflushed_seals.fetch_add(n, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// Periodic work: flush seal counts, reload, retire an active key that is too
    /// old or has sealed too much.
    pub async fn maintain(&self) -> Result<(), KeyringError> {
        self.flush_seals().await?;
        self.reload().await?;
        let loaded = self.snapshot();
        let Some((active_id, _)) = &loaded.active else {
            return Ok(());
        };
        let Some(doc) = loaded.docs.iter().find(|d| &d.id == active_id) else {
            return Ok(());
        };
        let age_ms = DateTime::now().timestamp_millis() - doc.created_at.timestamp_millis();
        let too_old = age_ms >= i64::from(self.settings.rotation_days) * 86_400_000;
        let too_many = u64::try_from(doc.seals).unwrap_or(0) >= self.settings.max_seals;
        if too_old || too_many {
            tracing::info!(key_id = %active_id, too_old, too_many, "retiring the active data key");
            self.rotate().await?;
        }
        Ok(())
    }

    /// Runs `maintain` every refresh interval until the process ends.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let keyring = Arc::downgrade(self);
        let every = self.settings.refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(k) = keyring.upgrade() else { break };
                if let Err(e) = k.maintain().await {
                    tracing::warn!(error = %e, "keyring maintenance failed");
                }
            }
        });
    }

    /// A key for one purpose (`label`), derived from the master key with
    /// HMAC-SHA256, so every replica derives the same key and nothing is stored.
    pub fn derive(&self, label: &str) -> Result<Cipher, KeyringError> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.master.bytes())
            .map_err(|_| KeyringError::Derive)?;
        mac.update(b"secret-manager derived key|");
        mac.update(label.as_bytes());
        let bytes = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        Ok(Cipher::new(&bytes, format!("derived:{label}")))
    }

    /// How often every replica reloads the keyring.
    pub fn refresh_interval(&self) -> Duration {
        self.settings.refresh
    }

    /// Key documents as last loaded.
    pub fn docs(&self) -> Vec<KeyDoc> {
        self.snapshot().docs.clone()
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}
