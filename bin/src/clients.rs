//! `halyard produce` and `halyard consume`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use halyard_io::client::{self, BrokerUrl, ConsumeOptions, ProduceOptions};

const DEFAULT_URL: &str = "tcp://127.0.0.1:61616";

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Broker URL: tcp://HOST:PORT or failover:(tcp://A,tcp://B)?maxReconnectAttempts=-1&...
    #[arg(long, default_value = DEFAULT_URL, env = "HALYARD_URL")]
    url: BrokerUrl,
    /// Destination, e.g. /queue/orders or /topic/news
    #[arg(long, default_value = "/queue/test")]
    destination: String,
    /// Messages to send
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Body size in bytes
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Sends in flight without a receipt (pipelining window)
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Messages per second (default: as fast as receipts come back)
    #[arg(long)]
    rate: Option<f64>,
    /// Send non-persistent messages
    #[arg(long)]
    non_persistent: bool,
    /// Producer name, used in duplicate ids (default: produce-PID)
    #[arg(long)]
    producer_id: Option<String>,
    /// Do not put _AMQ_DUPL_ID on sends (resends may then be stored twice)
    #[arg(long)]
    no_duplicate_ids: bool,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Broker URL: tcp://HOST:PORT or failover:(tcp://A,tcp://B)?maxReconnectAttempts=-1&...
    #[arg(long, default_value = DEFAULT_URL, env = "HALYARD_URL")]
    url: BrokerUrl,
    /// Destination, e.g. /queue/orders or /topic/news
    #[arg(long, default_value = "/queue/test")]
    destination: String,
    /// Ack mode
    #[arg(long, default_value = "client-individual", value_parser = ["auto", "client", "client-individual"])]
    ack: String,
    /// Stop after this many distinct messages
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds without a message
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// client-id header on CONNECT (needed for durable subscriptions)
    #[arg(long)]
    client_id: Option<String>,
    /// Durable subscription name (topics)
    #[arg(long)]
    durable_name: Option<String>,
    /// consumer-window-size in bytes (-1: unbounded)
    #[arg(long, allow_negative_numbers = true)]
    window: Option<i64>,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn say(line: String) {
    eprintln!("{line}");
}

pub fn produce(a: ProduceArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if a.size == 0 {
        return Err("--size must be at least 1".into());
    }
    let o = ProduceOptions {
        destination: a.destination,
        count: a.count,
        size_bytes: a.size,
        window: a.window.max(1),
        rate_per_sec: a.rate.filter(|r| *r > 0.0),
        persistent: !a.non_persistent,
        producer_id: a
            .producer_id
            .unwrap_or_else(|| format!("produce-{}", std::process::id())),
        duplicate_ids: !a.no_duplicate_ids,
    };
    let start = Instant::now();
    let stats = runtime()?.block_on(client::produce(&a.url, &o, &mut say))?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "sent={} receipted={} resent={} reconnects={} seconds={:.3} msg_per_sec={:.0} mb_per_sec={:.2}",
        stats.sent,
        stats.receipted,
        stats.resent,
        stats.reconnects,
        secs,
        stats.receipted as f64 / secs,
        stats.receipted as f64 * o.size_bytes as f64 / secs / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

pub fn consume(a: ConsumeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let o = ConsumeOptions {
        destination: a.destination,
        ack: a.ack,
        count: a.count,
        idle_timeout: Duration::from_secs_f64(a.idle_secs.max(0.01)),
        client_id: a.client_id,
        durable_name: a.durable_name,
        window: a.window,
    };
    let start = Instant::now();
    let stats = runtime()?.block_on(client::consume(&a.url, &o, &mut say))?;
    println!(
        "received={} distinct={} duplicates={} reconnects={} seconds={:.3}",
        stats.received,
        stats.distinct,
        stats.duplicates,
        stats.reconnects,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
