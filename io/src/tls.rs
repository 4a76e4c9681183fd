//! The TLS client listener (`--tls-listen`): rustls with a certificate and
//! key from PEM files and, with a client CA, client certificates that are
//! required, verified, and name the user by their subject CN.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer is abandoned (a client that connects
/// and says nothing must not hold a task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `--tls-listen`, `--tls-cert`, `--tls-key` and `--tls-client-ca` say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// A ready TLS acceptor.
pub struct TlsListener {
    pub listen: SocketAddr,
    acceptor: TlsAcceptor,
    /// Client certificates are required (and name the user).
    pub client_auth: bool,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listen", &self.listen)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::File {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (BEGIN CERTIFICATE) in the file".into()
        ));
    }
    Ok(certs)
}

/// Loads the certificate chain, the key and the client CA; any problem is
/// reported naming the file.
pub fn load(s: &TlsSettings) -> Result<TlsListener, TlsError> {
    let chain = certs(&s.cert)?;
    let key = PrivateKeyDer::from_pem_file(&s.key).map_err(|e| TlsError::File {
        path: s.key.clone(),
        why: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| TlsError::File {
                    path: ca.clone(),
                    why: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::File {
            path: s.key.clone(),
            why: format!("the key does not fit the certificate: {e}"),
        })?;
    Ok(TlsListener {
        listen: s.listen,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        client_auth: s.client_ca.is_some(),
    })
}

impl TlsListener {
    /// The handshake, and the user the client certificate names (its
    /// subject CN) when client certificates are required.
    pub async fn handshake(
        &self,
        sock: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<String>)> {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(sock))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let user =
            if self.client_auth {
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or_else(|| std::io::Error::other("no client certificate"))?;
                Some(common_name(cert.as_ref()).ok_or_else(|| {
                    std::io::Error::other("the client certificate has no subject CN")
                })?)
            } else {
                None
            };
        Ok((stream, user))
    }
}

/// The subject's first common name.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
