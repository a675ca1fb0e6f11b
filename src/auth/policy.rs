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
}

impl Rule {
    pub fn new(effect: Effect, actions: Vec<Action>, patterns: &[String]) -> Self {
        Self {
            effect,
            actions,
            resources: patterns.iter().map(|p| WildMatch::new(p)).collect(),
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
}
