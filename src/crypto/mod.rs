//! Encryption: AES-256-GCM sealing with record-binding AAD, and the master key.

mod cipher;
pub mod keyring;
mod master_key;

pub use cipher::{record_aad, record_aad_v1, Cipher, CryptoError, Sealed, AAD_FORMAT, NONCE_LEN};
pub use keyring::{Keyring, KeyringError, KeyringSettings};
pub use master_key::MasterKey;
