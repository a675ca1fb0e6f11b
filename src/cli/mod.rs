//! The command line: server subcommands and the HTTP client.

pub mod agent;
pub mod client;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::crypto::MasterKey;
use crate::schema::codegen::Lang;
use crate::schema::{Schema, SchemaError};
use crate::startup::Application;
use crate::telemetry;
use crate::vault::names::{ProjectName, SecretKey};
use client::{Client, Conn, EnvSecret, KeyCommand, PolicyCommand, RequestsCommand, TokensCommand};

#[derive(Parser)]
#[command(
    name = "secret-manager",
    version,
    about = "Encrypted, audited secrets service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (configured from the environment and `.env`).
    Serve,
    /// Exit 0 when the local service answers `/health/live` (for container health checks).
    Healthcheck {
        /// Port to check; defaults to `PORT` or 8000.
        #[arg(long, env = "PORT", default_value_t = 8000)]
        port: u16,
    },
    /// Load-test a running service: create, fetch or a mix, with latency percentiles.
    Bench(crate::bench::BenchArgs),
    /// The database ceiling: exactly the database work of each request, no service.
    BenchDb(crate::bench::DbBenchArgs),
    /// Store a secret under a new UUID; prints the id. VALUE, @FILE or - (stdin).
    Create {
        #[command(flatten)]
        conn: Conn,
        value: String,
    },
    /// Print the value of a secret by UUID.
    Fetch {
        #[command(flatten)]
        conn: Conn,
        secret_id: String,
    },
    /// Print the value of project/path (or `--version N`).
    Get {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Create project/path with a value: VALUE, @FILE or - (stdin).
    Put {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
        value: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Write a new version of project/path: VALUE, @FILE or - (stdin).
    Patch {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
        value: String,
        /// Only if this is still the current version.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Delete project/path (restorable for DELETE_RECOVERY_DAYS).
    Delete {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
    },
    /// Restore a deleted project/path.
    Restore {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
    },
    /// List secrets (values redacted).
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_parser = client::parse_project)]
        project: Option<ProjectName>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// Version history of project/path.
    Versions {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_parser = client::parse_key)]
        key: SecretKey,
    },
    /// Data keys: rotate, rewrap, status (admin).
    Key {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Run-time policies: get, put NAME FILE.json, delete (admin).
    Policy {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Register this service's token (VAULT_TOKEN / --token) for an admin to approve.
    Register {
        #[command(flatten)]
        conn: Conn,
        /// The service name the token will authenticate as.
        #[arg(long)]
        name: String,
        /// The service's version, for the approver.
        #[arg(long)]
        version: String,
    },
    /// Access requests left by denied reads: list, approve, deny (admin).
    Requests {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Registered service tokens: list, approve, deny, revoke (admin).
    Tokens {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Check the service is ready and the credentials work.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a command with secrets in its environment (never printed).
    Run {
        #[command(flatten)]
        conn: Conn,
        /// ENV=project/path; repeat for several.
        #[arg(long = "secret", required_unless_present = "schema", value_parser = client::parse_env_secret)]
        secrets: Vec<EnvSecret>,
        /// Every secret of this secrets.schema.json, under its name.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Keep running: restart the command (SIGTERM, 10 s, SIGKILL) with fresh
        /// values whenever one of its secrets changes; exit when it exits.
        #[arg(long)]
        watch: bool,
        /// With --watch: how often to poll while the event stream is unavailable.
        #[arg(long, requires = "watch", value_parser = agent::parse_interval_arg)]
        poll_interval: Option<std::time::Duration>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Render templates to files and supervise a child, kept current as secrets
    /// change (pushed by the event stream; polling only when it is unavailable).
    Agent(agent::AgentArgs),
    /// Which secrets of a secrets.schema.json are missing (recording a stub with
    /// each one's description) or ill-typed; exit 1 when any is.
    Check {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        schema: PathBuf,
    },
    /// secrets.schema.json files: combine several into one.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Generate a typed client (one accessor per secret) from a secrets.schema.json.
    Codegen {
        #[arg(long)]
        schema: PathBuf,
        #[arg(long, value_enum)]
        lang: Lang,
        /// Directory to write the client into (created when missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Scan files for leaked credentials (exit 1 on findings at or above --fail-on).
    Scan {
        #[command(flatten)]
        args: crate::scan::cli::ScanArgs,
        /// Ask the service which findings are managed secrets (sends SHA-256
        /// digests of the candidates, never the candidates; needs `list`).
        #[arg(long)]
        check_vault: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a new random master key (base64 of 32 bytes).
    Keygen {
        /// Write the key to this file (mode 0600) instead of printing it.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print the union of several schemas; a name in more than one must agree.
    Combine {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve(),
        Command::Keygen { file } => keygen(file),
        Command::Healthcheck { port } => healthcheck(port),
        Command::Scan {
            args,
            check_vault,
            conn,
        } => scan(args, check_vault.then_some(conn)),
        Command::Bench(args) => bench(args.load.json, crate::bench::run(args)),
        Command::BenchDb(args) => bench(args.load.json, crate::bench::run_db(args)),
        Command::Schema {
            command: SchemaCommand::Combine { files },
        } => combine(&files),
        Command::Codegen { schema, lang, out } => codegen(&schema, lang, &out),
        Command::Agent(args) => agent::agent(args),
        Command::Run {
            conn,
            secrets,
            schema,
            watch: true,
            poll_interval,
            command,
        } => match run_secrets(secrets, schema.as_deref()) {
            Ok(secrets) => agent::run_watch(&conn, &secrets, command, poll_interval),
            Err(code) => code,
        },
        other => client_command(other),
    }
}

/// `scan`, asking the service about each finding when `conn` is given.
fn scan(args: crate::scan::cli::ScanArgs, conn: Option<Conn>) -> ExitCode {
    let Some(conn) = conn else {
        return crate::scan::cli::run(args, None);
    };
    let client = match Client::new(&conn) {
        Ok(c) => c,
        Err(e) => return e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secret-manager scan: {e}");
            return ExitCode::from(2);
        }
    };
    let matcher = |digests: &[String]| {
        runtime
            .block_on(client.scan_match(digests))
            .map_err(|e| e.to_string())
    };
    crate::scan::cli::run(args, Some(&matcher))
}

fn serve() -> ExitCode {
    // `.env` in the working directory first; the real environment wins.
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("secret-manager: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        app.run_until_stopped().await?;
        Ok::<_, anyhow::Error>(())
    });
    match result {
        Ok(()) => {
            tracing::info!("secret-manager stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "secret-manager failed");
            eprintln!("secret-manager: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(file: Option<PathBuf>) -> ExitCode {
    let key = MasterKey::generate();
    let text = key.to_base64();
    let result = match file {
        None => writeln!(std::io::stdout(), "{}", text.as_str()),
        Some(path) => write_private(&path, text.as_bytes()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secret-manager keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")
}

/// A dependency-free probe so the runtime image needs no curl.
fn healthcheck(port: u16) -> ExitCode {
    let tls = std::env::var("TLS_CERT_FILE").is_ok_and(|f| !f.trim().is_empty());
    let probed = if tls {
        https_probe(port)
    } else {
        plain_probe(port).map_err(|e| e.to_string())
    };
    match probed {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: /health/live did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The HTTPS liveness probe. The certificate names the service's public host,
/// not 127.0.0.1, so the probe does not verify it: it sends no credentials and
/// reads only the status of `/health/live` on this host's loopback.
fn https_probe(port: u16) -> Result<bool, String> {
    let probe = async {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let res = client
            .get(format!("https://127.0.0.1:{port}/health/live"))
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok::<bool, String>(res.status().as_u16() == 200)
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(probe)
}

fn plain_probe(port: u16) -> std::io::Result<bool> {
    use std::io::Read as _;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
}

fn schema_failure(command: &str, e: &SchemaError) -> ExitCode {
    eprintln!("secret-manager {command}:");
    for p in &e.problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

fn combine(files: &[PathBuf]) -> ExitCode {
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match Schema::read(file) {
            Ok(s) => parts.push((file.display().to_string(), s)),
            Err(mut e) => problems.append(&mut e.problems),
        }
    }
    if !problems.is_empty() {
        return schema_failure("schema combine", &SchemaError { problems });
    }
    match Schema::combine(&parts) {
        Ok(s) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&s.to_json()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => schema_failure("schema combine", &e),
    }
}

fn codegen(schema: &std::path::Path, lang: Lang, out: &std::path::Path) -> ExitCode {
    let parsed = match Schema::read(schema) {
        Ok(s) => s,
        Err(e) => return schema_failure("codegen", &e),
    };
    let source = schema
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match crate::schema::codegen::write(&parsed, lang, &source, out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "secret-manager codegen: cannot write {}: {}",
                out.display(),
                e.kind()
            );
            ExitCode::FAILURE
        }
    }
}

fn bench(
    json: bool,
    run: impl std::future::Future<Output = Result<crate::bench::Summary, String>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secret-manager bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(summary) => {
            crate::bench::print(&summary, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("secret-manager bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `run`'s secrets: the schema's first; an explicit --secret of the same name wins.
fn run_secrets(
    mut secrets: Vec<EnvSecret>,
    schema: Option<&std::path::Path>,
) -> Result<Vec<EnvSecret>, ExitCode> {
    let Some(path) = schema else {
        return Ok(secrets);
    };
    match Schema::read(path) {
        Ok(s) => {
            let mut all = client::schema_env(&s);
            all.append(&mut secrets);
            Ok(all)
        }
        Err(e) => Err(schema_failure("run", &e)),
    }
}

fn client_command(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secret-manager: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let conn = match &command {
            Command::Create { conn, .. }
            | Command::Fetch { conn, .. }
            | Command::Get { conn, .. }
            | Command::Put { conn, .. }
            | Command::Patch { conn, .. }
            | Command::Delete { conn, .. }
            | Command::Restore { conn, .. }
            | Command::List { conn, .. }
            | Command::Versions { conn, .. }
            | Command::Key { conn, .. }
            | Command::Policy { conn, .. }
            | Command::Register { conn, .. }
            | Command::Tokens { conn, .. }
            | Command::Requests { conn, .. }
            | Command::Status { conn }
            | Command::Check { conn, .. }
            | Command::Run { conn, .. } => conn.clone(),
            _ => return ExitCode::from(2),
        };
        let client = match Client::new(&conn) {
            Ok(c) => c,
            Err(f) => return f.exit(),
        };
        let result = match command {
            Command::Create { value, .. } => client.create(&value).await,
            Command::Fetch { secret_id, .. } => client.fetch(&secret_id).await,
            Command::Get { key, version, .. } => client.get(&key, version).await,
            Command::Put {
                key,
                value,
                description,
                tags,
                kind,
                ..
            } => client.put(&key, &value, description, tags, kind).await,
            Command::Patch {
                key,
                value,
                expected_version,
                ..
            } => client.patch(&key, &value, expected_version).await,
            Command::Delete { key, .. } => client.delete(&key).await,
            Command::Restore { key, .. } => client.restore(&key).await,
            Command::List {
                project,
                prefix,
                limit,
                cursor,
                all,
                ..
            } => client.list(project, prefix, limit, cursor, all).await,
            Command::Versions { key, .. } => client.versions(&key).await,
            Command::Key { command, .. } => client.key(command).await,
            Command::Policy { command, .. } => client.policy(command).await,
            Command::Register { name, version, .. } => client.register(&name, &version).await,
            Command::Tokens { command, .. } => client.tokens(command).await,
            Command::Requests { command, .. } => client.requests(command).await,
            Command::Status { .. } => client.status().await,
            Command::Check { schema, .. } => match Schema::read(&schema) {
                Ok(s) => client.check(&s).await,
                Err(e) => return schema_failure("check", &e),
            },
            Command::Run {
                secrets,
                schema,
                command,
                ..
            } => {
                let secrets = match run_secrets(secrets, schema.as_deref()) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                return match client::run(&client, &secrets, &command).await {
                    Ok(code) => code,
                    Err(f) => f.exit(),
                };
            }
            _ => return ExitCode::from(2),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => f.exit(),
        }
    })
}
