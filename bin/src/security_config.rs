//! Security settings of `halyard node`: the security file, the rule that
//! anonymous clients are only for loopback listeners, connection limits and
//! the TLS listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use halyard_core::node::NodeConfig;
use halyard_io::tls::TlsSettings;

/// The settings this module resolves (already layered).
pub struct SecuritySettings {
    pub listen: SocketAddr,
    pub security_file: Option<PathBuf>,
    pub allow_anonymous: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_pending_connections: Option<usize>,
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

/// Connections at most, whatever is asked (each holds buffers and a task).
const CONNECTIONS_LIMIT: usize = 1_000_000;

/// Fills the node's security and limits; returns the TLS listener's
/// settings. Every refusal names the setting and says what to do.
pub fn resolve(s: SecuritySettings, node: &mut NodeConfig) -> Result<Option<TlsSettings>, String> {
    if let Some(path) = &s.security_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read security file {}: {e}", path.display()))?;
        let security = halyard_core::security::parse(&text)
            .map_err(|e| format!("invalid security file {}: {e}", path.display()))?;
        node.set_security(Arc::new(security));
    }
    let tls = match (s.tls_listen, s.tls_cert, s.tls_key) {
        (None, None, None) if s.tls_client_ca.is_none() => None,
        (Some(listen), Some(cert), Some(key)) => {
            if listen == s.listen {
                return Err(format!(
                    "--tls-listen {listen} must differ from --listen (the plain client port)"
                ));
            }
            if s.tls_client_ca.is_some() && node.security.is_none() {
                return Err(
                    "--tls-client-ca names users by their certificates: it needs --security-file"
                        .into(),
                );
            }
            Some(TlsSettings {
                listen,
                cert,
                key,
                client_ca: s.tls_client_ca,
            })
        }
        _ => {
            return Err(
                "a TLS listener needs all of --tls-listen, --tls-cert and --tls-key (--tls-client-ca is optional)"
                    .into(),
            )
        }
    };
    if node.security.is_none() && !s.allow_anonymous.unwrap_or(false) {
        let open = std::iter::once(s.listen)
            .chain(tls.as_ref().map(|t| t.listen))
            .find(|a| !a.ip().is_loopback());
        if let Some(addr) = open {
            return Err(format!(
                "listener {addr} is not a loopback address and no --security-file is set: anyone who \
                 can reach it could read and write every queue. Configure users with --security-file \
                 FILE (see docs/security.md), or pass --allow-anonymous to accept anonymous clients \
                 on purpose"
            ));
        }
    }
    let limit = |name: &str, v: Option<usize>, default: usize| match v {
        None => Ok(default),
        Some(n) if (1..=CONNECTIONS_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(format!(
            "--{name} {n}: must be between 1 and {CONNECTIONS_LIMIT}"
        )),
    };
    node.connections_max = limit("max-connections", s.max_connections, 10_000)?;
    node.pending_connections_max =
        limit("max-pending-connections", s.max_pending_connections, 1_000)?;
    Ok(tls)
}
