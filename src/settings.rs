//! Reading settings from the environment: the one loader for secret settings
//! (`X` or `X_FILE`) and the one boolean parser. A leaf: it imports nothing from
//! the crate, so any module that owns a setting can use it without importing `config`.
//!
//! Rules every secret setting follows:
//! - `X` holds the value; `X_FILE` names a file that holds it (Docker secrets).
//!   A variable that is empty or only whitespace counts as unset.
//! - Setting both is an error naming both variables.
//! - File contents lose trailing `\n` and `\r` characters only (the newline
//!   editors and `echo` add); any other whitespace is part of the value.
//! - Errors name the variable (and, for `X_FILE`, the path and the I/O error
//!   kind), never the value.

use std::time::Duration;

use secrecy::SecretString;
use zeroize::Zeroizing;

/// A secret setting that was set, and where it came from.
pub struct SecretSetting {
    pub value: SecretString,
    /// The variable it came from: `X`, or `X_FILE` with the file's path.
    origin: Origin,
}

enum Origin {
    Inline(String),
    File { variable: String, path: String },
}

impl SecretSetting {
    /// The variable it came from, quoted for an error message:
    /// "`MASTER_KEY`" or "`MASTER_KEY_FILE` (/run/secrets/key)". Never the value.
    pub fn origin(&self) -> String {
        match &self.origin {
            Origin::Inline(variable) => format!("`{variable}`"),
            Origin::File { variable, path } => format!("`{variable}` ({path})"),
        }
    }
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSetting")
            .field("origin", &self.origin())
            .finish_non_exhaustive()
    }
}

/// The value of `name` in `env`, when set to something other than whitespace.
fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// Loads the secret setting `name` from `name` or `name_FILE` in `env`.
/// `Ok(None)` when neither is set; see the module documentation for the rules.
pub fn secret(env: &[(String, String)], name: &str) -> Result<Option<SecretSetting>, String> {
    let file_var = format!("{name}_FILE");
    match (lookup(env, name), lookup(env, &file_var)) {
        (Some(_), Some(_)) => Err(format!(
            "set only one of `{name}` and `{file_var}`, not both"
        )),
        (None, None) => Ok(None),
        (Some(value), None) => Ok(Some(SecretSetting {
            value: SecretString::from(value),
            origin: Origin::Inline(name.to_string()),
        })),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| format!("`{file_var}` could not be read ({path}): {}", e.kind()))?;
            Ok(Some(SecretSetting {
                value: SecretString::from(text.trim_end_matches(['\n', '\r'])),
                origin: Origin::File {
                    variable: file_var,
                    path: path.to_string(),
                },
            }))
        }
    }
}

/// Parses a boolean setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`
/// (any case, surrounding whitespace ignored); unset or empty gives `default`.
pub fn boolean(name: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    let Some(text) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("`{name}` must be `true` or `false` (got `{text}`)")),
    }
}

/// Parses a duration setting: a whole number followed by `s`, `m`, `h` or
/// `d` (`90m`, `24h`, `7d`; a bare number is seconds), within `min..=max`;
/// unset or empty gives `default`.
pub fn duration(
    name: &str,
    value: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, String> {
    let Some(text) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    let bad = || {
        format!(
            "`{name}` must be a duration such as `90m`, `24h` or `7d`, from {}s to {}s (got `{text}`)",
            min.as_secs(),
            max.as_secs()
        )
    };
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)?;
    let d = Duration::from_secs(secs);
    if d < min || d > max {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_take_a_unit_and_stay_within_bounds() {
        let b = (Duration::from_secs(60), Duration::from_secs(86_400 * 90));
        let d = |v| duration("EVENTS_RETENTION", Some(v), Duration::from_secs(1), b);
        assert_eq!(d("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(d(" 90m "), Ok(Duration::from_secs(5400)));
        assert_eq!(d("7D"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(d("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(d("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            duration("X", None, Duration::from_secs(9), b),
            Ok(Duration::from_secs(9))
        );
        for bad in [
            "59s",
            "91d",
            "h",
            "1.5h",
            "-1h",
            "10w",
            "1e3",
            "99999999999999999999d",
        ] {
            let e = d(bad).expect_err(bad);
            assert!(
                e.starts_with("`EVENTS_RETENTION` must be a duration"),
                "{e}"
            );
        }
    }

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_inline_value_is_taken_as_is() {
        let s = secret(&env(&[("PW", " hunter2 ")]), "PW")
            .expect("valid")
            .expect("set");
        assert_eq!(s.value.expose_secret(), " hunter2 ");
        assert_eq!(s.origin(), "`PW`");
    }

    #[test]
    fn unset_empty_and_whitespace_only_variables_count_as_unset() {
        for pairs in [
            &[][..],
            &[("PW", "")][..],
            &[("PW", "  "), ("PW_FILE", "")][..],
        ] {
            let got = secret(&env(pairs), "PW").expect("no error");
            assert!(got.is_none(), "{pairs:?}: {got:?}");
        }
    }

    #[test]
    fn both_set_is_an_error_naming_both_variables_and_not_the_value() {
        let err = secret(
            &env(&[("PW", "hunter2-value"), ("PW_FILE", "/run/secrets/pw")]),
            "PW",
        )
        .expect_err("both set");
        assert!(err.contains("`PW`") && err.contains("`PW_FILE`"), "{err}");
        assert!(err.contains("not both"), "{err}");
        assert!(!err.contains("hunter2"), "value echoed: {err}");
    }

    #[test]
    fn file_contents_lose_trailing_newlines_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("hunter2\n", "hunter2"),
            ("hunter2\r\n", "hunter2"),
            ("hunter2\n\n", "hunter2"),
            ("hunter2", "hunter2"),
            ("  hunter2 \t\n", "  hunter2 \t"),
            ("", ""),
        ];
        for (i, (content, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("pw{i}"));
            std::fs::write(&path, content).expect("write");
            let path = path.to_str().expect("utf8");
            let s = secret(&env(&[("PW_FILE", path)]), "PW")
                .expect("readable")
                .expect("set");
            assert_eq!(s.value.expose_secret(), expected, "{content:?}");
            assert_eq!(s.origin(), format!("`PW_FILE` ({path})"));
        }
    }

    #[test]
    fn an_unreadable_file_names_the_variable_path_and_error_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("utf8");
        let err = secret(&env(&[("PW_FILE", missing)]), "PW").expect_err("missing file");
        assert!(err.contains("`PW_FILE` could not be read"), "{err}");
        assert!(err.contains(missing), "{err}");
        assert!(err.contains("not found"), "{err}");
        let dir_path = dir.path().to_str().expect("utf8");
        let err = secret(&env(&[("PW_FILE", dir_path)]), "PW").expect_err("a directory");
        assert!(err.contains("`PW_FILE` could not be read"), "{err}");
    }

    #[test]
    fn a_file_value_is_never_echoed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "file-secret-hunter2\n").expect("write");
        let path = path.to_str().expect("utf8");
        let s = secret(&env(&[("PW_FILE", path)]), "PW")
            .expect("readable")
            .expect("set");
        assert!(!s.origin().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let err = secret(&env(&[("PW_FILE", path), ("PW", "inline-hunter2")]), "PW")
            .expect_err("both set");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn booleans_accept_the_usual_spellings_in_any_case() {
        for yes in ["true", "TRUE", "1", "yes", "Yes", "on", " ON "] {
            assert_eq!(boolean("B", Some(yes), false), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "NO", "off", "Off"] {
            assert_eq!(boolean("B", Some(no), true), Ok(false), "{no}");
        }
        for default in [true, false] {
            assert_eq!(boolean("B", None, default), Ok(default));
            assert_eq!(boolean("B", Some(""), default), Ok(default));
            assert_eq!(boolean("B", Some("  "), default), Ok(default));
        }
    }

    #[test]
    fn a_bad_boolean_names_the_variable_and_the_text() {
        assert_eq!(
            boolean("AUDIT_ENABLED", Some(" Maybe "), true),
            Err("`AUDIT_ENABLED` must be `true` or `false` (got `Maybe`)".to_string())
        );
    }
}
