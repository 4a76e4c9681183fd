//! `halyard proxy`: a TCP fault proxy with an HTTP control API (docs/proxy.md).

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use clap::Args;
use halyard_io::proxy::{self, FaultProxy, ProxyConfig, CONNECT_TIMEOUT_MS_DEFAULT};
use tracing_subscriber::EnvFilter;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address clients connect to, e.g. 127.0.0.1:19094
    #[arg(long, value_name = "IP:PORT")]
    listen: SocketAddr,
    /// Address every connection is forwarded to, e.g. 127.0.0.1:9094 or kafka:9094
    /// (a host name is resolved once, at start)
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    upstream: String,
    /// Address of the HTTP control API (POST /cut?mode=reset|blackhole, POST /heal,
    /// GET /status); without it the proxy only forwards
    #[arg(long, value_name = "IP:PORT")]
    control: Option<SocketAddr>,
    /// Connections proxied at once; more wait in the accept backlog
    #[arg(long, default_value_t = proxy::MAX_CONNECTIONS_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Upper bound on connecting to the upstream, in milliseconds
    #[arg(long, default_value_t = CONNECT_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    connect_timeout_ms: u64,
    /// Log filter (tracing EnvFilter syntax)
    #[arg(long, default_value = "info", env = "HALYARD_LOG")]
    log: String,
}

fn parse_host_port(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:9094".into());
    };
    if host.is_empty() {
        return Err("the host is empty (expected HOST:PORT)".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("invalid port {port:?} (expected 1-65535)")),
    }
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve upstream {s:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("upstream {s:?} resolves to no address"))
}

pub fn run(a: ProxyArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let filter =
        EnvFilter::try_new(&a.log).map_err(|e| format!("invalid log filter {:?}: {e}", a.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let upstream = resolve(&a.upstream)?;
    let config = ProxyConfig {
        max_connections: a.max_connections as usize,
        connect_timeout_ms: a.connect_timeout_ms,
        ..ProxyConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let p = FaultProxy::start_with(a.listen, upstream, config).await?;
        let control = async {
            match a.control {
                Some(addr) => proxy::serve_control(p.clone(), addr).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = control => r?,
            r = tokio::signal::ctrl_c() => {
                r?;
                tracing::info!("interrupted; stopping the proxy");
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::parse_host_port;

    #[test]
    fn host_port_flags() {
        assert!(parse_host_port("127.0.0.1:9094").is_ok());
        assert!(parse_host_port("[::1]:9094").is_ok());
        assert!(parse_host_port("kafka:9094").is_ok());
        assert!(parse_host_port("kafka").is_err());
        assert!(parse_host_port(":9094").is_err());
        assert!(parse_host_port("kafka:0").is_err());
        assert!(parse_host_port("kafka:99999").is_err());
    }
}
