//! TLS for https/wss, with rustls (ring provider; no C toolchain beyond ring's).
//! Plain HTTP stays available for local use and behind a TLS-terminating proxy.

use std::io::BufReader;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::ServerConfig;

use crate::config::TlsSettings;

/// The server configuration from `tls.cert_file` (a PEM chain, leaf first) and
/// `tls.key_file` (a PEM private key), or `None` when TLS is off.
pub fn server_config(settings: &TlsSettings) -> anyhow::Result<Option<ServerConfig>> {
    if settings.cert_file.is_empty() {
        return Ok(None);
    }
    let read = |path: &str, key: &str| {
        std::fs::read(path).with_context(|| format!("{key}: cannot read {path}"))
    };
    let cert_pem = read(&settings.cert_file, "tls.cert_file")?;
    let key_pem = read(&settings.key_file, "tls.key_file")?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .context("tls.cert_file: not a PEM certificate chain")?;
    if certs.is_empty() {
        bail!(
            "tls.cert_file: no certificate found in {}",
            settings.cert_file
        );
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .context("tls.key_file: not a PEM private key")?
        .with_context(|| {
            format!(
                "tls.key_file: no private key found in {}",
                settings.key_file
            )
        })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("tls.cert_file and tls.key_file do not form a usable pair")?;
    Ok(Some(config))
}
