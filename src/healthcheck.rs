//! `tickstream healthcheck`: asks the running server's `/healthz` and exits 0 only on
//! 200, so a container `HEALTHCHECK` needs no curl in the image.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Probes `http://{server.host}:{server.port}/healthz` (a wildcard host means loopback).
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    let host = match settings.server.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        host => host,
    };
    let address = (host, settings.server.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))?;
    let tcp = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("cannot connect to {address}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    if settings.tls.cert_file.is_empty() {
        let mut stream = tcp;
        stream.write_all(request.as_bytes())?;
        stream.read_to_string(&mut response)?;
    } else {
        let mut stream = tls_stream(tcp)?;
        stream.write_all(request.as_bytes())?;
        // A peer that closes without close_notify is fine for a probe: keep what came.
        if let Err(e) = stream.read_to_string(&mut response) {
            if response.is_empty() {
                return Err(e).context("TLS read");
            }
        }
    }
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("unhealthy: {status_line:?}");
    }
    Ok(())
}

/// A TLS client for the probe. It talks to its own server over loopback to ask "are
/// you alive?", so it does not verify the certificate's identity (the server's name
/// in the certificate is unknown here); it still completes a real handshake.
fn tls_stream(tcp: TcpStream) -> anyhow::Result<StreamOwned<ClientConnection, TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LivenessOnly(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("a valid DNS name");
    let connection = ClientConnection::new(Arc::new(config), name)?;
    Ok(StreamOwned::new(connection, tcp))
}

#[derive(Debug)]
struct LivenessOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for LivenessOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
