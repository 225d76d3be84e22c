//! How `field` trusts its server: HTTPS with rustls (aws-lc-rs) against
//! the system's roots and, with `--ca FILE` at enrolment, a city's own CA;
//! and the public key the server showed at enrolment, pinned. Every later
//! connection must show the same key (SHA-256 of its SubjectPublicKeyInfo)
//! besides a valid chain, so a stolen or mis-issued certificate for the
//! name is still refused. Plain `http://` is taken only to a loopback
//! address or when enrolment said `--allow-http`.
//!
//! What is trusted lives in `server-trust.json` in the data dir (0600).

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use sync_core::files::{Access, write_whole};

const TRUST_FILE: &str = "server-trust.json";

/// What this device trusts about its server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// Hex SHA-256 of the server key's SubjectPublicKeyInfo, seen at enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// A CA (PEM) trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Plain HTTP to a non-loopback address was asked for at enrolment.
    #[serde(default)]
    pub allow_http: bool,
}

impl Trust {
    pub fn load(data_dir: &Path) -> Result<Trust> {
        let path = data_dir.join(TRUST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display())),
            // Enrolled before this file existed: over the plain http://
            // it was given then, which keeps working.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Trust {
                allow_http: true,
                ..Trust::default()
            }),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(TRUST_FILE);
        let json = serde_json::to_vec_pretty(self).expect("trust serialises");
        write_whole(&path, &json, Access::OwnerOnly).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Hex SHA-256 of a certificate's SubjectPublicKeyInfo.
fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let spki = ParsedCertificate::try_from(cert)?.subject_public_key_info();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's key as the last handshake showed it, and whether it
/// differed from the pin.
#[derive(Debug, Default)]
pub struct Seen {
    pub pin: Option<String>,
    pub mismatch: bool,
}

/// A valid chain for the name, then the pin.
#[derive(Debug)]
struct Pinned {
    chain: Arc<WebPkiServerVerifier>,
    pin: Option<String>,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)?;
        let got = spki_pin(end_entity)?;
        let mismatch = self.pin.as_ref().is_some_and(|p| *p != got);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen {
            pin: Some(got),
            mismatch,
        };
        if mismatch {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The system's roots and the trusted CA.
fn roots(ca_pem: Option<&str>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("the CA file is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(anyhow!("the CA file holds no certificate"));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| anyhow!("the CA file holds a certificate rustls cannot use: {e}"))?;
        }
    }
    Ok(roots)
}

/// The TLS configuration for `trust`, and where the handshake reports
/// the key it saw.
pub fn client_config(trust: &Trust) -> Result<(rustls::ClientConfig, Arc<Mutex<Seen>>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(trust.ca_pem.as_deref())?), provider.clone())
            .build()
            .map_err(|e| anyhow!("cannot set up certificate checks: {e}"))?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Pinned {
        chain,
        pin: trust.pin.clone(),
        seen: seen.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, seen))
}
