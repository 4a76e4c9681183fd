//! The scenario shared by the madsim tests: three Halyard nodes running the
//! real Tokio driver, a host serving the Kafka model, a client host running
//! the real failover client, and faults.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use halyard_core::ha::Role;
use halyard_io::client::{consume, produce, BrokerUrl, ConsumeOptions, ProduceOptions};
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;

use super::cluster;

const MESSAGES: u64 = 400;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// The node that accepts STOMP connections now, if any.
async fn live_index(listens: &[SocketAddr]) -> Option<usize> {
    for (i, a) in listens.iter().enumerate() {
        let c = madsim::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(a),
        )
        .await;
        if matches!(c, Ok(Ok(_))) {
            return Some(i);
        }
    }
    None
}

/// Runs the cluster with faults; returns the receipted messages never delivered.
pub async fn scenario() -> Vec<u64> {
    // RUST_LOG=info shows the nodes' and clients' logs in virtual time order.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let handle = Handle::current();
    let kafka_addr: SocketAddr = "10.0.0.1:9092".parse().expect("addr");
    let kafka = handle
        .create_node()
        .name("kafka")
        .ip(kafka_addr.ip())
        .build();
    kafka.spawn(cluster::serve_kafka(kafka_addr));
    let allow_failback = thread_rng().gen_bool(0.5);

    let mut nodes = Vec::new();
    let mut listens = Vec::new();
    for i in 0..3u8 {
        let name = format!("n{}", i + 1);
        let listen = SocketAddr::new(ip(&format!("10.0.1.{}", i + 1)), 61616);
        let role = if i == 0 { Role::Primary } else { Role::Backup };
        let n2 = name.clone();
        let h = handle
            .create_node()
            .name(&name)
            .ip(listen.ip())
            .init(move || cluster::run_node(n2.clone(), role, allow_failback, listen, kafka_addr))
            .build();
        nodes.push(h);
        listens.push(listen);
    }
    let url: BrokerUrl = format!(
        "failover:({})?maxReconnectAttempts=-1&initialReconnectDelay=50&maxReconnectDelay=1000",
        listens
            .iter()
            .map(|a| format!("tcp://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    )
    .parse()
    .expect("url");

    let client = handle
        .create_node()
        .name("client")
        .ip(ip("10.0.2.1"))
        .build();
    let purl = url.clone();
    let producer = client.spawn(async move {
        // Let the first live come up.
        madsim::time::sleep(Duration::from_secs(2)).await;
        let o = ProduceOptions {
            destination: "/queue/orders".into(),
            count: MESSAGES,
            size_bytes: 256,
            window: 20,
            rate_per_sec: Some(25.0),
            persistent: true,
            producer_id: "p1".into(),
            duplicate_ids: true,
        };
        produce(&purl, &o, &mut |l| tracing::info!("producer: {l}")).await
    });
    // Faults while the messages flow (about 7.5 s of sending).
    let net = NetSim::current();
    let client_id = client.id();
    let mut rng = thread_rng();
    let mut kills = 0;
    for _ in 0..5 {
        madsim::time::sleep(Duration::from_millis(rng.gen_range(1_000..3_000))).await;
        // Mostly hit the live node (the one that accepts connections).
        let live = {
            let listens = listens.clone();
            client
                .spawn(async move { live_index(&listens).await })
                .await
                .expect("probe")
        };
        let victim = match live {
            Some(l) if rng.gen_bool(0.7) => l,
            _ => rng.gen_range(0..nodes.len()),
        };
        let id = nodes[victim].id();
        match rng.gen_range(0..3) {
            0 => {
                kills += 1;
                tracing::info!("fault: kill n{}", victim + 1);
                handle.kill(id);
                madsim::time::sleep(Duration::from_millis(rng.gen_range(500..4_000))).await;
                tracing::info!("fault: restart n{}", victim + 1);
                handle.restart(id);
            }
            1 => {
                tracing::info!("fault: clog n{} <-> kafka", victim + 1);
                net.clog_link(id, kafka.id());
                net.clog_link(kafka.id(), id);
                madsim::time::sleep(Duration::from_millis(rng.gen_range(1_000..6_000))).await;
                net.unclog_link(id, kafka.id());
                net.unclog_link(kafka.id(), id);
            }
            _ => {
                tracing::info!("fault: clog client <-> n{}", victim + 1);
                net.clog_link(id, client_id);
                net.clog_link(client_id, id);
                madsim::time::sleep(Duration::from_millis(rng.gen_range(500..4_000))).await;
                net.unclog_link(id, client_id);
                net.unclog_link(client_id, id);
            }
        }
    }

    let limit = Duration::from_secs(600);
    let p = madsim::time::timeout(limit, producer)
        .await
        .expect("producer did not finish in 600 virtual seconds")
        .expect("producer task")
        .expect("producer failed");
    // One more failover after the last receipt, so every receipted message
    // must come back from the journal, not from a live node's memory.
    let live = {
        let listens = listens.clone();
        client
            .spawn(async move { live_index(&listens).await })
            .await
            .expect("probe")
    };
    if let Some(l) = live {
        tracing::info!("fault: kill the live n{} after the last receipt", l + 1);
        handle.kill(nodes[l].id());
        madsim::time::sleep(Duration::from_millis(500)).await;
        handle.restart(nodes[l].id());
        kills += 1;
    }
    // Consume only now: everything receipted must have survived every
    // failover in the journal, not just in a live node's memory.
    let consumer = client.spawn(async move {
        let o = ConsumeOptions {
            destination: "/queue/orders".into(),
            ack: "client-individual".into(),
            count: Some(MESSAGES),
            // Ends early only if messages are missing (then the check fails).
            idle_timeout: Duration::from_secs(30),
            client_id: None,
            durable_name: None,
            window: None,
        };
        consume(&url, &o, &mut |l| tracing::info!("consumer: {l}")).await
    });
    let c = madsim::time::timeout(limit, consumer)
        .await
        .expect("consumer did not finish in 600 virtual seconds")
        .expect("consumer task")
        .expect("consumer failed");
    let seen: BTreeSet<u64> = c.seen.iter().map(|(_, s)| *s).collect();
    let lost: Vec<u64> = p
        .receipted_seqs
        .iter()
        .copied()
        .filter(|s| !seen.contains(s))
        .collect();
    println!(
        "kills {kills}; sent {} receipted {} resent {} reconnects {}; received {} distinct {} duplicates {}",
        p.sent, p.receipted, p.resent, p.reconnects, c.received, c.distinct, c.duplicates
    );
    assert_eq!(p.receipted, MESSAGES);
    assert!(
        seen.iter().all(|s| *s < MESSAGES),
        "delivered a message never sent"
    );
    lost
}
