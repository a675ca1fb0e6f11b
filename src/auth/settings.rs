//! Identities and policies from `config.yaml` (version-controlled) and the
//! environment (tokens, shorthand grants). Every problem names its source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::identity::ServiceRegistry;
use super::policy::{shorthand_rules, Action, Effect, PolicyEngine, Rule};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    #[serde(default)]
    pub audit: Option<AuditEntry>,
    #[serde(default)]
    pub nats: Option<NatsEntry>,
    /// myVault's `application:` block: `port` is the default port (`PORT` wins);
    /// `title` and `version` are accepted and only informational.
    #[serde(default)]
    pub application: Option<ApplicationEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationEntry {
    pub title: Option<String>,
    pub version: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsEntry {
    #[serde(default)]
    pub acl: Vec<AclEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    pub subject: String,
    pub operations: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub permissions: Vec<PermissionEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionEntry {
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    #[serde(default)]
    pub roles: Vec<String>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub enabled: Option<bool>,
    pub ttl_days: Option<u32>,
    /// myVault's name for `ttl_days`.
    pub retention_days: Option<u32>,
    /// myVault's switch for logging reads. Every access is always audited here,
    /// so only `true` is accepted.
    pub log_access: Option<bool>,
}

/// What the service needs to authenticate and authorise callers.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub registry: ServiceRegistry,
    pub policies: PolicyEngine,
    pub audit_enabled: Option<bool>,
    pub audit_ttl_days: Option<u32>,
    /// `application.port`: the port when `PORT` is not set.
    pub port: Option<u16>,
    /// `nats.acl` as written: (subject, operations). The NATS module checks them.
    pub nats_acl: Vec<(String, Vec<String>)>,
    /// Where the settings came from (the config file's path), for error messages.
    pub source: String,
    /// config.yaml's policies and the services it gives role lists: read-only at run time.
    pub bootstrap: Bootstrap,
}

/// What config.yaml fixes: the run-time API may add to it, never change it.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// Every service's rules from config.yaml roles and the environment.
    pub engine: PolicyEngine,
    pub policies: BTreeMap<String, NamedPolicy>,
    /// Services listed under config.yaml `services` (their role lists are fixed).
    pub services: BTreeSet<String>,
}

/// A named policy as written, with its compiled rules.
#[derive(Debug, Clone)]
pub struct NamedPolicy {
    pub description: Option<String>,
    pub permissions: Vec<PermissionEntry>,
    pub rules: Vec<Rule>,
}

/// Settings named `ALLOW_...` that are not the `ALLOW_<service>` shorthand.
const NOT_SHORTHAND: &[&str] = &["ALLOW_EXPIRED_READS"];

pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn valid_pattern(p: &str) -> bool {
    !p.is_empty()
        && !p.chars().any(char::is_whitespace)
        && (p == "*"
            || p == "audit"
            || p == "sys"
            || p.starts_with("secret:")
            || p.starts_with("project:"))
}

/// Loads `config.yaml` (when `path` is given or exists) and the environment pairs.
pub fn load(
    path: &Path,
    required: bool,
    env: &[(String, String)],
    errors: &mut Vec<String>,
) -> AuthSettings {
    let file = match std::fs::read_to_string(path) {
        Ok(text) => match serde_norway::from_str::<Option<FileConfig>>(&text) {
            Ok(parsed) => parsed.unwrap_or_default(),
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                FileConfig::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => FileConfig::default(),
        Err(e) => {
            errors.push(format!(
                "`CONFIG_FILE` {} could not be read: {}",
                path.display(),
                e.kind()
            ));
            FileConfig::default()
        }
    };
    build(&file, &path.display().to_string(), env, errors)
}

/// `audit.ttl_days` or its myVault name `audit.retention_days` (both only if equal),
/// and `audit.log_access`, which may only be `true`.
fn audit_settings(
    audit: Option<&AuditEntry>,
    source: &str,
    errors: &mut Vec<String>,
) -> Option<u32> {
    let audit = audit?;
    if audit.log_access == Some(false) {
        errors.push(format!(
            "{source}: `audit.log_access: false` is not supported: every access is audited (leave it out or set `true`)"
        ));
    }
    match (audit.ttl_days, audit.retention_days) {
        (Some(ttl), Some(retention)) if ttl != retention => {
            errors.push(format!(
                "{source}: `audit.ttl_days` ({ttl}) and `audit.retention_days` ({retention}) disagree; give one"
            ));
            None
        }
        (ttl, retention) => ttl.or(retention),
    }
}

fn build(
    file: &FileConfig,
    source: &str,
    env: &[(String, String)],
    errors: &mut Vec<String>,
) -> AuthSettings {
    let policies = policy_rules(file, source, errors);
    let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
    let mut enabled: HashMap<String, bool> = HashMap::new();
    for service in &file.services {
        let where_ = format!("{source}: service `{}`", service.name);
        if !valid_service_name(&service.name) {
            errors.push(format!(
                "{where_}: name must be 1-64 letters, digits, `-`, `_` or `.`"
            ));
        }
        if enabled
            .insert(service.name.clone(), service.enabled)
            .is_some()
        {
            errors.push(format!("{where_}: defined twice"));
        }
        let service_rules = rules.entry(service.name.clone()).or_default();
        for role in &service.roles {
            match policies.get(role) {
                Some(p) => service_rules.extend(p.rules.iter().cloned()),
                None => errors.push(format!("{where_}: role `{role}` names no policy")),
            }
        }
    }
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(list) = var("ALLOWED_SERVICES") {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !valid_service_name(name) {
                errors.push(format!(
                    "`ALLOWED_SERVICES`: `{name}` is not a valid service name"
                ));
            }
            enabled.entry(name.to_string()).or_insert(true);
        }
    }
    for (key, value) in env {
        let Some(name) = key.strip_prefix("ALLOW_") else {
            continue;
        };
        if NOT_SHORTHAND.contains(&key.as_str()) {
            continue;
        }
        match shorthand_rules(value) {
            Ok(r) => {
                enabled.entry(name.to_string()).or_insert(true);
                rules.entry(name.to_string()).or_default().extend(r);
            }
            Err(e) => errors.push(format!("`{key}`: {e}")),
        }
    }
    let registry = ServiceRegistry::from_env(&enabled, env, errors);
    let nats_acl = file
        .nats
        .as_ref()
        .map(|n| {
            n.acl
                .iter()
                .map(|a| (a.subject.clone(), a.operations.clone()))
                .collect()
        })
        .unwrap_or_default();
    let engine = PolicyEngine::new(rules);
    AuthSettings {
        nats_acl,
        source: source.to_string(),
        registry,
        bootstrap: Bootstrap {
            engine: engine.clone(),
            policies,
            services: file.services.iter().map(|s| s.name.clone()).collect(),
        },
        policies: engine,
        audit_enabled: file.audit.as_ref().and_then(|a| a.enabled),
        audit_ttl_days: audit_settings(file.audit.as_ref(), source, errors),
        port: file.application.as_ref().and_then(|a| a.port),
    }
}

fn policy_rules(
    file: &FileConfig,
    source: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<String, NamedPolicy> {
    let mut policies = BTreeMap::new();
    for policy in &file.policies {
        let where_ = format!("{source}: policy `{}`", policy.name);
        let named = NamedPolicy {
            description: policy.description.clone(),
            permissions: policy.permissions.clone(),
            rules: compile_permissions(&where_, &policy.permissions, errors),
        };
        if policies.insert(policy.name.clone(), named).is_some() {
            errors.push(format!("{where_}: defined twice"));
        }
    }
    policies
}

/// A policy's permissions as rules; every problem is pushed to `errors`,
/// each prefixed with `where_` and the permission's number. The one check
/// for config.yaml policies and policies put at run time.
pub fn compile_permissions(
    where_: &str,
    permissions: &[PermissionEntry],
    errors: &mut Vec<String>,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (i, perm) in permissions.iter().enumerate() {
        let at = format!("{where_} permission {}", i + 1);
        let effect = match perm.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                errors.push(format!(
                    "{at}: effect must be `allow` or `deny` (got `{other}`)"
                ));
                continue;
            }
        };
        let mut actions = Vec::new();
        for a in &perm.actions {
            match Action::parse(a) {
                Some(action) => actions.push(action),
                None => errors.push(format!(
                    "{at}: unknown action `{a}` (expected read, write, delete, list or admin)"
                )),
            }
        }
        for p in perm.resources.iter().filter(|p| !valid_pattern(p)) {
            errors.push(format!(
                "{at}: bad resource pattern `{p}` (expected `secret:<project>:<path>`, `project:<name>`, `audit`, `sys` or `*`)"
            ));
        }
        if perm.actions.is_empty() || perm.resources.is_empty() {
            errors.push(format!("{at}: needs at least one action and one resource"));
        }
        rules.push(Rule::new(effect, actions, &perm.resources));
    }
    rules
}

/// Service names that have a token in the environment, for start-up warnings.
pub fn token_names(env: &[(String, String)]) -> BTreeSet<String> {
    env.iter()
        .filter_map(|(k, _)| k.strip_prefix("TOKEN_"))
        .map(|n| n.strip_suffix("_FILE").unwrap_or(n).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<AuthSettings, Vec<String>> {
        let file: FileConfig = serde_norway::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut errors = Vec::new();
        let settings = build(&file, "config.yaml", &env, &mut errors);
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    const GOOD: &str = r#"
policies:
  - name: reader
    permissions:
      - effect: allow
        actions: [read, list]
        resources: ["secret:app:*"]
      - effect: deny
        actions: [read]
        resources: ["secret:app:root/*"]
services:
  - name: web-api
    roles: [reader]
  - name: retired
    enabled: false
    roles: [reader]
"#;

    #[test]
    fn roles_resolve_to_their_policies() {
        let s = parse(
            GOOD,
            &[("TOKEN_web-api", "a-token-long-enough-0123456789abcdef")],
        )
        .expect("valid");
        assert!(s
            .policies
            .is_allowed("web-api", Action::Read, "secret:app:db"));
        assert!(!s
            .policies
            .is_allowed("web-api", Action::Read, "secret:app:root/key"));
        assert!(!s
            .policies
            .is_allowed("web-api", Action::Write, "secret:app:db"));
    }

    #[test]
    fn invalid_entries_name_the_file_entry_and_problem() {
        let cases = [
            (
                "policies: [{name: p, permissions: [{effect: allow, actions: [fly], resources: ['secret:*']}]}]",
                "config.yaml: policy `p` permission 1: unknown action `fly`",
            ),
            (
                "policies: [{name: p, permissions: [{effect: maybe, actions: [read], resources: ['secret:*']}]}]",
                "policy `p` permission 1: effect must be `allow` or `deny`",
            ),
            (
                "policies: [{name: p, permissions: [{effect: allow, actions: [read], resources: ['bucket:x']}]}]",
                "policy `p` permission 1: bad resource pattern `bucket:x`",
            ),
            ("services: [{name: s, roles: [ghost]}]", "service `s`: role `ghost` names no policy"),
            ("services: [{name: 'bad name', roles: []}]", "service `bad name`: name must be"),
            ("services: [{name: s}, {name: s}]", "service `s`: defined twice"),
        ];
        for (yaml, expected) in cases {
            let errors = parse(yaml, &[]).expect_err(yaml);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{yaml}: {errors:?}"
            );
        }
    }

    #[test]
    fn unknown_yaml_fields_are_rejected() {
        let err = serde_norway::from_str::<FileConfig>("polices: []").expect_err("typo");
        assert!(err.to_string().contains("unknown field `polices`"), "{err}");
    }

    #[test]
    fn env_shorthand_and_empty_config() {
        let s = parse("", &[("ALLOWED_SERVICES", "a,b"), ("ALLOW_a", "proj:x/")]).expect("valid");
        assert!(s.policies.is_allowed("a", Action::Read, "secret:proj:x/1"));
        assert!(
            !s.policies.is_allowed("b", Action::Read, "secret:proj:x/1"),
            "b has no grants"
        );
        let empty = parse("", &[]).expect("empty is valid");
        assert!(!empty
            .policies
            .is_allowed("a", Action::Read, "secret:proj:x/1"));
        let bad = parse("", &[("ALLOW_a", "nocolon")]).expect_err("bad shorthand");
        assert!(bad[0].contains("`ALLOW_a`"), "{bad:?}");
    }

    #[test]
    fn myvault_application_and_audit_fields_are_accepted() {
        let s = parse(
            "application: {title: myVault, version: '0.1.0', port: 8000}\naudit: {enabled: true, log_access: true, retention_days: 90}",
            &[],
        )
        .expect("myVault fields");
        assert_eq!(s.port, Some(8000));
        assert_eq!(s.audit_ttl_days, Some(90));
        assert_eq!(s.audit_enabled, Some(true));
        let same = parse("audit: {ttl_days: 30, retention_days: 30}", &[]).expect("equal");
        assert_eq!(same.audit_ttl_days, Some(30));
    }

    #[test]
    fn myvault_fields_that_cannot_mean_what_they_say_are_refused() {
        let cases = [
            (
                "audit: {log_access: false}",
                "`audit.log_access: false` is not supported",
            ),
            (
                "audit: {ttl_days: 30, retention_days: 90}",
                "`audit.ttl_days` (30) and `audit.retention_days` (90) disagree",
            ),
        ];
        for (yaml, expected) in cases {
            let errors = parse(yaml, &[]).expect_err(yaml);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{yaml}: {errors:?}"
            );
        }
        for typo in [
            "application: {name: x}",
            "audit: {log_reads: true}",
            "application: {port: http}",
        ] {
            assert!(
                serde_norway::from_str::<FileConfig>(typo).is_err(),
                "{typo} must be refused"
            );
        }
    }
}
