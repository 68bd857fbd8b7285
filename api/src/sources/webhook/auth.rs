//! How a WebhookSource authenticates callers: one scheme, and secrets from files, environment
//! variables or `Secret` documents of the configuration.
//!
//! Each scheme's YAML shape (`{secretFile | secretEnv | secretKeyRef, tolerance}`, ...) is
//! parsed through a
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
    /// A key of a `Secret` document (v1) of the configuration, as Kubernetes' `secretKeyRef`.
    KeyRef(SecretKeyRef),
}

/// `{name, key}`: the key `key` of the Secret `name` in the source's namespace. The loader
/// fills in its value from the configuration's Secret documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key within it.
    pub key: String,
    /// The value, once resolved (never serialized, never printed).
    #[serde(skip)]
    pub value: Option<SecretValue>,
}

/// A secret's bytes. Its `Debug` form shows a digest, never the value — enough for a change of
/// the Secret to change the resource's fingerprint (and so restart it on reload).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        write!(f, "SecretValue(redacted, digest {:016x})", h.finish())
    }
}

impl SecretSource {
    /// The Secret key it refers to, if it is a `…KeyRef`.
    pub fn key_ref_mut(&mut self) -> Option<&mut SecretKeyRef> {
        match self {
            SecretSource::KeyRef(r) => Some(r),
            _ => None,
        }
    }
}

/// A signing secret and the allowed clock skew, for signature schemes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSignedSecret", into = "RawSignedSecret")]
pub struct SignedSecret {
    /// The signing secret: `secretFile`, `secretEnv` or `secretKeyRef`.
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
    secret_key_ref: Option<SecretKeyRef>,
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
                ("secretKeyRef", r.secret_key_ref.map(SecretSource::KeyRef)),
            ])?,
            tolerance: r.tolerance,
        })
    }
}

impl From<SignedSecret> for RawSignedSecret {
    fn from(s: SignedSecret) -> Self {
        let (secret_file, secret_env, secret_key_ref) = split_secret(s.secret);
        RawSignedSecret {
            secret_file,
            secret_env,
            secret_key_ref,
            tolerance: s.tolerance,
        }
    }
}

fn split_secret(s: SecretSource) -> (Option<PathBuf>, Option<String>, Option<SecretKeyRef>) {
    match s {
        SecretSource::File(f) => (Some(f), None, None),
        SecretSource::Env(e) => (None, Some(e), None),
        SecretSource::KeyRef(r) => (None, None, Some(r)),
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
    /// The key: `secretFile`, `secretEnv` or `secretKeyRef`.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key_ref: Option<SecretKeyRef>,
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
                ("secretKeyRef", r.secret_key_ref.map(SecretSource::KeyRef)),
            ])?,
        })
    }
}

impl From<HmacAuth> for RawHmac {
    fn from(h: HmacAuth) -> Self {
        let (secret_file, secret_env, secret_key_ref) = split_secret(h.secret);
        RawHmac {
            header: h.header,
            algorithm: h.algorithm,
            encoding: h.encoding,
            prefix: h.prefix,
            secret_file,
            secret_env,
            secret_key_ref,
        }
    }
}

/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBearer", into = "RawBearer")]
pub struct BearerAuth {
    /// The expected token: `tokenFile`, `tokenEnv` or `tokenKeyRef`.
    pub token: SecretSource,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBearer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_key_ref: Option<SecretKeyRef>,
}

impl TryFrom<RawBearer> for BearerAuth {
    type Error = String;
    fn try_from(r: RawBearer) -> Result<Self, String> {
        Ok(BearerAuth {
            token: exactly_one(vec![
                ("tokenFile", r.token_file.map(SecretSource::File)),
                ("tokenEnv", r.token_env.map(SecretSource::Env)),
                ("tokenKeyRef", r.token_key_ref.map(SecretSource::KeyRef)),
            ])?,
        })
    }
}

impl From<BearerAuth> for RawBearer {
    fn from(b: BearerAuth) -> Self {
        let (token_file, token_env, token_key_ref) = split_secret(b.token);
        RawBearer {
            token_file,
            token_env,
            token_key_ref,
        }
    }
}

/// HTTP Basic authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBasic", into = "RawBasic")]
pub struct BasicAuth {
    /// The expected user name.
    pub username: String,
    /// The expected password: `passwordFile`, `passwordEnv` or `passwordKeyRef`.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_key_ref: Option<SecretKeyRef>,
}

impl TryFrom<RawBasic> for BasicAuth {
    type Error = String;
    fn try_from(r: RawBasic) -> Result<Self, String> {
        Ok(BasicAuth {
            username: r.username,
            password: exactly_one(vec![
                ("passwordFile", r.password_file.map(SecretSource::File)),
                ("passwordEnv", r.password_env.map(SecretSource::Env)),
                (
                    "passwordKeyRef",
                    r.password_key_ref.map(SecretSource::KeyRef),
                ),
            ])?,
        })
    }
}

impl From<BasicAuth> for RawBasic {
    fn from(b: BasicAuth) -> Self {
        let (password_file, password_env, password_key_ref) = split_secret(b.password);
        RawBasic {
            username: b.username,
            password_file,
            password_env,
            password_key_ref,
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
    /// The secret the scheme checks callers against.
    pub fn secret(&self) -> &SecretSource {
        match self {
            WebhookAuth::Github(s)
            | WebhookAuth::Stripe(s)
            | WebhookAuth::Slack(s)
            | WebhookAuth::StandardWebhooks(s) => &s.secret,
            WebhookAuth::Hmac(h) => &h.secret,
            WebhookAuth::Bearer(b) => &b.token,
            WebhookAuth::Basic(b) => &b.password,
        }
    }

    /// The secret the scheme checks callers against, to resolve.
    pub fn secret_mut(&mut self) -> &mut SecretSource {
        match self {
            WebhookAuth::Github(s)
            | WebhookAuth::Stripe(s)
            | WebhookAuth::Slack(s)
            | WebhookAuth::StandardWebhooks(s) => &mut s.secret,
            WebhookAuth::Hmac(h) => &mut h.secret,
            WebhookAuth::Bearer(b) => &mut b.token,
            WebhookAuth::Basic(b) => &mut b.password,
        }
    }

    /// The field naming the scheme's secret, under `spec.auth.{scheme}`: `secretKeyRef`,
    /// `tokenKeyRef` or `passwordKeyRef` for a Secret key.
    pub fn key_ref_field(&self) -> &'static str {
        match self {
            WebhookAuth::Bearer(_) => "tokenKeyRef",
            WebhookAuth::Basic(_) => "passwordKeyRef",
            _ => "secretKeyRef",
        }
    }

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
