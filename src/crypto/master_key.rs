use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// The 32-byte master key. Never printed, zeroed on drop.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    key_id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.key_id)
    }
}

impl MasterKey {
    /// Accepts base64 of 32 bytes (optionally prefixed `base64:`) or exactly 32 raw characters.
    /// The error says what is wrong without repeating the input.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if let Some(b64) = text.strip_prefix("base64:") {
            return Self::from_base64(b64);
        }
        if let Ok(key) = Self::from_base64(text) {
            return Ok(key);
        }
        if text.len() == 32 {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(text.as_bytes());
            let key = Self::from_bytes(bytes);
            bytes.zeroize();
            return Ok(key);
        }
        Err("expected base64 of exactly 32 bytes (optionally prefixed `base64:`) or exactly 32 raw characters")
    }

    fn from_base64(text: &str) -> Result<Self, &'static str> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| "not valid base64")?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| "base64 must decode to exactly 32 bytes")?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key_id = fingerprint(&bytes);
        Self {
            bytes: Zeroizing::new(bytes),
            key_id,
        }
    }

    /// A fresh random key from the OS RNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// Base64 text of the key, for `keygen` only.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_slice()))
    }

    /// A public identifier derived one-way from the key: `mk-` and 16 hex digits.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

fn fingerprint(bytes: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"secret-manager master key id v1\0");
    h.update(bytes);
    let digest = h.finalize();
    format!("mk-{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_base64_prefixed_base64_and_raw_32_characters() {
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let a = MasterKey::parse(b64).expect("base64");
        let b = MasterKey::parse(&format!("base64:{b64}")).expect("prefixed");
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.bytes()[31], 31);
        let raw = MasterKey::parse("0123456789abcdef0123456789abcdef").expect("raw");
        assert_eq!(&raw.bytes()[..4], b"0123");
    }

    #[test]
    fn rejects_wrong_lengths_and_bad_base64() {
        for bad in ["", "short", "base64:AAAA", "base64:***", &"x".repeat(33)] {
            assert!(MasterKey::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn key_id_is_stable_distinct_and_not_the_key() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.key_id(), b.key_id());
        assert!(a.key_id().starts_with("mk-") && a.key_id().len() == 19);
        assert!(!a.key_id().contains(a.to_base64().as_str()));
        assert_eq!(
            MasterKey::parse(&a.to_base64())
                .expect("roundtrip")
                .key_id(),
            a.key_id()
        );
        assert!(!format!("{a:?}").contains(a.to_base64().as_str()));
    }
}
