//! Client subcommands: speak the HTTP API. Exit codes: 0 done, 1 the server
//! said no (its message on stderr), 2 usage or local input problems.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::api::error::ErrorBody;
use crate::dto::{
    AccessRequestList, AccessRequestResponse, ApproveRequest, AuthTestResponse, CreateRequest,
    CreateResponse, CreateSecretRequest, FetchRequest, FetchResponse, HealthResponse, KeyList,
    PolicyRequest, PolicyResponse, RegisterTokenRequest, RegisterTokenResponse, RewrapResponse,
    RotateResponse, SecretList, SecretListQuery, SecretResponse, ServiceTokenInfo,
    ServiceTokenList, UpdateSecretRequest, VersionList, SERVICE_HEADER, TOKEN_HEADER,
};
use crate::schema::{value_problem, Schema};
use crate::vault::names::{ProjectName, SecretKey};

#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Service URL.
    #[arg(
        long,
        env = "VAULT_URL",
        default_value = "http://localhost:8000",
        global = true
    )]
    pub url: String,
    /// Service name sent as X-Service.
    #[arg(long, env = "VAULT_SERVICE", global = true)]
    pub service: Option<String>,
    /// Token sent as X-Token (prefer VAULT_TOKEN or VAULT_TOKEN_FILE: arguments show in `ps`).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the token.
    #[arg(long, env = "VAULT_TOKEN_FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of the CA (or self-signed certificate) to trust for an `https://` URL.
    #[arg(long, env = "VAULT_CACERT", global = true)]
    pub cacert: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new data key active.
    Rotate,
    /// Re-seal every version under the active key (loops until done).
    Rewrap {
        /// Documents per request.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
    },
    /// Data keys, their state and how many versions each seals.
    Status,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print a policy (config.yaml or run-time) as JSON.
    Get { name: String },
    /// Create or replace a run-time policy from a JSON file
    /// (`{"description"?, "permissions": [{"effect","actions","resources"}]}`).
    Put { name: String, file: PathBuf },
    /// Delete a run-time policy.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Registered service tokens (oldest first).
    List {
        /// Only this state: pending, approved, denied or revoked.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve a pending registration.
    Approve { id: String },
    /// Deny a pending registration.
    Deny { id: String },
    /// Revoke an approved token (every replica refuses it within about a second).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Access requests left by denied reads (newest first).
    List {
        /// Only this status: pending, granted, denied or expired.
        #[arg(long)]
        status: Option<String>,
    },
    /// Grant a pending request: the service may read that one secret.
    Approve {
        id: String,
        /// End the grant after this many seconds.
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// Deny a pending request.
    Deny { id: String },
}

/// Why a client command failed.
pub enum Failure {
    /// The server answered with an error (exit 1).
    Server(String),
    /// Bad input on this side (exit 2).
    Usage(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Server(m) | Failure::Usage(m) => f.write_str(m),
        }
    }
}

impl Failure {
    pub fn exit(self) -> ExitCode {
        match self {
            Failure::Server(m) => {
                eprintln!("error: {m}");
                ExitCode::from(1)
            }
            Failure::Usage(m) => {
                eprintln!("usage error: {m}");
                ExitCode::from(2)
            }
        }
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// clap value parser for `<project>/<path>`: a bad key is a usage error
/// before any request is sent.
pub fn parse_key(arg: &str) -> std::result::Result<SecretKey, String> {
    SecretKey::parse(arg).map_err(|e| e.message)
}

/// clap value parser for a project name.
pub fn parse_project(arg: &str) -> std::result::Result<ProjectName, String> {
    ProjectName::parse(arg).map_err(|e| e.message)
}

/// `run --secret ENV=project/path`: an environment variable and the secret it gets.
#[derive(Debug, Clone)]
pub struct EnvSecret {
    pub name: String,
    pub key: SecretKey,
}

/// clap value parser for `ENV=project/path`.
pub fn parse_env_secret(arg: &str) -> std::result::Result<EnvSecret, String> {
    let (name, key) = arg
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| "must be ENV=<project>/<path>".to_string())?;
    Ok(EnvSecret {
        name: name.to_string(),
        key: parse_key(key)?,
    })
}

pub struct Client {
    http: reqwest::Client,
    /// For long-lived event streams (`GET /api/events`).
    stream_http: reqwest::Client,
    /// The service URL; never "cannot-be-a-base" (checked in `new`).
    base: Url,
    service: Option<String>,
    token: Option<Zeroizing<String>>,
    pub json: bool,
}

impl Client {
    pub fn new(conn: &Conn) -> Result<Self> {
        let token = match (&conn.token, &conn.token_file) {
            (Some(t), _) => Some(Zeroizing::new(t.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::Usage(format!(
                        "cannot read the token file {}: {}",
                        path.display(),
                        e.kind()
                    ))
                })?;
                Some(Zeroizing::new(
                    text.trim_end_matches(['\n', '\r']).to_string(),
                ))
            }
            (None, None) => None,
        };
        let base = Url::parse(&conn.url)
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| Failure::Usage(format!("`--url {}` is not a service URL", conn.url)))?;
        let roots = match &conn.cacert {
            Some(path) => read_roots(path)?,
            None => Vec::new(),
        };
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        // Event streams stay open: no overall deadline, but a silent connection
        // (the server pings every 15 s) is dropped after 45 s.
        let mut streams = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(45));
        for cert in roots {
            builder = builder.add_root_certificate(cert.clone());
            streams = streams.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| Failure::Usage(e.to_string()))?;
        let stream_http = streams.build().map_err(|e| Failure::Usage(e.to_string()))?;
        Ok(Self {
            http,
            stream_http,
            base,
            service: conn.service.clone(),
            token,
            json: conn.json,
        })
    }

    /// The service URL as the user gave it, for messages.
    fn shown_base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The base URL with `segments` appended, each percent-encoded on its own.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `/api/secrets/<project>/<path segments...>[/<tail>]`.
    fn secret_url(&self, key: &SecretKey, tail: Option<&str>) -> Url {
        self.url(
            ["api", "secrets", key.project()]
                .into_iter()
                .chain(key.path().split('/'))
                .chain(tail),
        )
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(s) = &self.service {
            req = req.header(SERVICE_HEADER, s);
        }
        if let Some(t) = &self.token {
            req = req.header(TOKEN_HEADER, t.as_str());
        }
        req
    }

    /// Sends `req`; any 2xx is success, anything else the server's code and message.
    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        self.answer(req)
            .await?
            .map_err(|e| Failure::Server(format!("{} {}: {}", e.status, e.code, e.message)))
    }

    /// Sends `req`: a 2xx answer, or the status, code and message of any other.
    async fn answer(
        &self,
        req: RequestBuilder,
    ) -> Result<std::result::Result<reqwest::Response, Refusal>> {
        let res = req.send().await.map_err(|e| {
            Failure::Server(format!(
                "cannot reach {}: {}",
                self.shown_base(),
                e.without_url()
            ))
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(Ok(res));
        }
        let (code, message) = match res.json::<ErrorBody>().await {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => ("error".to_string(), String::new()),
        };
        Ok(Err(Refusal {
            status: status.as_u16(),
            code,
            message,
        }))
    }

    /// Sends `req` and reads the answer as `T`.
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        // The decoder's message could quote part of the body: never print it.
        self.send(req)
            .await?
            .json::<T>()
            .await
            .map_err(|_| Failure::Server("unexpected answer from the service".into()))
    }

    fn print_json(&self, v: &impl Serialize) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    fn done(&self, j: &impl Serialize, text: &str) -> Result<()> {
        if self.json {
            self.print_json(j);
        } else {
            println!("{text}");
        }
        Ok(())
    }
}

/// The root certificates of a `--cacert` PEM file.
fn read_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        Failure::Usage(format!(
            "cannot read the CA file {}: {}",
            path.display(),
            e.kind()
        ))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| Failure::Usage(format!("{} holds no PEM certificate", path.display())))?;
    if certs.is_empty() {
        return Err(Failure::Usage(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// A non-2xx answer.
pub(crate) struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What `check` found for one secret of a schema.
#[derive(Serialize)]
struct Checked {
    name: String,
    secret: String,
    /// `ok`, `missing` (a stub now records it), `ill-typed` or `unreadable`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// `run --schema`: each secret of the schema under its own name.
pub fn schema_env(schema: &Schema) -> Vec<EnvSecret> {
    schema
        .secrets()
        .map(|s| EnvSecret {
            name: s.name.clone(),
            key: s.key.clone(),
        })
        .collect()
}

/// `VALUE`, `@path` (file) or `-` (standard input).
pub fn read_value(arg: &str) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::Usage(format!("cannot read standard input: {}", e.kind())))?;
        buf
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read {path}: {}", e.kind())))?
    } else {
        arg.as_bytes().to_vec()
    };
    Ok(Zeroizing::new(bytes))
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Usage(e.to_string()))
}

fn decoded(b64: &str) -> Result<Zeroizing<Vec<u8>>> {
    STANDARD
        .decode(b64)
        .map(Zeroizing::new)
        .map_err(|_| Failure::Server("unexpected answer from the service".into()))
}

/// A time as the API writes it (RFC 3339, UTC).
fn when(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A write's answer as `--json` prints it: the record without its value.
#[derive(Serialize)]
struct Written<'a> {
    id: &'a str,
    project: &'a str,
    path: &'a str,
    version: i64,
    current_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    tags: &'a [String],
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    created_at: &'a DateTime<Utc>,
    created_by: &'a str,
    updated_at: &'a DateTime<Utc>,
    updated_by: &'a str,
}

impl<'a> From<&'a SecretResponse> for Written<'a> {
    fn from(r: &'a SecretResponse) -> Self {
        Self {
            id: &r.id,
            project: &r.project,
            path: &r.path,
            version: r.version,
            current_version: r.current_version,
            description: r.description.as_deref(),
            tags: &r.tags,
            kind: r.kind.as_deref(),
            created_at: &r.created_at,
            created_by: &r.created_by,
            updated_at: &r.updated_at,
            updated_by: &r.updated_by,
        }
    }
}

/// What `status --json` prints.
#[derive(Serialize)]
struct Status {
    health: HealthResponse,
    auth: AuthTestResponse,
}

/// What `key rewrap --json` prints once every version is re-sealed.
#[derive(Serialize)]
struct Rewrapped {
    versions_rewrapped: u64,
    versions_remaining: u64,
    active_key_id: String,
}

impl Client {
    pub async fn create(&self, value: &str) -> Result<()> {
        let bytes = read_value(value)?;
        let body = CreateRequest {
            secret: STANDARD.encode(bytes.as_slice()),
        };
        let url = self.url(["vault", "secret", "create"]);
        let r: CreateResponse = self
            .call(self.request(Method::POST, url).json(&body))
            .await?;
        self.done(&r, &r.secret_id)
    }

    pub async fn fetch(&self, id: &str) -> Result<()> {
        let body = FetchRequest {
            secret_id: id.to_string(),
        };
        let url = self.url(["vault", "secret", "fetch"]);
        let r: FetchResponse = self
            .call(self.request(Method::POST, url).json(&body))
            .await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        write_stdout(&decoded(&r.secret)?)
    }

    pub(crate) async fn secret(
        &self,
        key: &SecretKey,
        version: Option<i64>,
    ) -> Result<SecretResponse> {
        let mut req = self.request(Method::GET, self.secret_url(key, None));
        if let Some(v) = version {
            req = req.query(&[("version", v)]);
        }
        self.call(req).await
    }

    pub async fn get(&self, key: &SecretKey, version: Option<i64>) -> Result<()> {
        let r = self.secret(key, version).await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        write_stdout(&decoded(&r.value_b64)?)
    }

    /// Every secret of `project` whose path starts with `prefix` (values
    /// redacted), following the pages; more than `max` is an error.
    pub(crate) async fn list_prefix(
        &self,
        project: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<crate::dto::SecretSummary>> {
        let mut query = SecretListQuery {
            project: Some(project.to_string()),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            limit: Some(500),
            ..SecretListQuery::default()
        };
        let mut items = Vec::new();
        loop {
            let req = self
                .request(Method::GET, self.url(["api", "secrets"]))
                .query(&query);
            let page: SecretList = self.call(req).await?;
            items.extend(page.items);
            if items.len() > max {
                return Err(Failure::Usage(format!(
                    "more than {max} secrets under {project}/{prefix}"
                )));
            }
            query.cursor = page.next_cursor;
            if query.cursor.is_none() {
                return Ok(items);
            }
        }
    }

    /// Opens `GET /api/events?project=` (Server-Sent Events), resuming after
    /// `last_id`: the open stream, or the refusal; `Err` when the service
    /// cannot be reached.
    pub(crate) async fn open_events(
        &self,
        project: &str,
        last_id: Option<&str>,
    ) -> Result<std::result::Result<reqwest::Response, Refusal>> {
        let mut req = self
            .stream_http
            .get(self.url(["api", "events"]))
            .query(&[("project", project)])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(s) = &self.service {
            req = req.header(SERVICE_HEADER, s);
        }
        if let Some(t) = &self.token {
            req = req.header(TOKEN_HEADER, t.as_str());
        }
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        self.answer(req).await
    }

    pub async fn value_of(&self, key: &SecretKey) -> Result<Zeroizing<Vec<u8>>> {
        decoded(&self.secret(key, None).await?.value_b64)
    }

    pub async fn put(
        &self,
        key: &SecretKey,
        value: &str,
        description: Option<String>,
        tags: Vec<String>,
        kind: Option<String>,
    ) -> Result<()> {
        let bytes = read_value(value)?;
        let body = CreateSecretRequest {
            project: key.project().to_string(),
            path: key.path().to_string(),
            value: None,
            value_b64: Some(STANDARD.encode(bytes.as_slice())),
            description,
            tags,
            kind,
        };
        let req = self
            .request(Method::POST, self.url(["api", "secrets"]))
            .json(&body);
        self.report_write(&self.call(req).await?, "created")
    }

    pub async fn patch(
        &self,
        key: &SecretKey,
        value: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        let bytes = read_value(value)?;
        let body = UpdateSecretRequest {
            value: None,
            value_b64: Some(STANDARD.encode(bytes.as_slice())),
            expected_version,
            description: None,
            tags: None,
            kind: None,
        };
        let req = self
            .request(Method::PATCH, self.secret_url(key, None))
            .json(&body);
        self.report_write(&self.call(req).await?, "updated")
    }

    fn report_write(&self, r: &SecretResponse, verb: &str) -> Result<()> {
        self.done(
            &Written::from(r),
            &format!("{verb} {}/{} version {}", r.project, r.path, r.version),
        )
    }

    pub async fn delete(&self, key: &SecretKey) -> Result<()> {
        self.send(self.request(Method::DELETE, self.secret_url(key, None)))
            .await?;
        self.done(
            &json!({ "deleted": key.to_string() }),
            &format!("deleted {key} (restorable until purged)"),
        )
    }

    pub async fn restore(&self, key: &SecretKey) -> Result<()> {
        self.send(self.request(Method::POST, self.secret_url(key, Some("restore"))))
            .await?;
        self.done(
            &json!({ "restored": key.to_string() }),
            &format!("restored {key}"),
        )
    }

    pub async fn list(
        &self,
        project: Option<ProjectName>,
        prefix: Option<String>,
        limit: i64,
        cursor: Option<String>,
        all: bool,
    ) -> Result<()> {
        let mut query = SecretListQuery {
            project: project.map(|p| p.as_str().to_string()),
            prefix,
            limit: Some(limit),
            cursor,
            state: None,
            contains: None,
        };
        let mut items = Vec::new();
        loop {
            let req = self
                .request(Method::GET, self.url(["api", "secrets"]))
                .query(&query);
            let page: SecretList = self.call(req).await?;
            items.extend(page.items);
            query.cursor = page.next_cursor;
            if !all || query.cursor.is_none() {
                break;
            }
        }
        let list = SecretList {
            items,
            next_cursor: query.cursor,
        };
        if self.json {
            self.print_json(&list);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list
            .items
            .iter()
            .map(|i| {
                vec![
                    i.project.clone(),
                    i.path.clone(),
                    i.version.to_string(),
                    when(&i.updated_at),
                    i.updated_by.clone(),
                ]
            })
            .collect();
        table(&["PROJECT", "PATH", "VERSION", "UPDATED", "BY"], &rows);
        if let Some(c) = list.next_cursor {
            eprintln!("more: --cursor {c}");
        }
        Ok(())
    }

    pub async fn versions(&self, key: &SecretKey) -> Result<()> {
        let url = self.secret_url(key, Some("versions"));
        let r: VersionList = self.call(self.request(Method::GET, url)).await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = r
            .versions
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    when(&v.created_at),
                    v.created_by.clone(),
                ]
            })
            .collect();
        table(&["VERSION", "CREATED", "BY"], &rows);
        Ok(())
    }

    pub async fn key(&self, cmd: KeyCommand) -> Result<()> {
        match cmd {
            KeyCommand::Rotate => {
                let url = self.url(["api", "sys", "rotate"]);
                let r: RotateResponse = self.call(self.request(Method::POST, url)).await?;
                self.done(&r, &format!("active data key: {}", r.active_key_id))
            }
            KeyCommand::Rewrap { batch } => self.rewrap(batch).await,
            KeyCommand::Status => {
                let url = self.url(["api", "sys", "keys"]);
                let r: KeyList = self.call(self.request(Method::GET, url)).await?;
                if self.json {
                    self.print_json(&r);
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = r
                    .keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.key_id.clone(),
                            k.state.clone(),
                            k.versions.to_string(),
                            k.seals.to_string(),
                            when(&k.created_at),
                        ]
                    })
                    .collect();
                table(&["KEY", "STATE", "VERSIONS", "SEALS", "CREATED"], &rows);
                Ok(())
            }
        }
    }

    pub async fn policy(&self, cmd: PolicyCommand) -> Result<()> {
        match cmd {
            PolicyCommand::Get { name } => {
                let url = self.url(["api", "policies", &name]);
                let p: PolicyResponse = self.call(self.request(Method::GET, url)).await?;
                self.print_json(&p);
                Ok(())
            }
            PolicyCommand::Put { name, file } => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Failure::Usage(format!("cannot read {}: {}", file.display(), e.kind()))
                })?;
                let body: PolicyRequest = serde_json::from_str(&text).map_err(|e| {
                    Failure::Usage(format!("{} is not a policy: {e}", file.display()))
                })?;
                let url = self.url(["api", "policies", &name]);
                let p: PolicyResponse = self
                    .call(self.request(Method::PUT, url).json(&body))
                    .await?;
                self.done(&p, &format!("policy {} saved", p.name))
            }
            PolicyCommand::Delete { name } => {
                let url = self.url(["api", "policies", &name]);
                self.send(self.request(Method::DELETE, url)).await?;
                self.done(
                    &json!({ "deleted": name }),
                    &format!("policy {name} deleted"),
                )
            }
        }
    }

    async fn rewrap(&self, batch: u64) -> Result<()> {
        let mut total = 0;
        for pass in 1..=10_000 {
            let req = self
                .request(Method::POST, self.url(["api", "sys", "rewrap"]))
                .query(&[("max_documents", batch.max(1))]);
            let r: RewrapResponse = self.call(req).await?;
            total += r.versions_rewrapped;
            eprintln!(
                "pass {pass}: {} re-sealed, {} remaining",
                r.versions_rewrapped, r.versions_remaining
            );
            if r.versions_remaining == 0 {
                let text = format!("done: {total} versions re-sealed under {}", r.active_key_id);
                let summary = Rewrapped {
                    versions_rewrapped: total,
                    versions_remaining: 0,
                    active_key_id: r.active_key_id,
                };
                return self.done(&summary, &text);
            }
        }
        Err(Failure::Server("rewrap did not finish".into()))
    }

    /// Registers the connection's token (`VAULT_TOKEN`, `--token`, `--token-file`)
    /// as service `name`; an admin then approves it.
    pub async fn register(&self, name: &str, version: &str) -> Result<()> {
        let Some(token) = &self.token else {
            return Err(Failure::Usage(
                "give the token to register in VAULT_TOKEN, VAULT_TOKEN_FILE or --token \
                 (generate one with `openssl rand -hex 32`)"
                    .into(),
            ));
        };
        let body = RegisterTokenRequest {
            service_name: name.to_string(),
            service_version: version.to_string(),
            token: token.to_string(),
        };
        let url = self.url(["api", "service-tokens", "register"]);
        let r: RegisterTokenResponse = self.call(self.http.post(url).json(&body)).await?;
        self.done(&r, &format!("{}: {}", r.status, r.message))
    }

    pub async fn tokens(&self, cmd: TokensCommand) -> Result<()> {
        let (id, action) = match cmd {
            TokensCommand::List { state } => return self.list_tokens(state).await,
            TokensCommand::Approve { id } => (id, "approve"),
            TokensCommand::Deny { id } => (id, "deny"),
            TokensCommand::Revoke { id } => (id, "revoke"),
        };
        let url = self.url(["api", "service-tokens", id.as_str(), action]);
        let t: ServiceTokenInfo = self.call(self.request(Method::POST, url)).await?;
        self.done(&t, &format!("{} ({}): {}", t.id, t.service_name, t.state))
    }

    pub async fn requests(&self, cmd: RequestsCommand) -> Result<()> {
        let (id, action, body) = match cmd {
            RequestsCommand::List { status } => return self.list_requests(status).await,
            RequestsCommand::Approve { id, expires_in } => {
                (id, "approve", Some(ApproveRequest { expires_in }))
            }
            RequestsCommand::Deny { id } => (id, "deny", None),
        };
        let url = self.url(["api", "access-requests", id.as_str(), action]);
        let mut req = self.request(Method::POST, url);
        if let Some(b) = body.filter(|b| b.expires_in.is_some()) {
            req = req.json(&b);
        }
        let r: AccessRequestResponse = self.call(req).await?;
        let text = format!(
            "{} ({} on {}/{}): {}",
            r.id, r.service_name, r.project, r.path, r.status
        );
        self.done(&r, &text)
    }

    async fn list_requests(&self, status: Option<String>) -> Result<()> {
        let mut req = self.request(Method::GET, self.url(["api", "access-requests"]));
        if let Some(s) = &status {
            req = req.query(&[("status", s)]);
        }
        let r: AccessRequestList = self.call(req).await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = r
            .items
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    a.service_name.clone(),
                    format!("{}/{}", a.project, a.path),
                    a.status.clone(),
                    when(&a.requested_at),
                    a.attempts.to_string(),
                ]
            })
            .collect();
        table(
            &["ID", "SERVICE", "SECRET", "STATUS", "REQUESTED", "ATTEMPTS"],
            &rows,
        );
        Ok(())
    }

    async fn list_tokens(&self, state: Option<String>) -> Result<()> {
        let mut req = self.request(Method::GET, self.url(["api", "service-tokens"]));
        if let Some(s) = &state {
            req = req.query(&[("state", s)]);
        }
        let r: ServiceTokenList = self.call(req).await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = r
            .items
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.service_name.clone(),
                    t.service_version.clone(),
                    t.state.clone(),
                    when(&t.requested_at),
                    t.access_count.to_string(),
                ]
            })
            .collect();
        table(
            &["ID", "SERVICE", "VERSION", "STATE", "REQUESTED", "USES"],
            &rows,
        );
        Ok(())
    }

    /// Reads every secret of `schema` as a generated client would at start-up,
    /// with its description, so a miss records a stub that says what it is for
    /// (the access workflow's stubs). Prints no value; exit 1 when any is not ok.
    pub async fn check(&self, schema: &Schema) -> Result<()> {
        let mut rows = Vec::new();
        for spec in schema.secrets() {
            let req = self
                .request(Method::GET, self.secret_url(&spec.key, None))
                .query(&[("description", spec.description.as_str())]);
            let (state, problem) = match self.answer(req).await? {
                Ok(res) => {
                    let r: SecretResponse = res.json().await.map_err(|_| {
                        Failure::Server("unexpected answer from the service".into())
                    })?;
                    let value = r.value.map(Zeroizing::new);
                    match value.as_deref().map(|v| value_problem(spec, v)) {
                        Some(None) => ("ok", None),
                        Some(Some(p)) => ("ill-typed", Some(p)),
                        None => ("ill-typed", Some("not UTF-8 text".to_string())),
                    }
                }
                Err(e) if e.status == 404 && e.code == "secret_not_found" => ("missing", None),
                Err(e) if matches!(e.status, 401 | 429) => {
                    return Err(Failure::Server(format!(
                        "{} {}: {}",
                        e.status, e.code, e.message
                    )));
                }
                Err(e) => ("unreadable", Some(format!("{} {}", e.status, e.code))),
            };
            rows.push(Checked {
                name: spec.name.clone(),
                secret: spec.key.to_string(),
                state,
                problem,
            });
        }
        let bad = rows.iter().filter(|r| r.state != "ok").count();
        if self.json {
            self.print_json(&json!({ "secrets": rows }));
        } else {
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let state = match &r.problem {
                        Some(p) => format!("{}: {p}", r.state),
                        None => r.state.to_string(),
                    };
                    vec![r.name.clone(), r.secret.clone(), state]
                })
                .collect();
            table(&["NAME", "SECRET", "STATE"], &table_rows);
        }
        if bad > 0 {
            let names: Vec<&str> = rows
                .iter()
                .filter(|r| r.state != "ok")
                .map(|r| r.name.as_str())
                .collect();
            return Err(Failure::Server(format!(
                "{bad} of {} secrets missing or ill-typed: {}",
                rows.len(),
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// Which of these SHA-256 digests are values of managed secrets.
    pub async fn scan_match(&self, digests: &[String]) -> Result<Vec<crate::scan::Managed>> {
        let body = crate::dto::ScanMatchRequest {
            sha256: digests.to_vec(),
        };
        let url = self.url(["api", "scan", "match"]);
        let answer: crate::dto::ScanMatchResponse = self
            .call(self.request(Method::POST, url).json(&body))
            .await?;
        Ok(answer
            .matches
            .into_iter()
            .map(|m| crate::scan::Managed {
                value_sha256: m.sha256,
                secret: format!("{}/{}", m.project, m.path),
                version: m.version,
                current: m.current,
            })
            .collect())
    }

    pub async fn status(&self) -> Result<()> {
        let url = self.url(["health", "ready"]);
        let health: HealthResponse = self.call(self.request(Method::GET, url)).await?;
        let url = self.url(["api", "secrets", "test"]);
        let auth: AuthTestResponse = self.call(self.request(Method::POST, url)).await?;
        let text = format!("{}: {}; {}", self.shown_base(), health.status, auth.message);
        self.done(&Status { health, auth }, &text)
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// `secret-manager run --secret ENV=project/path ... -- command args`
pub async fn run(client: &Client, secrets: &[EnvSecret], command: &[String]) -> Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::Usage("give a command after `--`".into()))?;
    let mut env = Vec::new();
    let mut failed = Vec::new();
    for secret in secrets {
        match client.value_of(&secret.key).await {
            Ok(value) => env.push((&secret.name, value)),
            Err(Failure::Server(m) | Failure::Usage(m)) => {
                failed.push(format!("{} ({}): {m}", secret.name, secret.key));
            }
        }
    }
    // Every secret that cannot be read, at once.
    if !failed.is_empty() {
        return Err(Failure::Server(format!(
            "cannot read {} of {} secrets: {}",
            failed.len(),
            secrets.len(),
            failed.join("; ")
        )));
    }
    let mut cmd = std::process::Command::new(program);
    // The child gets the secrets it asked for, not the credentials that fetched them.
    cmd.args(args)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_TOKEN_FILE");
    for (name, value) in &env {
        use std::os::unix::ffi::OsStrExt as _;
        cmd.env(name, std::ffi::OsStr::from_bytes(value));
    }
    let status = cmd
        .status()
        .map_err(|e| Failure::Usage(format!("cannot run {program}: {}", e.kind())))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Client {
        let conn = Conn {
            url: url.into(),
            service: None,
            token: None,
            token_file: None,
            json: false,
            cacert: None,
        };
        Client::new(&conn).unwrap_or_else(|_| panic!("{url} is a service URL"))
    }

    #[test]
    fn urls_keep_the_base_path_and_put_each_segment_in_its_place() {
        let key: SecretKey = "billing/prod/db.pw".parse().expect("valid key");
        // (base URL, tail, expected)
        let cases = [
            (
                "http://h:1",
                None,
                "http://h:1/api/secrets/billing/prod/db.pw",
            ),
            (
                "http://h:1/",
                Some("versions"),
                "http://h:1/api/secrets/billing/prod/db.pw/versions",
            ),
            (
                "http://h:1/vault/",
                Some("restore"),
                "http://h:1/vault/api/secrets/billing/prod/db.pw/restore",
            ),
        ];
        for (base, tail, expected) in cases {
            assert_eq!(
                client(base).secret_url(&key, tail).as_str(),
                expected,
                "{base}"
            );
        }
        for bad in ["not a url", "mailto:ops@example.com"] {
            let conn = Conn {
                url: bad.into(),
                service: None,
                token: None,
                token_file: None,
                json: false,
                cacert: None,
            };
            assert!(
                matches!(Client::new(&conn), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }
}
