//! Typed clients from a secrets.schema.json: `schema combine`, `codegen` for
//! Rust, TypeScript and Python (each compiled for real, and a misspelt
//! accessor refused by each compiler), generated clients loading from a
//! spawned server, `check --schema` and `run --schema`.
//!
//! The compilers are not optional: `scripts/test.sh` installs mypy (pip) and
//! TypeScript (npm, into `.tools/node`); a missing one fails its test with a
//! message that says how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_secret-manager");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A schema using every feature: a path mapping, each type, a pattern.
fn schema_json() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "STRIPE_API_KEY": {
                "description": "card payments",
                "x-secret-path": "billing/prod/stripe",
                "pattern": "^sk_"
            },
            "PORT": {"description": "listen port", "type": "integer", "x-secret-path": "billing/prod/port"},
            "RATIO": {"description": "sampling ratio", "type": "number", "x-secret-path": "billing/prod/ratio"},
            "DEBUG": {"description": "debug logging", "type": "boolean", "x-secret-path": "billing/prod/debug"},
        }
    })
}

fn write_schema(dir: &Path, name: &str, schema: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, schema.to_string()).expect("write schema");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Runs `program` (blocking the calling thread); panics with `missing` when it is not installed.
fn run_tool(cmd: &mut Command, missing: &str) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{missing}"),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// The secret-manager binary without any VAULT_* setting of the caller's.
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "VAULT_URL",
        "VAULT_SERVICE",
        "VAULT_TOKEN",
        "VAULT_TOKEN_FILE",
        "VAULT_CACERT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn codegen(schema: &Path, lang: &str, out: &Path) {
    let o = bin()
        .args(["codegen", "--schema"])
        .arg(schema)
        .args(["--lang", lang, "--out"])
        .arg(out)
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "codegen {lang}: {}", text(&o.stderr));
}

/// Runs the binary as the app's identity, off the runtime the app serves on.
async fn cli(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(args)
        .env("VAULT_URL", &app.address)
        .env("VAULT_SERVICE", &app.identity.service)
        .env("VAULT_TOKEN", &app.identity.token);
    tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .expect("blocking")
}

async fn put(app: &TestApp, key: &str, value: &str) {
    let (project, path) = key.split_once('/').expect("project/path");
    let res = app
        .post_json(
            "/api/secrets",
            &json!({"project": project, "path": path, "value": value}),
        )
        .await;
    assert_eq!(res.status, 201, "put {key}: {}", res.text);
}

async fn stubs(app: &TestApp) -> Vec<Document> {
    app.secrets()
        .find(doc! { "state": "missing" })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

// ---- schema combine ----

#[test]
fn combine_prints_the_union_and_refuses_disagreeing_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write_schema(dir.path(), "a.json", &schema_json());
    let b = write_schema(
        dir.path(),
        "b.json",
        &json!({"properties": {
            "PORT": {"description": "listen port", "type": "integer", "x-secret-path": "billing/prod/port"},
            "DB_URL": {"description": "database"},
        }}),
    );
    let o = bin()
        .args(["schema", "combine"])
        .args([&a, &b])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let combined: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let names: Vec<&String> = combined["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    assert_eq!(
        names,
        ["DB_URL", "DEBUG", "PORT", "RATIO", "STRIPE_API_KEY"],
        "{combined}"
    );
    assert_eq!(combined["required"].as_array().expect("required").len(), 5);

    // codegen refuses a bad schema, names every problem and writes nothing.
    let bad = write_schema(
        dir.path(),
        "bad.json",
        &json!({"properties": {"fn": {"description": "x"}, "A": {"type": "date", "description": "a"}}}),
    );
    let out = dir.path().join("never");
    let o = bin()
        .args(["codegen", "--lang", "python", "--schema"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("secret name \"fn\" is a keyword")
            && stderr.contains("\"A\": `type` must be"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");

    // (case, second schema, what stderr names)
    let cases = [
        (
            "same name, other type",
            json!({"properties": {"PORT": {"description": "listen port", "type": "string", "x-secret-path": "billing/prod/port"}}}),
            "PORT: ",
        ),
        (
            "same name, other path",
            json!({"properties": {"PORT": {"description": "listen port", "type": "integer"}}}),
            "disagree on `x-secret-path`",
        ),
        (
            "a name that is not an identifier everywhere",
            json!({"properties": {"class": {"description": "x"}}}),
            "secret name \"class\" is a keyword",
        ),
    ];
    for (case, second, expected) in cases {
        let c = write_schema(dir.path(), "c.json", &second);
        let o = bin()
            .args(["schema", "combine"])
            .args([&a, &c])
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(2), "{case}");
        assert!(o.stdout.is_empty(), "{case}: nothing on stdout");
        assert!(
            text(&o.stderr).contains(expected),
            "{case}: {}",
            text(&o.stderr)
        );
    }
}

// ---- each language compiles, and a misspelt accessor does not ----

/// A crate directory's Rust client checked with cargo, offline, against the
/// versions this repository's Cargo.lock pins (already downloaded by our own
/// build), in a target directory under target/ that later runs reuse.
fn cargo_check(dir: &Path) -> Output {
    cargo(dir, &["check", "--examples"])
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    std::fs::copy(Path::new(ROOT).join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_tool(
        Command::new(cargo)
            .args(args)
            .args(["--offline", "--quiet"])
            .current_dir(dir)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(ROOT).join("target/codegen-check"),
            )
            .env_remove("RUSTFLAGS"),
        "cargo is not on PATH",
    )
}

#[test]
fn the_rust_client_compiles_and_a_misspelt_accessor_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(dir.path(), "secrets.schema.json", &schema_json());
    let out = dir.path().join("client");
    codegen(&schema, "rust", &out);
    std::fs::create_dir_all(out.join("examples")).expect("examples");
    let program = |accessor: &str| {
        format!(
            "fn port(s: &vault_secrets::Secrets) -> i64 {{ s.{accessor}() }}\n\
             fn key(s: &vault_secrets::Secrets) -> &str {{ s.STRIPE_API_KEY() }}\n\
             fn main() {{ let _ = (port, key); }}\n"
        )
    };
    // For this schema the generated code is as rustfmt would write it.
    let formatted = run_tool(
        Command::new("rustfmt")
            .args(["--check", "--edition", "2021"])
            .arg(out.join("src/lib.rs")),
        "rustfmt is not installed (rustup component add rustfmt)",
    );
    assert!(formatted.status.success(), "{}", text(&formatted.stdout));
    std::fs::write(out.join("examples/use_secrets.rs"), program("PORT")).expect("write");
    let ok = cargo_check(&out);
    assert!(ok.status.success(), "cargo check: {}", text(&ok.stderr));

    std::fs::write(out.join("examples/use_secrets.rs"), program("PROT")).expect("write");
    let typo = cargo_check(&out);
    assert!(
        !typo.status.success(),
        "a misspelt accessor must not compile"
    );
    assert!(
        text(&typo.stderr).contains("no method named `PROT`"),
        "{}",
        text(&typo.stderr)
    );
}

const NO_MYPY: &str =
    "mypy is not installed: scripts/test.sh installs it (python3 -m pip install mypy)";

fn mypy(dir: &Path, files: &[&str]) -> Output {
    let o = run_tool(
        Command::new("python3")
            .args(["-m", "mypy", "--strict", "--no-incremental"])
            .args(files)
            .current_dir(dir),
        "python3 is not installed",
    );
    assert!(
        !text(&o.stderr).contains("No module named mypy"),
        "{NO_MYPY}"
    );
    o
}

#[test]
fn the_python_client_type_checks_and_a_misspelt_accessor_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(dir.path(), "secrets.schema.json", &schema_json());
    let out = dir.path().join("client");
    codegen(&schema, "python", &out);
    let compiled = run_tool(
        Command::new("python3")
            .args(["-m", "py_compile", "vault_secrets.py"])
            .current_dir(&out),
        "python3 is not installed",
    );
    assert!(compiled.status.success(), "{}", text(&compiled.stderr));
    let program = |accessor: &str| {
        format!(
            "from vault_secrets import Secrets\n\n\n\
             def port(s: Secrets) -> int:\n    return s.{accessor}\n\n\n\
             def key(s: Secrets) -> str:\n    return s.STRIPE_API_KEY\n"
        )
    };
    std::fs::write(out.join("use_secrets.py"), program("PORT")).expect("write");
    let ok = mypy(&out, &["vault_secrets.py", "use_secrets.py"]);
    assert!(ok.status.success(), "mypy --strict: {}", text(&ok.stdout));

    std::fs::write(out.join("use_secrets.py"), program("PROT")).expect("write");
    let typo = mypy(&out, &["use_secrets.py"]);
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo.stdout));
    assert!(
        text(&typo.stdout).contains("\"Secrets\" has no attribute \"PROT\""),
        "{}",
        text(&typo.stdout)
    );
}

/// The TypeScript compiler and Node's type definitions that scripts/test.sh installs.
fn tools_node() -> PathBuf {
    Path::new(ROOT).join(".tools/node/node_modules")
}

fn tsc(dir: &Path, extra: &[&str], files: &[&str]) -> Output {
    let tsc = tools_node().join(".bin/tsc");
    assert!(
        tsc.exists(),
        "tsc is not installed at {}: scripts/test.sh installs it \
         (npm install --prefix .tools/node typescript@5 @types/node@20; needs Node and npm)",
        tsc.display()
    );
    run_tool(
        Command::new(tsc)
            .args([
                "--strict",
                "--target",
                "es2022",
                "--module",
                "commonjs",
                "--moduleResolution",
                "node10",
                "--types",
                "node",
                "--typeRoots",
            ])
            .arg(tools_node().join("@types"))
            .args(extra)
            .args(files)
            .current_dir(dir),
        "tsc cannot run: is Node installed?",
    )
}

#[test]
fn the_typescript_client_compiles_and_a_misspelt_accessor_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(dir.path(), "secrets.schema.json", &schema_json());
    let out = dir.path().join("client");
    codegen(&schema, "typescript", &out);
    let program = |accessor: &str| {
        format!(
            "import {{ Secrets }} from \"./vault_secrets\";\n\
             export function port(s: Secrets): number {{ return s.{accessor}; }}\n\
             export function key(s: Secrets): string {{ return s.STRIPE_API_KEY; }}\n"
        )
    };
    std::fs::write(out.join("use_secrets.ts"), program("PORT")).expect("write");
    let ok = tsc(&out, &["--noEmit"], &["vault_secrets.ts", "use_secrets.ts"]);
    assert!(ok.status.success(), "tsc: {}", text(&ok.stdout));

    std::fs::write(out.join("use_secrets.ts"), program("PROT")).expect("write");
    let typo = tsc(&out, &["--noEmit"], &["vault_secrets.ts", "use_secrets.ts"]);
    assert!(
        !typo.status.success(),
        "a misspelt accessor must not compile"
    );
    assert!(
        text(&typo.stdout).contains("Property 'PROT' does not exist on type 'Secrets'"),
        "{}",
        text(&typo.stdout)
    );
}

// ---- generated clients against a server ----

/// What a package's start-up does: load, then use the values (never printing them).
const PY_PROGRAM: &str = r#"
import sys
from vault_secrets import Secrets, SecretsError

try:
    s = Secrets.load()
except SecretsError as e:
    print("\n".join(e.problems))
    sys.exit(3)
assert (s.STRIPE_API_KEY, s.PORT, s.RATIO, s.DEBUG) == ("sk_live_1", 8080, 0.25, True)
print(repr(s))
"#;

const TS_PROGRAM: &str = r#"
import { Secrets, SecretsError } from "./vault_secrets";

Secrets.load().then(
  (s) => {
    if (s.STRIPE_API_KEY !== "sk_live_1" || s.PORT !== 8080 || s.RATIO !== 0.25 || s.DEBUG !== true) {
      process.exit(4);
    }
    console.log(JSON.stringify(s));
  },
  (e: unknown) => {
    if (!(e instanceof SecretsError)) {
      throw e;
    }
    console.log(e.problems.join("\n"));
    process.exit(3);
  },
);
"#;

const RUST_PROGRAM: &str = r#"
#[tokio::main(flavor = "current_thread")]
async fn main() {
    match vault_secrets::Secrets::load().await {
        Ok(s) => {
            if (s.STRIPE_API_KEY(), s.PORT(), s.RATIO(), s.DEBUG()) != ("sk_live_1", 8080, 0.25, true) {
                std::process::exit(4);
            }
            println!("{s:?}");
        }
        Err(e) => {
            println!("{}", e.problems().join("\n"));
            std::process::exit(3);
        }
    }
}
"#;

/// Writes the three clients and their programs into `dir`; returns how to run
/// each (and the Python client once more over gRPC, given the server's gRPC URL).
fn clients(dir: &Path, grpc_url: Option<&str>) -> Vec<(&'static str, Command)> {
    let schema = write_schema(dir, "secrets.schema.json", &schema_json());
    let rs = dir.join("rs");
    codegen(&schema, "rust", &rs);
    let mut manifest = std::fs::read_to_string(rs.join("Cargo.toml")).expect("manifest");
    manifest.push_str(
        "\n[dev-dependencies]\ntokio = { version = \"1\", features = [\"rt\", \"macros\"] }\n",
    );
    std::fs::write(rs.join("Cargo.toml"), manifest).expect("write");
    std::fs::create_dir_all(rs.join("examples")).expect("examples");
    std::fs::write(rs.join("examples/main.rs"), RUST_PROGRAM).expect("write");
    let built = cargo(&rs, &["build", "--example", "main"]);
    assert!(
        built.status.success(),
        "cargo build: {}",
        text(&built.stderr)
    );
    // A copy of its own: another test may rebuild the shared target directory's one.
    let exe = rs.join("main");
    std::fs::copy(
        Path::new(ROOT).join("target/codegen-check/debug/examples/main"),
        &exe,
    )
    .expect("copy the example");
    let rust = Command::new(exe);

    let py = dir.join("py");
    codegen(&schema, "python", &py);
    std::fs::write(py.join("main.py"), PY_PROGRAM).expect("write");
    let mut python = Command::new("python3");
    python
        .arg("main.py")
        .current_dir(&py)
        .env_remove("VAULT_GRPC_URL");
    let mut python_grpc = Command::new("python3");
    python_grpc.arg("main.py").current_dir(&py);
    if let Some(url) = grpc_url {
        python_grpc.env("VAULT_GRPC_URL", url);
    }

    let ts = dir.join("ts");
    codegen(&schema, "typescript", &ts);
    std::fs::write(ts.join("main.ts"), TS_PROGRAM).expect("write");
    let built = tsc(&ts, &["--outDir", "out"], &["vault_secrets.ts", "main.ts"]);
    assert!(built.status.success(), "tsc: {}", text(&built.stdout));
    let mut node = Command::new("node");
    node.arg("out/main.js").current_dir(&ts);
    let mut all = vec![("rust", rust), ("python", python), ("typescript", node)];
    if grpc_url.is_some() {
        all.push(("python over gRPC", python_grpc));
    }
    all
}

async fn load(app: &TestApp, mut cmd: Command) -> Output {
    cmd.env("VAULT_URL", &app.address)
        .env("VAULT_SERVICE", &app.identity.service)
        .env("VAULT_TOKEN", &app.identity.token)
        .env_remove("VAULT_TOKEN_FILE")
        .env_remove("VAULT_CACERT");
    tokio::task::spawn_blocking(move || cmd.output().expect("client runs"))
        .await
        .expect("blocking")
}

#[tokio::test]
async fn generated_clients_load_every_secret_or_fail_once_with_every_missing_name() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Two missing (PORT, DEBUG), one ill-typed (RATIO), one present.
    put(&app, "billing/prod/stripe", "sk_live_1").await;
    put(&app, "billing/prod/ratio", "a quarter").await;
    let grpc_url = app.grpc_address.as_deref().expect("gRPC is served");
    let mut ran = Vec::new();
    for (lang, cmd) in clients(dir.path(), Some(grpc_url)) {
        ran.push(lang);
        let o = load(&app, cmd).await;
        assert_eq!(o.status.code(), Some(3), "{lang}: {}", text(&o.stderr));
        let problems = text(&o.stdout);
        assert_eq!(
            problems.trim().lines().collect::<Vec<_>>(),
            [
                "DEBUG (billing/prod/debug): missing",
                "PORT (billing/prod/port): missing",
                "RATIO: not a number",
            ],
            "{lang}: {}",
            text(&o.stderr)
        );
        assert!(!problems.contains("sk_live") && !problems.contains("quarter"));
    }
    assert_eq!(ran, ["rust", "python", "typescript", "python over gRPC"]);
    // Each miss left a stub that says what the secret is for.
    let mut found: Vec<(String, String)> = stubs(&app)
        .await
        .iter()
        .map(|d| {
            (
                d.get_str("path").expect("path").to_string(),
                d.get_str("description").expect("description").to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("prod/debug".to_string(), "debug logging".to_string()),
            ("prod/port".to_string(), "listen port".to_string()),
        ]
    );

    // Filled and fixed, every client loads every value.
    put(&app, "billing/prod/port", "8080").await;
    put(&app, "billing/prod/debug", "true").await;
    let fixed = app
        .request(reqwest::Method::PATCH, "/api/secrets/billing/prod/ratio")
        .json(&json!({"value": "0.25"}));
    assert_eq!(TestApp::send(fixed).await.status, 200);
    for (lang, cmd) in clients(dir.path(), Some(grpc_url)) {
        let o = load(&app, cmd).await;
        assert!(
            o.status.success(),
            "{lang}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let shown = text(&o.stdout);
        assert!(shown.contains("Secrets(<redacted>)"), "{lang}: {shown}");
        assert!(!shown.contains("sk_live"), "{lang}: {shown}");
    }
}

#[test]
fn a_client_without_credentials_fails_once_naming_the_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (lang, mut cmd) in clients(dir.path(), None) {
        cmd.env_remove("VAULT_SERVICE")
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_TOKEN_FILE");
        let o = cmd.output().expect("runs");
        assert_eq!(o.status.code(), Some(3), "{lang}: {}", text(&o.stderr));
        assert_eq!(
            text(&o.stdout).trim().lines().collect::<Vec<_>>(),
            [
                "VAULT_SERVICE is not set",
                "VAULT_TOKEN or VAULT_TOKEN_FILE is not set"
            ],
            "{lang}"
        );
    }
}

// ---- check --schema and run --schema ----

#[tokio::test]
async fn check_lists_missing_and_ill_typed_secrets_and_records_stubs() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(dir.path(), "secrets.schema.json", &schema_json());
    let schema = schema.to_str().expect("utf8");
    put(&app, "billing/prod/stripe", "sk_live_1").await;
    put(&app, "billing/prod/port", "eighty").await;

    let o = cli(&app, &["check", "--schema", schema]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    for row in [
        "STRIPE_API_KEY  billing/prod/stripe  ok",
        "PORT            billing/prod/port    ill-typed: not an integer",
        "RATIO           billing/prod/ratio   missing",
        "DEBUG           billing/prod/debug   missing",
    ] {
        assert!(table.contains(row), "{row} in:\n{table}");
    }
    assert!(
        text(&o.stderr).contains("3 of 4 secrets missing or ill-typed: DEBUG, PORT, RATIO"),
        "{}",
        text(&o.stderr)
    );
    assert!(!table.contains("sk_live") && !table.contains("eighty"));
    let mut recorded: Vec<String> = stubs(&app)
        .await
        .iter()
        .map(|d| d.get_str("description").expect("description").to_string())
        .collect();
    recorded.sort();
    assert_eq!(recorded, ["debug logging", "sampling ratio"]);

    put(&app, "billing/prod/ratio", "0.5").await;
    put(&app, "billing/prod/debug", "false").await;
    let fixed = app
        .request(reqwest::Method::PATCH, "/api/secrets/billing/prod/port")
        .json(&json!({"value": "80"}));
    assert_eq!(TestApp::send(fixed).await.status, 200);
    let o = cli(&app, &["check", "--schema", schema, "--json"]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    let states: Vec<&str> = report["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["ok"; 4], "{report}");
}

#[tokio::test]
async fn run_with_a_schema_puts_every_secret_in_the_child_environment_under_its_name() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(dir.path(), "secrets.schema.json", &schema_json());
    let schema = schema.to_str().expect("utf8");
    put(&app, "billing/prod/stripe", "sk_live_1").await;
    put(&app, "billing/prod/port", "8080").await;
    let script = "test \"$STRIPE_API_KEY\" = sk_live_1 && test \"$PORT\" = 8080 \
                  && test \"$RATIO\" = 0.25 && test \"$DEBUG\" = true \
                  && test -z \"${VAULT_TOKEN+set}\" && echo env-ok";

    // Two missing: one failure naming both, and the command does not start.
    let o = cli(&app, &["run", "--schema", schema, "--", "sh", "-c", script]).await;
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("cannot read 2 of 4 secrets")
            && stderr.contains("RATIO (billing/prod/ratio)")
            && stderr.contains("DEBUG (billing/prod/debug)"),
        "{stderr}"
    );
    assert!(text(&o.stdout).is_empty());

    put(&app, "billing/prod/ratio", "0.25").await;
    put(&app, "billing/prod/debug", "true").await;
    let o = cli(&app, &["run", "--schema", schema, "--", "sh", "-c", script]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "env-ok");
    assert!(!text(&o.stderr).contains("sk_live"));
}
