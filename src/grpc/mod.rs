//! The gRPC interface (`proto/secrets/v1/secrets.proto`, service
//! `secrets.v1.SecretsService`) on its own port. A third transport over the
//! same vault as HTTP and NATS: it parses, authenticates through
//! `Vault::authenticate`, refuses what does not parse with `Vault::check`, and
//! maps answers and `ApiError`s; audit records carry `channel: grpc`.
//!
//! Errors: a non-OK status (code from [`grpc_code`]) whose message is
//! `<error code>: <message>`, with the error code also in the `x-error-code`
//! metadata. `GetSecret` alone answers every error after authentication with
//! OK, `success = false` and `error_message` = the error code, as the Secrets
//! Service specification's clients expect; a missing or bad identity is an
//! `UNAUTHENTICATED` status there too. Every answer carries `x-request-id`.

use std::net::TcpListener;

use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::error::{ApiError, ErrorCode};
use crate::vault::named::{missing_only, ListQuery, DEFAULT_LIST_LIMIT};
use crate::vault::names::{ProjectName, SecretKey};
use crate::vault::service_tokens::RegisterInput;
use crate::vault::watch::{Credentials, WatchUpdate};
use crate::vault::{Op, RequestMeta, Vault};

/// The types and stubs generated from `proto/secrets/v1/secrets.proto`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("secrets.v1");

    /// The compiled `.proto`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("secrets_descriptor");
}

use pb::secrets_service_server::{SecretsService, SecretsServiceServer};

/// The gRPC status for each error code. Exhaustive on purpose: a new code
/// does not compile until it has a status here.
pub fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode::*;
    match code {
        InvalidJson | MissingField | InvalidField | InvalidBody | InvalidRequest
        | UnknownOperation | InvalidBase64 | EmptySecret | InvalidSecretId | InvalidProject
        | InvalidPath | InvalidValue | InvalidMetadata | InvalidQuery | InvalidLimit
        | InvalidCursor | InvalidPolicy | UnknownRole | InvalidPrefix | InvalidServiceName
        | WeakToken | SecretTooLarge | UnsupportedMediaType | InvalidRotation => {
            Code::InvalidArgument
        }
        Unauthorized => Code::Unauthenticated,
        Forbidden => Code::PermissionDenied,
        SecretNotFound
        | VersionNotFound
        | DeletedSecretNotFound
        | KeyNotFound
        | AccessRequestNotFound
        | PolicyNotFound
        | ServiceTokenNotFound
        | RouteNotFound
        | RotationNotFound => Code::NotFound,
        SecretExists | ProjectExists => Code::AlreadyExists,
        SecretDeleted | VersionConflict | InvalidTransition | ManagedByConfig | KeyActive
        | KeyInUse | KeyRecentlyRetired | RotationInProgress | SecretExpired => {
            Code::FailedPrecondition
        }
        RotationFailed => Code::Aborted,
        PayloadTooLarge | TooManyAuthFailures | TooManyRegistrations | TooManyPendingTokens => {
            Code::ResourceExhausted
        }
        InternalError => Code::Internal,
        Busy | KeyringUnavailable | DatabaseUnavailable => Code::Unavailable,
    }
}

/// An `ApiError` as a gRPC status: the code string leads the message and is
/// in `x-error-code`; `retry-after` when the error has a hint.
pub fn status_of(e: &ApiError, meta: &RequestMeta) -> Status {
    let mut status = Status::new(grpc_code(e.code), format!("{}: {}", e.code, e.message));
    let md = status.metadata_mut();
    md.insert("x-error-code", MetadataValue::from_static(e.code.as_str()));
    if let Some(secs) = e.retry_after {
        md.insert("retry-after", MetadataValue::from(secs));
    }
    if let Some(id) = meta.request_id.as_deref().and_then(|id| id.parse().ok()) {
        md.insert("x-request-id", id);
    }
    status
}

fn answer<T>(body: T, meta: &RequestMeta) -> Response<T> {
    let mut res = Response::new(body);
    if let Some(id) = meta.request_id.as_deref().and_then(|id| id.parse().ok()) {
        res.metadata_mut().insert("x-request-id", id);
    }
    res
}

/// The caller's address, user agent and a fresh request id.
fn meta_of<T>(req: &Request<T>) -> RequestMeta {
    RequestMeta {
        actor: None,
        client_ip: req.remote_addr().map(|a| a.ip().to_string()),
        user_agent: text(req, "user-agent").map(|v| v.chars().take(256).collect()),
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        channel: "grpc",
    }
}

fn text<T>(req: &Request<T>, key: &str) -> Option<String> {
    req.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `x-service` and the token: the request's `token` field, else `x-token`.
fn credentials<T>(req: &Request<T>, token_field: &str) -> (Option<String>, Option<String>) {
    let token = if token_field.is_empty() {
        text(req, "x-token")
    } else {
        Some(token_field.to_string())
    };
    (text(req, "x-service"), token)
}

/// `project/path`; an empty name is a missing field, as a NATS `key` is.
fn secret_key(name: &str) -> Result<SecretKey, ApiError> {
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingField,
            "`secret_name` must be `<project>/<path>`",
        ));
    }
    SecretKey::parse(name)
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

pub struct Service {
    vault: Vault,
    /// Turns true when the server begins to stop: open watch streams end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// The `WatchSecret` answer stream.
type WatchStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<pb::WatchSecretResponse, Status>> + Send>,
>;

fn watch_message(name: &str, u: WatchUpdate) -> pb::WatchSecretResponse {
    pb::WatchSecretResponse {
        secret_name: name.to_string(),
        change: u.change.as_str().to_string(),
        state: u.status.as_str().to_string(),
        version: u.version,
        updated_at: u.updated_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        updated_by: u.updated_by.unwrap_or_default(),
    }
}

impl Service {
    /// Meta for an authenticated caller, or the refusal.
    async fn authenticated<T>(
        &self,
        req: &Request<T>,
        token_field: &str,
    ) -> Result<RequestMeta, Status> {
        let mut meta = meta_of(req);
        let (service, token) = credentials(req, token_field);
        match self
            .vault
            .authenticate(&mut meta, service.as_deref(), token.as_deref())
            .await
        {
            Ok(()) => Ok(meta),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }
}

#[tonic::async_trait]
impl SecretsService for Service {
    type WatchSecretStream = WatchStream;

    async fn watch_secret(
        &self,
        req: Request<pb::WatchSecretRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let (service, token) = credentials(&req, &req.get_ref().token);
        let body = req.into_inner();
        let v = &self.vault;
        let opened = async {
            let key = v
                .check(Op::Watch, &meta, secret_key(&body.secret_name))
                .await?;
            let credentials = Credentials {
                service,
                token: token.map(zeroize::Zeroizing::new),
            };
            let watch = v.watch(&meta, credentials, &key).await?;
            Ok::<_, ApiError>((key, watch))
        };
        let (key, watch) = opened.await.map_err(|e| status_of(&e, &meta))?;
        let name = key.to_string();
        let stopping = self.stopping.clone();
        let stream =
            futures_util::stream::unfold(Some((watch, stopping, meta.clone())), move |state| {
                let name = name.clone();
                async move {
                    let (mut watch, mut stopping, meta) = state?;
                    let next = tokio::select! {
                        next = watch.next() => next,
                        _ = stopping.wait_for(|s| *s) => Err(ApiError::new(
                            ErrorCode::Busy,
                            "the server is shutting down; reconnect",
                        )),
                    };
                    match next {
                        Ok(update) => Some((
                            Ok(watch_message(&name, update)),
                            Some((watch, stopping, meta)),
                        )),
                        // The error is the last message.
                        Err(e) => Some((Err(status_of(&e, &meta)), None)),
                    }
                }
            });
        Ok(answer(Box::pin(stream) as WatchStream, &meta))
    }

    async fn get_secret(
        &self,
        req: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let body = req.into_inner();
        let v = &self.vault;
        let read = async {
            let key = v
                .check(Op::Read, &meta, secret_key(&body.secret_name))
                .await?;
            v.get(&meta, &key, body.version, non_empty(&body.description))
                .await
        };
        let reply = match read.await {
            Ok(record) => pb::GetSecretResponse {
                value: record.value.to_vec(),
                success: true,
                error_message: String::new(),
                version: record.version,
            },
            Err(e) => pb::GetSecretResponse {
                success: false,
                error_message: e.code.as_str().to_string(),
                ..Default::default()
            },
        };
        Ok(answer(reply, &meta))
    }

    async fn get_secret_version(
        &self,
        req: Request<pb::GetSecretVersionRequest>,
    ) -> Result<Response<pb::GetSecretVersionResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let body = req.into_inner();
        let v = &self.vault;
        let read = async {
            let key = v
                .check(Op::Read, &meta, secret_key(&body.secret_name))
                .await?;
            if body.stage.is_empty() {
                return v.get(&meta, &key, Some(body.version), None).await;
            }
            let stage = crate::vault::rotation::Stage::parse(&body.stage).and_then(|s| {
                if body.version == 0 {
                    Ok(s)
                } else {
                    Err(ApiError::new(
                        ErrorCode::InvalidQuery,
                        "give `version` or `stage`, not both",
                    ))
                }
            });
            let stage = v.check(Op::Read, &meta, stage).await?;
            v.get_stage(&meta, &key, stage).await
        };
        match read.await {
            Ok(record) => Ok(answer(
                pb::GetSecretVersionResponse {
                    value: record.value.to_vec(),
                    version: record.version,
                    current_version: record.current_version,
                    created_at: record.updated_at.to_rfc3339(),
                    created_by: record.updated_by,
                },
                &meta,
            )),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn register_token(
        &self,
        req: Request<pb::RegisterTokenRequest>,
    ) -> Result<Response<pb::RegisterTokenResponse>, Status> {
        let meta = meta_of(&req);
        let body = req.into_inner();
        let input = RegisterInput {
            service_name: &body.service_name,
            service_version: &body.service_version,
            token: &body.token,
        };
        match self.vault.register_token(&meta, input).await {
            Ok(r) => Ok(answer(
                pb::RegisterTokenResponse {
                    status: r.status.as_str().to_string(),
                    message: r.message,
                },
                &meta,
            )),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn put_secret(
        &self,
        req: Request<pb::PutSecretRequest>,
    ) -> Result<Response<pb::PutSecretResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let body = req.into_inner();
        let v = &self.vault;
        let put = async {
            // A name that does not parse names no existing secret: a create.
            let key = v
                .check(Op::Create, &meta, secret_key(&body.secret_name))
                .await?;
            let value = (body.value.as_deref(), body.value_b64.as_deref());
            let record = v.put(&meta, &key, value, body.expected_version).await?;
            Ok::<_, ApiError>(pb::PutSecretResponse {
                secret_name: key.to_string(),
                version: record.version,
            })
        };
        match put.await {
            Ok(reply) => Ok(answer(reply, &meta)),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let body = req.into_inner();
        let v = &self.vault;
        let list = async {
            let state = body.missing_only.then_some("missing");
            let parsed = non_empty(&body.project)
                .map(ProjectName::parse)
                .transpose()
                .and_then(|p| Ok((p, missing_only(state)?)));
            let (project, missing) = v.check(Op::List, &meta, parsed).await?;
            let query = ListQuery {
                missing,
                project,
                prefix: non_empty(&body.prefix),
                limit: body.limit.unwrap_or(DEFAULT_LIST_LIMIT),
                cursor: non_empty(&body.cursor),
                contains: None,
            };
            v.list(&meta, query).await
        };
        match list.await {
            Ok(page) => Ok(answer(
                pb::ListSecretsResponse {
                    secrets: page
                        .items
                        .into_iter()
                        .map(|s| pb::SecretMetadata {
                            secret_name: format!("{}/{}", s.project, s.path),
                            version: s.current_version,
                            description: s.description.unwrap_or_default(),
                            state: s.state.unwrap_or_default(),
                            updated_at: s.updated_at.to_rfc3339(),
                        })
                        .collect(),
                    next_cursor: page.next_cursor.unwrap_or_default(),
                },
                &meta,
            )),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn delete_secret(
        &self,
        req: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        let body = req.into_inner();
        let v = &self.vault;
        let delete = async {
            let key = v
                .check(Op::Delete, &meta, secret_key(&body.secret_name))
                .await?;
            v.delete(&meta, &key).await
        };
        match delete.await {
            Ok(()) => Ok(answer(pb::DeleteSecretResponse {}, &meta)),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn rotate_key(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        match self.vault.rotate_key(&meta).await {
            Ok(active_key_id) => Ok(answer(pb::RotateKeyResponse { active_key_id }, &meta)),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let meta = self.authenticated(&req, &req.get_ref().token).await?;
        match self.vault.whoami(&meta).await {
            Ok(service) => Ok(answer(pb::WhoAmIResponse { service }, &meta)),
            Err(e) => Err(status_of(&e, &meta)),
        }
    }
}

/// The running gRPC server: its port, and a handle that stops it.
pub struct GrpcServer {
    pub port: u16,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// Ends the open watch streams (they never end by themselves).
    stopping: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

/// The PEM certificate chain and key HTTPS uses (`TLS_CERT_FILE`, `TLS_KEY_FILE`).
pub struct GrpcTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: zeroize::Zeroizing<Vec<u8>>,
}

/// How often `grpc.health.v1` re-checks readiness (MongoDB and the keyring).
const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps `grpc.health.v1` in step with `Vault::ready`: SERVING, or
/// NOT_SERVING while MongoDB (or the keyring) is unavailable. Never ends.
async fn watch_health(vault: Vault, reporter: tonic_health::server::HealthReporter) {
    use tonic::server::NamedService as _;
    use tonic_health::ServingStatus;
    let service = SecretsServiceServer::<Service>::NAME;
    let mut last = None;
    loop {
        let status = if vault.ready().await.is_ok() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(service, status).await;
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

impl GrpcServer {
    /// Serves `secrets.v1.SecretsService`, `grpc.health.v1.Health` and server
    /// reflection (v1 and v1alpha) on `listener` (already bound), over TLS when `tls` is
    /// given, until [`GrpcServer::stop`] or until this handle is dropped.
    /// A request message over `max_message_bytes` (HTTP's body limit) is
    /// refused by tonic with `OUT_OF_RANGE` (no error code, not audited)
    /// before it reaches the vault.
    pub fn spawn(
        vault: Vault,
        listener: TcpListener,
        tls: Option<GrpcTls>,
        max_message_bytes: usize,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &*tls.key_pem);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(std::io::Error::other)?;
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        // v1, and v1alpha for clients that still ask it (Python's grpcio-reflection).
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(std::io::Error::other)?;
        let reflection = reflection().build_v1().map_err(std::io::Error::other)?;
        let (reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let stopping_tx = std::sync::Arc::new(stopping_tx);
        let ending = stopping_tx.clone();
        let service = SecretsServiceServer::new(Service {
            vault: vault.clone(),
            stopping,
        })
        .max_decoding_message_size(max_message_bytes);
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let serve = builder
                .add_service(service)
                .add_service(health)
                .add_service(reflection)
                .add_service(reflection_v1alpha)
                .serve_with_incoming_shutdown(incoming, async move {
                    // A send or a dropped handle both mean stop.
                    let _ = stopped.await;
                    // Streams never end by themselves: end them so calls drain.
                    let _ = ending.send(true);
                });
            tokio::select! {
                served = serve => if let Err(e) = served {
                    tracing::error!(error = %e, "the gRPC server failed");
                },
                () = watch_health(vault, reporter) => {}
            }
        });
        Ok(Self {
            port,
            stop,
            task,
            stopping: stopping_tx,
        })
    }

    /// A handle that ends the open watch streams (with `busy`: reconnect) at
    /// once, while the server still drains its other calls.
    pub fn watch_ender(&self) -> impl Fn() + Send + Sync + 'static {
        let stopping = self.stopping.clone();
        move || {
            let _ = stopping.send(true);
        }
    }

    /// Stops accepting, lets calls in flight finish within `grace`.
    pub async fn stop(self, grace: std::time::Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("gRPC calls still in flight at the end of the shutdown timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error code has a gRPC status that is not OK, and the classes
    /// agree with HTTP's (4xx client, 5xx server).
    #[test]
    fn every_error_code_maps_to_a_grpc_status() {
        for &code in ErrorCode::ALL {
            let grpc = grpc_code(code);
            assert_ne!(grpc, Code::Ok, "{code}");
            let expected_by_http = match code.http_status() {
                401 => Some(Code::Unauthenticated),
                403 => Some(Code::PermissionDenied),
                404 => Some(Code::NotFound),
                500 => Some(Code::Internal),
                _ => None,
            };
            if let Some(expected) = expected_by_http {
                assert_eq!(grpc, expected, "{code}");
            }
            if code.http_status() == 409 {
                assert!(
                    matches!(grpc, Code::AlreadyExists | Code::FailedPrecondition),
                    "{code}"
                );
            }
        }
    }

    #[test]
    fn a_status_carries_the_code_string_and_request_id() {
        let meta = RequestMeta {
            request_id: Some("rid-1".into()),
            ..Default::default()
        };
        let status = status_of(&ApiError::database_unavailable(), &meta);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().starts_with("database_unavailable: "));
        let md = status.metadata();
        assert_eq!(
            md.get("x-error-code").and_then(|v| v.to_str().ok()),
            Some("database_unavailable")
        );
        assert_eq!(
            md.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some("rid-1")
        );
        assert_eq!(
            md.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
