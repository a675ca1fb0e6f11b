//! Secret scanning: find credentials in files before they are committed.
//!
//! A library the CLI (`secret-manager scan`) and the server can share: it
//! imports nothing else from the crate. One `RegexSet` pass over a file tells
//! which rules can match; only those rules then run with captures, so a file
//! is read a bounded number of times and every engine is linear (the `regex`
//! crate has no backtracking). A finding never carries the secret itself: a
//! masked preview and a fingerprint only.

pub mod cli;
pub mod report;
pub mod rules;
pub mod walk;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use rules::{Rule, RULES};

/// How bad a leak of this kind is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "`{s}` is not a severity (low, medium, high, critical)"
            )),
        }
    }
}

/// One candidate secret. Never holds the secret: `preview` is masked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub description: String,
    pub severity: Severity,
    /// 0 to 1: how sure the rule is that this is a real credential.
    pub confidence: f64,
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub preview: String,
    /// Stable across line moves: SHA-256 over the rule, the path and the
    /// secret, for baselines (see `fingerprint`).
    pub fingerprint: String,
    /// SHA-256 (hex) of the candidate alone: what `--check-vault` sends to the
    /// server to learn whether it is a managed secret. Never printed.
    #[serde(skip)]
    pub value_sha256: String,
}

/// A finding the server recognised as one of its secrets.
pub struct Managed {
    pub value_sha256: String,
    /// `project/path`.
    pub secret: String,
    pub version: i64,
    /// The secret's current version.
    pub current: bool,
}

/// Marks the findings that are managed secrets: the current version of one
/// is a live leak (`critical`, certain); an older kept version is `high`.
pub fn apply_matches(findings: &mut [Finding], managed: &[Managed]) {
    for f in findings.iter_mut() {
        let mut mine: Vec<&Managed> = managed
            .iter()
            .filter(|m| m.value_sha256 == f.value_sha256)
            .collect();
        mine.sort_by_key(|m| !m.current);
        let Some(m) = mine.first() else { continue };
        f.confidence = 1.0;
        if m.current {
            f.severity = Severity::Critical;
            f.description = format!("live managed secret leaked: {} v{}", m.secret, m.version);
        } else {
            f.severity = f.severity.max(Severity::High);
            f.description = format!(
                "managed secret leaked (an older version): {} v{}",
                m.secret, m.version
            );
        }
    }
}

/// At most this many findings are kept per file (a generated file full of
/// tokens says enough with the first thousand).
pub const MAX_FINDINGS_PER_FILE: usize = 1000;

/// The compiled rules.
pub struct Scanner {
    set: RegexSet,
    regexes: Vec<Regex>,
}

impl Scanner {
    /// Compiles every rule (an error here is a bug in the rules table; a unit
    /// test compiles them).
    pub fn new() -> Result<Self, regex::Error> {
        let set = regex::RegexSetBuilder::new(RULES.iter().map(|r| r.pattern))
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()?;
        let regexes = RULES
            .iter()
            .map(|r| {
                regex::RegexBuilder::new(r.pattern)
                    .size_limit(16 << 20)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        Ok(Scanner { set, regexes })
    }

    /// Every finding in `text`, in order of position; `path` only labels them.
    pub fn scan_text(&self, path: &str, text: &str) -> Vec<Finding> {
        let mut raw: Vec<(usize, usize, usize, f64)> = Vec::new(); // start, end, rule, confidence
        for index in self.set.matches(text).iter() {
            let rule = &RULES[index];
            for caps in self.regexes[index].captures_iter(text) {
                let Some(m) = caps.name("s").or_else(|| caps.get(0)) else {
                    continue;
                };
                let key = caps.name("k").map(|k| k.as_str());
                if let Some(confidence) = judge(rule, m.as_str(), key) {
                    raw.push((m.start(), m.end(), index, confidence));
                }
                if raw.len() >= 4 * MAX_FINDINGS_PER_FILE {
                    break;
                }
            }
        }
        // Where rules overlap (a Stripe key in `STRIPE_KEY=...` is also a
        // generic assignment), a vendor format beats a generic rule, then the
        // surest one speaks.
        raw.sort_by(|a, b| {
            RULES[a.2]
                .generic
                .cmp(&RULES[b.2].generic)
                .then(b.3.total_cmp(&a.3))
                .then(RULES[b.2].severity.cmp(&RULES[a.2].severity))
                .then(a.0.cmp(&b.0))
        });
        let mut kept: Vec<(usize, usize, usize, f64)> = Vec::new();
        for f in raw {
            if !kept.iter().any(|k| f.0 < k.1 && k.0 < f.1) {
                kept.push(f);
            }
        }
        kept.sort_by_key(|f| f.0);
        kept.truncate(MAX_FINDINGS_PER_FILE);
        let lines = LineIndex::new(text);
        kept.into_iter()
            .map(|(start, end, index, confidence)| {
                let rule = &RULES[index];
                let secret = &text[start..end];
                let (line, column) = lines.position(text, start);
                Finding {
                    rule: rule.id.to_string(),
                    description: rule.description.to_string(),
                    severity: rule.severity,
                    confidence: (confidence * 100.0).round() / 100.0,
                    path: path.to_string(),
                    line,
                    column,
                    preview: mask(secret),
                    fingerprint: fingerprint(rule.id, path, secret),
                    value_sha256: hex::encode(<Sha256 as Digest>::digest(secret.as_bytes())),
                }
            })
            .collect()
    }
}

/// The confidence that `secret` (matched by `rule`) is real, or `None` when
/// it is a placeholder, a reference or too regular to be a credential. `key`
/// is the name a generic value is assigned to.
fn judge(rule: &Rule, secret: &str, key: Option<&str>) -> Option<f64> {
    if looks_like_placeholder(secret) {
        return None;
    }
    let bits = entropy(secret);
    if bits < rule.min_entropy {
        return None;
    }
    if !rule.generic {
        return Some(if rule.id == "stripe-test-key" {
            0.6
        } else {
            0.95
        });
    }
    if looks_like_reference(secret) || key.is_some_and(names_no_secret) {
        return None;
    }
    if rule.id.starts_with("generic-") && is_uuid(secret) {
        return None;
    }
    if rule.id == "generic-secret-env" && looks_like_code(secret) {
        return None;
    }
    // Generic: surer the more random the value looks.
    let base = match rule.id {
        "connection-string-password" | "jdbc-password" | "ado-connection-string" => 0.8,
        "url-basic-auth" => 0.7,
        "aws-secret-access-key" | "heroku-api-key" | "datadog-api-key" | "cloudflare-api-token" => {
            0.85
        }
        _ => 0.5,
    };
    Some((base + 0.08 * (bits - rule.min_entropy)).clamp(0.3, 0.9))
}

/// Shannon entropy of the characters of `s`, in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn looks_like_placeholder(secret: &str) -> bool {
    const WORDS: &[&str] = &[
        "example",
        "xxxxxx",
        "******",
        "......",
        "placeholder",
        "changeme",
        "change_me",
        "change-me",
        "your_",
        "your-",
        "yourkey",
        "yourtoken",
        "yourpass",
        "dummy",
        "redacted",
        "sample",
        "abcdefgh",
        "12345678",
        "<",
        "${",
        "{{",
        "%(",
        "$(",
    ];
    let lower = secret.to_ascii_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}

/// A generic value that names a secret rather than being one: a variable,
/// an attribute path, a function call, an identifier.
fn looks_like_reference(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const REFS: &[&str] = &[
        "process.env",
        "os.environ",
        "os.getenv",
        "getenv",
        "settings.",
        "config.",
        "environ[",
        "secrets.",
        "vault:",
        "ref+",
        "arn:aws:",
        "http://",
        "https://",
        "file://",
        "true",
        "false",
        "null",
        "none",
        "password",
    ];
    if value.starts_with('$') || value.starts_with('@') || value.contains('(') {
        return true;
    }
    if REFS.iter().any(|r| lower.contains(r)) {
        return true;
    }
    if is_slug_or_path(value) {
        return true;
    }
    // An identifier or dotted name (`db_password_field`, `cfg.auth.token`,
    // `DB_PASSWORD`) rather than a value.
    let identifier = value
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '.' || c == '-');
    let has_digit = value.chars().any(|c| c.is_ascii_digit());
    let named =
        value.contains(['_', '.', '-']) || value == lower || value == value.to_ascii_uppercase();
    let file_path =
        value.starts_with('/') && value.matches('/').count() > 1 && !value.contains('+');
    (identifier && !has_digit && named) || file_path
}

/// A name that holds something about a secret, not the secret:
/// `secret_id`, `token_url`, `password_field`, `api_key_header`.
fn names_no_secret(key: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "id", "ids", "name", "names", "file", "path", "url", "uri", "type", "field", "header",
        "length", "size", "count", "policy", "ttl", "timeout", "prefix", "format", "mode",
        "version",
    ];
    let key = key.to_ascii_lowercase();
    ENDINGS.iter().any(|e| key.ends_with(e))
}

/// An unquoted value that is a program's expression (`r.secret_id,`,
/// `&strong,`, `Credentials::new()`), not a configuration value.
fn looks_like_code(value: &str) -> bool {
    value.ends_with([',', ';'])
        || value.starts_with('&')
        || value.contains(['(', ')', '{', '}', '[', ']'])
        || value.contains("::")
        || value.contains("->")
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Lower-case words joined by `-`, `_` or `/` (`billing/prod/db-password`,
/// `log-canary-5b1e2f`, `min-length-12`): names and paths, not secrets.
fn is_slug_or_path(value: &str) -> bool {
    let parts: Vec<&str> = value.split(['-', '_', '/']).collect();
    let words = parts
        .iter()
        .filter(|p| p.len() >= 3 && p.chars().all(|c| c.is_ascii_lowercase()))
        .count();
    parts.len() >= 2
        && words >= 2
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_/.".contains(c))
}

/// Shows only the start of a secret (a quarter of it, at most four
/// characters) and its length.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    let shown: String = secret.chars().take((n / 4).min(4)).collect();
    format!("{shown}****({n} chars)")
}

/// The baseline fingerprint of a finding: SHA-256 over rule, path and secret,
/// truncated to 128 bits. Like detect-secrets' baseline hashes, it lets a
/// weak password be guessed offline; the baseline is for the repository that
/// already holds the secret.
pub fn fingerprint(rule: &str, path: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    for part in ["secret-manager-scan-v1", rule, path, secret] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Byte offset → (line, column).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

#[cfg(test)]
mod tests;
