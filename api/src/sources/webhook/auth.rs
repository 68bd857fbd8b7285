//! How a WebhookSource authenticates callers: one scheme, and secrets from files or
//! environment variables.
//!
//! Each scheme's YAML shape (`{secretFile | secretEnv, tolerance}`, ...) is parsed through a
//! raw struct and converted into a typed value, so that "both secretFile and secretEnv" or
//! "two schemes" are refused while parsing, with the field's path.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sources::exactly_one;

/// Where a secret comes from. Either way trailing line breaks are dropped, and an empty or
/// whitespace-only secret is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the secret, e.g. a mounted secret.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

/// A signing secret and the allowed clock skew, for signature schemes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSignedSecret", into = "RawSignedSecret")]
pub struct SignedSecret {
    /// The signing secret: `secretFile` or `secretEnv`.
    pub secret: SecretSource,
    /// How old a signed timestamp may be (e.g. `5m`); the scheme's default when omitted.
    pub tolerance: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSignedSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tolerance: Option<String>,
}

impl TryFrom<RawSignedSecret> for SignedSecret {
    type Error = String;
    fn try_from(r: RawSignedSecret) -> Result<Self, String> {
        Ok(SignedSecret {
            secret: exactly_one(vec![
                ("secretFile", r.secret_file.map(SecretSource::File)),
                ("secretEnv", r.secret_env.map(SecretSource::Env)),
            ])?,
            tolerance: r.tolerance,
        })
    }
}

impl From<SignedSecret> for RawSignedSecret {
    fn from(s: SignedSecret) -> Self {
        let (secret_file, secret_env) = split_secret(s.secret);
        RawSignedSecret {
            secret_file,
            secret_env,
            tolerance: s.tolerance,
        }
    }
}

fn split_secret(s: SecretSource) -> (Option<PathBuf>, Option<String>) {
    match s {
        SecretSource::File(f) => (Some(f), None),
        SecretSource::Env(e) => (None, Some(e)),
    }
}

/// HMAC digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256 (default).
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How the HMAC signature is encoded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    /// Lowercase or uppercase hexadecimal (default).
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic HMAC signature over the raw body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHmac", into = "RawHmac")]
pub struct HmacAuth {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// `sha256` (default) or `sha512`.
    pub algorithm: HmacAlgorithm,
    /// `hex` (default) or `base64`.
    pub encoding: HmacEncoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    pub prefix: Option<String>,
    /// The key: `secretFile` or `secretEnv`.
    pub secret: SecretSource,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHmac {
    #[serde(default)]
    header: String,
    #[serde(default)]
    algorithm: HmacAlgorithm,
    #[serde(default)]
    encoding: HmacEncoding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_env: Option<String>,
}

impl TryFrom<RawHmac> for HmacAuth {
    type Error = String;
    fn try_from(r: RawHmac) -> Result<Self, String> {
        Ok(HmacAuth {
            header: r.header,
            algorithm: r.algorithm,
            encoding: r.encoding,
            prefix: r.prefix,
            secret: exactly_one(vec![
                ("secretFile", r.secret_file.map(SecretSource::File)),
                ("secretEnv", r.secret_env.map(SecretSource::Env)),
            ])?,
        })
    }
}

impl From<HmacAuth> for RawHmac {
    fn from(h: HmacAuth) -> Self {
        let (secret_file, secret_env) = split_secret(h.secret);
        RawHmac {
            header: h.header,
            algorithm: h.algorithm,
            encoding: h.encoding,
            prefix: h.prefix,
            secret_file,
            secret_env,
        }
    }
}

/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBearer", into = "RawBearer")]
pub struct BearerAuth {
    /// The expected token: `tokenFile` or `tokenEnv`.
    pub token: SecretSource,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBearer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_env: Option<String>,
}

impl TryFrom<RawBearer> for BearerAuth {
    type Error = String;
    fn try_from(r: RawBearer) -> Result<Self, String> {
        Ok(BearerAuth {
            token: exactly_one(vec![
                ("tokenFile", r.token_file.map(SecretSource::File)),
                ("tokenEnv", r.token_env.map(SecretSource::Env)),
            ])?,
        })
    }
}

impl From<BearerAuth> for RawBearer {
    fn from(b: BearerAuth) -> Self {
        let (token_file, token_env) = split_secret(b.token);
        RawBearer {
            token_file,
            token_env,
        }
    }
}

/// HTTP Basic authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBasic", into = "RawBasic")]
pub struct BasicAuth {
    /// The expected user name.
    pub username: String,
    /// The expected password: `passwordFile` or `passwordEnv`.
    pub password: SecretSource,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBasic {
    #[serde(default)]
    username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
}

impl TryFrom<RawBasic> for BasicAuth {
    type Error = String;
    fn try_from(r: RawBasic) -> Result<Self, String> {
        Ok(BasicAuth {
            username: r.username,
            password: exactly_one(vec![
                ("passwordFile", r.password_file.map(SecretSource::File)),
                ("passwordEnv", r.password_env.map(SecretSource::Env)),
            ])?,
        })
    }
}

impl From<BasicAuth> for RawBasic {
    fn from(b: BasicAuth) -> Self {
        let (password_file, password_env) = split_secret(b.password);
        RawBasic {
            username: b.username,
            password_file,
            password_env,
        }
    }
}

/// How a WebhookSource authenticates callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAuth", into = "RawAuth")]
pub enum WebhookAuth {
    /// GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body).
    Github(SignedSecret),
    /// Stripe's `Stripe-Signature` (timestamped HMAC-SHA256).
    Stripe(SignedSecret),
    /// Slack's `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
    Slack(SignedSecret),
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks(SignedSecret),
    /// A generic HMAC signature header.
    Hmac(HmacAuth),
    /// A bearer token.
    Bearer(BearerAuth),
    /// HTTP Basic authentication.
    Basic(BasicAuth),
}

impl WebhookAuth {
    /// The scheme's name as written in YAML.
    pub fn scheme(&self) -> &'static str {
        match self {
            WebhookAuth::Github(_) => "github",
            WebhookAuth::Stripe(_) => "stripe",
            WebhookAuth::Slack(_) => "slack",
            WebhookAuth::StandardWebhooks(_) => "standardWebhooks",
            WebhookAuth::Hmac(_) => "hmac",
            WebhookAuth::Bearer(_) => "bearer",
            WebhookAuth::Basic(_) => "basic",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    github: Option<SignedSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stripe: Option<SignedSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slack: Option<SignedSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    standard_webhooks: Option<SignedSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hmac: Option<HmacAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer: Option<BearerAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    basic: Option<BasicAuth>,
}

impl TryFrom<RawAuth> for WebhookAuth {
    type Error = String;
    fn try_from(r: RawAuth) -> Result<Self, String> {
        exactly_one(vec![
            ("github", r.github.map(WebhookAuth::Github)),
            ("stripe", r.stripe.map(WebhookAuth::Stripe)),
            ("slack", r.slack.map(WebhookAuth::Slack)),
            (
                "standardWebhooks",
                r.standard_webhooks.map(WebhookAuth::StandardWebhooks),
            ),
            ("hmac", r.hmac.map(WebhookAuth::Hmac)),
            ("bearer", r.bearer.map(WebhookAuth::Bearer)),
            ("basic", r.basic.map(WebhookAuth::Basic)),
        ])
        .map_err(|why| format!("{why} (one auth scheme per source)"))
    }
}

impl From<WebhookAuth> for RawAuth {
    fn from(a: WebhookAuth) -> Self {
        let mut r = RawAuth::default();
        match a {
            WebhookAuth::Github(s) => r.github = Some(s),
            WebhookAuth::Stripe(s) => r.stripe = Some(s),
            WebhookAuth::Slack(s) => r.slack = Some(s),
            WebhookAuth::StandardWebhooks(s) => r.standard_webhooks = Some(s),
            WebhookAuth::Hmac(h) => r.hmac = Some(h),
            WebhookAuth::Bearer(b) => r.bearer = Some(b),
            WebhookAuth::Basic(b) => r.basic = Some(b),
        }
        r
    }
}
