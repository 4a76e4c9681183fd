//! What the bench's AMQP producers and consumers share: the address of a
//! destination, the credentials, opening a connection, the flow a link
//! end sends, and how a refused link is reported.

use halyard_core::protocol::amqp::jms::{QUEUE, TOPIC};
use halyard_core::protocol::amqp::{Flow, Terminus};

use super::amqp_client::{self, AttachError, Auth, Connected, SESSION_WINDOW};
use super::harness::{BenchConfig, BenchError, Shared};

/// The AMQP address and terminus capability for a bench destination:
/// `/queue/NAME` is the anycast queue NAME (capability `queue`, which is
/// what makes Artemis route anycast), `/topic/NAME` the multicast address
/// NAME (`topic`); a bare name is a queue.
pub fn amqp_address(destination: &str) -> (String, &'static str) {
    if let Some(n) = destination.strip_prefix("/queue/") {
        (n.to_owned(), QUEUE)
    } else if let Some(n) = destination.strip_prefix("/topic/") {
        (n.to_owned(), TOPIC)
    } else {
        (destination.to_owned(), QUEUE)
    }
}

/// SASL PLAIN with `--user`/`--password`, else ANONYMOUS.
pub fn auth(cfg: &BenchConfig) -> Auth {
    match &cfg.login {
        Some(user) => Auth::Plain {
            user: user.clone(),
            password: cfg.passcode.clone().unwrap_or_default(),
        },
        None => Auth::Anonymous,
    }
}

/// The source (consumers) or target (producers) of the bench's links.
pub fn terminus(cfg: &BenchConfig) -> Terminus {
    let (address, capability) = amqp_address(&cfg.destination);
    Terminus {
        address: Some(address),
        capabilities: vec![capability.into()],
        ..Terminus::default()
    }
}

/// Connects producer or consumer `index` (`role` "p" or "c"), with a
/// container id naming the run.
pub async fn open(shared: &Shared, role: &str, index: usize) -> Result<Connected, BenchError> {
    let cfg = &shared.cfg;
    let container = format!("halyard-bench-{:x}-{role}{index}", shared.run_id);
    Ok(amqp_client::connect(&cfg.addr, &auth(cfg), &container, cfg.connect_timeout).await?)
}

/// A refused attach as the run's error (exit status 1); anything else as
/// a failure to start.
pub fn refused(who: String, address: &str, e: AttachError) -> BenchError {
    match e {
        AttachError::Refused(why) => BenchError::Refused(format!(
            "{who}: the broker refused the link to {address:?}: {why}"
        )),
        AttachError::Client(e) => e.into(),
    }
}

/// The flow a link end sends: session state, then the link's.
pub fn flow(
    next_incoming_id: u32,
    next_outgoing_id: u32,
    delivery_count: u32,
    credit: u32,
) -> Flow {
    Flow {
        next_incoming_id: Some(next_incoming_id),
        incoming_window: SESSION_WINDOW,
        next_outgoing_id,
        outgoing_window: SESSION_WINDOW,
        handle: Some(0),
        delivery_count: Some(delivery_count),
        link_credit: Some(credit),
        ..Flow::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_map_to_amqp_addresses() {
        assert_eq!(amqp_address("/queue/bench"), ("bench".into(), QUEUE));
        assert_eq!(amqp_address("/topic/news"), ("news".into(), TOPIC));
        assert_eq!(amqp_address("orders"), ("orders".into(), QUEUE));
    }
}
