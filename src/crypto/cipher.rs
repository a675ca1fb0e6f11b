use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::MasterKey;

pub const NONCE_LEN: usize = 12;

/// AES-256-GCM under one key, identified by `key_id`.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    key_id: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher({})", self.key_id)
    }
}

/// A sealed value: the nonce and the ciphertext with its 16-byte tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Wrong key, wrong record (AAD), or tampered bytes. Deliberately says no more.
    #[error("ciphertext could not be authenticated")]
    Unauthenticated,
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("encryption failed")]
    SealFailed,
}

/// The first associated-data format: binds a ciphertext to its record id,
/// version and key, but not to the project and path that authorisation reads.
/// Versions sealed under it (no `aad` field) still open; rewrap re-seals them
/// under [`record_aad`].
pub fn record_aad_v1(secret_id: &str, version: i64, key_id: &str) -> Vec<u8> {
    format!("{secret_id}|{version}|{key_id}").into_bytes()
}

/// The associated-data format new seals use (stored as `aad: 2`).
pub const AAD_FORMAT: i32 = 2;

/// The associated data that binds a ciphertext to everything authorisation
/// depends on: project, path, secret id, version and key id. Relabelling a
/// record in the database, or moving ciphertext between records, fails to open.
/// Names cannot contain `|` (see `vault::names`), so the encoding is unambiguous.
pub fn record_aad(
    project: &str,
    path: &str,
    secret_id: &str,
    version: i64,
    key_id: &str,
) -> Vec<u8> {
    format!("v2|{project}|{path}|{secret_id}|{version}|{key_id}").into_bytes()
}

impl Cipher {
    pub fn new(key: &[u8; 32], key_id: impl Into<String>) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
            key_id: key_id.into(),
        }
    }

    pub fn from_master(key: &MasterKey) -> Self {
        Self::new(key.bytes(), key.key_id())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals with a fresh random 96-bit nonce from the OS RNG.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::SealFailed)?;
        Ok(Sealed {
            nonce: nonce.into(),
            ciphertext,
        })
    }

    pub fn open(
        &self,
        nonce: &[u8],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let plaintext = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Unauthenticated)?;
        Ok(Zeroizing::new(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn cipher() -> Cipher {
        Cipher::from_master(&MasterKey::generate())
    }

    #[test]
    fn round_trip_with_matching_aad() {
        let c = cipher();
        let aad = record_aad("p", "a/b", "id-1", 1, c.key_id());
        let sealed = c.seal(b"hunter2", &aad).expect("seal");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sealed.ciphertext.len(), 7 + 16);
        let opened = c
            .open(&sealed.nonce, &sealed.ciphertext, &aad)
            .expect("open");
        assert_eq!(opened.as_slice(), b"hunter2");
    }

    #[test]
    fn ten_thousand_seals_give_ten_thousand_distinct_nonces() {
        let c = cipher();
        let nonces: HashSet<[u8; NONCE_LEN]> = (0..10_000)
            .map(|_| c.seal(b"same", b"same").expect("seal").nonce)
            .collect();
        assert_eq!(nonces.len(), 10_000);
    }

    #[test]
    fn other_record_other_version_other_key_or_flipped_bit_fail() {
        let c = cipher();
        let aad = record_aad("p", "a/b", "id-1", 1, c.key_id());
        let s = c.seal(b"value", &aad).expect("seal");
        let wrong_aads = [
            record_aad("p", "a/b", "id-2", 1, c.key_id()),
            record_aad("p", "a/b", "id-1", 2, c.key_id()),
            record_aad("p", "a/b", "id-1", 1, "mk-other"),
            record_aad("other", "a/b", "id-1", 1, c.key_id()),
            record_aad("p", "a/c", "id-1", 1, c.key_id()),
            record_aad_v1("id-1", 1, c.key_id()),
        ];
        for bad in wrong_aads {
            assert_eq!(
                c.open(&s.nonce, &s.ciphertext, &bad),
                Err(CryptoError::Unauthenticated)
            );
        }
        assert_eq!(
            cipher().open(&s.nonce, &s.ciphertext, &aad),
            Err(CryptoError::Unauthenticated),
            "another key"
        );
        let mut flipped = s.ciphertext.clone();
        flipped[0] ^= 1;
        assert_eq!(
            c.open(&s.nonce, &flipped, &aad),
            Err(CryptoError::Unauthenticated)
        );
        assert_eq!(
            c.open(&s.nonce[..8], &s.ciphertext, &aad),
            Err(CryptoError::Malformed)
        );
    }
}
