//! Project and path names: a documented character set, bounded, no traversal.
//!
//! - project: 1-64 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`
//! - path: 1-512 characters; segments separated by `/`, each of
//!   `A-Z a-z 0-9 _ - .`; no empty segment (no leading, trailing or double `/`),
//!   no `.` or `..` segment; the last segment may not be `versions` or `restore`
//!   (they address sub-resources).

use crate::error::ApiError;

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

pub fn valid_project(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.starts_with('.') && name.chars().all(name_char)
}

pub fn check_project(name: &str) -> Result<(), ApiError> {
    if valid_project(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_project",
            "`project` must be 1-64 characters of letters, digits, `_`, `-` or `.`, not starting with `.`",
        ))
    }
}

pub fn check_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_path", format!("`path` {why}"));
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
    if matches!(segments.last(), Some(&"versions") | Some(&"restore")) {
        return Err(bad("must not end in `versions` or `restore` (reserved)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_and_path_rules() {
        for ok in ["default", "news-bot", "a.b_c", "A1"] {
            assert!(valid_project(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a:b", "a/b", "a b", &"p".repeat(65), "ü"] {
            assert!(!valid_project(bad), "{bad:?}");
        }
        for ok in ["prod/db/password", "x", "a.b/c-d_e", "v1.2/versions-old"] {
            assert!(check_path(ok).is_ok(), "{ok}");
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
            let err = check_path(path).expect_err(path);
            assert_eq!(err.code, "invalid_path");
            assert!(err.message.contains(why), "{path}: {}", err.message);
        }
        assert!(check_path(&"a".repeat(513)).is_err());
    }
}
