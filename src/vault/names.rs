//! Project and path names, parsed once at the edge (HTTP path, NATS `key`, CLI
//! argument) into types that every later function takes, so nothing after the
//! edge can receive an unchecked name.
//!
//! - project: 1-64 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`
//! - path: 1-512 characters; segments separated by `/`, each of
//!   `A-Z a-z 0-9 _ - .`; no empty segment (no leading, trailing or double `/`),
//!   no `.` or `..` segment; the last segment may not be `versions`, `restore`, `rotation` or `rotate`
//!   (they address sub-resources).
//! - key: `<project>/<path>`, split at the first `/`.

use crate::error::{ApiError, ErrorCode};

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

pub fn valid_project(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.starts_with('.') && name.chars().all(name_char)
}

/// A checked project name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        if valid_project(name) {
            Ok(Self(name.to_string()))
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidProject,
                "`project` must be 1-64 characters of letters, digits, `_`, `-` or `.`, not starting with `.`",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked secret path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretPath(String);

impl SecretPath {
    pub fn parse(path: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| ApiError::new(ErrorCode::InvalidPath, format!("`path` {why}"));
        if path.is_empty() || path.len() > 512 {
            return Err(bad("must be 1-512 characters"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        for segment in &segments {
            if segment.is_empty() {
                return Err(bad(
                    "must not have empty segments (leading, trailing or double `/`)",
                ));
            }
            if *segment == "." || *segment == ".." {
                return Err(bad("must not contain `.` or `..` segments"));
            }
            if !segment.chars().all(name_char) {
                return Err(bad(
                    "segments may hold only letters, digits, `_`, `-` and `.`",
                ));
            }
        }
        if matches!(
            segments.last(),
            Some(&"versions") | Some(&"restore") | Some(&"rotation") | Some(&"rotate")
        ) {
            return Err(bad(
                "must not end in `versions`, `restore`, `rotation` or `rotate` (reserved)",
            ));
        }
        Ok(Self(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked `project/path` pair: the address of one secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey {
    pub project: ProjectName,
    pub path: SecretPath,
}

impl SecretKey {
    pub fn new(project: &str, path: &str) -> Result<Self, ApiError> {
        Ok(Self {
            project: ProjectName::parse(project)?,
            path: SecretPath::parse(path)?,
        })
    }

    /// Parses `<project>/<path>` (a NATS `key`, a CLI argument).
    pub fn parse(key: &str) -> Result<Self, ApiError> {
        match key.split_once('/') {
            Some((project, path)) => Self::new(project, path),
            None => Err(ApiError::new(
                ErrorCode::InvalidPath,
                "`key` must be `<project>/<path>`",
            )),
        }
    }

    pub fn project(&self) -> &str {
        self.project.as_str()
    }

    pub fn path(&self) -> &str {
        self.path.as_str()
    }
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project(), self.path())
    }
}

impl std::str::FromStr for SecretKey {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_and_path_rules() {
        for ok in ["default", "news-bot", "a.b_c", "A1"] {
            assert!(ProjectName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a:b", "a/b", "a b", &"p".repeat(65), "ü"] {
            let err = ProjectName::parse(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidProject);
        }
        for ok in ["prod/db/password", "x", "a.b/c-d_e", "v1.2/versions-old"] {
            assert!(SecretPath::parse(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "1-512"),
            ("/lead", "empty segments"),
            ("trail/", "empty segments"),
            ("a//b", "empty segments"),
            ("a/../b", "`..`"),
            ("./a", "`..`"),
            ("a b", "only letters"),
            ("a:b", "only letters"),
            ("x/versions", "reserved"),
            ("restore", "reserved"),
        ];
        for (path, why) in cases {
            let err = SecretPath::parse(path).expect_err(path);
            assert_eq!(err.code, ErrorCode::InvalidPath);
            assert!(err.message.contains(why), "{path}: {}", err.message);
        }
        assert!(SecretPath::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn keys_split_at_the_first_slash() {
        let key = SecretKey::parse("billing/prod/db").expect("valid");
        assert_eq!((key.project(), key.path()), ("billing", "prod/db"));
        assert_eq!(key.to_string(), "billing/prod/db");
        let cases = [
            ("nopath", ErrorCode::InvalidPath),
            ("billing/", ErrorCode::InvalidPath),
            ("/prod/db", ErrorCode::InvalidProject),
            (".x/a", ErrorCode::InvalidProject),
            ("p/a/../b", ErrorCode::InvalidPath),
        ];
        for (key, code) in cases {
            assert_eq!(SecretKey::parse(key).expect_err(key).code, code, "{key}");
        }
    }
}
