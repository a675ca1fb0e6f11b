//! The load-test harness (`secret-manager bench`) and the database ceiling
//! (`secret-manager bench-db`): the same workload shapes, the same statistics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Args, ValueEnum};
use rand::{Rng, RngCore};
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Create,
    Fetch,
    Mix,
    /// Overwrite the seeded secrets with new values (named transports and
    /// OpenBao): writes that leave the number of secrets as it is.
    Update,
}

/// Shared by `bench` and `bench-db`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// create, fetch, or mix (see --fetch-ratio).
    #[arg(long, value_enum, default_value = "fetch")]
    pub mode: Mode,
    /// In mix mode, the share of fetches (0.0-1.0).
    #[arg(long, default_value_t = 0.9)]
    pub fetch_ratio: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to run (1-600).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many requests even if time remains.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_requests: u64,
    /// Bytes per secret value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Secrets created (concurrently) before a fetch, mix or update run.
    #[arg(long, default_value_t = 256)]
    pub seed: usize,
    /// Print one JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which interface `bench` drives.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Transport {
    /// The seed-compatible UUID endpoints (`/vault/secret/create|fetch`).
    Http,
    /// The named endpoints (`POST /api/secrets`, `GET /api/secrets/bench/<uuid>`):
    /// the same work as `grpc`, over HTTP.
    HttpNamed,
    /// `PutSecret` / `GetSecret` on `--grpc-url`, secrets named `bench/<uuid>`.
    Grpc,
    /// OpenBao (or Vault) KV v2 mounted at `secret/`: `POST|GET
    /// /v1/secret/data/bench/<uuid>`, `--token` sent as `X-Vault-Token`.
    Openbao,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the service (only loopback targets make sense here).
    #[arg(long, env = "VAULT_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, value_enum, default_value = "http")]
    pub transport: Transport,
    /// The gRPC endpoint, for `--transport grpc`.
    #[arg(long, env = "VAULT_GRPC_URL", default_value = "http://127.0.0.1:9000")]
    pub grpc_url: String,
    #[arg(long, env = "VAULT_SERVICE")]
    pub service: Option<String>,
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DbBenchArgs {
    #[arg(
        long,
        env = "MONGO_URI",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongo_uri: String,
    /// A scratch database; dropped at the end unless `--keep`.
    #[arg(long, default_value = "bench_ceiling")]
    pub mongo_db: String,
    /// Keep the scratch database, so a later run measures at a larger size
    /// (`scripts/bench_scale.sh`).
    #[arg(long)]
    pub keep: bool,
    #[arg(long, default_value_t = 100)]
    pub pool_size: u32,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_ms: Latency,
    /// Failed requests by HTTP status (or `io`).
    pub errors: BTreeMap<String, u64>,
    /// Fetched values that differ from what was stored.
    pub mismatches: u64,
}

#[derive(Debug, Serialize, Default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Per-worker results.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    errors: BTreeMap<String, u64>,
    mismatches: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.micros.extend(other.micros);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.mismatches += other.mismatches;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

fn summarize(target: String, load: &LoadArgs, mut tally: Tally, elapsed: Duration) -> Summary {
    tally.micros.sort_unstable();
    let requests = tally.micros.len() as u64 + tally.errors.values().sum::<u64>();
    let secs = elapsed.as_secs_f64();
    Summary {
        target,
        mode: load.mode,
        concurrency: load.concurrency,
        duration_secs: secs,
        requests,
        requests_per_sec: requests as f64 / secs.max(1e-9),
        latency_ms: Latency {
            p50: percentile(&tally.micros, 0.50),
            p95: percentile(&tally.micros, 0.95),
            p99: percentile(&tally.micros, 0.99),
            max: tally
                .micros
                .last()
                .map(|m| f64::from(*m) / 1000.0)
                .unwrap_or(0.0),
        },
        errors: tally.errors,
        mismatches: tally.mismatches,
    }
}

pub fn print(summary: &Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(summary).unwrap_or_default());
        return;
    }
    println!(
        "{} {:?} c={} {:.1}s: {} requests, {:.0} req/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {:?}, mismatches {}",
        summary.target,
        summary.mode,
        summary.concurrency,
        summary.duration_secs,
        summary.requests,
        summary.requests_per_sec,
        summary.latency_ms.p50,
        summary.latency_ms.p95,
        summary.latency_ms.p99,
        summary.latency_ms.max,
        summary.errors,
        summary.mismatches
    );
}

fn random_value(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size.max(1)];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn check_load(load: &LoadArgs) -> Result<(), String> {
    if !(1..=600).contains(&load.duration) {
        return Err("--duration must be 1-600 seconds".into());
    }
    if !(1..=4096).contains(&load.concurrency) {
        return Err("--concurrency must be 1-4096".into());
    }
    if !(0.0..=1.0).contains(&load.fetch_ratio) {
        return Err("--fetch-ratio must be between 0 and 1".into());
    }
    if load.seed > 1_000_000 {
        return Err("--seed must be at most 1000000".into());
    }
    Ok(())
}

/// One operation of the workload against some target.
trait Target: Send + Sync + 'static {
    fn create(
        &self,
        value: &[u8],
    ) -> impl std::future::Future<Output = Result<String, String>> + Send;
    fn fetch(&self, id: &str) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
    /// Whether `update` is implemented (`--mode update`).
    fn updates(&self) -> bool {
        false
    }
    fn update(
        &self,
        _id: &str,
        _value: &[u8],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        async { Err("unsupported".to_string()) }
    }
}

/// Creates `count` secrets with `concurrency` workers; returns (id, value) pairs.
async fn seed<T: Target>(
    target: &Arc<T>,
    count: usize,
    concurrency: usize,
    value_size: usize,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (target, next) = (target.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
                let v = random_value(value_size);
                let id = target
                    .create(&v)
                    .await
                    .map_err(|e| format!("seeding failed: {e}"))?;
                made.push((id, v));
            }
            Ok::<_, String>(made)
        }));
    }
    let mut seeds = Vec::with_capacity(count);
    for w in workers {
        seeds.extend(w.await.map_err(|e| e.to_string())??);
    }
    Ok(seeds)
}

async fn drive<T: Target>(
    target: Arc<T>,
    load: &LoadArgs,
    name: String,
) -> Result<Summary, String> {
    check_load(load)?;
    if load.mode == Mode::Update && !target.updates() {
        return Err("--mode update needs --transport http-named, grpc or openbao".into());
    }
    let seeds = if load.mode == Mode::Create {
        Vec::new()
    } else {
        seed(&target, load.seed.max(1), load.concurrency, load.value_size).await?
    };
    let seeds = Arc::new(seeds);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.duration);
    let mut workers = Vec::new();
    for _ in 0..load.concurrency {
        let (target, seeds, issued, load) =
            (target.clone(), seeds.clone(), issued.clone(), load.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < load.max_requests
            {
                let fetch = match load.mode {
                    Mode::Create | Mode::Update => false,
                    Mode::Fetch => true,
                    Mode::Mix => rand::thread_rng().gen_bool(load.fetch_ratio),
                };
                let t0 = Instant::now();
                let outcome = if load.mode == Mode::Update {
                    let (id, _) = &seeds[rand::thread_rng().gen_range(0..seeds.len())];
                    target.update(id, &random_value(load.value_size)).await
                } else if fetch {
                    let (id, expected) = &seeds[rand::thread_rng().gen_range(0..seeds.len())];
                    target.fetch(id).await.map(|got| {
                        if &got != expected {
                            tally.mismatches += 1;
                        }
                    })
                } else {
                    target
                        .create(&random_value(load.value_size))
                        .await
                        .map(|_| ())
                };
                let micros = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                match outcome {
                    Ok(()) => tally.micros.push(micros),
                    Err(kind) => *tally.errors.entry(kind).or_default() += 1,
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await.map_err(|e| e.to_string())?);
    }
    Ok(summarize(name, load, total, started.elapsed()))
}

struct Http {
    client: reqwest::Client,
    url: String,
    service: Option<String>,
    token: Option<String>,
}

impl Http {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let (Some(s), Some(t)) = (&self.service, &self.token) {
            req = req
                .header(crate::dto::SERVICE_HEADER, s)
                .header(crate::dto::TOKEN_HEADER, t);
        }
        req
    }
}

fn status_error(r: &Result<reqwest::Response, reqwest::Error>) -> Option<String> {
    match r {
        Ok(res) if res.status().is_success() => None,
        Ok(res) => Some(res.status().as_u16().to_string()),
        Err(_) => Some("io".into()),
    }
}

impl Target for Http {
    async fn create(&self, value: &[u8]) -> Result<String, String> {
        let res = self
            .post("/vault/secret/create")
            .json(&serde_json::json!({ "secret": STANDARD.encode(value) }))
            .send()
            .await;
        if let Some(e) = status_error(&res) {
            return Err(e);
        }
        let body: serde_json::Value = res.map_err(|_| "io")?.json().await.map_err(|_| "body")?;
        body["secret_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "body".into())
    }

    async fn fetch(&self, id: &str) -> Result<Vec<u8>, String> {
        let res = self
            .post("/vault/secret/fetch")
            .json(&serde_json::json!({ "secret_id": id }))
            .send()
            .await;
        if let Some(e) = status_error(&res) {
            return Err(e);
        }
        let body: serde_json::Value = res.map_err(|_| "io")?.json().await.map_err(|_| "body")?;
        let b64 = body["secret"].as_str().ok_or("body")?;
        STANDARD.decode(b64).map_err(|_| "body".into())
    }
}

/// The named endpoints: what `Grpc` does, over HTTP.
struct HttpNamed(Http);

impl Target for HttpNamed {
    async fn create(&self, value: &[u8]) -> Result<String, String> {
        let path = uuid::Uuid::new_v4().simple().to_string();
        let res = self
            .0
            .post("/api/secrets")
            .json(&serde_json::json!({
                "project": "bench", "path": path, "value_b64": STANDARD.encode(value),
            }))
            .send()
            .await;
        if let Some(e) = status_error(&res) {
            return Err(e);
        }
        Ok(path)
    }

    async fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        let res = self
            .0
            .request(reqwest::Method::GET, &format!("/api/secrets/bench/{path}"))
            .send()
            .await;
        if let Some(e) = status_error(&res) {
            return Err(e);
        }
        let body: serde_json::Value = res.map_err(|_| "io")?.json().await.map_err(|_| "body")?;
        let b64 = body["value_b64"].as_str().ok_or("body")?;
        STANDARD.decode(b64).map_err(|_| "body".into())
    }

    fn updates(&self) -> bool {
        true
    }

    async fn update(&self, path: &str, value: &[u8]) -> Result<(), String> {
        let res = self
            .0
            .request(
                reqwest::Method::PATCH,
                &format!("/api/secrets/bench/{path}"),
            )
            .json(&serde_json::json!({ "value_b64": STANDARD.encode(value) }))
            .send()
            .await;
        status_error(&res).map_or(Ok(()), Err)
    }
}

/// OpenBao / Vault KV v2 at `secret/`: the system a user would pick instead.
struct OpenBao {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl OpenBao {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/v1/secret/data/bench/{path}", self.url))
            .header("X-Vault-Token", &self.token)
    }
}

impl Target for OpenBao {
    async fn create(&self, value: &[u8]) -> Result<String, String> {
        let path = uuid::Uuid::new_v4().simple().to_string();
        self.update(&path, value).await?;
        Ok(path)
    }

    async fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        let res = self.request(reqwest::Method::GET, path).send().await;
        if let Some(e) = status_error(&res) {
            return Err(e);
        }
        let body: serde_json::Value = res.map_err(|_| "io")?.json().await.map_err(|_| "body")?;
        let b64 = body["data"]["data"]["value"].as_str().ok_or("body")?;
        STANDARD.decode(b64).map_err(|_| "body".into())
    }

    fn updates(&self) -> bool {
        true
    }

    async fn update(&self, path: &str, value: &[u8]) -> Result<(), String> {
        let res = self
            .request(reqwest::Method::POST, path)
            .json(&serde_json::json!({ "data": { "value": STANDARD.encode(value) } }))
            .send()
            .await;
        status_error(&res).map_or(Ok(()), Err)
    }
}

/// Drives OpenBao's KV v2 engine (`--url` its address, `--token` a token).
pub async fn run_openbao(args: BenchArgs) -> Result<Summary, String> {
    let http = http_target(&args)?;
    let token = args
        .token
        .clone()
        .ok_or("--transport openbao needs --token (or VAULT_TOKEN)")?;
    let target = Arc::new(OpenBao {
        client: http.client,
        url: http.url,
        token,
    });
    drive(target, &args.load, args.url.clone()).await
}

fn http_target(args: &BenchArgs) -> Result<Http, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.load.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Http {
        client,
        url: args.url.trim_end_matches('/').to_string(),
        service: args.service.clone(),
        token: args.token.clone(),
    })
}

/// Drives the named HTTP endpoints.
pub async fn run_http_named(args: BenchArgs) -> Result<Summary, String> {
    let target = Arc::new(HttpNamed(http_target(&args)?));
    drive(target, &args.load, args.url.clone()).await
}

/// Drives the HTTP API.
pub async fn run_http(args: BenchArgs) -> Result<Summary, String> {
    let target = Arc::new(http_target(&args)?);
    drive(target, &args.load, args.url.clone()).await
}

type GrpcClient =
    crate::grpc::pb::secrets_service_client::SecretsServiceClient<tonic::transport::Channel>;

struct Grpc {
    /// Several HTTP/2 connections, used in turn: one connection is one
    /// task on each side, which would cap the rate (HTTP uses a pool too).
    clients: Vec<GrpcClient>,
    next: AtomicU64,
    service: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Grpc {
    fn client(&self) -> GrpcClient {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.clients.len();
        self.clients[i].clone()
    }

    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        if let (Some(s), Some(t)) = (&self.service, &self.token) {
            req.metadata_mut().insert("x-service", s.clone());
            req.metadata_mut().insert("x-token", t.clone());
        }
        req
    }
}

/// A failed call by its gRPC status name (or the code GetSecret answered).
fn grpc_error(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

impl Target for Grpc {
    async fn create(&self, value: &[u8]) -> Result<String, String> {
        let name = format!("bench/{}", uuid::Uuid::new_v4().simple());
        let body = crate::grpc::pb::PutSecretRequest {
            secret_name: name.clone(),
            value_b64: Some(STANDARD.encode(value)),
            ..Default::default()
        };
        let mut client = self.client();
        client
            .put_secret(self.request(body))
            .await
            .map_err(|s| grpc_error(&s))?;
        Ok(name)
    }

    async fn fetch(&self, name: &str) -> Result<Vec<u8>, String> {
        let body = crate::grpc::pb::GetSecretRequest {
            secret_name: name.to_string(),
            ..Default::default()
        };
        let mut client = self.client();
        let answer = client
            .get_secret(self.request(body))
            .await
            .map_err(|s| grpc_error(&s))?
            .into_inner();
        if answer.success {
            Ok(answer.value)
        } else {
            Err(answer.error_message)
        }
    }

    fn updates(&self) -> bool {
        true
    }

    async fn update(&self, name: &str, value: &[u8]) -> Result<(), String> {
        let body = crate::grpc::pb::PutSecretRequest {
            secret_name: name.to_string(),
            value_b64: Some(STANDARD.encode(value)),
            ..Default::default()
        };
        let mut client = self.client();
        client
            .put_secret(self.request(body))
            .await
            .map_err(|s| grpc_error(&s))?;
        Ok(())
    }
}

/// Drives the interface `--transport` names.
pub async fn run(args: BenchArgs) -> Result<Summary, String> {
    match args.transport {
        Transport::Http => run_http(args).await,
        Transport::HttpNamed => run_http_named(args).await,
        Transport::Grpc => run_grpc(args).await,
        Transport::Openbao => run_openbao(args).await,
    }
}

/// At most this many gRPC connections (HTTP/2, multiplexed) per run.
const GRPC_CONNECTIONS: usize = 8;

/// Drives the gRPC interface over up to `GRPC_CONNECTIONS` HTTP/2 connections.
pub async fn run_grpc(args: BenchArgs) -> Result<Summary, String> {
    let ascii = |v: &Option<String>, what: &str| {
        v.as_deref()
            .map(|s| s.parse().map_err(|_| format!("{what} is not ASCII")))
            .transpose()
    };
    let mut clients = Vec::new();
    for _ in 0..args.load.concurrency.clamp(1, GRPC_CONNECTIONS) {
        clients.push(
            GrpcClient::connect(args.grpc_url.clone())
                .await
                .map_err(|e| format!("cannot reach {}: {e}", args.grpc_url))?,
        );
    }
    let target = Arc::new(Grpc {
        clients,
        next: AtomicU64::new(0),
        service: ascii(&args.service, "the service name")?,
        token: ascii(&args.token, "the token")?,
    });
    drive(target, &args.load, args.grpc_url.clone()).await
}

/// Exactly the database work of one request, with the same driver.
struct Ceiling {
    secrets: mongodb::Collection<mongodb::bson::Document>,
    audit: mongodb::Collection<mongodb::bson::Document>,
}

impl Ceiling {
    /// The audit record of a request on `id`, named `path` (indexed, as the service's are).
    async fn audit(&self, action: &str, id: &str, path: &str) -> Result<(), String> {
        use mongodb::bson::{doc, DateTime};
        self.audit
            .insert_one(doc! {
                "ts": DateTime::now(), "action": action, "outcome": "success", "channel": "http",
                "actor": "bench", "secret_id": id, "project": "default", "path": path, "version": 1_i64,
                "client_ip": "127.0.0.1", "user_agent": "bench", "request_id": uuid::Uuid::new_v4().to_string(),
            })
            .await
            .map(|_| ())
            .map_err(|_| "db".to_string())
    }
}

impl Target for Ceiling {
    async fn create(&self, value: &[u8]) -> Result<String, String> {
        use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime};
        // Time-ordered, as the service's ids are (`vault::named::new_id`); the
        // path random, as the harness's names are.
        let id = uuid::Uuid::now_v7().to_string();
        let path = uuid::Uuid::new_v4().simple().to_string();
        let bin = |b: Vec<u8>| Binary {
            subtype: BinarySubtype::Generic,
            bytes: b,
        };
        let now = DateTime::now();
        // The same document shape the service stores (value stored as-is: no crypto here).
        self.secrets
            .insert_one(doc! {
                "_id": &id, "project": "default", "path": &path, "current_version": 1_i64,
                "versions": [{ "version": 1_i64, "ciphertext": bin(value.to_vec()), "nonce": bin(vec![0u8; 12]),
                               "key_id": "dk-bench", "created_at": now, "created_by": "bench" }],
                "tags": [], "created_at": now, "created_by": "bench", "updated_at": now, "updated_by": "bench",
            })
            .await
            .map_err(|_| "db".to_string())?;
        self.audit("create", &id, &path).await?;
        Ok(id)
    }

    async fn fetch(&self, id: &str) -> Result<Vec<u8>, String> {
        use mongodb::bson::doc;
        let found = self
            .secrets
            .find_one(doc! { "_id": id, "deleted_at": null })
            .projection(doc! { "versions": { "$slice": -1 } })
            .await
            .map_err(|_| "db".to_string())?
            .ok_or("404")?;
        let value = found
            .get_array("versions")
            .ok()
            .and_then(|v| v.last())
            .and_then(|v| v.as_document())
            .and_then(|v| v.get_binary_generic("ciphertext").ok())
            .cloned()
            .ok_or("body")?;
        self.audit("fetch", id, id).await?;
        Ok(value)
    }
}

/// The database ceiling: the service's database work without the service.
pub async fn run_db(args: DbBenchArgs) -> Result<Summary, String> {
    let mut options = mongodb::options::ClientOptions::parse(&args.mongo_uri)
        .await
        .map_err(|e| format!("MONGO_URI: {}", e.kind))?;
    options.max_pool_size = Some(args.pool_size);
    let client = mongodb::Client::with_options(options).map_err(|e| e.to_string())?;
    let db = client.database(&args.mongo_db);
    // The same indexes the service keeps: they are part of each write's work.
    crate::store::ensure_indexes(&db, 0)
        .await
        .map_err(|e| e.to_string())?;
    let target = Arc::new(Ceiling {
        secrets: db.collection("secrets"),
        audit: db.collection("audit_logs"),
    });
    let summary = drive(target, &args.load, "db-ceiling".into()).await;
    if !args.keep {
        let _ = db.drop().await;
    }
    // Close the pool before the runtime goes, so no driver task outlives it.
    client.shutdown().await;
    summary
}
