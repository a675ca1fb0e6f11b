//! Encryption: AES-256-GCM sealing with record-binding AAD, and the master key.

mod cipher;
mod master_key;

pub use cipher::{record_aad, Cipher, CryptoError, Sealed, NONCE_LEN};
pub use master_key::MasterKey;
