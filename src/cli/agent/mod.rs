//! `secret-manager agent` and `run --watch`: render templates to files and
//! supervise a child, and keep both current as secrets change.
//!
//! A client of the HTTP API only. Changes arrive by push: one Server-Sent
//! Events stream (`GET /api/events?project=`) per project the templates and
//! the child's environment read, resumed with `Last-Event-ID` after a
//! disconnect. While a stream is unavailable (the service has no event
//! endpoint, or cannot be reached three times in a row) the agent polls every
//! `--poll-interval` instead, and says so in its log; it goes back to push as
//! soon as the stream answers again.
//!
//! On a change the templates that used the secret re-render; a template whose
//! digest (every secret it used: key, version, value digest) and output are
//! unchanged is left alone. A changed file is replaced atomically, then its
//! hook runs, then the child is restarted (SIGTERM, grace, SIGKILL, start
//! again with a fresh environment) or signalled. A render that fails (a
//! missing secret, say) keeps the old file and names what failed, never a
//! value.

pub mod child;
pub mod config;
pub mod files;
pub mod sse;
pub mod template;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::client::{Client, Conn, EnvSecret, Failure};
use config::{Exec, OnChange, Plan};
use template::{Deps, Reads};

/// How long a hook may run.
const HOOK_LIMIT: Duration = Duration::from_secs(300);
/// Stream failures in a row before polling takes over.
const FAILURES_BEFORE_POLLING: u32 = 3;
/// The longest wait between two attempts to open a stream.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The agent's YAML config (templates, exec).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// SOURCE:DESTINATION: render the template file SOURCE to DESTINATION (mode 0600); repeat for several.
    #[arg(long = "template", value_parser = config::template_flag)]
    pub templates: Vec<config::TemplateFile>,
    /// Render once and exit (1 when any template fails).
    #[arg(long)]
    pub once: bool,
    /// How often to poll while the event stream is unavailable (`30s`, `500ms`).
    #[arg(long, value_parser = parse_interval)]
    pub poll_interval: Option<Duration>,
}

/// clap value parser for `--poll-interval`.
pub fn parse_interval_arg(arg: &str) -> Result<Duration, String> {
    parse_interval(arg)
}

fn parse_interval(arg: &str) -> Result<Duration, String> {
    config::parse_duration(arg)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be a duration such as 500ms, 30s or 5m".to_string())
}

/// `secret-manager agent`.
pub fn agent(args: AgentArgs) -> ExitCode {
    let mut conn = args.conn;
    let (file, base) = match &args.config {
        Some(path) => match config::read(path) {
            Ok(f) => (
                f,
                path.parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(".")),
            ),
            Err(problems) => return usage(&problems),
        },
        None => (config::File::default(), PathBuf::from(".")),
    };
    // The command line and the environment win over the file.
    if conn.url == DEFAULT_URL {
        if let Some(url) = &file.url {
            conn.url = url.clone();
        }
    }
    conn.service = conn.service.or(file.service.clone());
    conn.token_file = conn.token_file.or(file.token_file.clone());
    conn.cacert = conn.cacert.or(file.cacert.clone());
    let mut file = file;
    // Flag templates are relative to the working directory.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    for mut t in args.templates {
        t.source = t.source.map(|s| cwd.join(s));
        t.destination = cwd.join(&t.destination);
        file.templates.push(t);
    }
    let plan = match config::plan(file, &base, args.poll_interval, args.once) {
        Ok(p) => p,
        Err(problems) => return usage(&problems),
    };
    start(&conn, plan, "agent")
}

/// `secret-manager run --watch`: the child restarts when a secret changes.
pub fn run_watch(
    conn: &Conn,
    secrets: &[EnvSecret],
    command: Vec<String>,
    poll: Option<Duration>,
) -> ExitCode {
    let plan = Plan {
        templates: Vec::new(),
        exec: Some(Exec {
            command,
            env: secrets
                .iter()
                .map(|s| (s.name.clone(), s.key.clone()))
                .collect(),
            on_change: OnChange::Restart,
            grace: config::DEFAULT_GRACE,
        }),
        poll_interval: poll.unwrap_or(config::DEFAULT_POLL),
        once: false,
    };
    start(conn, plan, "run")
}

const DEFAULT_URL: &str = "http://localhost:8000";

fn usage(problems: &[String]) -> ExitCode {
    eprintln!("secret-manager agent:");
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

fn start(conn: &Conn, plan: Plan, name: &'static str) -> ExitCode {
    let client = match Client::new(conn) {
        Ok(c) => Arc::new(c),
        Err(f) => return f.exit(),
    };
    // Two workers: renders wait on HTTP reads from blocking threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secret-manager {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let agent = Agent {
            name,
            client,
            states: vec![TemplateState::default(); plan.templates.len()],
            plan,
            env: Vec::new(),
            env_deps: Deps::default(),
            child: None,
            followed: BTreeSet::new(),
            tx,
            polling: Arc::new(AtomicUsize::new(0)),
        };
        agent.run(rx).await
    })
}

/// A possible change.
#[derive(Debug)]
enum Change {
    /// Anything may have changed (start, `reset`, a poll).
    All,
    Secret {
        project: String,
        path: String,
    },
}

#[derive(Clone, Default)]
struct TemplateState {
    deps: Deps,
    /// Of the last render written (or found unchanged).
    digest: Option<[u8; 32]>,
    output: Option<[u8; 32]>,
    /// The last render failure logged (names and codes, never a value).
    failure: Option<String>,
}

struct Agent {
    name: &'static str,
    client: Arc<Client>,
    plan: Plan,
    states: Vec<TemplateState>,
    /// The child's secrets as last read.
    env: child::Env,
    env_deps: Deps,
    child: Option<tokio::process::Child>,
    /// Projects with a stream follower.
    followed: BTreeSet<String>,
    tx: mpsc::UnboundedSender<Change>,
    /// How many followers are polling instead of streaming.
    polling: Arc<AtomicUsize>,
}

/// What a refresh found.
#[derive(Default)]
struct Outcome {
    failed: usize,
    templates_changed: bool,
    env_changed: bool,
}

impl Agent {
    fn log(&self, message: &str) {
        log(self.name, message);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Change>) -> ExitCode {
        let first = self.refresh(&[Change::All], true).await;
        if first.failed > 0 {
            self.log(&format!(
                "{} of the first renders failed; stopping",
                first.failed
            ));
            return ExitCode::FAILURE;
        }
        if self.plan.once {
            return ExitCode::SUCCESS;
        }
        if let Some(exec) = &self.plan.exec {
            match child::start(&exec.command, &self.env) {
                Ok(c) => self.child = Some(c),
                Err(m) => {
                    self.log(&m);
                    return ExitCode::FAILURE;
                }
            }
        }
        self.follow_new_projects();
        let (Ok(mut term), Ok(mut int)) = (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
        ) else {
            self.log("cannot listen for signals");
            return ExitCode::FAILURE;
        };
        let mut poll = tokio::time::interval(self.plan.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let polling = self.polling.load(Ordering::Relaxed) > 0;
            tokio::select! {
                change = rx.recv() => {
                    let Some(change) = change else { continue };
                    let mut batch = vec![change];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    self.after_change(&batch).await;
                }
                _ = poll.tick(), if polling => {
                    self.after_change(&[Change::All]).await;
                }
                status = wait(&mut self.child) => {
                    let code = status.map(child::exit_code).unwrap_or(1);
                    self.log(&format!("the child exited ({}); stopping",
                        status.map(child::describe).unwrap_or_else(|| "unknown".into())));
                    return ExitCode::from(code);
                }
                _ = term.recv() => return self.shut_down().await,
                _ = int.recv() => return self.shut_down().await,
            }
        }
    }

    async fn shut_down(&mut self) -> ExitCode {
        let grace = self.plan.exec.as_ref().map(|e| e.grace).unwrap_or_default();
        match self.child.as_mut() {
            Some(c) => {
                let status = child::stop(c, grace).await;
                ExitCode::from(status.map(child::exit_code).unwrap_or(0))
            }
            None => ExitCode::SUCCESS,
        }
    }

    async fn after_change(&mut self, batch: &[Change]) {
        let outcome = self.refresh(batch, false).await;
        if let Some(exec) = self.plan.exec.clone() {
            if outcome.env_changed
                || (outcome.templates_changed && matches!(exec.on_change, OnChange::Restart))
            {
                self.restart(&exec).await;
            } else if outcome.templates_changed {
                if let (OnChange::Signal(sig), Some(c)) = (exec.on_change, &self.child) {
                    match child::signal(c, sig) {
                        Ok(()) => self.log(&format!("sent {sig} to the child")),
                        Err(m) => self.log(&m),
                    }
                }
            }
        }
        self.follow_new_projects();
    }

    async fn restart(&mut self, exec: &Exec) {
        if let Some(mut c) = self.child.take() {
            child::stop(&mut c, exec.grace).await;
        }
        match child::start(&exec.command, &self.env) {
            Ok(c) => {
                self.log("restarted the child");
                self.child = Some(c);
            }
            Err(m) => self.log(&format!("cannot restart the child: {m}")),
        }
    }

    /// Re-renders what `batch` may have changed; writes, and runs hooks.
    async fn refresh(&mut self, batch: &[Change], first: bool) -> Outcome {
        let all = batch.iter().any(|c| matches!(c, Change::All));
        let touched = |deps: &Deps| {
            all || batch.iter().any(|c| match c {
                Change::All => true,
                Change::Secret { project, path } => deps.touches(project, path),
            })
        };
        let reads = Reads::new(self.client.clone(), tokio::runtime::Handle::current());
        let mut outcome = Outcome::default();
        for i in 0..self.plan.templates.len() {
            if !first && !touched(&self.states[i].deps) {
                continue;
            }
            match self.render_one(i, &reads, first).await {
                Ok(changed) => outcome.templates_changed |= changed,
                Err(()) => outcome.failed += 1,
            }
        }
        if let Some(exec) = self.plan.exec.clone() {
            if first || touched(&self.env_deps) {
                match self.read_env(&exec).await {
                    Ok((env, deps)) => {
                        outcome.env_changed = !first && deps.digest() != self.env_deps.digest();
                        self.env = env;
                        self.env_deps = deps;
                    }
                    Err(m) => {
                        self.log(&format!("the child's environment was not refreshed: {m}"));
                        outcome.failed += 1;
                    }
                }
            }
        }
        outcome
    }

    /// Renders template `i`; whether its file changed.
    async fn render_one(&mut self, i: usize, reads: &Arc<Reads>, first: bool) -> Result<bool, ()> {
        let t = self.plan.templates[i].clone();
        let (name, text, r) = (t.name.clone(), t.text.clone(), reads.clone());
        let joined = tokio::task::spawn_blocking(move || template::render(&name, &text, &r)).await;
        let Ok((deps, rendered)) = joined else {
            self.log(&format!("{}: the render stopped", t.name));
            return Err(());
        };
        let digest = deps.digest();
        self.states[i].deps = deps;
        let output = match rendered {
            Ok(o) => Zeroizing::new(o),
            Err(m) => {
                // Once per distinct failure, not at every poll.
                if self.states[i].failure.as_ref() != Some(&m) {
                    self.log(&format!(
                        "{}: render failed, {} kept as it was: {m}",
                        t.name,
                        t.destination.display()
                    ));
                    self.states[i].failure = Some(m);
                }
                return Err(());
            }
        };
        let state = &mut self.states[i];
        state.failure = None;
        if !first && state.digest == Some(digest) {
            return Ok(false);
        }
        state.digest = Some(digest);
        let sha: [u8; 32] = Sha256::digest(output.as_bytes()).into();
        if !first && state.output == Some(sha) {
            return Ok(false);
        }
        let owner = files::Owner {
            user: t.user.as_deref(),
            group: t.group.as_deref(),
        };
        if let Err(m) = files::write_atomic(&t.destination, output.as_bytes(), t.mode, &owner) {
            self.log(&format!("{}: {m}", t.name));
            // Try again on the next change.
            self.states[i].digest = None;
            return Err(());
        }
        self.states[i].output = Some(sha);
        self.log(&format!("rendered {}", t.destination.display()));
        if let Some(cmd) = &t.command {
            match child::hook(cmd, HOOK_LIMIT).await {
                Ok(()) => self.log(&format!("{}: hook done", t.name)),
                Err(m) => self.log(&format!("{}: {m}", t.name)),
            }
        }
        Ok(!first)
    }

    async fn read_env(&self, exec: &Exec) -> Result<(child::Env, Deps), String> {
        let mut env = Vec::new();
        let mut deps = Deps::default();
        let mut failed = Vec::new();
        for (name, key) in &exec.env {
            match self.client.secret(key, None).await {
                Ok(r) => {
                    use base64::Engine as _;
                    let bytes = Zeroizing::new(
                        base64::engine::general_purpose::STANDARD
                            .decode(&r.value_b64)
                            .map_err(|_| "unexpected answer from the service".to_string())?,
                    );
                    let sha: [u8; 32] = Sha256::digest(bytes.as_slice()).into();
                    deps.keys.insert(key.to_string(), Some((r.version, sha)));
                    env.push((name.clone(), bytes));
                }
                Err(f) => {
                    deps.keys.insert(key.to_string(), None);
                    failed.push(format!("{name} ({key}): {f}"));
                }
            }
        }
        if failed.is_empty() {
            Ok((env, deps))
        } else {
            Err(format!("cannot read {}", failed.join("; ")))
        }
    }

    /// Starts a stream follower for each project read that has none.
    fn follow_new_projects(&mut self) {
        if self.plan.once {
            return;
        }
        let mut projects = self.env_deps.projects();
        if let Some(exec) = &self.plan.exec {
            projects.extend(exec.env.iter().map(|(_, k)| k.project().to_string()));
        }
        for s in &self.states {
            projects.extend(s.deps.projects());
        }
        for project in projects {
            if self.followed.insert(project.clone()) {
                tokio::spawn(follow(Follower {
                    name: self.name,
                    client: self.client.clone(),
                    project,
                    tx: self.tx.clone(),
                    polling: self.polling.clone(),
                    poll_interval: self.plan.poll_interval,
                }));
            }
        }
    }
}

async fn wait(child: &mut Option<tokio::process::Child>) -> Option<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await.ok(),
        None => std::future::pending().await,
    }
}

fn log(name: &str, message: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    eprintln!("{now} secret-manager {name}: {message}");
}

struct Follower {
    name: &'static str,
    client: Arc<Client>,
    project: String,
    tx: mpsc::UnboundedSender<Change>,
    polling: Arc<AtomicUsize>,
    poll_interval: Duration,
}

impl Follower {
    fn log(&self, message: &str) {
        log(self.name, &format!("project {}: {message}", self.project));
    }
}

/// Why a stream could not be opened or was lost.
enum Lost {
    /// The service has no event stream: poll at once.
    NoEndpoint(String),
    /// Worth retrying; poll after a few in a row.
    Retry(String),
}

/// Follows `project`'s event stream for as long as the agent runs.
async fn follow(f: Follower) {
    let mut last_id: Option<String> = None;
    let mut retry = Duration::from_secs(1);
    let mut failures: u32 = 0;
    let mut polling = false;
    loop {
        let lost = match f.client.open_events(&f.project, last_id.as_deref()).await {
            Ok(Ok(res)) if is_event_stream(&res) => {
                if polling {
                    polling = false;
                    f.polling.fetch_sub(1, Ordering::Relaxed);
                }
                failures = 0;
                f.log("following the event stream (push)");
                if last_id.is_none() {
                    // Whatever changed before the stream opened.
                    let _ = f.tx.send(Change::All);
                }
                Lost::Retry(read_stream(&f, res, &mut last_id, &mut retry).await)
            }
            Ok(Ok(_)) => Lost::NoEndpoint("the answer is not an event stream".into()),
            Ok(Err(r)) if r.status == 404 || r.status == 405 => {
                Lost::NoEndpoint(format!("{} {}", r.status, r.code))
            }
            Ok(Err(r)) => Lost::Retry(format!("{} {}: {}", r.status, r.code, r.message)),
            Err(Failure::Server(m) | Failure::Usage(m)) => Lost::Retry(m),
        };
        failures += 1;
        let (reason, wait) = match lost {
            Lost::NoEndpoint(m) => {
                failures = failures.max(FAILURES_BEFORE_POLLING);
                (m, f.poll_interval.max(MAX_BACKOFF))
            }
            Lost::Retry(m) => {
                let backoff = retry.saturating_mul(1 << failures.saturating_sub(1).min(4));
                (m, backoff.min(MAX_BACKOFF))
            }
        };
        if failures >= FAILURES_BEFORE_POLLING && !polling {
            polling = true;
            f.polling.fetch_add(1, Ordering::Relaxed);
            f.log(&format!(
                "event stream unavailable ({reason}); polling every {}",
                shown(f.poll_interval)
            ));
            // Wakes the agent into polling, starting with a look now.
            let _ = f.tx.send(Change::All);
        } else if !polling {
            f.log(&format!(
                "event stream lost ({reason}); reconnecting in {}",
                shown(wait)
            ));
        }
        tokio::time::sleep(wait).await;
        if f.tx.is_closed() {
            return;
        }
    }
}

fn shown(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn is_event_stream(res: &reqwest::Response) -> bool {
    res.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Reads events until the stream ends; why it ended.
async fn read_stream(
    f: &Follower,
    mut res: reqwest::Response,
    last_id: &mut Option<String>,
    retry: &mut Duration,
) -> String {
    let mut parser = sse::Parser::with_last_id(last_id.clone());
    loop {
        let chunk = match res.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return "closed by the service".into(),
            Err(e) => return e.without_url().to_string(),
        };
        let items = match parser.feed(&chunk) {
            Ok(items) => items,
            Err(sse::TooLong) => return "an over-long line".into(),
        };
        for item in items {
            match item {
                sse::Item::Retry(ms) => {
                    *retry =
                        Duration::from_millis(ms).clamp(Duration::from_millis(100), MAX_BACKOFF);
                }
                sse::Item::Event(e) => {
                    if e.id.is_some() {
                        last_id.clone_from(&e.id);
                    }
                    if let Some(change) = change_of(&f.project, &e) {
                        if f.tx.send(change).is_err() {
                            return "stopping".into();
                        }
                    }
                }
            }
        }
    }
}

/// The change an event announces: everything after a `reset`, the secret
/// named by any event with a project and a path, nothing otherwise.
fn change_of(project: &str, e: &sse::Event) -> Option<Change> {
    if e.kind == "reset" {
        return Some(Change::All);
    }
    #[derive(serde::Deserialize)]
    struct Data {
        project: String,
        path: String,
    }
    let d: Data = serde_json::from_str(&e.data).ok()?;
    (d.project == project).then_some(Change::Secret {
        project: d.project,
        path: d.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_changes() {
        let ev = |kind: &str, data: &str| sse::Event {
            kind: kind.into(),
            data: data.into(),
            id: None,
        };
        assert!(matches!(
            change_of("p", &ev("reset", "")),
            Some(Change::All)
        ));
        assert!(matches!(
            change_of("p", &ev("secret_rolled_back", r#"{"kind":"secret_rolled_back","project":"p","path":"a/b","version":2}"#)),
            Some(Change::Secret { path, .. }) if path == "a/b"
        ));
        assert!(change_of("p", &ev("secret_updated", r#"{"project":"q","path":"a"}"#)).is_none());
        assert!(change_of("p", &ev("message", "not json")).is_none());
        assert!(change_of("p", &ev("key_rotated", r#"{"project":"p"}"#)).is_none());
    }
}
