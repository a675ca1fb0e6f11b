//! Encryption: AES-256-GCM sealing with record-binding AAD, and the master key.

mod cipher;
pub mod keyring;
mod master_key;

pub use cipher::{record_aad, Cipher, CryptoError, Sealed, NONCE_LEN};
pub use keyring::{Keyring, KeyringError, KeyringSettings};
pub use master_key::MasterKey;
