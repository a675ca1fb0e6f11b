//! Builds the HTTP server: connects to MongoDB, prepares indexes, binds its own listener.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use utoipa::OpenApi as _;
use utoipa_actix_web::AppExt as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, AppState};
use crate::auth::limiter::FailureLimiter;
use crate::config::Config;
use crate::crypto::Keyring;
use crate::store;
use crate::telemetry;
use crate::vault::{Limits, Vault};

pub struct Application {
    port: u16,
    server: Server,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach MongoDB (check `MONGO_URI`, and that the server runs): {0}")]
    Database(#[from] store::StoreError),
    #[error("cannot start the NATS bridge: {0}")]
    Nats(String),
    #[error("cannot load the keyring: {0}")]
    Keyring(#[from] crate::crypto::KeyringError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = store::connect(&config.store).await?;
        store::ensure_indexes(&db, config.audit_ttl_days).await?;
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
                config.auth.policies.clone(),
                FailureLimiter::new(config.auth_failure_burst, config.auth_failure_per_minute),
                limits,
            )?,
            max_body_bytes: config.max_body_bytes(),
            proxies: config.trusted_proxies.clone(),
        });
        if let Some(nats) = config.nats.clone() {
            crate::nats::spawn(state.vault.clone(), nats)
                .await
                .map_err(StartupError::Nats)?;
        }
        let server = run(listener, state, &config)?;
        tracing::info!(port, key_id = %config.master_key.key_id(), "secret-manager listening");
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests within the shutdown timeout.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    config: &Config,
) -> Result<Server, StartupError> {
    let mut server = HttpServer::new(move || {
        let (app, spec) = App::new()
            .into_utoipa_app()
            .openapi(api::openapi::ApiDoc::openapi())
            .app_data(state.clone())
            .app_data(api::query_config())
            .app_data(api::path_config())
            .configure(api::health::configure)
            .configure(api::vault::configure)
            .configure(api::secrets::configure)
            .configure(api::projects::configure)
            .configure(api::audit::configure)
            .configure(api::sys::configure)
            .split_for_parts();
        app.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec))
            .default_service(web::to(api::not_found))
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
    let server = server
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();
    Ok(server)
}
