//! Every rule matches its true positives and none of its false positives.
//!
//! Positives are assembled at run time from a prefix and deterministic
//! pseudo-random characters, so this file holds no whole credential for a
//! scanner (this one, or a code host's push protection) to flag; every value
//! is fake.

use super::*;

const UP32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &str = "0123456789abcdef";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const DIGITS: &str = "0123456789";
const LOWNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const BECH32: &str = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

/// `n` pseudo-random characters of `set`, the same for the same `seed`.
pub(super) fn rnd(set: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = set.chars().collect();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chars[((x >> 33) % chars.len() as u64) as usize]
        })
        .collect()
}

fn uuid(seed: u64) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        rnd(HEX, 8, seed),
        rnd(HEX, 4, seed + 1),
        rnd(HEX, 4, seed + 2),
        rnd(HEX, 4, seed + 3),
        rnd(HEX, 12, seed + 4)
    )
}

type Examples = (&'static str, Vec<String>, Vec<String>);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Three positives built from `f(seed)` for seeds 1..=3, each in a line of code.
fn three(f: impl Fn(u64) -> String) -> Vec<String> {
    vec![
        format!("token = \"{}\"", f(1)),
        format!("  {}", f(2)),
        format!("KEY: {} # ci", f(3)),
    ]
}

#[rustfmt::skip]
fn examples() -> Vec<Examples> {
    vec![
        ("aws-access-key-id", three(|i| format!("AKIA{}", rnd(UP32, 16, i))),
         s(&["AKIAIOSFODNN7EXAMPLE", "AKIA1234", "XAKIAABCDEFGHIJKLMNOPQ2"])),
        ("aws-secret-access-key",
         vec![format!("aws_secret_access_key = {}", rnd(B64, 40, 1)),
              format!("AWS_SECRET_KEY: \"{}\"", rnd(B64, 40, 2)),
              format!("\"awsSecretAccessKey\": \"{}\"", rnd(B64, 40, 3))],
         s(&["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
             "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}",
             "aws_secret_access_key = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])),
        ("aws-mws-key", three(|i| format!("amzn.mws.{}", uuid(i * 10))),
         s(&["amzn.mws.1234", "amzn.mws.xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", "amazon.mws.endpoint"])),
        ("gcp-api-key", three(|i| format!("AIza{}", rnd(URL64, 35, i))),
         s(&["AIzaSyEXAMPLE", "AIza" , "key=AIzaxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("gcp-service-account-key", three(|i| format!("\"private_key_id\": \"{}\"", rnd(HEX, 40, i))),
         s(&["\"private_key_id\": \"\"", "\"private_key_id\": \"<id>\"", "\"private_key_id\": \"1234abcd\""])),
        ("google-oauth-client-secret", three(|i| format!("GOCSPX-{}", rnd(URL64, 28, i))),
         s(&["GOCSPX-", "GOCSPX-short", "GOCSPX-xxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("google-oauth-access-token", three(|i| format!("ya29.{}", rnd(URL64, 60, i))),
         s(&["ya29.", "ya29.short", "ya29.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("azure-storage-account-key", three(|i| format!("DefaultEndpointsProtocol=https;AccountName=x;AccountKey={}==", rnd(B64, 86, i))),
         s(&["AccountKey=", "AccountKey=<key>", "AccountKey=abc=="])),
        ("azure-ad-client-secret", three(|i| format!("{}{}Q~{}", rnd(ALNUM, 3, i), i, rnd(URL64, 34, i + 9))),
         s(&["abc1Q~", "Q~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "abcdQ~shortvalue"])),
        ("digitalocean-pat", three(|i| format!("dop_v1_{}", rnd(HEX, 64, i))),
         s(&["dop_v1_", "dop_v1_abc", "dop_v1_0000000000000000000000000000000000000000000000000000000000000000"])),
        ("digitalocean-oauth-token", three(|i| format!("doo_v1_{}", rnd(HEX, 64, i))),
         s(&["doo_v1_", "doo_v1_abc", "doo_v1_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"])),
        ("alibaba-access-key-id", three(|i| format!("LTAI{}", rnd(ALNUM, 20, i))),
         s(&["LTAI", "LTAIshort", "LTAIxxxxxxxxxxxxxxxxxxxx"])),
        ("heroku-api-key",
         vec![format!("HEROKU_API_KEY={}", uuid(1)), format!("heroku_key: \"{}\"", uuid(7)), format!("herokuApiKey = '{}'", uuid(13))],
         s(&["HEROKU_API_KEY=", "request_id = 9f1c2a3b-0000-0000-0000-000000000000", "heroku_app = my-app"])),
        ("cloudflare-api-token",
         vec![format!("CLOUDFLARE_API_TOKEN={}", rnd(URL64, 40, 1)), format!("cloudflare_token: \"{}\"", rnd(URL64, 40, 2)), format!("CF_API_TOKEN={}", rnd(URL64, 40, 3))],
         s(&["CLOUDFLARE_API_TOKEN=", "cloudflare_zone = example.com", "CLOUDFLARE_API_TOKEN=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("flyio-token", three(|i| format!("fo1_{}", rnd(URL64, 43, i))),
         s(&["fo1_", "fo1_short", "fo1_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("vault-token", three(|i| format!("hvs.{}", rnd(URL64, 90, i))),
         s(&["hvs.", "hvs.short", "hvs.xxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("terraform-cloud-token", three(|i| format!("{}.atlasv1.{}", rnd(ALNUM, 14, i), rnd(URL64, 67, i + 3))),
         s(&["abc.atlasv1.def", "xxxxxxxxxxxxxx.atlasv1.", "atlasv1 is the API version"])),
        ("github-pat", three(|i| format!("ghp_{}", rnd(ALNUM, 36, i))),
         s(&["ghp_", "ghp_short123", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("github-fine-grained-pat", three(|i| format!("github_pat_{}_{}", rnd(ALNUM, 22, i), rnd(ALNUM, 59, i + 5))),
         s(&["github_pat_", "github_pat_short_value", "github_pat_xxxxxxxxxxxxxxxxxxxxxx_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("github-oauth-token", three(|i| format!("gho_{}", rnd(ALNUM, 36, i))),
         s(&["gho_", "gho_short", "gho_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("github-app-token", three(|i| format!("ghs_{}", rnd(ALNUM, 36, i))),
         s(&["ghs_", "ghu_short", "ghs_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("github-refresh-token", three(|i| format!("ghr_{}", rnd(ALNUM, 36, i))),
         s(&["ghr_", "ghr_short", "ghr_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("gitlab-pat", three(|i| format!("glpat-{}", rnd(ALNUM, 20, i))),
         s(&["glpat-", "glpat-short", "glpat-xxxxxxxxxxxxxxxxxxxx"])),
        ("gitlab-runner-token", three(|i| format!("glrt-{}", rnd(ALNUM, 20, i))),
         s(&["glrt-", "glrt-short", "glrt-xxxxxxxxxxxxxxxxxxxx"])),
        ("gitlab-pipeline-trigger-token", three(|i| format!("glptt-{}", rnd(HEX, 40, i))),
         s(&["glptt-", "glptt-abc", "glptt-0000000000000000000000000000000000000000"])),
        ("bitbucket-app-password", three(|i| format!("ATBB{}", rnd(ALNUM, 32, i))),
         s(&["ATBB", "ATBBshort", "ATBBxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("npm-token", three(|i| format!("npm_{}", rnd(ALNUM, 36, i))),
         s(&["npm_", "npm_install", "npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("pypi-token", three(|i| format!("pypi-AgEIcHlwaS5vcmc{}", rnd(URL64, 70, i))),
         s(&["pypi-AgEIcHlwaS5vcmc", "pypi-token", "pypi-AgEIcHlwaS5vcmcshort"])),
        ("rubygems-token", three(|i| format!("rubygems_{}", rnd(HEX, 48, i))),
         s(&["rubygems_", "rubygems_org", "rubygems_000000000000000000000000000000000000000000000000"])),
        ("dockerhub-pat", three(|i| format!("dckr_pat_{}", rnd(URL64, 27, i))),
         s(&["dckr_pat_", "dckr_pat_short", "dckr_pat_xxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("stripe-live-key", three(|i| format!("sk_live_{}", rnd(ALNUM, 24 + i as usize, i))),
         s(&["sk_live_", "sk_live_short", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("stripe-test-key", three(|i| format!("sk_test_{}", rnd(ALNUM, 24, i))),
         s(&["sk_test_", "sk_test_short", "sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("stripe-webhook-secret", three(|i| format!("whsec_{}", rnd(ALNUM, 32, i))),
         s(&["whsec_", "whsec_short", "whsec_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("square-access-token", three(|i| format!("EAAA{}", rnd(URL64, 60, i))),
         s(&["EAAA", "EAAAshort", "sq0atp-xxxxxxxxxxxxxxxxxxxxxx"])),
        ("square-oauth-secret", three(|i| format!("sq0csp-{}", rnd(URL64, 43, i))),
         s(&["sq0csp-", "sq0csp-short", "sq0csp-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("braintree-access-token", three(|i| format!("access_token$production${}${}", rnd(LOWNUM, 16, i), rnd(HEX, 32, i + 4))),
         s(&["access_token$production$", "access_token$sandbox$abc$def", "access_token = production"])),
        ("shopify-token", three(|i| format!("shpat_{}", rnd(HEX, 32, i))),
         s(&["shpat_", "shpat_short", "shpat_00000000000000000000000000000000"])),
        ("slack-bot-token", three(|i| format!("xoxb-{}-{}-{}", rnd(DIGITS, 12, i), rnd(DIGITS, 13, i + 1), rnd(ALNUM, 24, i + 2))),
         s(&["xoxb-", "xoxb-123-456-abc", "xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("slack-user-token", three(|i| format!("xoxp-{}-{}-{}-{}", rnd(DIGITS, 12, i), rnd(DIGITS, 12, i + 1), rnd(DIGITS, 13, i + 2), rnd(HEX, 32, i + 3))),
         s(&["xoxp-", "xoxp-1-2-3-abc", "xoxp-000000000000-000000000000-0000000000000-00000000000000000000000000000000"])),
        ("slack-app-token", three(|i| format!("xapp-1-A{}-{}-{}", rnd(UPNUM, 10, i), rnd(DIGITS, 13, i + 1), rnd(HEX, 64, i + 2))),
         s(&["xapp-", "xapp-1-A1-1-abc", "xapp-1-AXXXXXXXXXX-0000000000000-0000000000000000000000000000000000000000000000000000000000000000"])),
        ("slack-webhook-url", three(|i| format!("https://hooks.slack.com/services/T{}/B{}/{}", rnd(UPNUM, 9, i), rnd(UPNUM, 9, i + 1), rnd(ALNUM, 24, i + 2))),
         s(&["https://hooks.slack.com/services/", "https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/xxxxxxxxxxxxxxxxxxxxxxxx", "https://api.slack.com/apps"])),
        ("discord-bot-token", three(|i| format!("M{}.{}.{}", rnd(URL64, 23, i), rnd(URL64, 6, i + 1), rnd(URL64, 27, i + 2))),
         s(&["MTIz.abc.def", "Mxxxxxxxxxxxxxxxxxxxxxxx.xxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxx", "Main.java.util"])),
        ("discord-webhook-url", three(|i| format!("https://discord.com/api/webhooks/{}/{}", rnd(DIGITS, 18, i), rnd(URL64, 68, i + 1))),
         s(&["https://discord.com/api/webhooks/", "https://discord.com/api/webhooks/123/abc", "https://discord.com/developers/docs"])),
        ("telegram-bot-token", three(|i| format!("{}:AA{}", rnd(DIGITS, 10, i), rnd(URL64, 33, i + 1))),
         s(&["123456:AA", "12:AAshort", "0000000000:AAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("teams-webhook-url", three(|i| format!("https://acme.webhook.office.com/webhookb2/{}@{}/IncomingWebhook/{}/{}", uuid(i), uuid(i + 5), rnd(HEX, 32, i + 9), uuid(i + 11))),
         s(&["https://acme.webhook.office.com/webhookb2/", "https://outlook.office.com/", "https://acme.webhook.office.com/webhookb2/abc/IncomingWebhook/def"])),
        ("twilio-api-key", three(|i| format!("SK{}", rnd(HEX, 32, i))),
         s(&["SK", "SKIP_TESTS=1", "SK00000000000000000000000000000000"])),
        ("sendgrid-api-key", three(|i| format!("SG.{}.{}", rnd(URL64, 22, i), rnd(URL64, 43, i + 1))),
         s(&["SG.", "SG.short.value", "SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("mailgun-api-key", three(|i| format!("key-{}", rnd(HEX, 32, i))),
         s(&["key-", "key-value", "key-00000000000000000000000000000000"])),
        ("mailchimp-api-key", three(|i| format!("{}-us{}", rnd(HEX, 32, i), i + 5)),
         s(&["abc-us6", "en-us", "00000000000000000000000000000000-us6"])),
        ("openai-api-key", three(|i| format!("sk-proj-{}T3BlbkFJ{}", rnd(URL64, 30, i), rnd(URL64, 30, i + 1))),
         s(&["sk-proj-", "sk-T3BlbkFJ", "sk-xxxxxxxxxxxxxxxxxxxxT3BlbkFJxxxxxxxxxxxxxxxxxxxx"])),
        ("anthropic-api-key", three(|i| format!("sk-ant-api03-{}AA", rnd(URL64, 93, i))),
         s(&["sk-ant-api03-", "sk-ant-api03-shortAA", "sk-ant-something"])),
        ("huggingface-token", three(|i| format!("hf_{}", rnd(LETTERS, 34, i))),
         s(&["hf_", "hf_hub_download", "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("datadog-api-key",
         vec![format!("DD_API_KEY={}", rnd(HEX, 32, 1)), format!("datadog_api_key: \"{}\"", rnd(HEX, 32, 2)), format!("DATADOG_APP_KEY={}", rnd(HEX, 40, 3))],
         s(&["DD_API_KEY=", "DD_API_KEY=${DD_API_KEY}", "datadog_site: datadoghq.com"])),
        ("newrelic-user-key", three(|i| format!("NRAK-{}", rnd(UPNUM, 27, i))),
         s(&["NRAK-", "NRAK-SHORT", "NRAK-XXXXXXXXXXXXXXXXXXXXXXXXXXX"])),
        ("sentry-auth-token", three(|i| format!("sntrys_{}", rnd(ALNUM, 80, i))),
         s(&["sntrys_", "sntrys_short", "sntrys_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("postman-api-key", three(|i| format!("PMAK-{}-{}", rnd(HEX, 24, i), rnd(HEX, 34, i + 1))),
         s(&["PMAK-", "PMAK-abc-def", "PMAK-000000000000000000000000-0000000000000000000000000000000000"])),
        ("linear-api-key", three(|i| format!("lin_api_{}", rnd(ALNUM, 40, i))),
         s(&["lin_api_", "lin_api_short", "lin_api_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("notion-token", three(|i| format!("secret_{}", rnd(ALNUM, 43, i))),
         s(&["secret_", "secret_key_base", "secret_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("airtable-pat", three(|i| format!("pat{}.{}", rnd(ALNUM, 14, i), rnd(HEX, 64, i + 1))),
         s(&["pat.", "path.join", "patxxxxxxxxxxxxxx.0000000000000000000000000000000000000000000000000000000000000000"])),
        ("doppler-token", three(|i| format!("dp.pt.{}", rnd(ALNUM, 43, i))),
         s(&["dp.pt.", "dp.pt.short", "dp.pt.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])),
        ("pulumi-token", three(|i| format!("pul-{}", rnd(HEX, 40, i))),
         s(&["pul-", "pul-request", "pul-0000000000000000000000000000000000000000"])),
        ("databricks-token", three(|i| format!("dapi{}", rnd(HEX, 32, i))),
         s(&["dapi", "dapi-client", "dapi00000000000000000000000000000000"])),
        ("grafana-token", three(|i| format!("glsa_{}_{}", rnd(ALNUM, 32, i), rnd(HEX, 8, i + 1))),
         s(&["glsa_", "glc_short", "glsa_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_xxxxxxxx"])),
        ("mapbox-secret-token", three(|i| format!("sk.eyJ{}.{}", rnd(URL64, 60, i), rnd(URL64, 22, i + 1))),
         s(&["sk.eyJ", "sk.eyJshort.value", "pk.eyJ1IjoibWFwYm94In0.abcdefghijklmnopqrstuv"])),
        ("private-key",
         vec![format!("-----BEGIN {}PRIVATE KEY-----", "RSA "), format!("-----BEGIN {}PRIVATE KEY-----", "OPENSSH "), format!("\"key\": \"-----BEGIN {}PRIVATE KEY-----\\nMIIE\"", "")],
         s(&["-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----", "BEGIN PRIVATE KEY"])),
        ("age-secret-key", three(|i| format!("AGE-SECRET-KEY-1{}", rnd(BECH32, 58, i))),
         s(&["AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1SHORT", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"])),
        ("putty-private-key",
         vec![format!("PuTTY-User-Key-File-{}: ssh-rsa", 2), format!("PuTTY-User-Key-File-{}: ssh-ed25519", 3), format!("PuTTY-User-Key-File-{}: ecdsa-sha2-nistp256", 2)],
         s(&["PuTTY-User-Key-File", "PuTTY-User-Key-File-2:", "PuTTY User Key File docs"])),
        ("jwt", three(|i| format!("eyJ{}.eyJ{}.{}", rnd(URL64, 30, i), rnd(URL64, 60, i + 1), rnd(URL64, 43, i + 2))),
         s(&["eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.sig", "eyJxxxxxxxxxxxxxxxx.eyJxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxx"])),
        ("connection-string-password",
         vec![format!("DATABASE_URL=postgres://app:{}@db.internal:5432/app", rnd(ALNUM, 16, 1)),
              format!("mongodb+srv://svc:{}@cluster0.mongodb.net/db", rnd(ALNUM, 20, 2)),
              format!("redis://default:{}@cache:6379/0", rnd(ALNUM, 12, 3))],
         s(&["postgres://app:${DB_PASSWORD}@db:5432/app", "postgres://user:password@localhost/db", "mysql://localhost:3306/app"])),
        ("url-basic-auth",
         vec![format!("https://deploy:{}@git.internal.io/repo.git", rnd(ALNUM, 16, 1)),
              format!("proxy = http://proxyuser:{}@proxy.corp:3128", rnd(ALNUM, 14, 2)),
              format!("ftp://backup:{}@files.internal", rnd(ALNUM, 12, 3))],
         s(&["https://user:<password>@host", "https://github.com/org/repo", "http://localhost:8080/path"])),
        ("jdbc-password",
         vec![format!("jdbc:sqlserver://db:1433;user=sa;password={}", rnd(ALNUM, 14, 1)),
              format!("url=jdbc:mysql://db/app?user=app&password={}", rnd(ALNUM, 12, 2)),
              format!("jdbc:postgresql://db/app?user=x&password={}&ssl=true", rnd(ALNUM, 16, 3))],
         s(&["jdbc:mysql://db/app?user=app", "jdbc:postgresql://db/app?password=${PW}", "jdbc:h2:mem:test"])),
        ("ado-connection-string",
         vec![format!("Server=tcp:db.example.net,1433;Database=app;User ID=sa;Password={};", rnd(ALNUM, 14, 1)),
              format!("\"Data Source=db;Initial Catalog=x;User Id=app;Pwd={};\"", rnd(ALNUM, 12, 2)),
              format!("Host=pg;Username=app;Password={}", rnd(ALNUM, 16, 3))],
         s(&["Server=db;Database=app;Integrated Security=true;", "Server=db;User Id=sa;Password={0};", "Host=pg;Username=app"])),
        ("generic-secret-assignment",
         vec![format!("password = \"{}\"", rnd(ALNUM, 16, 1)),
              format!("const apiKey = '{}';", rnd(ALNUM, 24, 2)),
              format!("\"client_secret\": \"{}\"", rnd(URL64, 32, 3))],
         s(&["password = \"password123\"", "api_key = os.getenv(\"API_KEY\")", "\"secret\": \"${SECRET}\"",
             "password = \"aaaaaaaaaaaa\"", "token = \"access_token_field\""])),
        ("generic-secret-env",
         vec![format!("DB_PASSWORD={}", rnd(ALNUM, 18, 1)),
              format!("export API_TOKEN={}", rnd(ALNUM, 24, 2)),
              format!("  client-secret: {}", rnd(URL64, 30, 3))],
         s(&["DB_PASSWORD=", "SECRET_KEY=${SECRET_KEY}", "password: changeme", "TOKEN_URL=https://auth.internal/token"])),
        ("generic-secret-xml",
         vec![format!("<password>{}</password>", rnd(ALNUM, 16, 1)),
              format!("<apiKey>{}</apiKey>", rnd(ALNUM, 24, 2)),
              format!("  <client.secret>{}</client.secret>", rnd(URL64, 30, 3))],
         s(&["<password></password>", "<password>${db.password}</password>", "<token>xxxxxxxxxxxx</token>"])),
    ]
}

#[test]
fn every_rule_compiles() {
    Scanner::new().expect("every rule compiles");
}

#[test]
fn there_are_at_least_sixty_rules_with_unique_ids() {
    assert!(RULES.len() >= 60, "{} rules", RULES.len());
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RULES.len(), "duplicate rule ids");
}

#[test]
fn every_rule_matches_its_positives_and_none_of_its_negatives() {
    let scanner = Scanner::new().expect("rules");
    let table = examples();
    let mut problems = Vec::new();
    for rule in RULES {
        let Some((_, pos, neg)) = table.iter().find(|e| e.0 == rule.id) else {
            problems.push(format!("{}: no examples", rule.id));
            continue;
        };
        if pos.len() < 3 || neg.len() < 3 {
            problems.push(format!("{}: fewer than three examples each way", rule.id));
        }
        for p in pos {
            let found = scanner.scan_text("example.txt", p);
            if !found.iter().any(|f| f.rule == rule.id) {
                problems.push(format!(
                    "{}: missed positive {p:?} (found {:?})",
                    rule.id,
                    found.iter().map(|f| &f.rule).collect::<Vec<_>>()
                ));
            }
        }
        for n in neg {
            if scanner
                .scan_text("example.txt", n)
                .iter()
                .any(|f| f.rule == rule.id)
            {
                problems.push(format!("{}: matched negative {n:?}", rule.id));
            }
        }
    }
    for (id, _, _) in &table {
        if !RULES.iter().any(|r| r.id == *id) {
            problems.push(format!("examples for unknown rule {id}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn findings_mask_the_secret_and_report_line_and_column() {
    let scanner = Scanner::new().expect("rules");
    let token = format!("ghp_{}", rnd(ALNUM, 36, 42));
    let text = format!("first line\n  let t = \"{token}\";\n");
    let found = scanner.scan_text("src/x.rs", &text);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.line, f.column), (2, 12));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.confidence > 0.0 && f.confidence <= 1.0);
    let shown = serde_json::to_string(f).expect("json");
    assert!(!shown.contains(&token[4..]), "secret leaked: {shown}");
    assert!(f.preview.starts_with("ghp_") && f.preview.contains("40 chars"));
    assert_eq!(f.fingerprint.len(), 32);
}

#[test]
fn overlapping_rules_report_the_surest_once() {
    let scanner = Scanner::new().expect("rules");
    let text = format!(
        "STRIPE_SECRET_KEY={}",
        format_args!("sk_live_{}", rnd(ALNUM, 30, 5))
    );
    let found = scanner.scan_text(".env", &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "stripe-live-key");
}

#[test]
fn entropy_of_uniform_and_repeated_strings() {
    assert_eq!(entropy(""), 0.0);
    assert_eq!(entropy("aaaa"), 0.0);
    assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    assert!(entropy(&rnd(ALNUM, 40, 9)) > 4.0);
}

#[test]
fn lower_confidence_for_generic_matches_than_vendor_formats() {
    let scanner = Scanner::new().expect("rules");
    let generic = scanner.scan_text("a.py", &format!("password = \"{}\"", rnd(ALNUM, 12, 3)));
    let vendor = scanner.scan_text("a.py", &format!("t = \"ghp_{}\"", rnd(ALNUM, 36, 3)));
    assert!(generic[0].confidence < vendor[0].confidence);
}

#[test]
fn walking_honours_ignore_files_and_skips_binaries_and_large_files() {
    let scanner = Scanner::new().expect("rules");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let leak = |seed| format!("token = \"ghp_{}\"\n", rnd(ALNUM, 36, seed));
    std::fs::write(root.join(".gitignore"), "build/\n").expect("write");
    std::fs::write(root.join(".secretsignore"), "fixtures/*.txt\n").expect("write");
    for sub in ["build", "fixtures", "src", ".git"] {
        std::fs::create_dir(root.join(sub)).expect("mkdir");
    }
    std::fs::write(root.join("build/out.js"), leak(1)).expect("write");
    std::fs::write(root.join("fixtures/fake.txt"), leak(2)).expect("write");
    std::fs::write(root.join(".git/config"), leak(3)).expect("write");
    std::fs::write(root.join("src/app.py"), leak(4)).expect("write");
    std::fs::write(root.join(".env"), leak(5)).expect("write");
    let mut binary = leak(6).into_bytes();
    binary.insert(0, 0);
    std::fs::write(root.join("src/blob.bin"), binary).expect("write");
    std::fs::write(root.join("src/big.txt"), leak(7).repeat(100)).expect("write");
    let limits = walk::Limits {
        max_file_size: 1000,
        max_files: 100,
    };
    let out = walk::scan_paths(&scanner, &[root.to_path_buf()], &limits).expect("scan");
    let mut paths: Vec<String> = out
        .findings
        .iter()
        .map(|f| {
            std::path::Path::new(&f.path)
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, [".env", "app.py"]);
    assert_eq!(out.files_skipped, 2, "the binary and the large file");
    let few = walk::Limits {
        max_file_size: 1000,
        max_files: 1,
    };
    let out = walk::scan_paths(&scanner, &[root.to_path_buf()], &few).expect("scan");
    assert!(out.truncated);
    assert_eq!(out.files_scanned + out.files_skipped, 1);
}

/// (file, line) pairs.
type Labels = std::collections::BTreeSet<(String, usize)>;

/// The labelled corpus (tests/fixtures/scan/README.md): every template file
/// with its markers removed, and the labelled lines.
fn corpus() -> (Vec<(String, String)>, Labels) {
    fn visit(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("corpus directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                visit(&path, root, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).expect("text")));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan/corpus");
    let mut templates = Vec::new();
    visit(&root, &root, &mut templates);
    let mut labels = std::collections::BTreeSet::new();
    let files = templates
        .into_iter()
        .map(|(rel, text)| {
            let lines: Vec<String> = text
                .split('\n')
                .enumerate()
                .map(|(i, line)| {
                    let line = match line.strip_suffix("@@leak@@") {
                        Some(l) => {
                            labels.insert((rel.clone(), i + 1));
                            l
                        }
                        None => line,
                    };
                    line.replace("~~", "")
                })
                .collect();
            (rel, lines.join("\n"))
        })
        .collect();
    (files, labels)
}

#[test]
fn corpus_precision_and_recall() {
    let scanner = Scanner::new().expect("rules");
    let (files, labels) = corpus();
    assert!(
        files.len() >= 25 && labels.len() >= 40,
        "{} files, {} labels",
        files.len(),
        labels.len()
    );
    let flagged: Labels = files
        .iter()
        .flat_map(|(path, text)| scanner.scan_text(path, text))
        .map(|f| (f.path, f.line))
        .collect();
    let tp = flagged.intersection(&labels).count() as f64;
    let precision = tp / flagged.len() as f64;
    let recall = tp / labels.len() as f64;
    let false_positives: Vec<_> = flagged.difference(&labels).collect();
    let missed: Vec<_> = labels.difference(&flagged).collect();
    eprintln!("corpus: precision {precision:.3}, recall {recall:.3}, {} labelled, {} flagged; false positives {false_positives:?}", labels.len(), flagged.len());
    assert!(
        recall >= 0.95 && precision >= 0.90,
        "precision {precision:.3}, recall {recall:.3}\nfalse positives: {false_positives:?}\nmissed: {missed:?}"
    );
}
