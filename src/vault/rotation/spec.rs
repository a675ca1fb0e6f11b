//! A rotation schedule as a caller gives it, checked: when (`every` or
//! `cron`, `window`), how new values are made (`generator`), and the
//! bounds on each. Pure: no storage, no clock but the one passed in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::error::{ApiError, ErrorCode};
use crate::store::rotation::GeneratorDoc;

/// The shortest period between rotations: a rotation with its retries takes
/// up to about a minute, and consumers that cache a value need time to take
/// the new one before `previous` (their fallback) is replaced again. An hour
/// is also 4× more often than AWS Secrets Manager allows.
pub const MIN_PERIOD: Duration = Duration::from_secs(3600);
/// The longest: ten years.
pub const MAX_PERIOD: Duration = Duration::from_secs(3650 * 86_400);
/// Without `every` or `cron`: 90 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(90 * 86_400);
/// The longest `window` (a random delay after the due time, spreading load).
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);
pub const MIN_LENGTH: i64 = 8;
pub const MAX_LENGTH: i64 = 4096;
pub const DEFAULT_LENGTH: i64 = 32;
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted text of a duration or cron field.
const MAX_FIELD_LEN: usize = 100;

/// Letters, digits and symbols that need no quoting in a shell or URL query.
pub const PASSWORD_CHARSET: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%*+-=?@^_";
/// URL- and filename-safe: RFC 4648 §5.
pub const TOKEN_CHARSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRotation, message)
}

/// When rotations are due.
#[derive(Debug, Clone)]
pub enum Period {
    Every(Duration),
    Cron(Box<croner::Cron>, String),
}

impl Period {
    /// `every` (a duration such as `90d`, `12h`) or `cron` (five fields, UTC);
    /// neither: every 90 days.
    pub fn parse(every: Option<&str>, cron: Option<&str>) -> Result<Self, ApiError> {
        match (every, cron) {
            (Some(_), Some(_)) => Err(bad("give `every` or `cron`, not both")),
            (None, None) => Ok(Period::Every(DEFAULT_PERIOD)),
            (Some(e), None) => {
                let d = duration("every", e)?;
                if !(MIN_PERIOD..=MAX_PERIOD).contains(&d) {
                    return Err(bad(
                        "`every` must be from 1h to 3650d (a rotation and its retries take up to a minute, and consumers need time to pick up a value)",
                    ));
                }
                Ok(Period::Every(d))
            }
            (None, Some(c)) => {
                if c.len() > MAX_FIELD_LEN {
                    return Err(bad("`cron` must be at most 100 characters"));
                }
                let parsed = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Disallowed)
                    .build()
                    .parse(c)
                    .map_err(|e| bad(format!("`cron` is not a five-field cron pattern: {e}")))?;
                let period = Period::Cron(Box::new(parsed), c.trim().to_string());
                period.check_gap(Utc::now())?;
                Ok(period)
            }
        }
    }

    /// A cron pattern whose occurrences come closer than `MIN_PERIOD` is refused.
    fn check_gap(&self, from: DateTime<Utc>) -> Result<(), ApiError> {
        let Period::Cron(cron, _) = self else {
            return Ok(());
        };
        let mut last = cron
            .find_next_occurrence(&from, false)
            .map_err(|e| bad(format!("`cron` never fires: {e}")))?;
        for _ in 0..48 {
            let Ok(next) = cron.find_next_occurrence(&last, false) else {
                break;
            };
            if (next - last).to_std().unwrap_or_default() < MIN_PERIOD {
                return Err(bad(
                    "`cron` must not fire more than once an hour (a rotation and its retries take up to a minute)",
                ));
            }
            last = next;
        }
        Ok(())
    }

    /// The first due time after `now` (before any window).
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::Every(d) => now + chrono::Duration::from_std(*d).unwrap_or_default(),
            Period::Cron(c, _) => c
                .find_next_occurrence(&now, false)
                .unwrap_or(now + chrono::Duration::from_std(DEFAULT_PERIOD).unwrap_or_default()),
        }
    }

    /// The shortest gap between two rotations (for the window's bound).
    fn min_gap(&self) -> Duration {
        match self {
            Period::Every(d) => *d,
            Period::Cron(cron, _) => {
                let mut gap = MAX_PERIOD;
                let Ok(mut last) = cron.find_next_occurrence(&Utc::now(), false) else {
                    return MIN_PERIOD;
                };
                for _ in 0..48 {
                    let Ok(next) = cron.find_next_occurrence(&last, false) else {
                        break;
                    };
                    gap = gap.min((next - last).to_std().unwrap_or(MIN_PERIOD));
                    last = next;
                }
                gap
            }
        }
    }

    pub fn every_secs(&self) -> Option<i64> {
        match self {
            Period::Every(d) => i64::try_from(d.as_secs()).ok(),
            Period::Cron(..) => None,
        }
    }

    pub fn cron(&self) -> Option<&str> {
        match self {
            Period::Cron(_, text) => Some(text),
            Period::Every(_) => None,
        }
    }

    /// From a stored schedule.
    pub fn stored(every_secs: Option<i64>, cron: Option<&str>) -> Self {
        match (every_secs, cron) {
            (_, Some(c)) => Period::parse(None, Some(c)).unwrap_or(Period::Every(DEFAULT_PERIOD)),
            (Some(s), None) => Period::Every(Duration::from_secs(u64::try_from(s).unwrap_or(1))),
            (None, None) => Period::Every(DEFAULT_PERIOD),
        }
    }
}

/// `window`: at most a day and less than the period.
pub fn window(text: Option<&str>, period: &Period) -> Result<Option<Duration>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let d = duration("window", text)?;
    if d.is_zero() || d > MAX_WINDOW || d >= period.min_gap() {
        return Err(bad(
            "`window` must be more than 0, at most 24h and shorter than the period",
        ));
    }
    Ok(Some(d))
}

/// A duration such as `90d`, `1h 30m` (humantime).
pub fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    if text.len() > MAX_FIELD_LEN {
        return Err(bad(format!("`{field}` must be at most 100 characters")));
    }
    humantime::parse_duration(text.trim()).map_err(|_| {
        bad(format!(
            "`{field}` must be a duration such as `90d`, `12h` or `1h 30m`"
        ))
    })
}

/// A due time moved by a random delay within the window.
pub fn jitter(at: DateTime<Utc>, window: Option<Duration>) -> DateTime<Utc> {
    let Some(w) = window.filter(|w| !w.is_zero()) else {
        return at;
    };
    let ms = rand::Rng::gen_range(&mut rand::rngs::OsRng, 0..w.as_millis().max(1) as u64);
    at + chrono::Duration::milliseconds(ms as i64)
}

/// How new values are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generator {
    pub kind: GeneratorKind,
    pub length: usize,
    /// For `password`: the characters to draw from.
    pub charset: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    /// `length` characters of `charset` (default `PASSWORD_CHARSET`).
    Password,
    /// `length` characters of `TOKEN_CHARSET`.
    Token,
    /// `length` random bytes.
    Bytes,
}

impl GeneratorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorKind::Password => "password",
            GeneratorKind::Token => "token",
            GeneratorKind::Bytes => "bytes",
        }
    }
}

impl Default for Generator {
    fn default() -> Self {
        Self {
            kind: GeneratorKind::Password,
            length: DEFAULT_LENGTH as usize,
            charset: None,
        }
    }
}

impl Generator {
    /// Checks a caller's generator: `length` 8-4096 (and at most `max_bytes`);
    /// `charset` only for `password`, 2-256 distinct printable ASCII characters.
    pub fn parse(
        kind: &str,
        length: Option<i64>,
        charset: Option<&str>,
        max_bytes: usize,
    ) -> Result<Self, ApiError> {
        let kind = match kind {
            "password" => GeneratorKind::Password,
            "token" => GeneratorKind::Token,
            "bytes" => GeneratorKind::Bytes,
            _ => {
                return Err(bad(
                    "`generator.kind` must be `password`, `token` or `bytes`",
                ))
            }
        };
        let length = length.unwrap_or(DEFAULT_LENGTH);
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) || length as usize > max_bytes {
            return Err(bad(format!(
                "`generator.length` must be {MIN_LENGTH}-{} (and at most MAX_SECRET_BYTES)",
                MAX_LENGTH.min(max_bytes as i64).max(MIN_LENGTH)
            )));
        }
        let charset = match (kind, charset) {
            (_, None) => None,
            (GeneratorKind::Password, Some(c)) => {
                let bytes = c.as_bytes();
                let mut seen = [false; 128];
                let printable = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
                let distinct = printable
                    && bytes
                        .iter()
                        .all(|&b| !std::mem::replace(&mut seen[b as usize], true));
                if !(2..=256).contains(&bytes.len()) || !distinct {
                    return Err(bad(
                        "`generator.charset` must be 2-256 distinct printable ASCII characters (no space)",
                    ));
                }
                Some(bytes.to_vec())
            }
            (_, Some(_)) => return Err(bad("`generator.charset` applies to `password` only")),
        };
        Ok(Self {
            kind,
            length: length as usize,
            charset,
        })
    }

    pub fn stored(doc: &GeneratorDoc, max_bytes: usize) -> Self {
        Self::parse(
            &doc.kind,
            Some(doc.length),
            doc.charset.as_deref(),
            max_bytes,
        )
        .unwrap_or_default()
    }

    pub fn to_doc(&self) -> GeneratorDoc {
        GeneratorDoc {
            kind: self.kind.as_str().to_string(),
            length: self.length as i64,
            charset: self
                .charset
                .as_ref()
                .map(|c| String::from_utf8_lossy(c).into_owned()),
        }
    }

    /// A new value from the operating system's random number generator.
    pub fn generate(&self) -> Zeroizing<Vec<u8>> {
        let mut rng = rand::rngs::OsRng;
        match self.kind {
            GeneratorKind::Bytes => {
                let mut out = Zeroizing::new(vec![0u8; self.length]);
                rng.fill_bytes(&mut out);
                out
            }
            GeneratorKind::Password | GeneratorKind::Token => {
                let set: &[u8] = match (self.kind, &self.charset) {
                    (GeneratorKind::Password, Some(c)) => c,
                    (GeneratorKind::Password, None) => PASSWORD_CHARSET.as_bytes(),
                    _ => TOKEN_CHARSET.as_bytes(),
                };
                let mut out = Zeroizing::new(Vec::with_capacity(self.length));
                for _ in 0..self.length {
                    // Uniform: `gen_range` rejects the biased tail.
                    out.push(set[rand::Rng::gen_range(&mut rng, 0..set.len())]);
                }
                out
            }
        }
    }
}

/// A receiver URL: http(s), at most 2048 characters, no credentials in it.
pub fn url(field: &str, text: &str) -> Result<String, ApiError> {
    let problem = || {
        bad(format!(
            "`{field}` must be an http:// or https:// URL of at most {MAX_URL_LEN} characters without credentials"
        ))
    };
    if text.len() > MAX_URL_LEN {
        return Err(problem());
    }
    let parsed = reqwest::Url::parse(text).map_err(|_| problem())?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(problem());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_bounded() {
        assert!(matches!(Period::parse(None, None), Ok(Period::Every(d)) if d == DEFAULT_PERIOD));
        assert!(Period::parse(Some("90d"), None).is_ok());
        assert!(Period::parse(Some("1h"), None).is_ok());
        for bad in ["59m", "0s", "3651d", "soon", ""] {
            let e = Period::parse(Some(bad), None).expect_err(bad);
            assert_eq!(e.code, ErrorCode::InvalidRotation, "{bad}");
        }
        assert!(Period::parse(None, Some("0 3 * * 1")).is_ok());
        for bad in [
            "* * * * *",
            "*/30 * * * *",
            "0 3 * *",
            "61 3 * * 1",
            "0 0 3 * * 1",
        ] {
            assert!(Period::parse(None, Some(bad)).is_err(), "{bad}");
        }
        assert!(Period::parse(Some("1d"), Some("0 3 * * 1")).is_err());
    }

    #[test]
    fn windows_are_shorter_than_the_period() {
        let day = Period::parse(Some("1d"), None).expect("1d");
        assert!(window(Some("1h"), &day).is_ok());
        assert!(window(Some("1d"), &day).is_err());
        assert!(window(Some("0s"), &day).is_err());
        assert!(window(Some("25h"), &Period::parse(Some("90d"), None).expect("90d")).is_err());
    }

    #[test]
    fn generators_draw_from_their_alphabet_at_their_length() {
        let p = Generator::parse("password", Some(64), None, 65_536).expect("password");
        let v = p.generate();
        assert_eq!(v.len(), 64);
        assert!(v.iter().all(|b| PASSWORD_CHARSET.as_bytes().contains(b)));
        let t = Generator::parse("token", Some(40), None, 65_536).expect("token");
        assert!(t
            .generate()
            .iter()
            .all(|b| TOKEN_CHARSET.as_bytes().contains(b)));
        let c = Generator::parse("password", Some(100), Some("ab"), 65_536).expect("ab");
        assert!(c.generate().iter().all(|b| *b == b'a' || *b == b'b'));
        let b = Generator::parse("bytes", Some(16), None, 65_536).expect("bytes");
        assert_ne!(*b.generate(), *b.generate());
        for (kind, len, cs) in [
            ("password", 7, None),
            ("password", 4097, None),
            ("uuid", 32, None),
            ("token", 32, Some("ab")),
            ("password", 32, Some("a")),
            ("password", 32, Some("aa")),
            ("password", 32, Some("a b")),
        ] {
            assert!(
                Generator::parse(kind, Some(len), cs, 65_536).is_err(),
                "{kind} {len} {cs:?}"
            );
        }
        assert!(Generator::parse("bytes", Some(64), None, 32).is_err());
    }

    #[test]
    fn urls_are_http_without_credentials() {
        assert!(url("verify_url", "http://127.0.0.1:9/verify").is_ok());
        for bad in ["ftp://x/", "http://u:p@x/", "not a url", "http://"] {
            assert!(url("verify_url", bad).is_err(), "{bad}");
        }
        assert!(url("verify_url", &format!("http://x/{}", "a".repeat(2048))).is_err());
    }
}
