//! `secrets.schema.json`: what one package needs from the vault, as a small
//! subset of JSON Schema. Parsing, validation, combining, and (in `codegen`)
//! typed clients generated from it. The CLI only reads files and calls these.
//!
//! The subset: a top-level object with `properties` whose names are secret
//! names (`STRIPE_API_KEY`); each property has a `description`, and optionally
//! `x-secret-path` (`project/path`, default `default/<NAME>`), `type`
//! (`string`, `integer`, `number`, `boolean`; default `string`) and `pattern`
//! (a regular expression the raw value must match somewhere). Anything else is
//! refused, so a misspelt keyword never silently does nothing. Every problem
//! is collected and reported at once.

pub mod codegen;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::vault::names::SecretKey;

/// Largest schema file read, in bytes.
pub const MAX_SCHEMA_BYTES: u64 = 256 * 1024;
/// Most secrets one schema (also a combined one) may name.
pub const MAX_SECRETS: usize = 256;
/// Longest secret name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest description (the server keeps this much on a stub).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest `pattern`, in characters.
pub const MAX_PATTERN_CHARS: usize = 512;
/// Most schema files `combine` takes.
pub const MAX_FILES: usize = 64;
/// The project of a secret without `x-secret-path`.
pub const DEFAULT_PROJECT: &str = "default";

/// Keywords of Rust (strict, reserved and 2024's `gen`), Python and
/// TypeScript/JavaScript: none is usable as an accessor in all three.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    // Rust
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen", "union",
    // Python
    "False", "None", "True", "and", "assert", "class", "def", "del", "elif", "except", "finally",
    "from", "global", "import", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "with",
    // TypeScript / JavaScript
    "case", "catch", "debugger", "default", "delete", "export", "extends", "function",
    "instanceof", "new", "null", "switch", "this", "throw", "var", "void", "implements",
    "interface", "package", "private", "protected", "public", "arguments", "eval", "undefined",
    "NaN", "Infinity",
];

/// Names the generated clients use for their own members, or that every
/// object already has in one of the languages.
const RESERVED_MEMBERS: &[&str] = &[
    "load",
    "load_from",
    "problems",
    "constructor",
    "prototype",
    "toString",
    "toJSON",
    "toLocaleString",
    "valueOf",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
];

/// What a secret's value must parse as; the accessor's type in each language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "string" => Some(Self::String),
            "integer" => Some(Self::Integer),
            "number" => Some(Self::Number),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// One secret a package needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSpec {
    pub name: String,
    pub description: String,
    /// Where it lives: `x-secret-path`, or `default/<NAME>`.
    pub key: SecretKey,
    /// Whether `x-secret-path` was given (kept when written back out).
    pub explicit_path: bool,
    pub kind: Kind,
    pub pattern: Option<String>,
}

/// A checked schema: secrets by name, sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    secrets: BTreeMap<String, SecretSpec>,
}

/// Every problem found, each naming where.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub problems: Vec<String>,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for SchemaError {}

impl SchemaError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// Why a value does not fit its secret's `type` or `pattern` (never quoting the value).
pub fn value_problem(spec: &SecretSpec, value: &str) -> Option<String> {
    let typed = match spec.kind {
        Kind::String => true,
        Kind::Integer => parse_integer(value).is_some(),
        Kind::Number => parse_number(value).is_some(),
        Kind::Boolean => matches!(value, "true" | "false"),
    };
    if !typed {
        return Some(format!("not {}", article(spec.kind)));
    }
    if let Some(p) = &spec.pattern {
        match regex::Regex::new(p) {
            Ok(re) if re.is_match(value) => {}
            _ => return Some("does not match its pattern".into()),
        }
    }
    None
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "a string",
        Kind::Integer => "an integer",
        Kind::Number => "a number",
        Kind::Boolean => "a boolean (`true` or `false`)",
    }
}

/// Largest integer every target language holds exactly (JavaScript's safe integers).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// `-?[0-9]+` within ±(2^53 − 1): the same rule in every generated client.
pub fn parse_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>()
        .ok()
        .filter(|n| n.abs() <= MAX_SAFE_INTEGER)
}

/// A JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) that is finite.
pub fn parse_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Why `name` cannot be a secret name, if it cannot: it must be an identifier
/// in Rust, Python and TypeScript and an environment variable name.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Some(format!("must be 1-{MAX_NAME_CHARS} characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(
            "must start with an ASCII letter and hold only ASCII letters, digits and `_`".into(),
        );
    }
    if KEYWORDS.contains(&name) {
        return Some("is a keyword in Rust, Python or TypeScript".into());
    }
    if RESERVED_MEMBERS.contains(&name) {
        return Some("is a member name the generated clients use themselves".into());
    }
    None
}

/// Why `pattern` may not mean the same to every client, if it may not: it
/// must compile with Rust's `regex` and keep to the syntax Python's `re` and
/// JavaScript's `RegExp` (with `u`) read alike: no `(?` group other than
/// `(?:` (inline flags, named groups), no POSIX class (`[[:alpha:]]`), and
/// only the escapes `\d \D \w \W \s \S \b \B \n \r \t \f` or a
/// backslash before ASCII punctuation (no `\p{..}`, `\A`, `\z`, `\x..`).
pub fn pattern_problem(pattern: &str) -> Option<String> {
    if regex::Regex::new(pattern).is_err() {
        return Some("is not a regular expression".into());
    }
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if "dDwWsSbBnrtf".contains(e) || e.is_ascii_punctuation() => {}
                Some(e) => {
                    return Some(format!(
                        "uses `\\{e}`, which Python, JavaScript and Rust do not read alike"
                    ))
                }
                None => return Some("ends with a lone backslash".into()),
            },
            '(' if chars.peek() == Some(&'?') => {
                chars.next();
                if chars.next() != Some(':') {
                    return Some(
                        "uses a `(?` group other than `(?:` (flags, names, look-around), \
                         which Python, JavaScript and Rust do not read alike"
                            .into(),
                    );
                }
            }
            '[' if pattern.contains("[[:") => {
                return Some(
                    "uses a POSIX class such as `[[:alpha:]]`, which only Rust reads".into(),
                )
            }
            _ => {}
        }
    }
    None
}

/// Shows a name from the file safely in a message (it may be anything).
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(MAX_NAME_CHARS).collect();
    let quoted = format!("{cut:?}");
    if cut.len() < name.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

impl Schema {
    /// Reads and checks a schema file, refusing one over `MAX_SCHEMA_BYTES`.
    pub fn read(path: &Path) -> Result<Self, SchemaError> {
        let shown_path = path.display();
        let file = std::fs::File::open(path)
            .map_err(|e| SchemaError::one(format!("cannot read {shown_path}: {}", e.kind())))?;
        let mut text = String::new();
        file.take(MAX_SCHEMA_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| SchemaError::one(format!("cannot read {shown_path}: {}", e.kind())))?;
        if text.len() as u64 > MAX_SCHEMA_BYTES {
            return Err(SchemaError::one(format!(
                "{shown_path}: a schema must be at most {MAX_SCHEMA_BYTES} bytes"
            )));
        }
        Self::parse(&text).map_err(|e| SchemaError {
            problems: e
                .problems
                .into_iter()
                .map(|p| format!("{shown_path}: {p}"))
                .collect(),
        })
    }

    /// Parses and checks a schema's text.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        if text.len() as u64 > MAX_SCHEMA_BYTES {
            return Err(SchemaError::one(format!(
                "a schema must be at most {MAX_SCHEMA_BYTES} bytes"
            )));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            SchemaError::one(format!(
                "not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(top) = value else {
            return Err(SchemaError::one("a schema must be a JSON object".into()));
        };
        let mut problems = Vec::new();
        let mut secrets = BTreeMap::new();
        for (key, v) in &top {
            match key.as_str() {
                "$schema" | "$id" | "$comment" | "title" | "description" => {
                    if !v.is_string() {
                        problems.push(format!("`{key}` must be a string"));
                    }
                }
                "type" => {
                    if v != "object" {
                        problems.push("`type` must be \"object\"".into());
                    }
                }
                "additionalProperties" => {
                    if !v.is_boolean() {
                        problems.push("`additionalProperties` must be true or false".into());
                    }
                }
                "required" | "properties" => {}
                other => problems.push(format!(
                    "unknown keyword {}: a schema may have `$schema`, `$id`, `$comment`, \
                     `title`, `description`, `type`, `properties`, `required`, \
                     `additionalProperties`",
                    shown(other)
                )),
            }
        }
        match top.get("properties") {
            None => problems.push("`properties` is missing".into()),
            Some(Value::Object(props)) => {
                if props.len() > MAX_SECRETS {
                    problems.push(format!(
                        "at most {MAX_SECRETS} secrets per schema (this one has {})",
                        props.len()
                    ));
                } else {
                    for (name, prop) in props {
                        match parse_secret(name, prop) {
                            Ok(spec) => {
                                secrets.insert(name.clone(), spec);
                            }
                            Err(mut p) => problems.append(&mut p),
                        }
                    }
                }
            }
            Some(_) => problems.push("`properties` must be an object".into()),
        }
        match top.get("required") {
            None => {}
            Some(Value::Array(names)) => {
                for n in names {
                    match n.as_str() {
                        Some(s) if top["properties"].get(s).is_some() => {}
                        Some(s) => problems.push(format!(
                            "`required` names {}, which is not in `properties`",
                            shown(s)
                        )),
                        None => problems.push("`required` must list names".into()),
                    }
                }
            }
            Some(_) => problems.push("`required` must be an array of names".into()),
        }
        if problems.is_empty() {
            Ok(Self { secrets })
        } else {
            Err(SchemaError { problems })
        }
    }

    /// The union of several schemas. A name in more than one must agree on
    /// everything (description, path, type, pattern); every disagreement is reported.
    pub fn combine(parts: &[(String, Schema)]) -> Result<Self, SchemaError> {
        if parts.len() > MAX_FILES {
            return Err(SchemaError::one(format!(
                "at most {MAX_FILES} schemas at once"
            )));
        }
        let mut secrets: BTreeMap<String, (String, SecretSpec)> = BTreeMap::new();
        let mut problems = Vec::new();
        for (origin, schema) in parts {
            for (name, spec) in &schema.secrets {
                match secrets.get(name) {
                    None => {
                        secrets.insert(name.clone(), (origin.clone(), spec.clone()));
                    }
                    Some((first, known)) => {
                        for field in disagreements(known, spec) {
                            problems
                                .push(format!("{name}: {first} and {origin} disagree on {field}"));
                        }
                    }
                }
            }
        }
        if secrets.len() > MAX_SECRETS {
            problems.push(format!(
                "at most {MAX_SECRETS} secrets in a combined schema (these have {})",
                secrets.len()
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                secrets: secrets.into_iter().map(|(k, (_, s))| (k, s)).collect(),
            })
        } else {
            Err(SchemaError { problems })
        }
    }

    /// The secrets, sorted by name.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretSpec> {
        self.secrets.values()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The schema as JSON Schema again (what `schema combine` prints); every secret required.
    pub fn to_json(&self) -> Value {
        let mut props = Map::new();
        for s in self.secrets() {
            let mut p = Map::new();
            p.insert("description".into(), json!(s.description));
            if s.explicit_path {
                p.insert("x-secret-path".into(), json!(s.key.to_string()));
            }
            p.insert("type".into(), json!(s.kind.as_str()));
            if let Some(pattern) = &s.pattern {
                p.insert("pattern".into(), json!(pattern));
            }
            props.insert(s.name.clone(), Value::Object(p));
        }
        let required: Vec<&str> = self.secrets().map(|s| s.name.as_str()).collect();
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": props,
            "required": required,
        })
    }
}

fn disagreements(a: &SecretSpec, b: &SecretSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if a.description != b.description {
        fields.push("`description`");
    }
    if a.key != b.key {
        fields.push("`x-secret-path`");
    }
    if a.kind != b.kind {
        fields.push("`type`");
    }
    if a.pattern != b.pattern {
        fields.push("`pattern`");
    }
    fields
}

fn parse_secret(name: &str, prop: &Value) -> Result<SecretSpec, Vec<String>> {
    let at = shown(name);
    let mut problems = Vec::new();
    if let Some(p) = name_problem(name) {
        problems.push(format!("secret name {at} {p}"));
    }
    let Value::Object(fields) = prop else {
        problems.push(format!("{at}: must be an object"));
        return Err(problems);
    };
    for key in fields.keys() {
        if !matches!(
            key.as_str(),
            "description" | "x-secret-path" | "type" | "pattern" | "$comment"
        ) {
            problems.push(format!(
                "{at}: unknown keyword {}: a secret may have `description`, `x-secret-path`, \
                 `type`, `pattern`",
                shown(key)
            ));
        }
    }
    let description = match fields.get("description") {
        Some(Value::String(d)) if d.trim().is_empty() => {
            problems.push(format!("{at}: `description` must not be empty"));
            String::new()
        }
        Some(Value::String(d)) if d.chars().count() > MAX_DESCRIPTION_CHARS => {
            problems.push(format!(
                "{at}: `description` must be at most {MAX_DESCRIPTION_CHARS} characters"
            ));
            String::new()
        }
        Some(Value::String(d)) => d.clone(),
        Some(_) => {
            problems.push(format!("{at}: `description` must be a string"));
            String::new()
        }
        None => {
            problems.push(format!(
                "{at}: `description` is missing (it says what the secret is for)"
            ));
            String::new()
        }
    };
    let default_key = || SecretKey::new(DEFAULT_PROJECT, name).ok();
    let (key, explicit_path) = match fields.get("x-secret-path") {
        None => (default_key(), false),
        Some(Value::String(p)) => match SecretKey::parse(p) {
            Ok(k) => (Some(k), true),
            Err(e) => {
                problems.push(format!("{at}: `x-secret-path`: {}", e.message));
                (None, true)
            }
        },
        Some(_) => {
            problems.push(format!(
                "{at}: `x-secret-path` must be a string `project/path`"
            ));
            (None, true)
        }
    };
    let kind = match fields.get("type") {
        None => Kind::String,
        Some(v) => match v.as_str().and_then(Kind::parse) {
            Some(k) => k,
            None => {
                problems.push(format!(
                    "{at}: `type` must be \"string\", \"integer\", \"number\" or \"boolean\""
                ));
                Kind::String
            }
        },
    };
    let pattern = match fields.get("pattern") {
        None => None,
        Some(Value::String(p)) if p.chars().count() > MAX_PATTERN_CHARS => {
            problems.push(format!(
                "{at}: `pattern` must be at most {MAX_PATTERN_CHARS} characters"
            ));
            None
        }
        Some(Value::String(p)) => {
            if let Some(why) = pattern_problem(p) {
                problems.push(format!("{at}: `pattern` {why}"));
            }
            Some(p.clone())
        }
        Some(_) => {
            problems.push(format!("{at}: `pattern` must be a string"));
            None
        }
    };
    match key {
        Some(key) if problems.is_empty() => Ok(SecretSpec {
            name: name.to_string(),
            description,
            key,
            explicit_path,
            kind,
            pattern,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(props: Value) -> Result<Schema, SchemaError> {
        Schema::parse(&json!({ "type": "object", "properties": props }).to_string())
    }

    #[test]
    fn a_schema_maps_names_to_paths_types_and_patterns() {
        let s = schema(json!({
            "STRIPE_API_KEY": {"description": "card payments", "x-secret-path": "billing/prod/stripe", "pattern": "^sk_"},
            "PORT": {"description": "listen port", "type": "integer"},
        }))
        .expect("valid");
        let specs: Vec<&SecretSpec> = s.secrets().collect();
        assert_eq!(specs[0].name, "PORT");
        assert_eq!(specs[0].key.to_string(), "default/PORT");
        assert_eq!(specs[0].kind, Kind::Integer);
        assert_eq!(specs[1].key.to_string(), "billing/prod/stripe");
        assert_eq!(specs[1].pattern.as_deref(), Some("^sk_"));
        // Written back out and read again, it is the same schema.
        assert_eq!(Schema::parse(&s.to_json().to_string()), Ok(s));
    }

    #[test]
    fn names_that_are_not_identifiers_everywhere_are_refused() {
        // (name, why it is refused)
        let cases = [
            ("", "empty"),
            ("1PASSWORD", "starts with a digit"),
            ("_HIDDEN", "starts with `_` (Python private, Rust `_`)"),
            ("__proto__", "dunder / JS prototype"),
            ("API-KEY", "`-` is not an identifier character"),
            ("API KEY", "space"),
            ("CLÉ", "not ASCII"),
            ("class", "Python / TypeScript keyword"),
            ("fn", "Rust keyword"),
            ("None", "Python keyword"),
            ("self", "Rust keyword"),
            ("load", "the generated clients' own member"),
            ("toString", "every JavaScript object has it"),
            (&"A".repeat(MAX_NAME_CHARS + 1), "too long"),
        ];
        for (name, why) in cases {
            let err = schema(json!({ name: {"description": "d"} }))
                .expect_err(&format!("{name:?} is refused: {why}"));
            assert!(
                err.problems[0].contains("secret name"),
                "{why}: {:?}",
                err.problems
            );
        }
        for name in [
            "A",
            "STRIPE_API_KEY",
            "dbPassword",
            "CLASS",
            &"A".repeat(64),
        ] {
            assert!(
                schema(json!({ name: {"description": "d"} })).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = schema(json!({
            "A": {"description": "", "type": "date"},
            "B": {"description": "b", "x-secret-path": "no-slash", "patern": "x"},
            "C": {"description": "c", "pattern": "("},
            "D": {"description": 5, "pattern": "x".repeat(MAX_PATTERN_CHARS + 1)},
            "E": {},
            "F": "text",
        }))
        .expect_err("invalid");
        let all = err.problems.join("\n");
        for expected in [
            "\"A\": `description` must not be empty",
            "\"A\": `type` must be",
            "\"B\": `x-secret-path`",
            "\"B\": unknown keyword \"patern\"",
            "\"C\": `pattern` is not a regular expression",
            "\"D\": `description` must be a string",
            "\"D\": `pattern` must be at most",
            "\"E\": `description` is missing",
            "\"F\": must be an object",
        ] {
            assert!(all.contains(expected), "{expected} in:\n{all}");
        }
    }

    #[test]
    fn patterns_keep_to_what_every_client_reads_alike() {
        // (pattern, accepted)
        let cases = [
            (r"^sk_(live|test)_[A-Za-z0-9]{24}$", true),
            (r"^\d+\.\d+$", true),
            (r"(?:ab)+\/\-", true),
            (r"(?i)^abc", false),
            (r"(?P<n>a)", false),
            (r"\p{L}+", false),
            (r"\Aabc\z", false),
            (r"\x41", false),
            (r"[[:alpha:]]", false),
            (r"(", false),
        ];
        for (pattern, accepted) in cases {
            assert_eq!(
                pattern_problem(pattern).is_none(),
                accepted,
                "{pattern}: {:?}",
                pattern_problem(pattern)
            );
        }
    }

    #[test]
    fn bounds_on_what_a_caller_controls() {
        let too_many: Map<String, Value> = (0..=MAX_SECRETS)
            .map(|i| (format!("S{i}"), json!({"description": "d"})))
            .collect();
        let err = schema(Value::Object(too_many)).expect_err("too many");
        assert!(err.problems[0].contains("at most 256 secrets"), "{err}");
        let huge = " ".repeat(MAX_SCHEMA_BYTES as usize + 1);
        assert!(Schema::parse(&huge).expect_err("too big").problems[0].contains("at most"));
        let long = "d".repeat(MAX_DESCRIPTION_CHARS + 1);
        assert!(schema(json!({"A": {"description": long}})).is_err());
        for bad in [
            "[]",
            "{",
            r#"{"properties": []}"#,
            r#"{"type": "array", "properties": {}}"#,
            r#"{"properties": {}, "required": ["NOPE"]}"#,
            r#"{"properties": {}, "items": {}}"#,
        ] {
            assert!(Schema::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reading_refuses_a_file_over_the_limit_without_reading_it_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; MAX_SCHEMA_BYTES as usize + 10]).expect("write");
        let err = Schema::read(&path).expect_err("too big");
        assert!(err.problems[0].contains("at most 262144 bytes"), "{err}");
        let err = Schema::read(&dir.path().join("absent.json")).expect_err("absent");
        assert!(err.problems[0].contains("cannot read"), "{err}");
    }

    #[test]
    fn combining_takes_the_union_and_duplicates_must_agree() {
        let a = schema(json!({
            "DB_URL": {"description": "database", "x-secret-path": "app/db"},
            "PORT": {"description": "port", "type": "integer"},
        }))
        .expect("a");
        let b = schema(json!({
            "DB_URL": {"description": "database", "x-secret-path": "app/db"},
            "TOKEN": {"description": "token"},
        }))
        .expect("b");
        let both =
            Schema::combine(&[("a.json".into(), a.clone()), ("b.json".into(), b)]).expect("agree");
        let names: Vec<&str> = both.secrets().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["DB_URL", "PORT", "TOKEN"]);
        let c = schema(json!({
            "DB_URL": {"description": "other", "x-secret-path": "app/db2", "type": "string"},
            "PORT": {"description": "port", "type": "number"},
        }))
        .expect("c");
        let err =
            Schema::combine(&[("a.json".into(), a), ("c.json".into(), c)]).expect_err("disagree");
        assert_eq!(
            err.problems,
            [
                "DB_URL: a.json and c.json disagree on `description`",
                "DB_URL: a.json and c.json disagree on `x-secret-path`",
                "PORT: a.json and c.json disagree on `type`",
            ]
        );
    }

    #[test]
    fn values_are_checked_against_type_and_pattern_without_quoting_them() {
        let s = schema(json!({
            "I": {"description": "i", "type": "integer"},
            "N": {"description": "n", "type": "number"},
            "B": {"description": "b", "type": "boolean"},
            "P": {"description": "p", "pattern": "^sk_[a-z]+$"},
        }))
        .expect("valid");
        let spec = |n: &str| s.secrets().find(|x| x.name == n).expect("spec").clone();
        // (secret, value, fits)
        let cases = [
            ("I", "42", true),
            ("I", "-7", true),
            ("I", "9007199254740991", true),
            ("I", "9007199254740992", false),
            ("I", "4.2", false),
            ("I", "+1", false),
            ("I", "", false),
            ("N", "4.25", true),
            ("N", "-1e3", true),
            ("N", "01", false),
            ("N", "1.", false),
            ("N", "NaN", false),
            ("N", "1e999", false),
            ("B", "true", true),
            ("B", "False", false),
            ("P", "sk_live", true),
            ("P", "pk_live", false),
        ];
        for (name, value, fits) in cases {
            let problem = value_problem(&spec(name), value);
            assert_eq!(problem.is_none(), fits, "{name}={value:?}: {problem:?}");
            if let Some(p) = problem {
                assert!(value.is_empty() || !p.contains(value), "{p}");
            }
        }
    }
}
