//! The rules: one line per credential format.
//!
//! Each pattern names the secret with the group `s` (else the whole match is
//! the secret) and, for a keyword rule, the name it is assigned to with `k`. Rules for a vendor's own format (a fixed prefix, a fixed
//! length) need only a little entropy to tell a real token from a row of `x`;
//! generic rules (a keyword such as `password` next to a value) need more and
//! earn a confidence that grows with it.

use super::Severity::{self, Critical, High, Low, Medium};

/// One credential format.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    pub pattern: &'static str,
    /// Shannon entropy (bits per character) the secret needs at least.
    pub min_entropy: f64,
    /// A generic rule: keyword context, the stricter value checks, and a
    /// confidence from the entropy.
    pub generic: bool,
}

const fn r(
    id: &'static str,
    description: &'static str,
    severity: Severity,
    pattern: &'static str,
) -> Rule {
    Rule {
        id,
        description,
        severity,
        pattern,
        min_entropy: 2.5,
        generic: false,
    }
}

const fn g(
    id: &'static str,
    description: &'static str,
    severity: Severity,
    pattern: &'static str,
    min_entropy: f64,
) -> Rule {
    Rule {
        id,
        description,
        severity,
        pattern,
        min_entropy,
        generic: true,
    }
}

/// The names a generic value must stand next to.
macro_rules! kw {
    () => {
        r"(?:password|passwd|pwd|passphrase|secret|api[_.-]?key|apikey|access[_.-]?key|auth[_.-]?token|access[_.-]?token|private[_.-]?key|client[_.-]?secret|credentials?|token)"
    };
}

#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // Cloud providers
    r("aws-access-key-id", "AWS access key id", Critical, r"\b(?P<s>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b"),
    g("aws-secret-access-key", "AWS secret access key", Critical, r#"(?i)aws[\w.-]{0,20}?(?:secret|sak)[\w.-]{0,20}?["']?\s*[:=]{1,2}>?\s*["']?(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#, 3.5),
    r("aws-mws-key", "Amazon MWS auth token", High, r"\b(?P<s>amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"),
    r("gcp-api-key", "Google API key", High, r"\b(?P<s>AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)"),
    r("gcp-service-account-key", "Google service-account private key id", High, r#""private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})""#),
    r("google-oauth-client-secret", "Google OAuth client secret", High, r"\b(?P<s>GOCSPX-[0-9A-Za-z_-]{28})(?:[^0-9A-Za-z_-]|$)"),
    r("google-oauth-access-token", "Google OAuth access token", High, r"\b(?P<s>ya29\.[0-9A-Za-z_-]{30,300})"),
    r("azure-storage-account-key", "Azure storage account key", Critical, r"AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)"),
    r("azure-ad-client-secret", "Azure AD client secret", High, r"(?:^|[^A-Za-z0-9_~.-])(?P<s>[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34})(?:[^A-Za-z0-9_~.-]|$)"),
    r("digitalocean-pat", "DigitalOcean personal access token", Critical, r"\b(?P<s>dop_v1_[a-f0-9]{64})\b"),
    r("digitalocean-oauth-token", "DigitalOcean OAuth token", High, r"\b(?P<s>do[or]_v1_[a-f0-9]{64})\b"),
    r("alibaba-access-key-id", "Alibaba Cloud access key id", High, r"\b(?P<s>LTAI[a-zA-Z0-9]{20})\b"),
    g("heroku-api-key", "Heroku API key", High, r#"(?i)heroku[\w.-]{0,20}["']?\s*[:=]{1,2}>?\s*["']?(?P<s>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"#, 3.0),
    g("cloudflare-api-token", "Cloudflare API token", High, r#"(?i)(?:cloudflare|\bcf)[\w.-]{0,20}(?:token|key)["']?\s*[:=]{1,2}>?\s*["']?(?P<s>[A-Za-z0-9_-]{40})(?:[^A-Za-z0-9_-]|$)"#, 3.5),
    r("flyio-token", "Fly.io access token", High, r"\b(?P<s>fo1_[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)"),
    r("vault-token", "HashiCorp Vault token", Critical, r"\b(?P<s>hv[sb]\.[A-Za-z0-9_-]{24,200})"),
    r("terraform-cloud-token", "Terraform Cloud API token", High, r"\b(?P<s>[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70})(?:[^A-Za-z0-9_=-]|$)"),
    // Version control and package registries
    r("github-pat", "GitHub personal access token", Critical, r"\b(?P<s>ghp_[A-Za-z0-9]{36})\b"),
    r("github-fine-grained-pat", "GitHub fine-grained personal access token", Critical, r"\b(?P<s>github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b"),
    r("github-oauth-token", "GitHub OAuth access token", High, r"\b(?P<s>gho_[A-Za-z0-9]{36})\b"),
    r("github-app-token", "GitHub App token", High, r"\b(?P<s>gh[us]_[A-Za-z0-9]{36})\b"),
    r("github-refresh-token", "GitHub refresh token", High, r"\b(?P<s>ghr_[A-Za-z0-9]{36})\b"),
    r("gitlab-pat", "GitLab personal access token", Critical, r"\b(?P<s>glpat-[A-Za-z0-9_-]{20})(?:[^A-Za-z0-9_-]|$)"),
    r("gitlab-runner-token", "GitLab runner authentication token", High, r"\b(?P<s>glrt-[A-Za-z0-9_-]{20})(?:[^A-Za-z0-9_-]|$)"),
    r("gitlab-pipeline-trigger-token", "GitLab pipeline trigger token", Medium, r"\b(?P<s>glptt-[0-9a-f]{40})\b"),
    r("bitbucket-app-password", "Bitbucket app password", High, r"\b(?P<s>ATBB[A-Za-z0-9]{32})\b"),
    r("npm-token", "npm access token", High, r"\b(?P<s>npm_[A-Za-z0-9]{36})\b"),
    r("pypi-token", "PyPI upload token", High, r"\b(?P<s>pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,200})"),
    r("rubygems-token", "RubyGems API key", High, r"\b(?P<s>rubygems_[0-9a-f]{48})\b"),
    r("dockerhub-pat", "Docker Hub personal access token", High, r"\b(?P<s>dckr_pat_[A-Za-z0-9_-]{27})(?:[^A-Za-z0-9_-]|$)"),
    // Payment and commerce
    r("stripe-live-key", "Stripe live secret or restricted key", Critical, r"\b(?P<s>[sr]k_live_[0-9a-zA-Z]{24,99})\b"),
    r("stripe-test-key", "Stripe test secret key", Low, r"\b(?P<s>[sr]k_test_[0-9a-zA-Z]{24,99})\b"),
    r("stripe-webhook-secret", "Stripe webhook signing secret", High, r"\b(?P<s>whsec_[A-Za-z0-9]{32,64})\b"),
    r("square-access-token", "Square access token", High, r"\b(?P<s>sq0atp-[0-9A-Za-z_-]{22}|EAAA[0-9A-Za-z_-]{60})(?:[^0-9A-Za-z_-]|$)"),
    r("square-oauth-secret", "Square OAuth secret", High, r"\b(?P<s>sq0csp-[0-9A-Za-z_-]{43})(?:[^0-9A-Za-z_-]|$)"),
    r("braintree-access-token", "Braintree / PayPal access token", Critical, r"\b(?P<s>access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32})\b"),
    r("shopify-token", "Shopify access token or shared secret", High, r"\b(?P<s>shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b"),
    // Chat and messaging
    r("slack-bot-token", "Slack bot token", High, r"\b(?P<s>xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24})\b"),
    r("slack-user-token", "Slack user token", High, r"\b(?P<s>xox[pe]-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32})\b"),
    r("slack-app-token", "Slack app-level token", High, r"\b(?P<s>xapp-\d-[A-Z0-9]{9,12}-\d{10,14}-[a-f0-9]{64})\b"),
    r("slack-webhook-url", "Slack incoming webhook URL", Medium, r"(?P<s>https://hooks\.slack\.com/services/T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/[A-Za-z0-9]{24})\b"),
    r("discord-bot-token", "Discord bot token", High, r"\b(?P<s>[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})(?:[^A-Za-z0-9_-]|$)"),
    r("discord-webhook-url", "Discord webhook URL", Medium, r"(?P<s>https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,68})"),
    r("telegram-bot-token", "Telegram bot token", High, r"\b(?P<s>\d{8,10}:AA[A-Za-z0-9_-]{33})(?:[^A-Za-z0-9_-]|$)"),
    r("teams-webhook-url", "Microsoft Teams incoming webhook URL", Medium, r"(?P<s>https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[0-9a-f-]{36}@[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36})"),
    r("twilio-api-key", "Twilio API key", High, r"\b(?P<s>SK[0-9a-fA-F]{32})\b"),
    r("sendgrid-api-key", "SendGrid API key", High, r"\b(?P<s>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)"),
    r("mailgun-api-key", "Mailgun API key", Medium, r"\b(?P<s>key-[0-9a-f]{32})\b"),
    r("mailchimp-api-key", "Mailchimp API key", High, r"\b(?P<s>[0-9a-f]{32}-us\d{1,2})\b"),
    // SaaS and AI APIs
    r("openai-api-key", "OpenAI API key", Critical, r"\b(?P<s>sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,74}T3BlbkFJ[A-Za-z0-9_-]{20,74})(?:[^A-Za-z0-9_-]|$)"),
    r("anthropic-api-key", "Anthropic API key", Critical, r"\b(?P<s>sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{93}AA)(?:[^A-Za-z0-9_-]|$)"),
    r("huggingface-token", "Hugging Face access token", High, r"\b(?P<s>hf_[A-Za-z]{34})\b"),
    g("datadog-api-key", "Datadog API key", High, r#"(?i)(?:datadog|\bdd)[\w.-]{0,10}(?:api|app(?:lication)?)[_.-]?key["']?\s*[:=]{1,2}>?\s*["']?(?P<s>[0-9a-f]{32}(?:[0-9a-f]{8})?)\b"#, 3.0),
    r("newrelic-user-key", "New Relic user API key", High, r"\b(?P<s>NRAK-[A-Z0-9]{27})\b"),
    r("sentry-auth-token", "Sentry auth token", High, r"\b(?P<s>sntry[su]_[A-Za-z0-9+/=_]{60,200})"),
    r("postman-api-key", "Postman API key", High, r"\b(?P<s>PMAK-[0-9a-f]{24}-[0-9a-f]{34})\b"),
    r("linear-api-key", "Linear API key", High, r"\b(?P<s>lin_api_[A-Za-z0-9]{40})\b"),
    r("notion-token", "Notion integration token", Medium, r"\b(?P<s>(?:secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35}))\b"),
    r("airtable-pat", "Airtable personal access token", High, r"\b(?P<s>pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b"),
    r("doppler-token", "Doppler token", High, r"\b(?P<s>dp\.(?:pt|st|sa|ct)\.[A-Za-z0-9]{40,44})\b"),
    r("pulumi-token", "Pulumi access token", High, r"\b(?P<s>pul-[a-f0-9]{40})\b"),
    r("databricks-token", "Databricks access token", High, r"\b(?P<s>dapi[a-f0-9]{32}(?:-\d)?)\b"),
    r("grafana-token", "Grafana Cloud or service-account token", High, r"\b(?P<s>glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})"),
    r("mapbox-secret-token", "Mapbox secret token", High, r"\b(?P<s>sk\.eyJ[A-Za-z0-9_-]{50,300}\.[A-Za-z0-9_-]{22})(?:[^A-Za-z0-9_-]|$)"),
    // Keys and signed tokens
    r("private-key", "Private key block", Critical, r"(?P<s>-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----)"),
    r("age-secret-key", "age encryption secret key", Critical, r"\b(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b"),
    r("putty-private-key", "PuTTY private key file", High, r"(?P<s>PuTTY-User-Key-File-[23]: (?:ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp\d+))"),
    r("jwt", "JSON Web Token", Medium, r"\b(?P<s>eyJ[A-Za-z0-9_-]{10,2000}\.eyJ[A-Za-z0-9_-]{10,4000}\.[A-Za-z0-9_-]{10,2000})"),
    // Connection strings
    g("connection-string-password", "Database or broker URL with a password", Critical, r#"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse)://[^\s:/@'"]{1,128}:(?P<s>[^\s:/@'"]{4,256})@[^\s'"]{1,256}"#, 2.0),
    g("url-basic-auth", "URL with a password", High, r#"\b(?:https?|ftp)://[^\s:/@'"]{1,128}:(?P<s>[^\s:/@'"]{6,256})@[A-Za-z0-9.-]{1,256}"#, 2.5),
    g("jdbc-password", "JDBC URL with a password", High, r#"jdbc:[a-z0-9]{2,20}:[^\s'"]{0,256}?[;?&]password=(?P<s>[^\s;&'"]{4,256})"#, 2.0),
    g("ado-connection-string", "ADO.NET connection string with a password", High, r#"(?i)(?:server|data source|host)=[^;'"\n]{1,256};[^'"\n]{0,512}?\b(?:password|pwd)=(?P<s>[^;'"\s]{4,256})"#, 2.0),
    // Generic: a secret-sounding name next to a value
    g("generic-secret-assignment", "Secret-like value assigned to a secret-like name", Medium,
      concat!(r#"(?i)(?P<k>[\w.-]{0,40}"#, kw!(), r#"[\w.-]{0,40})["']?\s*(?::=|=>|==|[:=])\s*["'`](?P<s>[^"'`\s]{8,200})["'`]"#), 3.0),
    g("generic-secret-env", "Secret-like value in an env, properties or YAML file", Medium,
      concat!(r#"(?im)^[ \t]*(?:export[ \t]+|-[ \t]+)?(?P<k>[\w.-]{0,40}"#, kw!(), r#"[\w.-]{0,40})[ \t]*[:=][ \t]*(?P<s>[^\s"'`#]{8,200})[ \t]*(?:#.*)?$"#), 3.0),
    g("generic-secret-xml", "Secret-like value in an XML element", Medium,
      concat!(r#"(?i)<(?P<k>[\w.:-]{0,40}"#, kw!(), r#"[\w.-]{0,40})>(?P<s>[^<\s]{8,200})</"#), 3.0),
];
