//! A KafkaSource's `net` as librdkafka settings: `security.protocol` from what is enabled
//! (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), the SASL mechanism and credentials, and
//! the TLS certificates as PEM (`ssl.ca.pem`, `ssl.certificate.pem`, `ssl.key.pem`; without a CA,
//! the system's store). Secrets are read when the source is built — so `ember validate` reads
//! them too, and refuses a missing file or variable.

use ember_api::sources::{KafkaNet, NetSecret, kafka_net::SASL_MECHANISMS};
use ember_api::{FieldError, FieldPath};

/// librdkafka settings for `net` (none for plaintext without SASL); `path` is where `net` is
/// written, for errors.
pub fn client_settings(
    net: Option<&KafkaNet>,
    path: &FieldPath,
) -> Result<Vec<(&'static str, String)>, FieldError> {
    let Some(net) = net else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let protocol = match (net.tls.enable, net.sasl.enable) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    out.push(("security.protocol", protocol.to_owned()));
    if net.sasl.enable {
        let sasl = path.key("sasl");
        let mechanism = read(&net.sasl.mechanism, &sasl.key("type"))?
            .map(|m| m.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "PLAIN".to_owned());
        if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
            return Err(FieldError::new(
                sasl.key("type"),
                format!(
                    "{mechanism:?} is not a SASL mechanism Ember speaks ({})",
                    SASL_MECHANISMS.join(", ")
                ),
            ));
        }
        out.push(("sasl.mechanism", mechanism));
        let user = required(&net.sasl.user, &sasl.key("user"))?;
        let password = required(&net.sasl.password, &sasl.key("password"))?;
        out.push((
            "sasl.username",
            user.trim_end_matches(['\r', '\n']).to_owned(),
        ));
        out.push((
            "sasl.password",
            password.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    if net.tls.enable {
        let tls = path.key("tls");
        match read(&net.tls.ca_cert, &tls.key("caCert"))? {
            Some(ca) => out.push(("ssl.ca.pem", ca)),
            None => out.push(("ssl.ca.location", "probe".to_owned())),
        }
        if let Some(cert) = read(&net.tls.cert, &tls.key("cert"))? {
            out.push(("ssl.certificate.pem", cert));
            out.push(("ssl.key.pem", required(&net.tls.key, &tls.key("key"))?));
        }
    }
    Ok(out)
}

fn required(s: &NetSecret, field: &FieldPath) -> Result<String, FieldError> {
    read(s, field)?.ok_or_else(|| FieldError::new(field.clone(), "required"))
}

/// The secret's value, if one is given.
fn read(s: &NetSecret, field: &FieldPath) -> Result<Option<String>, FieldError> {
    let text = |bytes: Vec<u8>, what: &str| {
        String::from_utf8(bytes)
            .map_err(|_| FieldError::new(field.clone(), format!("{what} is not UTF-8 text")))
    };
    if let Some(r) = &s.secret_key_ref {
        let Some(v) = &r.value else {
            return Err(FieldError::new(
                field.key("secretKeyRef"),
                format!(
                    "Secret {:?} has no key {:?} in the configuration",
                    r.name, r.key
                ),
            ));
        };
        return text(v.0.clone(), "the Secret's value").map(Some);
    }
    if let Some(path) = &s.secret_file {
        let bytes = std::fs::read(path).map_err(|e| {
            FieldError::new(
                field.key("secretFile"),
                format!("reading {}: {e}", path.display()),
            )
        })?;
        return text(bytes, "the file").map(Some);
    }
    if let Some(var) = &s.secret_env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(FieldError::new(
                field.key("secretEnv"),
                format!("the environment variable {var} is not set (or not UTF-8)"),
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(yaml: &str) -> KafkaNet {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn settings(yaml: &str) -> Result<Vec<(&'static str, String)>, String> {
        client_settings(Some(&net(yaml)), &FieldPath::parse_keys("spec.net"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn protocol_follows_what_is_enabled() {
        assert_eq!(client_settings(None, &FieldPath::root()).unwrap(), vec![]);
        assert_eq!(
            settings("{}").unwrap(),
            vec![("security.protocol", "PLAINTEXT".into())]
        );
        let s = settings("tls: {enable: true}").unwrap();
        assert_eq!(
            s,
            vec![
                ("security.protocol", "SSL".into()),
                ("ssl.ca.location", "probe".into())
            ]
        );
    }

    #[test]
    fn sasl_and_tls_secrets_from_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nx\n").unwrap();
        let pw = dir.path().join("password");
        std::fs::write(&pw, "s3cret\n").unwrap();
        // SAFETY: set once, before reading, by this test only.
        unsafe { std::env::set_var("EMBER_TEST_KAFKA_USER", "alice") };
        let s = settings(&format!(
            "sasl: {{enable: true, type: {{secretEnv: EMBER_TEST_KAFKA_MECH}}, user: {{secretEnv: EMBER_TEST_KAFKA_USER}}, password: {{secretFile: {}}}}}\ntls: {{enable: true, caCert: {{secretFile: {}}}}}",
            pw.display(),
            ca.display()
        ));
        // The mechanism's variable is not set: named.
        let err = s.unwrap_err();
        assert!(err.contains("spec.net.sasl.type.secretEnv"), "{err}");
        assert!(err.contains("EMBER_TEST_KAFKA_MECH"), "{err}");
        let s = settings(&format!(
            "sasl: {{enable: true, user: {{secretEnv: EMBER_TEST_KAFKA_USER}}, password: {{secretFile: {}}}}}\ntls: {{enable: true, caCert: {{secretFile: {}}}}}",
            pw.display(),
            ca.display()
        ))
        .unwrap();
        assert_eq!(
            s,
            vec![
                ("security.protocol", "SASL_SSL".into()),
                ("sasl.mechanism", "PLAIN".into()),
                ("sasl.username", "alice".into()),
                ("sasl.password", "s3cret".into()),
                ("ssl.ca.pem", "-----BEGIN CERTIFICATE-----\nx\n".into()),
            ]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = settings("sasl: {enable: true, user: {secretEnv: X}, password: {secretEnv: X}, type: {secretFile: /nonexistent/mech}}").unwrap_err();
        assert!(err.contains("spec.net.sasl.type.secretFile"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let mech = dir.path().join("mech");
        std::fs::write(&mech, "GSSAPI").unwrap();
        unsafe { std::env::set_var("EMBER_TEST_KAFKA_X", "x") };
        let err = settings(&format!(
            "sasl: {{enable: true, user: {{secretEnv: EMBER_TEST_KAFKA_X}}, password: {{secretEnv: EMBER_TEST_KAFKA_X}}, type: {{secretFile: {}}}}}",
            mech.display()
        ))
        .unwrap_err();
        assert!(
            err.contains("spec.net.sasl.type") && err.contains("GSSAPI"),
            "{err}"
        );
        // A Secret key the configuration does not hold.
        let err =
            settings("tls: {enable: true, caCert: {secretKeyRef: {name: kafka, key: ca.crt}}}")
                .unwrap_err();
        assert!(err.contains("spec.net.tls.caCert.secretKeyRef"), "{err}");
    }
}
