//! NATS settings: the environment's `NATS_*` variables and config.yaml `nats.acl`.

use std::collections::{BTreeSet, HashMap};

pub const OPERATIONS: [&str; 6] = ["get", "set", "delete", "list", "rotate", "status"];

/// NATS settings, from the environment and config.yaml `nats.acl`.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<secrecy::SecretString>,
    pub creds_file: Option<String>,
    pub tls_required: bool,
    pub ca_file: Option<String>,
    pub request_subject: String,
    pub queue_group: String,
    pub audit_subject: Option<String>,
    /// Subject → allowed operations.
    pub acl: Vec<(String, BTreeSet<String>)>,
    pub max_payload: usize,
    /// Requests one replica works on at once; more are answered `busy`.
    pub max_in_flight: usize,
}

/// Parses `nats.acl` entries, checking every operation name.
pub fn parse_acl(
    entries: &[(String, Vec<String>)],
    source: &str,
    errors: &mut Vec<String>,
) -> Vec<(String, BTreeSet<String>)> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (subject, ops) in entries {
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            errors.push(format!(
                "{source}: nats.acl subject `{subject}` is not a valid subject"
            ));
        }
        for op in ops {
            if !OPERATIONS.contains(&op.as_str()) {
                errors.push(format!(
                    "{source}: nats.acl subject `{subject}`: unknown operation `{op}` (expected {})",
                    OPERATIONS.join(", ")
                ));
            }
        }
        out.entry(subject.clone())
            .or_default()
            .extend(ops.iter().cloned());
    }
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort();
    v
}
