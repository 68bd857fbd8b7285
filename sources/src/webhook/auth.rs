//! Caller authentication: one verifier per scheme a WebhookSource can name.
//!
//! Every verifier works on the raw body bytes as received (signatures are over bytes, not over
//! parsed JSON) and compares in constant time: MACs through [`Mac::verify_slice`], tokens and
//! passwords through [`subtle`] on SHA-256 digests, so neither content nor length leaks through
//! timing. Secrets arrive already read (from a file or an environment variable) by the binary;
//! an [`AuthError`] never contains a secret, only a short reason fit for a 401 body.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::mapping::IdRule;
use super::secret::{InvalidSecret, standard_webhooks_key};

/// How far a signed timestamp may be from now when the resource gives no `tolerance`
/// (Stripe's, Slack's and Standard Webhooks' documented default).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The digest behind a generic HMAC signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacAlgorithm {
    /// HMAC-SHA256 (default).
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic HMAC signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacEncoding {
    /// Hexadecimal, either case (default).
    #[default]
    Hex,
    /// Standard base64 (padded).
    Base64,
}

/// How a WebhookSource authenticates callers, with its secrets already loaded.
///
/// `Debug` is implemented by hand and prints no secret.
#[derive(Clone)]
pub enum WebhookAuth {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`.
    Github {
        /// The webhook secret.
        secret: Vec<u8>,
    },
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `"{t}.{body}"`.
    Stripe {
        /// The endpoint's signing secret (`whsec_...`, used as is, as Stripe does).
        secret: Vec<u8>,
        /// How far `t` may be from now.
        tolerance: Duration,
    },
    /// Slack: `X-Slack-Signature: v0=<hex>` over `"v0:{ts}:{body}"`, with
    /// `X-Slack-Request-Timestamp: <ts>`.
    Slack {
        /// The app's signing secret.
        secret: Vec<u8>,
        /// How far `ts` may be from now.
        tolerance: Duration,
    },
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (space-separated
    /// `v1,<base64>` entries) over `"{id}.{timestamp}.{body}"`. Build it with
    /// [`WebhookAuth::standard_webhooks`], which decodes the `whsec_` secret.
    StandardWebhooks {
        /// The HMAC key: the secret's base64 part, decoded.
        key: Vec<u8>,
        /// How far `webhook-timestamp` may be from now.
        tolerance: Duration,
    },
    /// A generic HMAC of the body in a header of the user's choice.
    Hmac {
        /// The header carrying the signature.
        header: HeaderName,
        /// SHA-256 or SHA-512.
        algorithm: HmacAlgorithm,
        /// Hex or base64.
        encoding: HmacEncoding,
        /// Text before the signature, e.g. `sha256=`; required in the header when set.
        prefix: Option<String>,
        /// The key.
        secret: Vec<u8>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The expected token.
        token: Vec<u8>,
    },
    /// `Authorization: Basic <base64(username:password)>`.
    Basic {
        /// The expected user name.
        username: String,
        /// The expected password.
        password: Vec<u8>,
    },
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookAuth::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                ..
            } => f
                .debug_struct("Hmac")
                .field("header", header)
                .field("algorithm", algorithm)
                .field("encoding", encoding)
                .field("prefix", prefix)
                .finish_non_exhaustive(),
            WebhookAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            other => write!(f, "{} {{ .. }}", other.scheme()),
        }
    }
}

/// Why a request was refused: a short reason for the 401 body. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The configured signature header (generic HMAC) is absent.
    #[error("missing header {0}")]
    MissingCustomHeader(HeaderName),
    /// A header is present but not in the scheme's format.
    #[error("malformed {header} header: {reason}")]
    Malformed {
        /// The header's name.
        header: String,
        /// What was expected.
        reason: &'static str,
    },
    /// No signature matches the body.
    #[error("bad signature")]
    BadSignature,
    /// The signed timestamp is too far from now (a replay, or a badly skewed clock).
    #[error("timestamp outside tolerance of {}s", tolerance.as_secs())]
    StaleTimestamp {
        /// The allowed distance from now.
        tolerance: Duration,
    },
    /// The bearer token or basic credentials are wrong.
    #[error("bad credentials")]
    BadCredentials,
    /// The source's key, token or password is empty, so no request can be trusted.
    #[error("no secret is configured for this source")]
    NoSecret,
}

impl WebhookAuth {
    /// A Standard Webhooks verifier from the secret as the provider shows it (`whsec_<base64>`,
    /// or the bare base64 part, padded or not); see [`standard_webhooks_key`].
    pub fn standard_webhooks(secret: &[u8], tolerance: Duration) -> Result<Self, InvalidSecret> {
        let key = standard_webhooks_key(secret)?;
        Ok(WebhookAuth::StandardWebhooks { key, tolerance })
    }

    /// Whether the key, token or password is empty: such a source refuses every request
    /// ([`AuthError::NoSecret`]). Secrets read with [`read_secret_file`](super::read_secret_file)
    /// or [`read_secret_env`](super::read_secret_env) never are; this guards values built by hand.
    fn secret_is_empty(&self) -> bool {
        match self {
            WebhookAuth::Github { secret }
            | WebhookAuth::Stripe { secret, .. }
            | WebhookAuth::Slack { secret, .. }
            | WebhookAuth::Hmac { secret, .. } => secret.is_empty(),
            WebhookAuth::StandardWebhooks { key, .. } => key.is_empty(),
            WebhookAuth::Bearer { token } => token.is_empty(),
            WebhookAuth::Basic { password, .. } => password.is_empty(),
        }
    }

    /// The scheme's name as written in YAML (for logs and metrics).
    pub fn scheme(&self) -> &'static str {
        match self {
            WebhookAuth::Github { .. } => "github",
            WebhookAuth::Stripe { .. } => "stripe",
            WebhookAuth::Slack { .. } => "slack",
            WebhookAuth::StandardWebhooks { .. } => "standardWebhooks",
            WebhookAuth::Hmac { .. } => "hmac",
            WebhookAuth::Bearer { .. } => "bearer",
            WebhookAuth::Basic { .. } => "basic",
        }
    }

    /// Where the event id comes from when the resource sets no `id`: the scheme's delivery id
    /// (`X-GitHub-Delivery`, `webhook-id`, Stripe's event `id`), so a redelivery keeps its id
    /// and a request without it is refused; a fresh UUID for the schemes whose provider sends
    /// no delivery id (Slack, generic HMAC, bearer, basic).
    pub fn default_id(&self) -> IdRule {
        match self {
            WebhookAuth::Github { .. } => {
                IdRule::Header(HeaderName::from_static("x-github-delivery"))
            }
            WebhookAuth::StandardWebhooks { .. } => {
                IdRule::Header(HeaderName::from_static("webhook-id"))
            }
            WebhookAuth::Stripe { .. } => IdRule::JsonBodyId,
            _ => IdRule::Random,
        }
    }

    /// Checks the request's signature or credentials against `body` exactly as received.
    /// `now` is compared with signed timestamps.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if self.secret_is_empty() {
            return Err(AuthError::NoSecret);
        }
        match self {
            WebhookAuth::Github { secret } => verify_github(secret, headers, body),
            WebhookAuth::Stripe { secret, tolerance } => {
                verify_stripe(secret, *tolerance, headers, body, now)
            }
            WebhookAuth::Slack { secret, tolerance } => {
                verify_slack(secret, *tolerance, headers, body, now)
            }
            WebhookAuth::StandardWebhooks { key, tolerance } => {
                verify_standard(key, *tolerance, headers, body, now)
            }
            WebhookAuth::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                secret,
            } => {
                let value = headers
                    .get(header)
                    .ok_or_else(|| AuthError::MissingCustomHeader(header.clone()))?;
                let malformed = |reason| AuthError::Malformed {
                    header: header.to_string(),
                    reason,
                };
                let value = value
                    .to_str()
                    .map_err(|_| malformed("not visible ASCII"))?
                    .trim();
                let sig = match prefix {
                    Some(p) => value
                        .strip_prefix(p.as_str())
                        .ok_or_else(|| malformed("missing the configured prefix"))?,
                    None => value,
                };
                let sig = match encoding {
                    HmacEncoding::Hex => hex::decode(sig).map_err(|_| malformed("not hex"))?,
                    HmacEncoding::Base64 => {
                        BASE64.decode(sig).map_err(|_| malformed("not base64"))?
                    }
                };
                let ok = match algorithm {
                    HmacAlgorithm::Sha256 => mac_matches::<Hmac<Sha256>>(secret, &[body], &sig),
                    HmacAlgorithm::Sha512 => mac_matches::<Hmac<Sha512>>(secret, &[body], &sig),
                };
                ok.then_some(()).ok_or(AuthError::BadSignature)
            }
            WebhookAuth::Bearer { token } => {
                let auth = authorization(headers)?;
                let given = strip_scheme(auth, "Bearer").ok_or(AuthError::Malformed {
                    header: "Authorization".into(),
                    reason: "expected Bearer <token>",
                })?;
                secret_eq(given.trim().as_bytes(), token)
                    .then_some(())
                    .ok_or(AuthError::BadCredentials)
            }
            WebhookAuth::Basic { username, password } => {
                let malformed = AuthError::Malformed {
                    header: "Authorization".into(),
                    reason: "expected Basic <base64(user:password)>",
                };
                let auth = authorization(headers)?;
                let b64 = strip_scheme(auth, "Basic").ok_or(malformed.clone())?;
                let pair = BASE64.decode(b64.trim()).map_err(|_| malformed.clone())?;
                let colon = pair.iter().position(|&b| b == b':').ok_or(malformed)?;
                let (user, pass) = (&pair[..colon], &pair[colon + 1..]);
                // Both compared, always: `&` (not `&&`) so a wrong user costs the same time.
                let ok = secret_eq(user, username.as_bytes()) & secret_eq(pass, password);
                ok.then_some(()).ok_or(AuthError::BadCredentials)
            }
        }
    }
}

/// Whether the HMAC of the concatenated `parts` under `key` equals `sig`, in constant time.
fn mac_matches<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], sig: &[u8]) -> bool {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(sig).is_ok()
}

/// The HMAC-SHA256 of `parts` under `key`, for schemes that list several candidate signatures.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Equality of two secrets without leaking content or length: compares their SHA-256 digests
/// in constant time.
fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .as_slice()
        .ct_eq(Sha256::digest(expected).as_slice())
        .into()
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, AuthError> {
    let v = headers.get(name).ok_or(AuthError::MissingHeader(name))?;
    v.to_str().map(str::trim).map_err(|_| AuthError::Malformed {
        header: name.into(),
        reason: "not visible ASCII",
    })
}

fn authorization(headers: &HeaderMap) -> Result<&str, AuthError> {
    header(headers, "Authorization")
}

/// `value` after `scheme` and a space, the scheme matched case-insensitively (RFC 9110).
fn strip_scheme<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Parses a Unix timestamp in seconds and checks it lies within `tolerance` of `now`, in
/// either direction (a timestamp from the future is as suspicious as an old one).
fn check_timestamp(
    name: &'static str,
    ts: &str,
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let ts: i64 = ts.parse().map_err(|_| AuthError::Malformed {
        header: name.into(),
        reason: "expected a Unix timestamp in seconds",
    })?;
    let distance = now.timestamp().abs_diff(ts);
    if distance > tolerance.as_secs() {
        return Err(AuthError::StaleTimestamp { tolerance });
    }
    Ok(())
}

fn verify_github(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    const H: &str = "X-Hub-Signature-256";
    let malformed = || AuthError::Malformed {
        header: H.into(),
        reason: "expected sha256=<hex>",
    };
    let sig = header(headers, H)?
        .strip_prefix("sha256=")
        .ok_or_else(malformed)?;
    let sig = hex::decode(sig).map_err(|_| malformed())?;
    mac_matches::<Hmac<Sha256>>(secret, &[body], &sig)
        .then_some(())
        .ok_or(AuthError::BadSignature)
}

fn verify_stripe(
    secret: &[u8],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    const H: &str = "Stripe-Signature";
    let malformed = || AuthError::Malformed {
        header: H.into(),
        reason: "expected t=<timestamp>,v1=<hex>",
    };
    let value = header(headers, H)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", ts)) => t = Some(ts),
            // An undecodable v1 can never match; skip it as Stripe's libraries do.
            Some(("v1", sig)) => v1.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let t = t.ok_or_else(malformed)?;
    if v1.is_empty() {
        return Err(malformed());
    }
    let expected = hmac_sha256(secret, &[t.as_bytes(), b".", body]);
    any_matches(&expected, &v1)?;
    check_timestamp(H, t, tolerance, now)
}

fn verify_slack(
    secret: &[u8],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    const SIG: &str = "X-Slack-Signature";
    const TS: &str = "X-Slack-Request-Timestamp";
    let malformed = || AuthError::Malformed {
        header: SIG.into(),
        reason: "expected v0=<hex>",
    };
    let sig = header(headers, SIG)?;
    let ts = header(headers, TS)?;
    let sig = sig.strip_prefix("v0=").ok_or_else(malformed)?;
    let sig = hex::decode(sig).map_err(|_| malformed())?;
    if !mac_matches::<Hmac<Sha256>>(secret, &[b"v0:", ts.as_bytes(), b":", body], &sig) {
        return Err(AuthError::BadSignature);
    }
    check_timestamp(TS, ts, tolerance, now)
}

fn verify_standard(
    key: &[u8],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    const ID: &str = "webhook-id";
    const TS: &str = "webhook-timestamp";
    const SIG: &str = "webhook-signature";
    let id = header(headers, ID)?;
    let ts = header(headers, TS)?;
    let sigs = header(headers, SIG)?;
    // Entries are `version,base64`; only v1 (symmetric HMAC-SHA256) is ours to check.
    let candidates: Vec<Vec<u8>> = sigs
        .split_ascii_whitespace()
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::Malformed {
            header: SIG.into(),
            reason: "expected space-separated v1,<base64> entries",
        });
    }
    let expected = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    any_matches(&expected, &candidates)?;
    check_timestamp(TS, ts, tolerance, now)
}

/// Ok when any candidate equals `expected`; every candidate is compared in constant time.
fn any_matches(expected: &[u8; 32], candidates: &[Vec<u8>]) -> Result<(), AuthError> {
    let mut ok = subtle::Choice::from(0);
    for c in candidates {
        ok |= c.as_slice().ct_eq(expected);
    }
    bool::from(ok).then_some(()).ok_or(AuthError::BadSignature)
}
