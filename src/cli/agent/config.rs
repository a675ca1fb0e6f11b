//! `agent.yaml`: what the agent renders and supervises. Validation collects
//! every problem and names the field; the token never lives in this file
//! (`VAULT_TOKEN`, `VAULT_TOKEN_FILE` or `token_file`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::vault::names::SecretKey;

/// At most this many templates (a bound on what a config file may ask for).
const MAX_TEMPLATES: usize = 256;
/// At most this many bytes of one template's source.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The service URL (the command line and `VAULT_URL` win).
    pub url: Option<String>,
    /// Sent as X-Service (`VAULT_SERVICE` wins).
    pub service: Option<String>,
    /// A file holding the token (`VAULT_TOKEN` / `VAULT_TOKEN_FILE` win).
    pub token_file: Option<PathBuf>,
    /// PEM of the CA to trust (`VAULT_CACERT` wins).
    pub cacert: Option<PathBuf>,
    /// Only so that a token written here gets a clear refusal.
    #[serde(default)]
    token: Option<serde::de::IgnoredAny>,
    /// How often to poll while the event stream is unavailable (`30s`).
    pub poll_interval: Option<DurationText>,
    #[serde(default)]
    pub templates: Vec<TemplateFile>,
    pub exec: Option<ExecFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// A template file (relative to the config file's directory).
    pub source: Option<PathBuf>,
    /// Or the template itself.
    pub contents: Option<String>,
    pub destination: PathBuf,
    /// Octal, as text (`"0640"`) or a number; default 0600.
    pub mode: Option<Mode>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// A shell command run after the first render and after each change.
    pub command: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecFile {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Environment variable → `project/path`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartFile {
    /// Send this signal (`SIGHUP`) on a template change instead of restarting.
    pub signal: Option<String>,
    /// How long a stopping child has between SIGTERM and SIGKILL (`10s`).
    pub grace: Option<DurationText>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Mode {
    Text(String),
    Number(u32),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    Seconds(u64),
    Text(String),
}

/// Where a template's text comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Inline(String),
}

/// One template, checked.
#[derive(Debug, Clone)]
pub struct Template {
    /// For messages: the source file or `templates[i]`.
    pub name: String,
    pub text: String,
    pub destination: PathBuf,
    pub mode: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub command: Option<String>,
}

/// What to do with a supervised child when a template it reads changes
/// (a change of its environment always restarts it).
#[derive(Debug, Clone, Copy)]
pub enum OnChange {
    Restart,
    Signal(Signal),
}

#[derive(Debug, Clone)]
pub struct Exec {
    pub command: Vec<String>,
    pub env: Vec<(String, SecretKey)>,
    pub on_change: OnChange,
    pub grace: Duration,
}

/// The agent's plan, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub templates: Vec<Template>,
    pub exec: Option<Exec>,
    pub poll_interval: Duration,
    /// Render once and exit.
    pub once: bool,
}

pub const DEFAULT_POLL: Duration = Duration::from_secs(30);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Reads `path` (YAML).
pub fn read(path: &Path) -> Result<File, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {}", path.display(), e.kind())])?;
    let file: File = serde_norway::from_str(&text)
        .map_err(|e| vec![format!("{} is not an agent config: {e}", path.display())])?;
    if file.token.is_some() {
        return Err(vec![format!(
            "{}: `token` does not belong in the file; use VAULT_TOKEN, VAULT_TOKEN_FILE or `token_file`",
            path.display()
        )]);
    }
    Ok(file)
}

/// `SRC:DEST` of `--template`.
pub fn template_flag(arg: &str) -> Result<TemplateFile, String> {
    let (src, dest) = arg
        .split_once(':')
        .filter(|(s, d)| !s.is_empty() && !d.is_empty())
        .ok_or_else(|| "must be SOURCE:DESTINATION".to_string())?;
    Ok(TemplateFile {
        source: Some(src.into()),
        contents: None,
        destination: dest.into(),
        mode: None,
        user: None,
        group: None,
        command: None,
    })
}

/// Checks every part of `file` (templates relative to `base`), collecting
/// every problem.
pub fn plan(
    file: File,
    base: &Path,
    poll: Option<Duration>,
    once: bool,
) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    if file.templates.is_empty() && file.exec.is_none() {
        problems.push("nothing to do: give templates (or --template) or exec".to_string());
    }
    if file.templates.len() > MAX_TEMPLATES {
        problems.push(format!("at most {MAX_TEMPLATES} templates"));
    }
    let mut templates = Vec::new();
    for (i, t) in file.templates.into_iter().enumerate() {
        let at = format!("templates[{i}]");
        match template(t, base, &at) {
            Ok(t) => templates.push(t),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let poll_interval = match (poll, &file.poll_interval) {
        (Some(d), _) => d,
        (None, Some(d)) => duration(d, "poll_interval", &mut problems).unwrap_or(DEFAULT_POLL),
        (None, None) => DEFAULT_POLL,
    };
    if poll_interval.is_zero() {
        problems.push("the poll interval must be positive".into());
    }
    let exec = file.exec.and_then(|e| exec(e, &mut problems));
    if once && exec.is_some() {
        problems.push("--once renders and exits: it cannot supervise `exec`".into());
    }
    if problems.is_empty() {
        Ok(Plan {
            templates,
            exec,
            poll_interval,
            once,
        })
    } else {
        Err(problems)
    }
}

fn template(t: TemplateFile, base: &Path, at: &str) -> Result<Template, Vec<String>> {
    let mut problems = Vec::new();
    let (name, text) = match (t.source, t.contents) {
        (Some(src), None) => {
            let path = base.join(&src);
            let name = src.display().to_string();
            match std::fs::read(&path) {
                Ok(bytes) if bytes.len() > MAX_TEMPLATE_BYTES => {
                    problems.push(format!(
                        "{at}: {name} is larger than {MAX_TEMPLATE_BYTES} bytes"
                    ));
                    (name, String::new())
                }
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => (name, text),
                    Err(_) => {
                        problems.push(format!("{at}: {name} is not UTF-8 text"));
                        (name, String::new())
                    }
                },
                Err(e) => {
                    problems.push(format!(
                        "{at}: cannot read {}: {}",
                        path.display(),
                        e.kind()
                    ));
                    (name, String::new())
                }
            }
        }
        (None, Some(text)) if text.len() > MAX_TEMPLATE_BYTES => {
            problems.push(format!(
                "{at}: contents are larger than {MAX_TEMPLATE_BYTES} bytes"
            ));
            (at.to_string(), String::new())
        }
        (None, Some(text)) => (at.to_string(), text),
        _ => {
            problems.push(format!("{at}: give exactly one of `source` and `contents`"));
            (at.to_string(), String::new())
        }
    };
    if let Err(e) = super::template::check(&name, &text) {
        problems.push(format!("{at}: {e}"));
    }
    if t.destination.as_os_str().is_empty() || t.destination.file_name().is_none() {
        problems.push(format!("{at}: `destination` must name a file"));
    }
    let mode = match &t.mode {
        None => Some(0o600),
        Some(m) => mode(m),
    };
    if mode.is_none() {
        problems.push(format!(
            "{at}: `mode` must be octal permissions such as \"0640\""
        ));
    }
    if (t.user.is_some() || t.group.is_some()) && !nix::unistd::geteuid().is_root() {
        // Applied only as root; said once at start rather than at each write.
        eprintln!("secret-manager agent: {at}: user/group are applied only when running as root");
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Template {
        name,
        text,
        destination: base.join(t.destination),
        mode: mode.unwrap_or(0o600),
        user: t.user,
        group: t.group,
        command: t.command.filter(|c| !c.trim().is_empty()),
    })
}

/// Octal permissions: `0640` (YAML reads it as text), `"0640"`, or `640`
/// (a number whose digits are read as octal).
fn mode(m: &Mode) -> Option<u32> {
    let bits = match m {
        Mode::Text(s) => u32::from_str_radix(s.trim(), 8).ok()?,
        Mode::Number(n) => u32::from_str_radix(&n.to_string(), 8).ok()?,
    };
    (bits <= 0o7777).then_some(bits)
}

fn exec(e: ExecFile, problems: &mut Vec<String>) -> Option<Exec> {
    let before = problems.len();
    if e.command.is_empty() || e.command[0].is_empty() {
        problems.push("exec.command: give the program and its arguments".into());
    }
    let mut env = Vec::new();
    for (name, key) in e.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            problems.push(format!(
                "exec.env: `{name}` is not an environment variable name"
            ));
        }
        match SecretKey::parse(&key) {
            Ok(k) => env.push((name, k)),
            Err(err) => problems.push(format!("exec.env.{name}: {}", err.message)),
        }
    }
    let on_change = match &e.restart.signal {
        None => OnChange::Restart,
        Some(s) => match parse_signal(s) {
            Some(sig) => OnChange::Signal(sig),
            None => {
                problems.push(format!("exec.restart.signal: `{s}` is not a signal name"));
                OnChange::Restart
            }
        },
    };
    let grace = match &e.restart.grace {
        Some(d) => duration(d, "exec.restart.grace", problems).unwrap_or(DEFAULT_GRACE),
        None => DEFAULT_GRACE,
    };
    (problems.len() == before).then_some(Exec {
        command: e.command,
        env,
        on_change,
        grace,
    })
}

/// `SIGHUP`, `HUP` or `hup`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    let upper = s.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

fn duration(d: &DurationText, field: &str, problems: &mut Vec<String>) -> Option<Duration> {
    let parsed = match d {
        DurationText::Seconds(s) => Some(Duration::from_secs(*s)),
        DurationText::Text(t) => parse_duration(t),
    };
    if parsed.is_none() {
        problems.push(format!(
            "{field} must be a duration such as 500ms, 30s, 5m or 1h"
        ));
    }
    parsed
}

/// `500ms`, `30s`, `5m`, `1h`, or a number of seconds; at most a day.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d <= Duration::from_secs(86_400)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_signals_and_durations() {
        // (mode, expected)
        let modes = [
            (Mode::Text("0640".into()), Some(0o640)),
            (Mode::Text("600".into()), Some(0o600)),
            (Mode::Number(640), Some(0o640)),
            (Mode::Number(680), None),
            (Mode::Text("0999".into()), None),
            (Mode::Text("77777".into()), None),
        ];
        for (m, expected) in modes {
            assert_eq!(mode(&m), expected, "{m:?}");
        }
        assert_eq!(parse_signal("hup"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        for bad in ["", "s", "5x", "-1s", "2d", "25h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_problem_of_a_config_is_named_at_once() {
        let yaml = r#"
templates:
  - destination: out.txt
  - contents: "{{ secret('a/b') "
    destination: x
    mode: "0999"
exec:
  command: []
  env: { "": "bad key" }
  restart: { signal: NOPE, grace: 5x }
"#;
        let file: File = serde_norway::from_str(yaml).expect("yaml");
        let problems = plan(file, Path::new("."), None, false).expect_err("invalid");
        let all = problems.join("\n");
        for expected in [
            "templates[0]: give exactly one of `source` and `contents`",
            "templates[1]:",
            "templates[1]: `mode`",
            "exec.command",
            "exec.env",
            "exec.restart.signal",
            "exec.restart.grace",
        ] {
            assert!(all.contains(expected), "{expected} in:\n{all}");
        }
    }

    #[test]
    fn a_token_in_the_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("agent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("agent.yaml");
        std::fs::write(&path, "token: s3cr3t-value\ntemplates: []\n").expect("write");
        let problems = read(&path).expect_err("refused");
        assert!(
            problems[0].contains("`token` does not belong"),
            "{problems:?}"
        );
        assert!(!problems[0].contains("s3cr3t-value"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
