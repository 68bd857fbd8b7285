//! Webhook secrets as read from their file or environment variable: the one place that decides
//! what a secret's bytes are and whether they can be used.
//!
//! `ember validate` and `ember run` both load secrets through these functions, so a secret one
//! accepts the other accepts too. The rules:
//! - trailing line breaks (`\n`, `\r\n`) are dropped, from files and environment variables alike
//!   (editors and `echo` add one); nothing else is changed;
//! - an empty secret, or one of only whitespace, is refused: an HMAC key or token that anyone can
//!   guess is no authentication;
//! - a Standard Webhooks secret is `whsec_` followed by standard base64 (padded or not, as the
//!   reference libraries accept), or the base64 alone, and must decode to a non-empty key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 read without its padding: the caller strips any `=` first, so padded and
/// unpadded secrets decode alike (the Standard Webhooks Python library pads before decoding and
/// ignores extra padding; the others take the padded form).
const UNPADDED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Why a secret cannot be loaded. Never holds the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file cannot be read.
    #[error("cannot read secret file {}: {error}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    EnvNotSet(String),
    /// The secret is empty (after dropping trailing line breaks).
    #[error("{0} is empty; a webhook secret must not be")]
    Empty(String),
    /// The secret holds only whitespace.
    #[error("{0} holds only whitespace; a webhook secret must not")]
    Blank(String),
    /// The Secret document, or its key, is not in the configuration.
    #[error("no Secret {name} with key {key:?} in the configuration")]
    NoSecret {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
}

/// A Standard Webhooks secret that does not decode (a configuration error, found before
/// serving).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    /// Not base64 after the optional `whsec_` prefix.
    #[error("a Standard Webhooks secret must be whsec_ followed by base64 (padding optional)")]
    NotBase64,
    /// Decodes to no key at all (e.g. `whsec_` alone).
    #[error("a Standard Webhooks secret must not be empty after whsec_")]
    EmptyKey,
}

/// Reads a secret from `path`: trailing line breaks dropped, empty or blank refused.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let bytes = std::fs::read(path).map_err(|error| SecretError::Unreadable {
        path: path.to_owned(),
        error,
    })?;
    usable(bytes, || format!("secret file {}", path.display()))
}

/// Reads a secret from the environment variable `var`: trailing line breaks dropped, empty or
/// blank refused. The value need not be UTF-8.
pub fn read_secret_env(var: &str) -> Result<Vec<u8>, SecretError> {
    let value = std::env::var_os(var).ok_or_else(|| SecretError::EnvNotSet(var.to_owned()))?;
    usable(value.into_encoded_bytes(), || {
        format!("environment variable {var}")
    })
}

/// A secret taken from a Secret document's key (resolved when the configuration was loaded):
/// the same rules as a file's.
pub fn read_secret_key(r: &ember_api::sources::SecretKeyRef) -> Result<Vec<u8>, SecretError> {
    let value = r.value.as_ref().ok_or_else(|| SecretError::NoSecret {
        name: r.name.clone(),
        key: r.key.clone(),
    })?;
    usable(value.0.clone(), || {
        format!("Secret {} key {:?}", r.name, r.key)
    })
}

/// `bytes` without trailing line breaks, unless nothing but whitespace is left.
fn usable(mut bytes: Vec<u8>, origin: impl Fn() -> String) -> Result<Vec<u8>, SecretError> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty(origin()));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SecretError::Blank(origin()));
    }
    Ok(bytes)
}

/// The HMAC key of a Standard Webhooks secret as the provider shows it: `whsec_<base64>` or the
/// bare base64, padded or not; surrounding whitespace is ignored.
pub fn standard_webhooks_key(secret: &[u8]) -> Result<Vec<u8>, InvalidSecret> {
    let text = std::str::from_utf8(secret)
        .map_err(|_| InvalidSecret::NotBase64)?
        .trim();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    let key = UNPADDED_BASE64
        .decode(b64.trim_end_matches('='))
        .map_err(|_| InvalidSecret::NotBase64)?;
    if key.is_empty() {
        return Err(InvalidSecret::EmptyKey);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_keys_padded_or_not() {
        // "secret!" is 7 bytes: base64 "c2VjcmV0IQ==" padded.
        for s in [
            "whsec_c2VjcmV0IQ==",
            "whsec_c2VjcmV0IQ",
            "c2VjcmV0IQ",
            " whsec_c2VjcmV0IQ=\n",
        ] {
            assert_eq!(
                standard_webhooks_key(s.as_bytes()),
                Ok(b"secret!".to_vec()),
                "{s}"
            );
        }
        assert_eq!(
            standard_webhooks_key(b"whsec_"),
            Err(InvalidSecret::EmptyKey)
        );
        for bad in ["whsec_not base64!", "whsec_c2Vj*mV0", "whsec_c2VjcmV0I-"] {
            assert_eq!(
                standard_webhooks_key(bad.as_bytes()),
                Err(InvalidSecret::NotBase64),
                "{bad}"
            );
        }
    }

    #[test]
    fn line_breaks_dropped_empty_and_blank_refused() {
        let origin = || "secret file x".to_owned();
        assert_eq!(usable(b"abc\r\n".to_vec(), origin).unwrap(), b"abc");
        assert_eq!(usable(b" abc ".to_vec(), origin).unwrap(), b" abc ");
        assert!(matches!(
            usable(b"\n\n".to_vec(), origin),
            Err(SecretError::Empty(_))
        ));
        let blank = usable(b" \t \n".to_vec(), origin).unwrap_err();
        assert_eq!(
            blank.to_string(),
            "secret file x holds only whitespace; a webhook secret must not"
        );
    }
}
