//! Encryption: AES-256-GCM sealing with record-binding AAD, and the master key.

mod cipher;
pub mod keyring;
mod master_key;

pub use cipher::{record_aad, record_aad_v1, Cipher, CryptoError, Sealed, AAD_FORMAT, NONCE_LEN};
pub use keyring::{Keyring, KeyringError, KeyringSettings};
pub use master_key::MasterKey;

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: how the
/// webhook and rotation's verify and health requests are signed.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> Option<String> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "t={t},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}
