use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mongodb::bson::Document;
use mongodb::{Client, Collection, Database};
use secret_manager::config::{Config, LogFormat};
use secret_manager::crypto::MasterKey;
use secret_manager::startup::Application;
use serde_json::Value;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        secret_manager::telemetry::init(LogFormat::Pretty);
    }
});

/// The test database server, started by `scripts/test.sh`.
pub fn mongo_uri() -> String {
    std::env::var("MONGO_URI").expect(
        "MONGO_URI is not set: run the tests through scripts/test.sh, which starts the database",
    )
}

pub fn unique_db_name() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// A service identity to send as `X-Service` / `X-Token`.
#[derive(Clone, Debug)]
pub struct Identity {
    pub service: String,
    pub token: String,
}

impl Identity {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            token: format!("tok-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:<GRPC_PORT>`, unless `GRPC_ENABLED=false`.
    pub grpc_address: Option<String>,
    pub db: Database,
    pub db_name: String,
    pub master_key: String,
    pub http: reqwest::Client,
    /// The default identity: may read, write, list and delete every secret.
    pub identity: Identity,
}

pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    pub fn request_id(&self) -> String {
        self.headers
            .get("x-request-id")
            .expect("X-Request-Id header")
            .to_str()
            .expect("ascii")
            .to_string()
    }

    /// Asserts the standard error body and returns its message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status for {code}: body {}", self.text);
        let body = self.json();
        let error = body
            .get("error")
            .unwrap_or_else(|| panic!("no `error` in {body}"));
        assert_eq!(error["code"], code, "code: {body}");
        assert_eq!(error["request_id"], self.request_id(), "request id: {body}");
        let message = error["message"]
            .as_str()
            .expect("message is text")
            .to_string();
        assert!(!message.is_empty());
        assert_eq!(
            error.as_object().expect("object").len(),
            3,
            "only code, message, request_id: {body}"
        );
        message
    }
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

impl TestApp {
    /// A request carrying `who`'s credentials (none when `None`).
    pub fn request_as(
        &self,
        who: Option<&Identity>,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.address));
        if let Some(id) = who {
            req = req
                .header("x-service", &id.service)
                .header("x-token", &id.token);
        }
        req
    }

    /// A request carrying the default identity.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(Some(&self.identity), method, path)
    }

    pub async fn send(req: reqwest::RequestBuilder) -> Response {
        into_response(req.send().await.expect("request sent")).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut req = self.request(reqwest::Method::POST, path).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        Self::send(req).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.post_raw(path, Some("application/json"), body.to_string())
            .await
    }

    pub async fn get(&self, path: &str) -> Response {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn create(&self, plaintext: &[u8]) -> String {
        let res = self
            .post_json(
                "/vault/secret/create",
                &serde_json::json!({ "secret": b64(plaintext) }),
            )
            .await;
        assert_eq!(res.status, 200, "create: {}", res.text);
        res.json()["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string()
    }

    pub async fn fetch(&self, secret_id: &str) -> Response {
        self.post_json(
            "/vault/secret/fetch",
            &serde_json::json!({ "secret_id": secret_id }),
        )
        .await
    }

    pub fn secrets(&self) -> Collection<Document> {
        self.db.collection("secrets")
    }

    pub fn audit_logs(&self) -> Collection<Document> {
        self.db.collection("audit_logs")
    }
}

pub async fn into_response(res: reqwest::Response) -> Response {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    Response {
        status,
        headers,
        text,
    }
}

pub async fn test_db(name: &str) -> Database {
    let client = Client::with_uri_str(mongo_uri())
        .await
        .expect("mongo client");
    client.database(name)
}

/// Starts the app on a random port against a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like `spawn_app`, with extra or overriding environment variables.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    LazyLock::force(&TRACING);
    let master_key = MasterKey::generate().to_base64().to_string();
    let db_name = unique_db_name();
    let identity = Identity::new("tester");
    let mut pairs: Vec<(String, String)> = vec![
        ("CONFIG_FILE".into(), "/dev/null".into()),
        (
            format!("TOKEN_{}", identity.service),
            identity.token.clone(),
        ),
        (format!("ALLOW_{}", identity.service), "*".into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("GRPC_PORT".into(), "0".into()),
        ("WORKERS".into(), "2".into()),
        ("MONGO_URI".into(), mongo_uri()),
        ("MONGO_DB".into(), db_name.clone()),
        ("MASTER_KEY".into(), master_key.clone()),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    let db_name = pairs
        .iter()
        .find(|(k, _)| k == "MONGO_DB")
        .map(|(_, v)| v.clone())
        .expect("MONGO_DB");
    let master_key = pairs
        .iter()
        .find(|(k, _)| k == "MASTER_KEY")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut identity = identity;
    if let Some((_, token)) = pairs
        .iter()
        .find(|(k, _)| *k == format!("TOKEN_{}", identity.service))
    {
        identity.token = token.clone();
    }
    let config = Config::from_pairs(pairs).expect("test configuration");
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let grpc_address = app.grpc_port().map(|p| format!("http://127.0.0.1:{p}"));
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        grpc_address,
        db: test_db(&db_name).await,
        db_name,
        master_key,
        http: reqwest::Client::new(),
        identity,
    }
}

/// Starts the app with `yaml` as its config.yaml (plus extra variables).
pub async fn spawn_app_with_config(yaml: &str, extra: &[(&str, &str)]) -> TestApp {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("write config");
    let path = file.path().to_str().expect("utf8").to_string();
    let mut all: Vec<(&str, &str)> = vec![("CONFIG_FILE", &path)];
    all.extend_from_slice(extra);
    // The file is read at start-up only.
    spawn_app_with(&all).await
}

/// The value of one series in `GET /metrics` (`name{labels}` as served), or
/// `None` when it is not served.
pub async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A test certificate authority and a server certificate it signed for
/// `localhost` and `127.0.0.1`, written as PEM files in a directory of their own.
pub struct TestCerts {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl TestCerts {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "secret-manager test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let leaf_key = KeyPair::generate().expect("server key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("server certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).expect("write key");
        Self {
            dir,
            ca_pem: ca.pem(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf8")
            .to_string()
    }

    /// The CA certificate that signed the server certificate.
    pub fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    pub fn cert_file(&self) -> String {
        self.path("cert.pem")
    }

    pub fn key_file(&self) -> String {
        self.path("key.pem")
    }

    /// A client that trusts this CA only (besides nothing else).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM"),
            )
            .build()
            .expect("TLS client")
    }
}

/// The configuration `spawn_app_with` would use, for tests of start-up itself.
pub fn test_config(extra: &[(&str, &str)]) -> Result<Config, secret_manager::config::ConfigError> {
    let mut pairs: Vec<(String, String)> = vec![
        ("CONFIG_FILE".into(), "/dev/null".into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("GRPC_PORT".into(), "0".into()),
        ("WORKERS".into(), "1".into()),
        ("MONGO_URI".into(), mongo_uri()),
        ("MONGO_DB".into(), unique_db_name()),
        (
            "MASTER_KEY".into(),
            MasterKey::generate().to_base64().to_string(),
        ),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    Config::from_pairs(pairs)
}

/// A request as `who`, with an optional JSON body.
pub async fn call(
    app: &TestApp,
    who: &Identity,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut req = app.request_as(Some(who), method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    TestApp::send(req).await
}

/// Every stored event document, in number order.
pub async fn event_docs(db: &Database) -> Vec<Document> {
    use futures_util::TryStreamExt as _;
    db.collection::<Document>("events")
        .find(mongodb::bson::doc! {})
        .sort(mongodb::bson::doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("events")
}

/// Every stored event as (number, path), in order; a placeholder's path is "lost".
pub async fn stored_events(db: &Database) -> Vec<(i64, String)> {
    event_docs(db)
        .await
        .into_iter()
        .map(|d| {
            let n = d.get_i64("_id").expect("number");
            match d.get_str("kind").expect("kind") {
                "lost" => (n, "lost".to_string()),
                _ => (n, d.get_str("path").expect("path").to_string()),
            }
        })
        .collect()
}

/// The stored events once their numbers run from 1 without a gap (numbers
/// reserved and not used are filled in the background); fails if they do
/// not within 10 s.
pub async fn settled_event_docs(db: &Database) -> Vec<Document> {
    let numbers = |docs: &[Document]| -> Vec<i64> {
        docs.iter()
            .map(|d| d.get_i64("_id").expect("number"))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let docs = event_docs(db).await;
        let gapless = (1..=docs.len() as i64).collect::<Vec<_>>();
        if numbers(&docs) == gapless {
            return docs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event numbers still have a gap: {:?}",
            numbers(&docs)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
