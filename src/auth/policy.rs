//! Role-based policies: default deny, an explicit deny beats any allow.
//!
//! Resources are `secret:<project>:<path>`, `project:<name>`, `audit` and `sys`;
//! in patterns `*` matches any run of characters, `/` and `:` included.

use std::collections::HashMap;

use serde::Deserialize;
use wildmatch::WildMatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
    Delete,
    List,
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            "list" => Some(Action::List),
            "admin" => Some(Action::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One rule: an effect for some actions on resources matching any pattern.
#[derive(Debug, Clone)]
pub struct Rule {
    pub effect: Effect,
    pub actions: Vec<Action>,
    pub resources: Vec<WildMatch>,
    /// The patterns as written (`resources` compiled them).
    patterns: Vec<String>,
}

impl Rule {
    pub fn new(effect: Effect, actions: Vec<Action>, patterns: &[String]) -> Self {
        Self {
            effect,
            actions,
            resources: patterns.iter().map(|p| WildMatch::new(p)).collect(),
            patterns: patterns.to_vec(),
        }
    }

    fn applies(&self, action: Action, resource: &str) -> bool {
        self.actions.contains(&action) && self.resources.iter().any(|r| r.matches(resource))
    }
}

/// Every service's rules, resolved from its roles at start-up.
#[derive(Debug, Clone, Default)]
pub struct PolicyEngine {
    rules: HashMap<String, Vec<Rule>>,
}

impl PolicyEngine {
    pub fn new(rules: HashMap<String, Vec<Rule>>) -> Self {
        Self { rules }
    }

    /// These rules plus `more` for each service named (rules are only ever
    /// added, so default deny and "deny beats allow" hold for the union).
    pub fn extended(&self, more: HashMap<String, Vec<Rule>>) -> Self {
        let mut rules = self.rules.clone();
        for (service, extra) in more {
            rules.entry(service).or_default().extend(extra);
        }
        Self { rules }
    }

    pub fn is_allowed(&self, service: &str, action: Action, resource: &str) -> bool {
        let Some(rules) = self.rules.get(service) else {
            return false;
        };
        let mut allowed = false;
        for rule in rules.iter().filter(|r| r.applies(action, resource)) {
            match rule.effect {
                Effect::Deny => return false,
                Effect::Allow => allowed = true,
            }
        }
        allowed
    }

    /// Whether any allow rule of `service` reaches a secret inside `project`
    /// (`secret:<project>:<some path>`), for any action.
    pub fn grants_anything_in_project(&self, service: &str, project: &str) -> bool {
        let prefix = format!("secret:{project}:");
        self.rules.get(service).is_some_and(|rules| {
            rules
                .iter()
                .filter(|r| r.effect == Effect::Allow)
                .flat_map(|r| r.patterns.iter())
                .any(|p| may_match_below(p, &prefix))
        })
    }

    /// Who may register project `name`: a service with `write` on
    /// `project:<name>`, or one granted anything inside the project, unless
    /// `write` on `project:<name>` is explicitly denied to it.
    pub fn may_register_project(&self, service: &str, name: &str) -> bool {
        let resource = project_resource(name);
        self.is_allowed(service, Action::Write, &resource)
            || (self.grants_anything_in_project(service, name)
                && !self.is_denied(service, Action::Write, &resource))
    }

    /// An explicit deny rule covers `action` on `resource`.
    fn is_denied(&self, service: &str, action: Action, resource: &str) -> bool {
        self.rules.get(service).is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r.effect == Effect::Deny && r.applies(action, resource))
        })
    }
}

/// Whether `pattern` (`*` = any run, `?` = one character) matches some string
/// that starts with `prefix` and has at least one character after it.
fn may_match_below(pattern: &str, prefix: &str) -> bool {
    let mut rest = prefix.chars();
    let mut pattern = pattern.chars();
    loop {
        match (pattern.next(), rest.next()) {
            // A star can take the rest of the prefix and any path after it.
            (Some('*'), _) => return true,
            // The prefix is matched; what is left matches some path.
            (Some(_), None) => return true,
            (Some('?'), Some(_)) => {}
            (Some(p), Some(c)) if p == c => {}
            _ => return false,
        }
    }
}

/// The resource name of a secret.
pub fn secret_resource(project: &str, path: &str) -> String {
    format!("secret:{project}:{path}")
}

/// The resource name of a project.
pub fn project_resource(name: &str) -> String {
    format!("project:{name}")
}

/// Rules from the `ALLOW_<service>` shorthand: `proj:prefix,other:` grants read,
/// write, list and delete on secrets under each prefix, read and list on the
/// projects named, and all four on a project given whole (`other:`); `*` grants
/// them on every secret and project. Never `admin`.
pub fn shorthand_rules(spec: &str) -> Result<Vec<Rule>, String> {
    let actions = vec![Action::Read, Action::Write, Action::List, Action::Delete];
    let mut secret_patterns = Vec::new();
    let mut project_patterns = Vec::new();
    let mut owned_projects = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            secret_patterns.push("secret:*".to_string());
            owned_projects.push("project:*".to_string());
            continue;
        }
        let Some((project, prefix)) = entry.split_once(':') else {
            return Err(format!("`{entry}` is not `project:path-prefix` (or `*`)"));
        };
        if project.is_empty() || project.contains('*') || prefix.contains('*') {
            return Err(format!(
                "`{entry}` must name a project and a plain path prefix (no `*`)"
            ));
        }
        secret_patterns.push(format!("secret:{project}:{prefix}*"));
        if prefix.is_empty() {
            owned_projects.push(format!("project:{project}"));
        } else {
            project_patterns.push(format!("project:{project}"));
        }
    }
    Ok(vec![
        Rule::new(Effect::Allow, actions.clone(), &secret_patterns),
        Rule::new(Effect::Allow, actions, &owned_projects),
        Rule::new(
            Effect::Allow,
            vec![Action::Read, Action::List],
            &project_patterns,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(service: &str, rules: Vec<Rule>) -> PolicyEngine {
        PolicyEngine::new(HashMap::from([(service.to_string(), rules)]))
    }

    fn allow(actions: &[Action], patterns: &[&str]) -> Rule {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Rule::new(Effect::Allow, actions.to_vec(), &p)
    }

    fn deny(actions: &[Action], patterns: &[&str]) -> Rule {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Rule::new(Effect::Deny, actions.to_vec(), &p)
    }

    #[test]
    fn matcher_table() {
        use Action::*;
        let e = engine(
            "svc",
            vec![
                allow(&[Read, List], &["secret:myproject*:prod/*"]),
                allow(&[Write], &["secret:shared:*"]),
                deny(&[Read], &["secret:myproject:prod/root-*"]),
                allow(&[Admin], &["audit"]),
            ],
        );
        let cases = [
            (
                "wildcard project and nested path",
                "svc",
                Read,
                "secret:myproject:prod/db/password",
                true,
            ),
            (
                "project wildcard matches suffix",
                "svc",
                Read,
                "secret:myproject-eu:prod/x",
                true,
            ),
            (
                "other path prefix",
                "svc",
                Read,
                "secret:myproject:staging/x",
                false,
            ),
            (
                "action not granted",
                "svc",
                Write,
                "secret:myproject:prod/x",
                false,
            ),
            (
                "list granted alongside read",
                "svc",
                List,
                "secret:myproject:prod/x",
                true,
            ),
            (
                "explicit deny beats allow",
                "svc",
                Read,
                "secret:myproject:prod/root-token",
                false,
            ),
            (
                "deny is per action",
                "svc",
                List,
                "secret:myproject:prod/root-token",
                true,
            ),
            (
                "star crosses slashes",
                "svc",
                Write,
                "secret:shared:a/b/c",
                true,
            ),
            (
                "star does not make a prefix match a different project",
                "svc",
                Write,
                "secret:sharedx:a",
                false,
            ),
            ("exact resource", "svc", Admin, "audit", true),
            ("admin is not implied", "svc", Admin, "sys", false),
            (
                "unknown service",
                "other",
                Read,
                "secret:myproject:prod/x",
                false,
            ),
        ];
        for (case, service, action, resource, expected) in cases {
            assert_eq!(e.is_allowed(service, action, resource), expected, "{case}");
        }
    }

    #[test]
    fn empty_configuration_denies_everything() {
        let e = PolicyEngine::default();
        for action in [
            Action::Read,
            Action::Write,
            Action::Delete,
            Action::List,
            Action::Admin,
        ] {
            assert!(!e.is_allowed("svc", action, "secret:default:x"));
        }
        let no_rules = engine("svc", vec![]);
        assert!(!no_rules.is_allowed("svc", Action::Read, "secret:a:b"));
    }

    #[test]
    fn shorthand_prefixes_grant_crud_inside_only() {
        let e = engine(
            "newsbot",
            shorthand_rules("newsbot:prod/, common:").expect("valid"),
        );
        let cases = [
            (Action::Read, "secret:newsbot:prod/api-key", true),
            (Action::Write, "secret:newsbot:prod/a/b", true),
            (Action::Delete, "secret:newsbot:prod/x", true),
            (Action::List, "secret:newsbot:prod/x", true),
            (Action::Read, "secret:newsbot:staging/x", false),
            (Action::Read, "secret:newsbot:prodx", false),
            (Action::Read, "secret:common:anything/at/all", true),
            (Action::Read, "secret:commons:x", false),
            (Action::Admin, "secret:common:x", false),
            (Action::List, "project:newsbot", true),
            (Action::Write, "project:newsbot", false),
            (Action::Write, "project:common", true),
        ];
        for (action, resource, expected) in cases {
            assert_eq!(
                e.is_allowed("newsbot", action, resource),
                expected,
                "{action:?} {resource}"
            );
        }
        let all = engine("dev", shorthand_rules("*").expect("star"));
        assert!(all.is_allowed("dev", Action::Write, "secret:any:thing"));
        assert!(!all.is_allowed("dev", Action::Admin, "audit"));
    }

    #[test]
    fn bad_shorthand_is_rejected() {
        for bad in ["noproject", "p*:x", "a:b*", ":x"] {
            assert!(shorthand_rules(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn anything_granted_inside_a_project_lets_a_service_register_it() {
        let e = PolicyEngine::new(HashMap::from([
            (
                "newsbot-api".to_string(),
                shorthand_rules("newsbot:prod/,common:").expect("valid"),
            ),
            (
                "worker".to_string(),
                vec![allow(&[Action::Read], &["secret:myproject:prod/worker/*"])],
            ),
            (
                "editor".to_string(),
                vec![allow(&[Action::Read], &["secret:myproject*:prod/*"])],
            ),
            (
                "odd".to_string(),
                vec![
                    allow(&[Action::Read], &["secret:a?c:*", "secret:exact:"]),
                    deny(&[Action::Write], &["project:abc"]),
                ],
            ),
            (
                "denied-inside".to_string(),
                vec![deny(&[Action::Read], &["secret:newsbot:*"])],
            ),
            (
                "everything".to_string(),
                vec![allow(&[Action::Read], &["*"])],
            ),
        ]));
        let cases = [
            ("newsbot-api", "newsbot", true, "a prefix inside it"),
            ("newsbot-api", "common", true, "the whole project"),
            ("newsbot-api", "newsbots", false, "a longer name"),
            ("newsbot-api", "news", false, "a shorter name"),
            ("worker", "myproject", true, "a read grant is a grant"),
            ("worker", "myproject-eu", false, "another project"),
            ("editor", "myproject-eu", true, "a wildcard in the project"),
            ("editor", "other", false, "the wildcard does not reach it"),
            ("odd", "abd", false, "`?` is one character"),
            (
                "odd",
                "abc",
                false,
                "an explicit deny of `write` on the project",
            ),
            ("odd", "exact", false, "an empty path is no secret"),
            ("denied-inside", "newsbot", false, "a deny is no grant"),
            ("everything", "anything", true, "`*`"),
            ("nobody", "newsbot", false, "unknown service"),
        ];
        for (service, project, expected, case) in cases {
            assert_eq!(
                e.may_register_project(service, project),
                expected,
                "{case}: {service} registering {project}"
            );
        }
    }
}
