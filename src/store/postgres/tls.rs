//! TLS to PostgreSQL, with libpq's meaning of `sslmode`, so that a URL that works with `psql`
//! works with herald: `prefer` (the default) encrypts when the server offers it, `require`
//! insists, and neither checks the certificate (a managed server's authority is rarely in any
//! trust store); `verify-ca` checks that an authority of `sslrootcert` (else the Mozilla set)
//! signed it, `verify-full` also that it names the host (how `sslrootcert` raises a mode, as in
//! libpq, is read in `database.rs`). Every connection herald opens (its pool,
//! the change feed's, the consumer's lock, the scripts' read-only ones) goes through a `Login`.

use std::sync::Arc;

use postgres::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Result, StoreError};
use crate::database::{CertificateCheck, TlsSettings};

/// How to open a connection: the client's settings and how to encrypt it.
#[derive(Clone)]
pub(super) struct Login {
    pub(super) config: postgres::Config,
    tls: MakeRustlsConnect,
}

impl Login {
    pub(super) fn new(mut config: postgres::Config, tls: &TlsSettings) -> Result<Login> {
        // TLS needs a host name to send; a URL with only `hostaddr` gets its addresses as names
        // (what they are connected to anyway), so that `prefer` against a server that offers TLS
        // does not fail with "no hostname provided for TLS handshake".
        if config.get_hosts().is_empty() {
            for address in config.get_hostaddrs().to_vec() {
                config.host(&address.to_string());
            }
        }
        Ok(Login {
            config,
            tls: connector(tls)?,
        })
    }

    /// The same encryption for other settings (another role's login).
    pub(super) fn with_config(&self, config: postgres::Config) -> Login {
        Login {
            config,
            tls: self.tls.clone(),
        }
    }

    pub(super) fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }

    /// What cancelling a query on one of these connections connects with.
    pub(super) fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }
}

fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match settings.check {
        CertificateCheck::Nothing => None,
        _ => Some(
            WebPkiServerVerifier::builder_with_provider(
                Arc::new(trusted_roots(settings)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| StoreError::Connect(format!("sslrootcert: {e}")))?,
        ),
    };
    let verifier = Arc::new(CertificateCheckOf {
        chain,
        host_too: settings.check == CertificateCheck::AuthorityAndHost,
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Connect(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The authorities of `sslrootcert`, or the Mozilla set without one.
fn trusted_roots(settings: &TlsSettings) -> Result<RootCertStore> {
    let Some(path) = &settings.root_cert else {
        return Ok(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ));
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Connect(format!("sslrootcert {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(roots)
}

/// What `sslmode` checks of the server's certificate: with `prefer` and `require` (no `chain`)
/// nothing, with `verify-ca` its chain to a trusted authority, with `verify-full` the host name in
/// it too. The handshake's signatures are checked whatever the mode: the session is with the
/// holder of the certificate's key.
#[derive(Debug)]
struct CertificateCheckOf {
    chain: Option<Arc<WebPkiServerVerifier>>,
    host_too: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CertificateCheckOf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The chain was checked before the name: only the name is wrong.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.host_too => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
