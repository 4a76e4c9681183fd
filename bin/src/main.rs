//! `halyard`: the broker node and its companion tools.

mod bench;
mod bench_cmd;
mod bridge_config;
mod ceiling_cmd;
mod clients;
mod config;
mod http;
mod kafka_config;
mod limits_config;
mod manage_cmd;
mod mirror_cmd;
mod mirror_config;
mod node_cmd;
mod peer_config;
mod proxy_cmd;
mod security_config;
mod sim_cmd;
mod user_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The broker and the simulator allocate many small, short-lived objects
// (frames, headers, journal entries); mimalloc handles that far better than
// glibc's allocator (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "halyard",
    version,
    about = "Halyard: a highly available STOMP and AMQP 1.0 (JMS) message broker with a Kafka or local journal",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker node (default: 127.0.0.1:61616, local journal in ./data)
    Node {
        /// TOML file with node settings (keys as the flags, with underscores)
        #[arg(long, env = "HALYARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<config::NodeSettings>,
    },
    /// Send messages with receipts (follows failover and resends unreceipted ones)
    Produce(clients::ProduceArgs),
    /// Receive messages and acknowledge them (follows failover)
    Consume(clients::ConsumeArgs),
    /// Run seeded deterministic simulations of a cluster under faults and check nothing is lost
    Sim(sim_cmd::SimArgs),
    /// TCP fault proxy for tests: forward a port, cut and heal it on demand
    Proxy(proxy_cmd::ProxyArgs),
    /// Load-test a STOMP or AMQP 1.0 broker: throughput and HDR latency percentiles, JSON and plots
    Bench(bench_cmd::BenchArgs),
    /// Show the cluster's nodes (state, epoch, readiness) through a node's --http endpoint
    NodeStatus(manage_cmd::NodeStatusArgs),
    /// Inspect and manage queues through a node's --http endpoint: stat, purge, move, retry, browse, delete
    #[command(subcommand)]
    Queue(manage_cmd::QueueCmd),
    /// Mirrored brokers: `halyard mirror compare DIR DIR` checks that two brokers' queues hold the same messages
    #[command(subcommand)]
    Mirror(mirror_cmd::MirrorCmd),
    /// Users of the security file: `halyard user hash` prints a password hash
    #[command(subcommand)]
    User(user_cmd::UserCmd),
    /// Measure the Kafka journal's write ceiling: a plain transactional producer writing journal-shaped records
    KafkaCeiling(ceiling_cmd::CeilingArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node { config, settings } => node_cmd::run(config, *settings),
        Command::Produce(a) => clients::produce(a),
        Command::Consume(a) => clients::consume(a),
        Command::Sim(a) => sim_cmd::run(a),
        Command::Proxy(a) => proxy_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::KafkaCeiling(a) => ceiling_cmd::run(a),
        Command::NodeStatus(a) => manage_cmd::node_status(a),
        Command::Queue(c) => manage_cmd::queue(c),
        Command::User(c) => user_cmd::run(c),
        Command::Mirror(c) => mirror_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("halyard: {e}");
            ExitCode::from(2)
        }
    }
}
