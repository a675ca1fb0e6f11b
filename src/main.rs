use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secret_manager::config::Config;
use secret_manager::crypto::MasterKey;
use secret_manager::startup::Application;
use secret_manager::telemetry;

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
    Bench(secret_manager::bench::BenchArgs),
    /// The database ceiling: exactly the database work of each request, no service.
    BenchDb(secret_manager::bench::DbBenchArgs),
    /// Print a new random master key (base64 of 32 bytes).
    Keygen {
        /// Write the key to this file (mode 0600) instead of printing it.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve(),
        Command::Keygen { file } => keygen(file),
        Command::Healthcheck { port } => healthcheck(port),
        Command::Bench(args) => bench(args.load.json, secret_manager::bench::run_http(args)),
        Command::BenchDb(args) => bench(args.load.json, secret_manager::bench::run_db(args)),
    }
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
    use std::io::Read as _;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match probe() {
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

fn bench(
    json: bool,
    run: impl std::future::Future<Output = Result<secret_manager::bench::Summary, String>>,
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
            secret_manager::bench::print(&summary, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("secret-manager bench: {e}");
            ExitCode::from(2)
        }
    }
}
