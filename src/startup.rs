//! Builds the HTTP server: connects to MongoDB, prepares indexes, binds its own
//! listener, and serves HTTPS on it when `TLS_CERT_FILE` / `TLS_KEY_FILE` are set.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use utoipa::OpenApi as _;
use utoipa_actix_web::AppExt as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, AppState};
use crate::auth::limiter::FailureLimiter;
use crate::config::{Config, TlsFiles};
use crate::console;
use crate::crypto::Keyring;
use crate::store;
use crate::telemetry;
use crate::vault::{Limits, Vault};

pub struct Application {
    port: u16,
    server: Server,
    /// Stopped after the HTTP server (or when the application is dropped).
    grpc: Option<crate::grpc::GrpcServer>,
    /// Ends the open `GET /api/events` streams.
    end_event_streams: Box<dyn Fn() + Send + Sync>,
    shutdown_timeout: std::time::Duration,
    /// The rotation scheduler's tasks (stopped with the application).
    scheduler: Option<crate::vault::rotation::scheduler::SchedulerHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach MongoDB (check `MONGO_URI`, and that the server runs): {0}")]
    Database(#[from] store::StoreError),
    #[error("cannot start the NATS bridge: {0}")]
    Nats(String),
    #[error("cannot load the keyring: {0}")]
    Keyring(#[from] crate::crypto::KeyringError),
    /// A TLS file problem; names the variable and path, never the file's content.
    #[error("cannot serve HTTPS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        // First: a bad certificate should not wait for the database.
        let tls = config.http.tls.as_ref().map(load_tls).transpose()?;
        // Before connecting: the driver's command timings are metrics too.
        crate::metrics::set_enabled(config.http.metrics_enabled);
        crate::metrics::set_db_commands(config.http.metrics_db_commands);
        let db = store::connect(&config.store).await?;
        store::ensure_indexes(&db, config.audit_ttl_days).await?;
        store::events::ensure_indexes(&db, config.events.retention).await?;
        let keyring = Keyring::open(
            db.clone(),
            config.master_key.clone(),
            config.master_key_previous.clone(),
            config.keyring.clone(),
        )
        .await?;
        keyring.spawn_maintenance();
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?
            .port();
        for warning in &config.warnings {
            tracing::warn!(setting_conflict = %warning, "configuration overridden by the environment");
        }
        for name in config.auth.registry.without_token() {
            tracing::warn!(service = %name, "service has no token (set TOKEN_<name>); it cannot authenticate");
        }
        let limits = Limits {
            audit_enabled: config.audit_enabled,
            max_secret_bytes: config.max_secret_bytes,
            max_versions: config.max_versions,
            delete_recovery_days: config.delete_recovery_days,
            default_project: config.default_project.clone(),
        };
        let state = web::Data::new(AppState {
            vault: Vault::new(
                db,
                keyring,
                config.auth.registry.clone(),
                config.auth.bootstrap.clone(),
                FailureLimiter::new(config.auth_failure_burst, config.auth_failure_per_minute),
                limits,
            )?
            .with_token_settings(config.service_tokens)
            .with_alerts(config.alerts.clone())
            .with_event_settings(config.events.clone())
            .with_rotation_settings(config.rotation.clone()),
            max_body_bytes: config.max_body_bytes(),
            metrics_token: config.metrics_token.clone(),
            proxies: config.trusted_proxies.clone(),
        });
        state.vault.reload_policies().await?;
        state.vault.spawn_policy_watch();
        state.vault.spawn_alerts();
        let scheduler = config
            .rotation
            .scheduler
            .then(|| state.vault.spawn_rotation_scheduler());
        if let Some(webhook) = config.webhook.clone() {
            crate::webhook::spawn(state.vault.subscribe_events(), webhook);
        }
        if let Some(nats) = config.nats.clone() {
            crate::nats::spawn(state.vault.clone(), nats)
                .await
                .map_err(StartupError::Nats)?;
        }
        let grpc = match config.grpc_port {
            Some(grpc_port) => Some(spawn_grpc(&state.vault, &config, grpc_port)?),
            None => None,
        };
        let event_ender = state.vault.event_stream_ender();
        let https = tls.is_some();
        let server = run(listener, state, tls, &config)?;
        let grpc_port = grpc.as_ref().map(|g| g.port);
        tracing::info!(port, ?grpc_port, https, key_id = %config.master_key.key_id(), "secret-manager listening");
        Ok(Self {
            port,
            server,
            grpc,
            end_event_streams: Box::new(event_ender),
            shutdown_timeout: std::time::Duration::from_secs(config.shutdown_timeout_secs),
            scheduler,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port gRPC listens on, when `GRPC_ENABLED` (the default).
    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc.as_ref().map(|g| g.port)
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests within the
    /// shutdown timeout: HTTP first, then gRPC.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let Some(end_watches) = self.grpc.as_ref().map(|g| g.watch_ender()) {
            // Watch streams never end by themselves: end them as soon as the
            // process is told to stop, not after HTTP has drained.
            tokio::spawn(async move {
                terminated().await;
                end_watches();
            });
        }
        // Event streams likewise: end them so HTTP drains at once.
        let end_event_streams = self.end_event_streams;
        tokio::spawn(async move {
            terminated().await;
            end_event_streams();
        });
        let served = self.server.await;
        drop(self.scheduler);
        if let Some(grpc) = self.grpc {
            grpc.stop(self.shutdown_timeout).await;
        }
        served
    }
}

/// SIGTERM or SIGINT (the signals actix-web stops on).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds `GRPC_PORT` on `HOST` and serves gRPC on the current runtime.
fn spawn_grpc(
    vault: &Vault,
    config: &Config,
    grpc_port: u16,
) -> Result<crate::grpc::GrpcServer, StartupError> {
    let addr = format!("{}:{grpc_port}", config.host);
    let bind_error = |source| StartupError::Bind {
        addr: addr.clone(),
        source,
    };
    let tls = match &config.http.tls {
        Some(files) => Some(grpc_tls(files)?),
        None => None,
    };
    let listener = TcpListener::bind(&addr).map_err(bind_error)?;
    crate::grpc::GrpcServer::spawn(vault.clone(), listener, tls, config.max_body_bytes())
        .map_err(bind_error)
}

/// The files `load_tls` already checked, read again for gRPC.
fn grpc_tls(files: &TlsFiles) -> Result<crate::grpc::GrpcTls, StartupError> {
    let read = |variable: &str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            StartupError::Tls(format!(
                "`{variable}` ({}) could not be read: {}",
                path.display(),
                e.kind()
            ))
        })
    };
    Ok(crate::grpc::GrpcTls {
        cert_pem: read("TLS_CERT_FILE", &files.cert_file)?,
        key_pem: zeroize::Zeroizing::new(read("TLS_KEY_FILE", &files.key_file)?),
    })
}

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    tls: Option<rustls::ServerConfig>,
    config: &Config,
) -> Result<Server, StartupError> {
    let docs_enabled = config.http.docs_enabled;
    let mut server = HttpServer::new(move || {
        let (app, spec) = App::new()
            .into_utoipa_app()
            .openapi(api::openapi::ApiDoc::openapi())
            .app_data(state.clone())
            .app_data(api::query_config())
            .app_data(api::path_config())
            .configure(api::health::configure)
            .configure(api::metrics::configure)
            .configure(api::vault::configure)
            .configure(api::rotation::configure)
            .configure(api::secrets::configure)
            .configure(api::projects::configure)
            .configure(api::scan::configure)
            .configure(api::events::configure)
            .configure(api::audit::configure)
            .configure(api::access_requests::configure)
            .configure(api::policies::configure)
            .configure(api::sys::configure)
            .configure(api::service_tokens::configure)
            .split_for_parts();
        // Without the docs, `/docs/` and `/openapi.json` fall through to the JSON 404.
        let app = if docs_enabled {
            app.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec))
        } else {
            app
        };
        app.configure(console::configure)
            .default_service(web::to(api::not_found))
            .wrap(from_fn(console::security_headers))
            .wrap(from_fn(telemetry::request_context))
    })
    .shutdown_timeout(config.shutdown_timeout_secs);
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(|source| StartupError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// Reads the PEM certificate chain and private key. Errors name the variable and
/// the path, never what the file holds.
fn load_tls(files: &TlsFiles) -> Result<rustls::ServerConfig, StartupError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error("TLS_CERT_FILE", &files.cert_file, "certificate", &e))?;
    if certs.is_empty() {
        return Err(pem_error(
            "TLS_CERT_FILE",
            &files.cert_file,
            "certificate",
            &rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| pem_error("TLS_KEY_FILE", &files.key_file, "private key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(format!("no TLS protocol version available: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            StartupError::Tls(format!(
                "the key in `TLS_KEY_FILE` ({}) does not fit the certificate in `TLS_CERT_FILE` ({}): {e}",
                files.key_file.display(),
                files.cert_file.display()
            ))
        })
}

fn pem_error(
    variable: &str,
    path: &Path,
    what: &str,
    e: &rustls::pki_types::pem::Error,
) -> StartupError {
    use rustls::pki_types::pem::Error;
    let why = match e {
        Error::Io(io) => format!("could not be read: {}", io.kind()),
        Error::NoItemsFound => format!("holds no PEM {what}"),
        // Other variants can quote a line of the file: say only that it is not PEM.
        _ => format!("is not a valid PEM {what}"),
    };
    StartupError::Tls(format!("`{variable}` ({}) {why}", path.display()))
}
