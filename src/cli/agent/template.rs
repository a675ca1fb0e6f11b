//! Templates: minijinja (Jinja syntax) with `secret("project/path")`,
//! `secrets("project/prefix")`, `env("NAME")` and the `b64encode` filter.
//! Undefined names are errors. Rendering fetches each secret over the HTTP API
//! (once per refresh, shared by the templates of that refresh) and records
//! which secrets it used, with their versions and value digests: the
//! template's digest, so a change to any one of them re-renders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use sha2::{Digest as _, Sha256};

use crate::cli::client::Client;
use crate::vault::names::{ProjectName, SecretKey};

/// At most this many secrets under one `secrets(prefix)`.
const MAX_LISTED: usize = 1000;

/// A secret as one refresh read it.
#[derive(Clone)]
struct Fetched {
    version: i64,
    value: Value,
    sha256: [u8; 32],
}

/// One refresh's reads, shared by the templates it renders (so one value is
/// fetched once per refresh) and forgotten after it (so the next refresh
/// reads fresh values).
pub struct Reads {
    client: Arc<Client>,
    runtime: tokio::runtime::Handle,
    secrets: Mutex<HashMap<String, Result<Fetched, String>>>,
    lists: Mutex<HashMap<String, Result<Vec<String>, String>>>,
}

impl Reads {
    pub fn new(client: Arc<Client>, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Self {
            client,
            runtime,
            secrets: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
        })
    }

    /// The current version of `key`: called from a blocking thread.
    fn secret(&self, key: &SecretKey) -> Result<Fetched, String> {
        let name = key.to_string();
        if let Some(hit) = lock(&self.secrets).get(&name) {
            return hit.clone();
        }
        let answer = self.runtime.block_on(self.client.secret(key, None));
        let fetched = match answer {
            Ok(r) => STANDARD
                .decode(&r.value_b64)
                .map_err(|_| "unexpected answer from the service".to_string())
                .map(|bytes| Fetched {
                    version: r.version,
                    sha256: Sha256::digest(&bytes).into(),
                    value: match String::from_utf8(bytes) {
                        Ok(text) => Value::from(text),
                        Err(e) => Value::from_bytes(e.into_bytes()),
                    },
                }),
            Err(f) => Err(f.to_string()),
        };
        lock(&self.secrets).insert(name, fetched.clone());
        fetched
    }

    /// The keys under `project`/`prefix`.
    fn list(&self, project: &str, prefix: &str) -> Result<Vec<String>, String> {
        let name = format!("{project}/{prefix}");
        if let Some(hit) = lock(&self.lists).get(&name) {
            return hit.clone();
        }
        let answer = self
            .runtime
            .block_on(self.client.list_prefix(project, prefix, MAX_LISTED));
        let keys = match answer {
            Ok(items) => {
                let mut keys: Vec<String> = items.into_iter().map(|i| i.key).collect();
                keys.sort();
                Ok(keys)
            }
            Err(f) => Err(f.to_string()),
        };
        lock(&self.lists).insert(name, keys.clone());
        keys
    }

    /// Every value read so far (to keep them out of error messages).
    fn values(&self) -> Vec<String> {
        lock(&self.secrets)
            .values()
            .filter_map(|f| f.as_ref().ok())
            .filter_map(|f| {
                f.value
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .filter(|v| v.len() >= 3)
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one render used: each secret (with version and value digest, or
/// `None` when it could not be read) and each listed prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deps {
    pub keys: BTreeMap<String, Option<(i64, [u8; 32])>>,
    /// `(project, path prefix)`.
    pub prefixes: BTreeSet<(String, String)>,
}

impl Deps {
    /// Whether a change to `project`/`path` may change this render.
    pub fn touches(&self, project: &str, path: &str) -> bool {
        self.keys.contains_key(&format!("{project}/{path}"))
            || self
                .prefixes
                .iter()
                .any(|(p, prefix)| p == project && path.starts_with(prefix.as_str()))
    }

    /// The projects it read from.
    pub fn projects(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .keys
            .keys()
            .filter_map(|k| k.split_once('/').map(|(p, _)| p.to_string()))
            .collect();
        out.extend(self.prefixes.iter().map(|(p, _)| p.clone()));
        out
    }

    /// SHA-256 over every secret used (key, version, value digest) and every
    /// prefix listed.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (key, state) in &self.keys {
            h.update(key.as_bytes());
            match state {
                Some((version, sha)) => {
                    h.update(b"\0");
                    h.update(version.to_be_bytes());
                    h.update(sha);
                }
                None => h.update(b"\0missing"),
            }
            h.update(b"\n");
        }
        for (project, prefix) in &self.prefixes {
            h.update(b"prefix\0");
            h.update(project.as_bytes());
            h.update(b"/");
            h.update(prefix.as_bytes());
            h.update(b"\n");
        }
        h.finalize().into()
    }

    fn record(&mut self, key: &str, read: &Result<Fetched, String>) {
        self.keys.insert(
            key.to_string(),
            read.as_ref().ok().map(|f| (f.version, f.sha256)),
        );
    }
}

/// Strict about undefined names; values go into the file as they are (no
/// escaping, whatever the file's extension); a file's last newline is kept.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

/// Checks a template's syntax (at start-up, before any secret is read).
pub fn check(name: &str, text: &str) -> Result<(), String> {
    environment()
        .template_from_named_str(name, text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Renders `text`: the output, or a message naming what failed (never a value).
/// Call from a blocking thread (it waits on HTTP reads).
pub fn render(name: &str, text: &str, reads: &Arc<Reads>) -> (Deps, Result<String, String>) {
    let deps = Arc::new(Mutex::new(Deps::default()));
    let mut env = environment();
    {
        let (reads, deps) = (reads.clone(), deps.clone());
        env.add_function("secret", move |key: String| -> Result<Value, Error> {
            let parsed = SecretKey::parse(&key)
                .map_err(|e| invalid(format!("secret(\"{key}\"): {}", e.message)))?;
            let read = reads.secret(&parsed);
            lock(&deps).record(&key, &read);
            read.map(|f| f.value)
                .map_err(|m| invalid(format!("secret {key}: {m}")))
        });
    }
    {
        let (reads, deps) = (reads.clone(), deps.clone());
        env.add_function("secrets", move |prefix: String| -> Result<Value, Error> {
            let (project, path_prefix) = prefix.split_once('/').unwrap_or((prefix.as_str(), ""));
            ProjectName::parse(project)
                .map_err(|e| invalid(format!("secrets(\"{prefix}\"): {}", e.message)))?;
            lock(&deps)
                .prefixes
                .insert((project.to_string(), path_prefix.to_string()));
            let keys = reads
                .list(project, path_prefix)
                .map_err(|m| invalid(format!("secrets {prefix}: {m}")))?;
            let mut items = Vec::with_capacity(keys.len());
            for key in keys {
                let Ok(parsed) = SecretKey::parse(&key) else {
                    continue;
                };
                let read = reads.secret(&parsed);
                lock(&deps).record(&key, &read);
                let f = read.map_err(|m| invalid(format!("secret {key}: {m}")))?;
                let path = parsed.path().to_string();
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                items.push(minijinja::context! {
                    key => key,
                    project => parsed.project(),
                    path => path,
                    name => name,
                    value => f.value,
                    version => f.version,
                });
            }
            Ok(Value::from(items))
        });
    }
    env.add_function(
        "env",
        |name: String, default: Option<String>| -> Result<String, Error> {
            match (std::env::var(&name), default) {
                (Ok(v), _) => Ok(v),
                (Err(_), Some(d)) => Ok(d),
                (Err(_), None) => Err(invalid(format!(
                    "environment variable {name} is not set (or not UTF-8)"
                ))),
            }
        },
    );
    env.add_filter("b64encode", |v: Value| -> Result<String, Error> {
        v.as_bytes()
            .map(|b| STANDARD.encode(b))
            .ok_or_else(|| invalid("b64encode takes text or bytes".into()))
    });
    let rendered = env
        .template_from_named_str(name, text)
        .and_then(|t| t.render(minijinja::context! {}))
        .map_err(|e| scrub(&describe(&e), &reads.values()));
    let deps = lock(&deps).clone();
    (deps, rendered)
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// The error and its causes on one line (no source excerpt).
fn describe(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `message` with any value read replaced, in case a filter quoted one.
fn scrub(message: &str, values: &[String]) -> String {
    values.iter().fold(message.to_string(), |m, v| {
        m.replace(v.as_str(), "[redacted]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_touch_their_keys_and_prefixes_and_digest_every_part() {
        let mut deps = Deps::default();
        deps.keys
            .insert("billing/prod/db".into(), Some((3, [1; 32])));
        deps.prefixes.insert(("ops".into(), "tls/".into()));
        assert!(deps.touches("billing", "prod/db"));
        assert!(!deps.touches("billing", "prod/db2"));
        assert!(deps.touches("ops", "tls/new-cert"));
        assert!(!deps.touches("ops", "other"));
        assert_eq!(
            deps.projects().into_iter().collect::<Vec<_>>(),
            ["billing", "ops"]
        );
        let before = deps.digest();
        let mut bumped = deps.clone();
        bumped
            .keys
            .insert("billing/prod/db".into(), Some((4, [1; 32])));
        assert_ne!(before, bumped.digest(), "a new version changes the digest");
        let mut gone = deps.clone();
        gone.keys.insert("billing/prod/db".into(), None);
        assert_ne!(before, gone.digest(), "a missing secret changes the digest");
        assert_eq!(before, deps.clone().digest());
    }

    #[test]
    fn syntax_errors_are_found_before_any_read() {
        assert!(check("t", "{{ secret(\"a/b\") }}").is_ok());
        let e = check("t", "{% for x in y %}").expect_err("unclosed block");
        assert!(e.contains("t"), "{e}");
    }

    #[test]
    fn scrub_hides_values() {
        assert_eq!(
            scrub("cannot convert 'hunter22' to int", &["hunter22".into()]),
            "cannot convert '[redacted]' to int"
        );
    }
}
