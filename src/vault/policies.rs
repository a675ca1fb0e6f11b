//! Policies managed at run time. config.yaml (and the environment) is the
//! bootstrap: its policies and its services' role lists are read-only here
//! (409 `managed_by_config`). Run-time policies and role bindings live in
//! MongoDB; a service's rules are its bootstrap rules plus those of its
//! run-time roles, so default deny and "deny beats allow" hold for the union.
//!
//! Every replica reads the engine through a cheap swap ([`LivePolicies`]):
//! a lock held only to clone an `Arc`, never across an await. A change bumps
//! the `policy_state` version; each replica polls it every [`POLL`] and
//! rebuilds its engine when it moved, so a change applies everywhere within
//! about [`POLL`] plus one load (well under a second).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::DateTime as BsonDateTime;

use super::{utc, Op, RequestMeta, Vault};
use crate::auth::policy::{PolicyEngine, Rule};
use crate::auth::settings::{compile_permissions, valid_service_name, Bootstrap, PermissionEntry};
use crate::auth::Action;
use crate::error::{ApiError, ErrorCode};
use crate::store::policies::{self as store, BindingDoc, PermissionDoc, PolicyDoc};
use crate::store::StoreError;

/// How often each replica looks for a policy change.
pub const POLL: Duration = Duration::from_millis(250);
const MAX_PERMISSIONS: usize = 100;
const MAX_LIST_ENTRIES: usize = 100;
const MAX_PATTERN_CHARS: usize = 512;
const MAX_DESCRIPTION_CHARS: usize = 1024;
const MAX_ROLES: usize = 100;

/// The engine in force, swapped whole when the run-time policies change.
#[derive(Debug)]
pub struct LivePolicies {
    bootstrap: Bootstrap,
    /// The engine and the change version it was built from (-1: bootstrap only).
    current: RwLock<(i64, Arc<PolicyEngine>)>,
}

impl LivePolicies {
    pub fn new(bootstrap: Bootstrap) -> Self {
        let engine = Arc::new(bootstrap.engine.clone());
        Self {
            bootstrap,
            current: RwLock::new((-1, engine)),
        }
    }

    fn engine(&self) -> Arc<PolicyEngine> {
        match self.current.read() {
            Ok(guard) => guard.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    fn applied(&self) -> i64 {
        match self.current.read() {
            Ok(guard) => guard.0,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// Installs `engine` unless a newer one is already in force.
    fn install(&self, version: i64, engine: PolicyEngine) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if version >= guard.0 {
            *guard = (version, Arc::new(engine));
        }
    }

    pub fn is_allowed(&self, service: &str, action: Action, resource: &str) -> bool {
        self.engine().is_allowed(service, action, resource)
    }

    /// Whether any allow rule of `service` reaches a secret inside `project`.
    pub fn grants_anything_in_project(&self, service: &str, project: &str) -> bool {
        self.engine().grants_anything_in_project(service, project)
    }

    pub fn may_register_project(&self, service: &str, name: &str) -> bool {
        self.engine().may_register_project(service, name)
    }

    /// The bootstrap rules plus every run-time binding's roles. A binding of a
    /// config.yaml service, or a role whose policy is gone, adds nothing.
    fn build(&self, stored: &[PolicyDoc], bindings: &[BindingDoc]) -> PolicyEngine {
        let mut ignored = Vec::new();
        let runtime: HashMap<&str, Vec<Rule>> = stored
            .iter()
            .map(|p| {
                let perms: Vec<PermissionEntry> =
                    p.permissions.iter().cloned().map(entry).collect();
                (
                    p.name.as_str(),
                    compile_permissions("", &perms, &mut ignored),
                )
            })
            .collect();
        let mut more: HashMap<String, Vec<Rule>> = HashMap::new();
        for b in bindings
            .iter()
            .filter(|b| !self.bootstrap.services.contains(&b.service))
        {
            for role in &b.roles {
                let rules = match self.bootstrap.policies.get(role) {
                    Some(p) => Some(&p.rules),
                    None => runtime.get(role.as_str()),
                };
                if let Some(rules) = rules {
                    more.entry(b.service.clone())
                        .or_default()
                        .extend(rules.iter().cloned());
                }
            }
        }
        self.bootstrap.engine.extended(more)
    }
}

fn entry(p: PermissionDoc) -> PermissionEntry {
    PermissionEntry {
        effect: p.effect,
        actions: p.actions,
        resources: p.resources,
    }
}

fn doc_of(p: PermissionEntry) -> PermissionDoc {
    PermissionDoc {
        effect: p.effect,
        actions: p.actions,
        resources: p.resources,
    }
}

/// A policy as callers see it.
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<PermissionEntry>,
    /// `config` (read-only) or `runtime`.
    pub source: &'static str,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

impl From<PolicyDoc> for Policy {
    fn from(d: PolicyDoc) -> Self {
        Self {
            name: d.name,
            description: d.description,
            permissions: d.permissions.into_iter().map(entry).collect(),
            source: "runtime",
            updated_at: Some(utc(d.updated_at)),
            updated_by: Some(d.updated_by),
        }
    }
}

/// What a `PUT /api/policies/{name}` asks for.
pub struct PolicySpec {
    pub description: Option<String>,
    pub permissions: Vec<PermissionEntry>,
}

/// A service's run-time roles.
pub struct ServiceRoles {
    pub service: String,
    pub roles: Vec<String>,
}

/// Every problem of a policy, as config.yaml's checks word them.
fn policy_problems(name: &str, spec: &PolicySpec) -> Vec<String> {
    let where_ = format!("policy `{name}`");
    let mut problems = Vec::new();
    if !valid_service_name(name) {
        problems.push(format!(
            "{where_}: name must be 1-64 letters, digits, `-`, `_` or `.`"
        ));
    }
    if spec
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        problems.push(format!(
            "{where_}: description must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if spec.permissions.len() > MAX_PERMISSIONS {
        problems.push(format!("{where_}: at most {MAX_PERMISSIONS} permissions"));
    }
    for (i, p) in spec.permissions.iter().enumerate() {
        if p.actions.len() > MAX_LIST_ENTRIES || p.resources.len() > MAX_LIST_ENTRIES {
            problems.push(format!(
                "{where_} permission {}: at most {MAX_LIST_ENTRIES} actions and {MAX_LIST_ENTRIES} resources",
                i + 1
            ));
        }
        if p.resources.iter().any(|r| r.len() > MAX_PATTERN_CHARS) {
            problems.push(format!(
                "{where_} permission {}: a resource pattern over {MAX_PATTERN_CHARS} bytes",
                i + 1
            ));
        }
    }
    compile_permissions(&where_, &spec.permissions, &mut problems);
    problems
}

impl Vault {
    /// Loads the run-time policies and installs the engine they make.
    pub async fn reload_policies(&self) -> Result<(), StoreError> {
        // The version first: a change made while loading is seen by the next poll.
        let version = store::version(self.db()).await?;
        let stored = store::list(self.db()).await?;
        let bindings = store::list_bindings(self.db()).await?;
        let engine = self.policies.build(&stored, &bindings);
        self.policies.install(version, engine);
        Ok(())
    }

    /// Polls the change version every [`POLL`]; reloads when it moved.
    pub fn spawn_policy_watch(&self) {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let changed = match store::version(vault.db()).await {
                    Ok(v) => v != vault.policies.applied(),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not poll the policy version");
                        continue;
                    }
                };
                if changed {
                    if let Err(e) = vault.reload_policies().await {
                        tracing::warn!(error = %e, "could not reload the run-time policies");
                    }
                }
            }
        });
    }

    /// After a change: count it (so every replica reloads) and apply it here now.
    async fn policies_changed(&self) -> Result<(), ApiError> {
        store::bump(self.db()).await?;
        self.reload_policies().await?;
        Ok(())
    }

    fn config_policy(&self, name: &str) -> Option<Policy> {
        self.policies.bootstrap.policies.get(name).map(|p| Policy {
            name: name.to_string(),
            description: p.description.clone(),
            permissions: p.permissions.clone(),
            source: "config",
            updated_at: None,
            updated_by: None,
        })
    }

    /// Every policy: config.yaml's, then the run-time ones, each by name.
    pub async fn list_policies(&self, meta: &RequestMeta) -> Result<Vec<Policy>, ApiError> {
        self.run(Op::PolicyList, meta, async |_| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            let mut all: Vec<Policy> = self
                .policies
                .bootstrap
                .policies
                .keys()
                .filter_map(|name| self.config_policy(name))
                .collect();
            all.extend(store::list(self.db()).await?.into_iter().map(Policy::from));
            Ok(all)
        })
        .await
    }

    pub async fn policy(&self, meta: &RequestMeta, name: &str) -> Result<Policy, ApiError> {
        self.run(Op::PolicyRead, meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            scope.target(format!("policy:{name}"));
            if let Some(p) = self.config_policy(name) {
                return Ok(p);
            }
            match store::get(self.db(), name).await? {
                Some(d) => Ok(Policy::from(d)),
                None => Err(not_found()),
            }
        })
        .await
    }

    /// Creates or replaces a run-time policy.
    pub async fn put_policy(
        &self,
        meta: &RequestMeta,
        name: &str,
        spec: PolicySpec,
    ) -> Result<Policy, ApiError> {
        self.run(Op::PolicyPut, meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            scope.target(format!("policy:{name}"));
            self.refuse_config_policy(name)?;
            let problems = policy_problems(name, &spec);
            if !problems.is_empty() {
                return Err(ApiError::new(ErrorCode::InvalidPolicy, problems.join("; ")));
            }
            let doc = PolicyDoc {
                name: name.to_string(),
                description: spec.description,
                permissions: spec.permissions.into_iter().map(doc_of).collect(),
                updated_at: BsonDateTime::now(),
                updated_by: meta.actor().to_string(),
            };
            self.pending(meta, scope).await?;
            store::put(self.db(), &doc).await?;
            self.policies_changed().await?;
            Ok(Policy::from(doc))
        })
        .await
    }

    /// Deletes a run-time policy; bindings naming it then add nothing.
    pub async fn delete_policy(&self, meta: &RequestMeta, name: &str) -> Result<(), ApiError> {
        self.run(Op::PolicyDelete, meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            scope.target(format!("policy:{name}"));
            self.refuse_config_policy(name)?;
            if store::get(self.db(), name).await?.is_none() {
                return Err(not_found());
            }
            self.pending(meta, scope).await?;
            if !store::remove(self.db(), name).await? {
                return Err(not_found());
            }
            self.policies_changed().await
        })
        .await
    }

    /// Sets a service's run-time roles (an empty list removes them all).
    pub async fn put_service_roles(
        &self,
        meta: &RequestMeta,
        service: &str,
        roles: Vec<String>,
    ) -> Result<ServiceRoles, ApiError> {
        self.run(Op::ServiceRoles, meta, async |scope| {
            self.require(meta, Action::Admin, "sys", "sys")?;
            if !valid_service_name(service) {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "a service name is 1-64 letters, digits, `-`, `_` or `.`",
                ));
            }
            scope.target(format!("service:{service}"));
            if self.policies.bootstrap.services.contains(service) {
                return Err(ApiError::new(
                    ErrorCode::ManagedByConfig,
                    format!("service `{service}` has its roles in config.yaml; change them there"),
                ));
            }
            let roles: Vec<String> = roles
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if roles.len() > MAX_ROLES {
                return Err(ApiError::new(
                    ErrorCode::UnknownRole,
                    format!("at most {MAX_ROLES} roles"),
                ));
            }
            let mut unknown = Vec::new();
            for role in &roles {
                if !self.policies.bootstrap.policies.contains_key(role)
                    && store::get(self.db(), role).await?.is_none()
                {
                    unknown.push(format!("`{role}`"));
                }
            }
            if !unknown.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::UnknownRole,
                    format!("no policy named {}", unknown.join(", ")),
                ));
            }
            let binding = BindingDoc {
                service: service.to_string(),
                roles: roles.clone(),
                updated_at: BsonDateTime::now(),
                updated_by: meta.actor().to_string(),
            };
            self.pending(meta, scope).await?;
            store::bind(self.db(), &binding).await?;
            self.policies_changed().await?;
            Ok(ServiceRoles {
                service: service.to_string(),
                roles,
            })
        })
        .await
    }

    fn refuse_config_policy(&self, name: &str) -> Result<(), ApiError> {
        if self.policies.bootstrap.policies.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::ManagedByConfig,
                format!("policy `{name}` is defined in config.yaml; change it there"),
            ));
        }
        Ok(())
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::PolicyNotFound, "no policy with that name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{shorthand_rules, Effect};
    use crate::auth::settings::NamedPolicy;

    fn perm(effect: &str, actions: &[&str], resources: &[&str]) -> PermissionDoc {
        PermissionDoc {
            effect: effect.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            resources: resources.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn policy(name: &str, permissions: Vec<PermissionDoc>) -> PolicyDoc {
        PolicyDoc {
            name: name.into(),
            description: None,
            permissions,
            updated_at: BsonDateTime::now(),
            updated_by: "admin".into(),
        }
    }

    fn binding(service: &str, roles: &[&str]) -> BindingDoc {
        BindingDoc {
            service: service.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            updated_at: BsonDateTime::now(),
            updated_by: "admin".into(),
        }
    }

    /// config.yaml: policy `cfg` (read on `cfg`), service `fixed` with it;
    /// the environment: `shorty` with shorthand `short:`.
    fn live() -> LivePolicies {
        let cfg_rules = vec![Rule::new(
            Effect::Allow,
            vec![Action::Read],
            &["secret:cfg:*".to_string()],
        )];
        let engine = PolicyEngine::new(HashMap::from([
            ("fixed".to_string(), cfg_rules.clone()),
            (
                "shorty".to_string(),
                shorthand_rules("short:").expect("valid"),
            ),
        ]));
        LivePolicies::new(Bootstrap {
            engine,
            policies: [(
                "cfg".to_string(),
                NamedPolicy {
                    description: None,
                    permissions: Vec::new(),
                    rules: cfg_rules,
                },
            )]
            .into(),
            services: ["fixed".to_string()].into(),
        })
    }

    #[test]
    fn run_time_roles_add_to_the_bootstrap_and_never_override_it() {
        let live = live();
        let stored = [
            policy("rt", vec![perm("allow", &["read"], &["secret:rt:*"])]),
            policy(
                "no-rt-root",
                vec![perm("deny", &["read"], &["secret:rt:root/*"])],
            ),
        ];
        let bindings = [
            binding("shorty", &["rt", "no-rt-root"]),
            binding("newcomer", &["cfg", "gone"]),
            // A config.yaml service's role list is read-only: ignored.
            binding("fixed", &["rt"]),
        ];
        live.install(1, live.build(&stored, &bindings));
        let cases = [
            (
                "shorty keeps its shorthand",
                "shorty",
                "secret:short:x",
                true,
            ),
            (
                "shorty gains its run-time role",
                "shorty",
                "secret:rt:x",
                true,
            ),
            (
                "deny beats allow across roles",
                "shorty",
                "secret:rt:root/k",
                false,
            ),
            (
                "a run-time-only service gets a config policy",
                "newcomer",
                "secret:cfg:x",
                true,
            ),
            (
                "a role whose policy is gone adds nothing",
                "newcomer",
                "secret:rt:x",
                false,
            ),
            (
                "a config service's binding is ignored",
                "fixed",
                "secret:rt:x",
                false,
            ),
            (
                "a config service keeps its roles",
                "fixed",
                "secret:cfg:x",
                true,
            ),
            ("default deny", "stranger", "secret:cfg:x", false),
        ];
        for (case, service, resource, expected) in cases {
            assert_eq!(
                live.is_allowed(service, Action::Read, resource),
                expected,
                "{case}"
            );
        }
        // An older snapshot never replaces a newer one.
        live.install(0, live.build(&[], &[]));
        assert!(live.is_allowed("shorty", Action::Read, "secret:rt:x"));
        live.install(2, live.build(&[], &[]));
        assert!(!live.is_allowed("shorty", Action::Read, "secret:rt:x"));
        assert!(live.is_allowed("shorty", Action::Read, "secret:short:x"));
    }
}
