//! Client subcommands: speak the HTTP API. Exit codes: 0 done, 1 the server
//! said no (its message on stderr), 2 usage or local input problems.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroizing;

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

/// Why a client command failed.
pub enum Failure {
    /// The server answered with an error (exit 1).
    Server(String),
    /// Bad input on this side (exit 2).
    Usage(String),
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

pub struct Client {
    http: reqwest::Client,
    base: String,
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
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::Usage(e.to_string()))?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_string(),
            service: conn.service.clone(),
            token,
            json: conn.json,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = &self.service {
            req = req.header("x-service", s);
        }
        if let Some(t) = &self.token {
            req = req.header("x-token", t.as_str());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| {
            Failure::Server(format!("cannot reach {}: {}", self.base, e.without_url()))
        })?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("");
        Err(Failure::Server(format!(
            "{} {code}: {message}",
            status.as_u16()
        )))
    }

    fn print_json(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
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

/// `project/path` → the URL tail, each segment kept as given.
fn secret_url(key: &str) -> Result<String> {
    match key.split_once('/') {
        Some((p, rest)) if !p.is_empty() && !rest.is_empty() => {
            Ok(format!("/api/secrets/{p}/{rest}"))
        }
        _ => Err(Failure::Usage(format!("`{key}` is not <project>/<path>"))),
    }
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Usage(e.to_string()))
}

fn decoded(record: &Value, field: &str) -> Result<Zeroizing<Vec<u8>>> {
    let b64 = record[field]
        .as_str()
        .ok_or_else(|| Failure::Server("unexpected answer".into()))?;
    STANDARD
        .decode(b64)
        .map(Zeroizing::new)
        .map_err(|_| Failure::Server("unexpected answer".into()))
}

fn without_value(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("value");
        o.remove("value_b64");
    }
    v
}

impl Client {
    pub async fn create(&self, value: &str) -> Result<()> {
        let bytes = read_value(value)?;
        let r = self
            .call(
                reqwest::Method::POST,
                "/vault/secret/create",
                Some(json!({ "secret": STANDARD.encode(bytes.as_slice()) })),
            )
            .await?;
        if self.json {
            self.print_json(&r);
        } else {
            println!("{}", r["secret_id"].as_str().unwrap_or_default());
        }
        Ok(())
    }

    pub async fn fetch(&self, id: &str) -> Result<()> {
        let r = self
            .call(
                reqwest::Method::POST,
                "/vault/secret/fetch",
                Some(json!({ "secret_id": id })),
            )
            .await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        write_stdout(&decoded(&r, "secret")?)
    }

    pub async fn get(&self, key: &str, version: Option<i64>) -> Result<()> {
        let mut url = secret_url(key)?;
        if let Some(v) = version {
            url.push_str(&format!("?version={v}"));
        }
        let r = self.call(reqwest::Method::GET, &url, None).await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        write_stdout(&decoded(&r, "value_b64")?)
    }

    pub async fn value_of(&self, key: &str) -> Result<Zeroizing<Vec<u8>>> {
        let r = self
            .call(reqwest::Method::GET, &secret_url(key)?, None)
            .await?;
        decoded(&r, "value_b64")
    }

    pub async fn put(
        &self,
        key: &str,
        value: &str,
        description: Option<String>,
        tags: Vec<String>,
        kind: Option<String>,
    ) -> Result<()> {
        let (project, path) = key
            .split_once('/')
            .ok_or_else(|| Failure::Usage(format!("`{key}` is not <project>/<path>")))?;
        let bytes = read_value(value)?;
        let mut body = json!({ "project": project, "path": path, "value_b64": STANDARD.encode(bytes.as_slice()), "tags": tags });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        if let Some(k) = kind {
            body["type"] = json!(k);
        }
        let r = self
            .call(reqwest::Method::POST, "/api/secrets", Some(body))
            .await?;
        self.report_write(r, "created")
    }

    pub async fn patch(&self, key: &str, value: &str, expected_version: Option<i64>) -> Result<()> {
        let bytes = read_value(value)?;
        let mut body = json!({ "value_b64": STANDARD.encode(bytes.as_slice()) });
        if let Some(v) = expected_version {
            body["expected_version"] = json!(v);
        }
        let r = self
            .call(reqwest::Method::PATCH, &secret_url(key)?, Some(body))
            .await?;
        self.report_write(r, "updated")
    }

    fn report_write(&self, r: Value, verb: &str) -> Result<()> {
        let r = without_value(r);
        if self.json {
            self.print_json(&r);
        } else {
            println!(
                "{verb} {}/{} version {}",
                r["project"].as_str().unwrap_or(""),
                r["path"].as_str().unwrap_or(""),
                r["version"]
            );
        }
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.call(reqwest::Method::DELETE, &secret_url(key)?, None)
            .await?;
        self.done(
            json!({ "deleted": key }),
            &format!("deleted {key} (restorable until purged)"),
        )
    }

    pub async fn restore(&self, key: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("{}/restore", secret_url(key)?),
            None,
        )
        .await?;
        self.done(json!({ "restored": key }), &format!("restored {key}"))
    }

    fn done(&self, j: Value, text: &str) -> Result<()> {
        if self.json {
            self.print_json(&j);
        } else {
            println!("{text}");
        }
        Ok(())
    }

    pub async fn list(
        &self,
        project: Option<String>,
        prefix: Option<String>,
        limit: i64,
        mut cursor: Option<String>,
        all: bool,
    ) -> Result<()> {
        let mut items = Vec::new();
        loop {
            let mut q = vec![format!("limit={limit}")];
            if let Some(p) = &project {
                q.push(format!("project={p}"));
            }
            if let Some(p) = &prefix {
                q.push(format!("prefix={}", urlencode(p)));
            }
            if let Some(c) = &cursor {
                q.push(format!("cursor={c}"));
            }
            let r = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/secrets?{}", q.join("&")),
                    None,
                )
                .await?;
            items.extend(r["items"].as_array().cloned().unwrap_or_default());
            cursor = r["next_cursor"].as_str().map(str::to_string);
            if !all || cursor.is_none() {
                break;
            }
        }
        if self.json {
            self.print_json(&json!({ "items": items, "next_cursor": cursor }));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                vec![
                    text(&i["project"]),
                    text(&i["path"]),
                    text(&i["version"]),
                    text(&i["updated_at"]),
                    text(&i["updated_by"]),
                ]
            })
            .collect();
        table(&["PROJECT", "PATH", "VERSION", "UPDATED", "BY"], &rows);
        if let Some(c) = cursor {
            eprintln!("more: --cursor {c}");
        }
        Ok(())
    }

    pub async fn versions(&self, key: &str) -> Result<()> {
        let r = self
            .call(
                reqwest::Method::GET,
                &format!("{}/versions", secret_url(key)?),
                None,
            )
            .await?;
        if self.json {
            self.print_json(&r);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = r["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                vec![
                    text(&v["version"]),
                    text(&v["created_at"]),
                    text(&v["created_by"]),
                ]
            })
            .collect();
        table(&["VERSION", "CREATED", "BY"], &rows);
        Ok(())
    }

    pub async fn key(&self, cmd: KeyCommand) -> Result<()> {
        match cmd {
            KeyCommand::Rotate => {
                let r = self
                    .call(reqwest::Method::POST, "/api/sys/rotate", None)
                    .await?;
                self.done(
                    r.clone(),
                    &format!("active data key: {}", text(&r["active_key_id"])),
                )
            }
            KeyCommand::Rewrap { batch } => {
                let mut total = 0;
                for pass in 1..=10_000 {
                    let r = self
                        .call(
                            reqwest::Method::POST,
                            &format!("/api/sys/rewrap?max_documents={}", batch.max(1)),
                            None,
                        )
                        .await?;
                    total += r["versions_rewrapped"].as_u64().unwrap_or(0);
                    let remaining = r["versions_remaining"].as_u64().unwrap_or(0);
                    eprintln!(
                        "pass {pass}: {} re-sealed, {remaining} remaining",
                        r["versions_rewrapped"]
                    );
                    if remaining == 0 {
                        return self.done(json!({ "versions_rewrapped": total, "versions_remaining": 0, "active_key_id": r["active_key_id"] }),
                            &format!("done: {total} versions re-sealed under {}", text(&r["active_key_id"])));
                    }
                }
                Err(Failure::Server("rewrap did not finish".into()))
            }
            KeyCommand::Status => {
                let r = self
                    .call(reqwest::Method::GET, "/api/sys/keys", None)
                    .await?;
                if self.json {
                    self.print_json(&r);
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = r["keys"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|k| {
                        vec![
                            text(&k["key_id"]),
                            text(&k["state"]),
                            text(&k["versions"]),
                            text(&k["seals"]),
                            text(&k["created_at"]),
                        ]
                    })
                    .collect();
                table(&["KEY", "STATE", "VERSIONS", "SEALS", "CREATED"], &rows);
                Ok(())
            }
        }
    }

    pub async fn status(&self) -> Result<()> {
        let health = self
            .call(reqwest::Method::GET, "/health/ready", None)
            .await?;
        let auth = self
            .call(reqwest::Method::POST, "/api/secrets/test", None)
            .await?;
        self.done(
            json!({ "health": health, "auth": auth }),
            &format!(
                "{}: {}; {}",
                self.base,
                text(&health["status"]),
                text(&auth["message"])
            ),
        )
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
pub async fn run(client: &Client, secrets: &[String], command: &[String]) -> Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::Usage("give a command after `--`".into()))?;
    let mut env = Vec::new();
    for spec in secrets {
        let (name, key) = spec
            .split_once('=')
            .filter(|(n, k)| !n.is_empty() && !k.is_empty())
            .ok_or_else(|| Failure::Usage(format!("`--secret {spec}` is not ENV=project/path")))?;
        env.push((name.to_string(), client.value_of(key).await?));
    }
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
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
