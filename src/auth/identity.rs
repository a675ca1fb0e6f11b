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
                if t.value.expose_secret().len() < 16 {
                    errors.push(format!("{} must be at least 16 characters", t.origin()));
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
                "correct-horse-battery".to_string(),
            ),
            (
                "TOKEN_off".to_string(),
                "disabled-service-token".to_string(),
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
            r.verify("web-api", "correct-horse-battery"),
            Some("web-api")
        );
        assert_eq!(r.verify("web-api", "correct-horse-batterY"), None);
        assert_eq!(r.verify("off", "disabled-service-token"), None);
        assert_eq!(r.verify("stranger", "stranger-token-123456"), None);
        assert_eq!(r.verify("tokenless", ""), None);
        assert_eq!(r.without_token(), vec!["tokenless"]);
        assert!(!format!("{r:?}").contains("correct-horse"));
    }

    #[test]
    fn short_tokens_and_double_sources_are_configuration_errors() {
        let known = HashMap::from([("a".to_string(), true)]);
        let mut errors = Vec::new();
        ServiceRegistry::from_env(&known, &[("TOKEN_a".into(), "short".into())], &mut errors);
        assert!(errors[0].contains("at least 16"), "{errors:?}");
        assert!(!errors[0].contains("short\""));
        let mut errors = Vec::new();
        let env = [
            ("TOKEN_a".into(), "x".repeat(20)),
            ("TOKEN_a_FILE".into(), "/x".into()),
        ];
        ServiceRegistry::from_env(&known, &env, &mut errors);
        assert!(errors[0].contains("only one"), "{errors:?}");
    }

    #[test]
    fn a_token_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token-abcdef123\n").expect("write");
        let known = HashMap::from([("filer".to_string(), true)]);
        let env = [(
            "TOKEN_filer_FILE".to_string(),
            file.to_str().expect("utf8").to_string(),
        )];
        let mut errors = Vec::new();
        let r = ServiceRegistry::from_env(&known, &env, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(r.verify("filer", "file-token-abcdef123"), Some("filer"));
    }
}
