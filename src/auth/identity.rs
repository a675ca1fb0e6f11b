//! Service identities: a SHA-256 digest of each token, compared in constant time.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
struct Service {
    digest: Option<[u8; 32]>,
    enabled: bool,
}

#[derive(Clone, Default)]
pub struct ServiceRegistry {
    services: HashMap<String, Service>,
}

impl std::fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.services.keys().collect();
        names.sort();
        f.debug_struct("ServiceRegistry")
            .field("services", &names)
            .finish()
    }
}

/// Least estimated entropy of a token. NATS has no client address to limit
/// guessing by, so a token must resist guessing on its own.
pub const MIN_TOKEN_BITS: f64 = 128.0;

/// A token's estimated entropy: its length (in characters) × log2 of the size
/// of the character classes it uses (lowercase 26, uppercase 26, digits 10,
/// anything else 33). It assumes random characters, so it only bounds from
/// above what a human-made token offers: `openssl rand -hex 32` gives about 331
/// bits, `openssl rand -base64 32` about 262, `a-token-long-enough` about 112.
pub fn estimated_entropy_bits(token: &str) -> f64 {
    let has = |f: fn(&char) -> bool| token.chars().any(|c| f(&c));
    let classes = [
        (has(char::is_ascii_lowercase), 26),
        (has(char::is_ascii_uppercase), 26),
        (has(char::is_ascii_digit), 10),
        (has(|c| !c.is_ascii_alphanumeric()), 33),
    ];
    let alphabet: u32 = classes
        .iter()
        .filter(|(used, _)| *used)
        .map(|(_, n)| n)
        .sum();
    if alphabet == 0 {
        return 0.0;
    }
    token.chars().count() as f64 * f64::from(alphabet).log2()
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl ServiceRegistry {
    /// Known services (name → enabled) with their tokens from `TOKEN_<name>` or
    /// `TOKEN_<name>_FILE` (see [`crate::settings::secret`]). A token for an
    /// unknown service is ignored.
    pub fn from_env(
        known: &HashMap<String, bool>,
        env: &[(String, String)],
        errors: &mut Vec<String>,
    ) -> Self {
        let mut services = HashMap::new();
        for (name, enabled) in known {
            let token = match crate::settings::secret(env, &format!("TOKEN_{name}")) {
                Ok(token) => token,
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            if let Some(t) = &token {
                let bits = estimated_entropy_bits(t.value.expose_secret());
                if bits < MIN_TOKEN_BITS {
                    errors.push(format!(
                        "{} is too weak: about {bits:.0} bits of estimated entropy, at least {MIN_TOKEN_BITS:.0} needed \
                         (length × log2 of the character classes used: lowercase 26, uppercase 26, digits 10, \
                         other 33); generate one with `openssl rand -hex 32`",
                        t.origin()
                    ));
                }
            }
            services.insert(
                name.clone(),
                Service {
                    digest: token.map(|t| digest(t.value.expose_secret().as_bytes())),
                    enabled: *enabled,
                },
            );
        }
        Self { services }
    }

    /// The canonical service name when the token is right and the service enabled.
    /// Takes the same time for an unknown service as for a wrong token.
    pub fn verify(&self, service: &str, token: &str) -> Option<&str> {
        let presented = digest(token.as_bytes());
        let (name, entry) = match self.services.get_key_value(service) {
            Some((name, entry)) => (Some(name.as_str()), Some(entry)),
            None => (None, None),
        };
        let expected = entry.and_then(|e| e.digest).unwrap_or([0u8; 32]);
        let matches: bool = presented.ct_eq(&expected).into();
        match (name, entry) {
            (Some(name), Some(e)) if matches && e.enabled && e.digest.is_some() => Some(name),
            _ => None,
        }
    }

    /// Whether `name` is an identity of the environment (it has a token) or is
    /// disabled in config.yaml: a registered token cannot take such a name.
    pub fn owns(&self, name: &str) -> bool {
        self.services
            .get(name)
            .is_some_and(|s| s.digest.is_some() || !s.enabled)
    }

    /// Known services that have no token (they can never authenticate).
    pub fn without_token(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, s)| s.digest.is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_of_an_enabled_known_service_verifies() {
        let known = HashMap::from([
            ("web-api".to_string(), true),
            ("off".to_string(), false),
            ("tokenless".to_string(), true),
        ]);
        let env = vec![
            (
                "TOKEN_web-api".to_string(),
                "correct-horse-battery-staple-42".to_string(),
            ),
            (
                "TOKEN_off".to_string(),
                "disabled-service-token-0123456789".to_string(),
            ),
            (
                "TOKEN_stranger".to_string(),
                "stranger-token-123456".to_string(),
            ),
        ];
        let mut errors = Vec::new();
        let r = ServiceRegistry::from_env(&known, &env, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            r.verify("web-api", "correct-horse-battery-staple-42"),
            Some("web-api")
        );
        assert_eq!(r.verify("web-api", "correct-horse-battery-staple-4Z"), None);
        assert_eq!(r.verify("off", "disabled-service-token-0123456789"), None);
        assert_eq!(r.verify("stranger", "stranger-token-123456"), None);
        assert_eq!(r.verify("tokenless", ""), None);
        assert_eq!(r.without_token(), vec!["tokenless"]);
        assert!(!format!("{r:?}").contains("correct-horse"));
    }

    #[test]
    fn weak_tokens_and_double_sources_are_configuration_errors() {
        let known = HashMap::from([("a".to_string(), true)]);
        // Each weak token: refused at start-up, naming `TOKEN_a` and why, never the value.
        for weak in [
            "short",
            "a-token-long-enough",
            "correct-horse-battery",
            &"a".repeat(27),
        ] {
            let mut errors = Vec::new();
            ServiceRegistry::from_env(&known, &[("TOKEN_a".into(), weak.into())], &mut errors);
            assert_eq!(errors.len(), 1, "{weak}: {errors:?}");
            assert!(errors[0].starts_with("`TOKEN_a` is too weak"), "{errors:?}");
            assert!(errors[0].contains("at least 128"), "{errors:?}");
            assert!(!errors[0].contains(weak), "value echoed: {errors:?}");
        }
        let mut errors = Vec::new();
        let env = [
            ("TOKEN_a".into(), "x".repeat(40)),
            ("TOKEN_a_FILE".into(), "/x".into()),
        ];
        ServiceRegistry::from_env(&known, &env, &mut errors);
        assert!(errors[0].contains("only one"), "{errors:?}");
    }

    #[test]
    fn a_token_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token-0123456789abcdef-0123\n").expect("write");
        let known = HashMap::from([("filer".to_string(), true)]);
        let env = [(
            "TOKEN_filer_FILE".to_string(),
            file.to_str().expect("utf8").to_string(),
        )];
        let mut errors = Vec::new();
        let r = ServiceRegistry::from_env(&known, &env, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            r.verify("filer", "file-token-0123456789abcdef-0123"),
            Some("filer")
        );
    }

    #[test]
    fn the_entropy_estimate_passes_generated_tokens_and_fails_phrases() {
        // (token, passes, what it is)
        let cases = [
            (hex_64(), true, "`openssl rand -hex 32`"),
            (
                "q8Jd0m+2Xv3Tn9wZkL5aB1cR7eYs4uHf/GpQ6iNo8t0=".to_string(),
                true,
                "`openssl rand -base64 32`",
            ),
            (
                format!("tok-{}", "0123456789abcdef".repeat(2)),
                true,
                "the test helper's tok-<uuid>",
            ),
            ("a-token-long-enough".to_string(), false, "a phrase"),
            ("0123456789".repeat(3), false, "30 digits: 100 bits"),
        ];
        for (token, passes, what) in cases {
            let bits = estimated_entropy_bits(&token);
            assert_eq!(bits >= MIN_TOKEN_BITS, passes, "{what}: {bits} bits");
        }
        assert_eq!(estimated_entropy_bits(""), 0.0);
    }

    fn hex_64() -> String {
        "9f".repeat(32)
    }
}
