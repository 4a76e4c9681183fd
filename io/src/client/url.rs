//! Broker URLs: `tcp://host:port`, `host:port`, or the ActiveMQ failover form
//! `failover:(tcp://a:61616,tcp://b:61617)?maxReconnectAttempts=-1&initialReconnectDelay=100&maxReconnectDelay=5000`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `host:port` of each broker, tried in order.
    pub addrs: Vec<String>,
    /// Reconnect attempts after a connection is lost; -1 is unlimited, 0 none.
    pub max_reconnect_attempts: i64,
    pub initial_reconnect_delay_ms: u64,
    pub max_reconnect_delay_ms: u64,
    /// Is this a `failover:` URL (reconnects by default) or a plain one?
    pub failover: bool,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UrlError {
    #[error("broker URL {0:?} names no broker")]
    Empty(String),
    #[error("broker address {0:?} must be host:port (optionally tcp://host:port)")]
    BadAddress(String),
    #[error("broker URL option {0:?} is not known (maxReconnectAttempts, initialReconnectDelay, maxReconnectDelay)")]
    UnknownOption(String),
    #[error("broker URL option {name} has invalid value {value:?}")]
    BadValue { name: String, value: String },
    #[error("failover URL {0:?} must look like failover:(tcp://host:port,...)?options")]
    BadFailover(String),
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<BrokerUrl, UrlError> {
        let s = s.trim();
        let mut url = BrokerUrl {
            addrs: Vec::new(),
            max_reconnect_attempts: 0,
            initial_reconnect_delay_ms: 100,
            max_reconnect_delay_ms: 5_000,
            failover: false,
        };
        let (list, options) = if let Some(rest) = s.strip_prefix("failover:") {
            url.failover = true;
            url.max_reconnect_attempts = -1;
            let (list, options) = match rest.strip_prefix('(') {
                Some(r) => {
                    let (inner, after) = r
                        .split_once(')')
                        .ok_or_else(|| UrlError::BadFailover(s.to_string()))?;
                    let opts = match after {
                        "" => None,
                        a => Some(
                            a.strip_prefix('?')
                                .ok_or_else(|| UrlError::BadFailover(s.to_string()))?,
                        ),
                    };
                    (inner, opts)
                }
                None => match rest.split_once('?') {
                    Some((l, o)) => (l, Some(o)),
                    None => (rest, None),
                },
            };
            (list, options)
        } else {
            match s.split_once('?') {
                Some((l, o)) => (l, Some(o)),
                None => (s, None),
            }
        };
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let addr = part.strip_prefix("tcp://").unwrap_or(part);
            let addr = addr.trim_end_matches('/');
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(UrlError::BadAddress(part.to_string()));
            }
            url.addrs.push(addr.to_string());
        }
        if url.addrs.is_empty() {
            return Err(UrlError::Empty(s.to_string()));
        }
        if let Some(options) = options {
            for kv in options.split('&').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let bad = || UrlError::BadValue {
                    name: k.to_string(),
                    value: v.to_string(),
                };
                match k {
                    "maxReconnectAttempts" => {
                        url.max_reconnect_attempts = v.parse().map_err(|_| bad())?;
                        if url.max_reconnect_attempts < -1 {
                            return Err(bad());
                        }
                    }
                    "initialReconnectDelay" => {
                        url.initial_reconnect_delay_ms = v.parse().map_err(|_| bad())?
                    }
                    "maxReconnectDelay" => {
                        url.max_reconnect_delay_ms = v.parse().map_err(|_| bad())?
                    }
                    _ => return Err(UrlError::UnknownOption(k.to_string())),
                }
            }
        }
        Ok(url)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failover {
            let list: Vec<String> = self.addrs.iter().map(|a| format!("tcp://{a}")).collect();
            write!(
                f,
                "failover:({})?maxReconnectAttempts={}&initialReconnectDelay={}&maxReconnectDelay={}",
                list.join(","),
                self.max_reconnect_attempts,
                self.initial_reconnect_delay_ms,
                self.max_reconnect_delay_ms
            )
        } else {
            write!(f, "tcp://{}", self.addrs[0])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_failover_form() {
        let u: BrokerUrl = "failover:(tcp://127.0.0.1:61616,tcp://127.0.0.1:61617)?maxReconnectAttempts=-1&initialReconnectDelay=100&maxReconnectDelay=5000"
            .parse()
            .unwrap();
        assert_eq!(u.addrs, vec!["127.0.0.1:61616", "127.0.0.1:61617"]);
        assert_eq!(u.max_reconnect_attempts, -1);
        assert_eq!(u.initial_reconnect_delay_ms, 100);
        assert_eq!(u.max_reconnect_delay_ms, 5000);
        assert!(u.failover);
        assert_eq!(u.to_string().parse::<BrokerUrl>().unwrap(), u);
    }

    #[test]
    fn parses_plain_addresses() {
        let u: BrokerUrl = "tcp://localhost:61616".parse().unwrap();
        assert_eq!(u.addrs, vec!["localhost:61616"]);
        assert!(!u.failover);
        assert_eq!(u.max_reconnect_attempts, 0);
        let u: BrokerUrl = "127.0.0.1:1".parse().unwrap();
        assert_eq!(u.addrs, vec!["127.0.0.1:1"]);
    }

    #[test]
    fn rejects_bad_urls_by_name() {
        assert!(matches!("".parse::<BrokerUrl>(), Err(UrlError::Empty(_))));
        assert!(matches!(
            "tcp://nohost".parse::<BrokerUrl>(),
            Err(UrlError::BadAddress(_))
        ));
        assert!(matches!(
            "h:1?foo=2".parse::<BrokerUrl>(),
            Err(UrlError::UnknownOption(_))
        ));
        assert!(matches!(
            "failover:(h:1)?maxReconnectAttempts=x".parse::<BrokerUrl>(),
            Err(UrlError::BadValue { .. })
        ));
        assert!(matches!(
            "failover:(h:1".parse::<BrokerUrl>(),
            Err(UrlError::BadFailover(_))
        ));
    }
}
