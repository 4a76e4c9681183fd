//! `halyard bench`: load-test a STOMP or AMQP 1.0 broker.
//!
//! Consumers subscribe, producers send for a warm-up and then a measured
//! window, and the run reports throughput and HDR latency percentiles
//! (send to RECEIPT or AMQP `accepted`, and end to end), as a table, JSON
//! and plots. See docs/bench.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args};

use crate::bench::harness::{AckMode, BenchConfig, BenchError, Outcome, Protocol};
use crate::bench::node_metrics;
use crate::bench::payload::MIN_SIZE;
use crate::bench::plot;
use crate::bench::schedule::Rate;
use crate::bench::stats::{self, ConfigReport, Latencies, Measured, Report};
use crate::bench::{amqp_run, stomp_run};

#[derive(Args, Debug)]
#[command(after_help = "\
Consumers subscribe first; producers then send for --warmup seconds (not \
recorded) and --duration seconds (recorded), stop, and consumers drain for up \
to 5 s. Reports msg/s sent and received, and latency percentiles from send to \
RECEIPT (AMQP: to the broker's `accepted` disposition) and from send to \
delivery (end to end). --protocol amqp speaks AMQP 1.0 (SASL ANONYMOUS, or \
PLAIN with --user/--password); /queue/NAME becomes the address NAME with the \
`queue` capability, /topic/NAME the address NAME with `topic`. With --rate N sends follow a \
fixed schedule and latency counts from the scheduled time, which corrects for \
coordinated omission; the producers wake on a sub-millisecond timer, and a `send lag` row \
reports how late they took each scheduled send up. Exits 1 if nothing was received or the broker sent an \
ERROR. With --node-metrics the bench also reports the node's append stalls \
(journal compaction pauses) during the measured window. See docs/bench.md.\n\n\
Example: halyard bench --url tcp://127.0.0.1:61616 --rate 5000 --json out.json --plot plots/")]
pub struct BenchArgs {
    /// Wire protocol: stomp (STOMP 1.2) or amqp (AMQP 1.0) [default: amqp for an amqp:// URL, else stomp]
    #[arg(long, value_parser = ["stomp", "amqp"])]
    protocol: Option<String>,
    /// Broker: tcp://HOST:PORT (also stomp:// or amqp://, which name the protocol; one broker, no failover)
    #[arg(long, default_value = "tcp://127.0.0.1:61616", env = "HALYARD_URL")]
    url: String,
    /// Destination: /queue/NAME (each message to one consumer) or /topic/NAME (to every consumer)
    #[arg(long, default_value = "/queue/bench")]
    destination: String,
    /// Producer connections (they share --rate)
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections, subscribed before producers start (0: send only)
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Message body size in bytes (at least 64: the body starts with a timestamp)
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    size: usize,
    /// Send persistent messages (STOMP persistent:true, AMQP header durable); false sends non-persistent ones
    #[arg(long, value_name = "true|false", default_value_t = true, action = ArgAction::Set)]
    persistent: bool,
    /// Ask a RECEIPT for every send (AMQP: send unsettled, wait for `accepted`) and measure send-to-receipt latency; false sends without (AMQP: pre-settled)
    #[arg(long, value_name = "true|false", default_value_t = true, action = ArgAction::Set)]
    receipts: bool,
    /// Sends in flight without a receipt, per producer (AMQP: also each consumer's link credit)
    #[arg(long, value_name = "N", default_value_t = 1000)]
    window: usize,
    /// Seconds measured, after the warm-up
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (not recorded)
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    warmup: f64,
    /// Total target rate over all producers: MSG_PER_SEC (open loop, fixed send schedule, latency from the scheduled time) or max (closed loop, limited by --window)
    #[arg(long, value_name = "MSG_PER_SEC|max", default_value = "max")]
    rate: Rate,
    /// Consumer ack mode (AMQP: client-individual accepts every delivery; auto asks for pre-settled deliveries)
    #[arg(long, default_value = "client-individual", value_parser = ["auto", "client-individual"])]
    ack: String,
    /// STOMP login header on CONNECT, AMQP SASL PLAIN user (Artemis: e.g. artemis)
    #[arg(long, visible_alias = "user")]
    login: Option<String>,
    /// STOMP passcode header on CONNECT, AMQP SASL PLAIN password (Artemis: e.g. artemis)
    #[arg(long, visible_alias = "password")]
    passcode: Option<String>,
    /// Write the results as JSON to FILE (summary, full percentile series, per-second counts)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write latency.svg/.png (percentile curves) and throughput.svg/.png (msg/s over time) into DIR
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Name of this run in the table, JSON and plots (default: HOST:PORT)
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// A Halyard node's metrics endpoint (its --http), e.g. http://127.0.0.1:61703/metrics: scraped when the measured window starts and when it ends; the run then also reports the node's append stalls (halyard_journal_compaction_stall_seconds: journal compaction pauses) in that window, per bucket, with their count, sum, largest bucket and share above 20 ms (JSON: node_append_stalls). A failed scrape or a node without that histogram is a warning, never a failed run
    #[arg(long, value_name = "URL")]
    node_metrics: Option<String>,
    /// CI smoke run: 0.5 s warm-up, 2 s measured, 1 producer, 1 consumer, window 100; also fails if a message is missing
    #[arg(long, conflicts_with_all = ["duration", "warmup", "producers", "consumers", "window"])]
    smoke: bool,
}

/// `tcp://HOST:PORT` (also `stomp://`, `amqp://` or a bare `HOST:PORT`) to
/// `HOST:PORT`.
pub fn parse_url(url: &str) -> Result<String, String> {
    let addr = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("stomp://"))
        .or_else(|| url.strip_prefix("amqp://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    let ok = match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains('/')
                && !host.contains('(')
                && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if ok {
        Ok(addr.to_string())
    } else {
        Err(format!(
            "--url {url:?}: expected tcp://HOST:PORT (bench loads one broker; no failover lists)"
        ))
    }
}

/// `--protocol` as given, or as the URL's scheme names it; an error if
/// they disagree (a bench of the wrong protocol measures something else).
fn protocol(given: Option<&str>, url: &str) -> Result<Protocol, String> {
    let by_url = if url.starts_with("amqp://") {
        Some(Protocol::Amqp)
    } else if url.starts_with("stomp://") {
        Some(Protocol::Stomp)
    } else {
        None
    };
    let given: Option<Protocol> = given.map(str::parse).transpose()?;
    match (given, by_url) {
        (Some(p), Some(u)) if p != u => Err(format!(
            "--protocol {p} does not match --url {url:?}: use --protocol {u} or a tcp:// URL"
        )),
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) => Ok(Protocol::Stomp),
    }
}

fn secs(what: &str, v: f64, min: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= min && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{what} must be between {min} and 86400 seconds"))
    }
}

fn config(a: &BenchArgs) -> Result<BenchConfig, String> {
    let addr = parse_url(&a.url)?;
    let protocol = protocol(a.protocol.as_deref(), &a.url)?;
    if protocol == Protocol::Amqp {
        let name = a
            .destination
            .strip_prefix("/queue/")
            .or_else(|| a.destination.strip_prefix("/topic/"))
            .unwrap_or(&a.destination);
        if name.is_empty() {
            return Err(format!(
                "--destination {:?} names no address",
                a.destination
            ));
        }
    }
    if a.size < MIN_SIZE {
        return Err(format!(
            "--size must be at least {MIN_SIZE} bytes (the body carries a timestamp)"
        ));
    }
    if a.producers == 0 || a.producers > 10_000 {
        return Err("--producers must be between 1 and 10000".into());
    }
    if a.consumers > 10_000 {
        return Err("--consumers must be at most 10000".into());
    }
    if a.window == 0 || a.window > 1_000_000 {
        return Err("--window must be between 1 and 1000000".into());
    }
    if let Some(url) = &a.node_metrics {
        node_metrics::check_url(url)?;
    }
    let (producers, consumers, window, warmup, duration) = if a.smoke {
        (1, 1, 100, 0.5, 2.0)
    } else {
        (a.producers, a.consumers, a.window, a.warmup, a.duration)
    };
    Ok(BenchConfig {
        protocol,
        addr,
        destination: a.destination.clone(),
        producers,
        consumers,
        size_bytes: a.size,
        persistent: a.persistent,
        receipts: a.receipts,
        window,
        warmup: secs("--warmup", warmup, 0.0)?,
        duration: secs("--duration", duration, 0.1)?,
        rate: a.rate,
        ack: if a.ack == "auto" {
            AckMode::Auto
        } else {
            AckMode::ClientIndividual
        },
        login: a.login.clone(),
        passcode: a.passcode.clone(),
        drain: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        progress: true,
        node_metrics: a.node_metrics.clone(),
    })
}

/// Builds the report of a finished run.
pub fn report(label: &str, url: &str, cfg: &BenchConfig, o: &Outcome) -> Report {
    let warmup_secs = cfg.warmup.as_secs_f64();
    let duration_secs = cfg.duration.as_secs_f64();
    Report {
        label: label.to_string(),
        config: ConfigReport {
            protocol: cfg.protocol.to_string(),
            url: url.to_string(),
            destination: cfg.destination.clone(),
            producers: cfg.producers,
            consumers: cfg.consumers,
            size_bytes: cfg.size_bytes,
            persistent: cfg.persistent,
            receipts: cfg.receipts,
            window: cfg.window,
            duration_secs,
            warmup_secs,
            rate: cfg.rate.to_string(),
            ack: cfg.ack.as_str().to_string(),
        },
        totals: o.totals.clone(),
        measured: Measured::new(
            duration_secs,
            o.sent_measured,
            o.received_measured,
            cfg.size_bytes,
        ),
        latency_ms: Latencies {
            send_to_receipt: stats::summarize(&o.send_to_receipt),
            end_to_end: stats::summarize(&o.end_to_end),
            send_lag: stats::summarize(&o.send_lag),
        },
        per_second: stats::per_second(
            &o.sent_per_sec,
            &o.received_per_sec,
            warmup_secs,
            duration_secs,
        ),
        errors: o.errors.clone(),
        node_append_stalls: o.node_stalls.clone(),
    }
}

pub fn run(a: BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = config(&a)?;
    let label = a.label.clone().unwrap_or_else(|| cfg.addr.clone());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    eprintln!(
        "bench {label} ({}): {} producer(s), {} consumer(s), {} B {}, receipts {}, window {}, rate {}, warm-up {:.1}s, measure {:.1}s",
        cfg.protocol,
        cfg.producers,
        cfg.consumers,
        cfg.size_bytes,
        if cfg.persistent { "persistent" } else { "non-persistent" },
        cfg.receipts,
        cfg.window,
        cfg.rate,
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
    );
    let started = Instant::now();
    let outcome = rt.block_on(async {
        match cfg.protocol {
            Protocol::Stomp => stomp_run::run(cfg.clone()).await,
            Protocol::Amqp => amqp_run::run(cfg.clone()).await,
        }
    });
    drop(rt);
    let outcome = match outcome {
        Ok(o) => o,
        // The broker said no to a link: a broker error like an ERROR frame.
        Err(BenchError::Refused(why)) => {
            eprintln!("halyard bench: {why}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let r = report(&label, &a.url, &cfg, &outcome);
    print!("{}", stats::table(std::slice::from_ref(&r)));
    let t = &r.totals;
    println!(
        "sent={} receipted={} unreceipted={} received={} expected={} missing={} duplicates={} foreign={} behind_schedule={} seconds={:.1}",
        t.sent,
        t.receipted,
        t.unreceipted,
        t.received,
        t.expected,
        t.missing,
        t.duplicates,
        t.foreign,
        t.behind_schedule,
        started.elapsed().as_secs_f64()
    );
    if t.missing > 0 {
        println!(
            "note: {} deliveries did not arrive within {} s after the producers stopped (still queued, or lost)",
            t.missing,
            cfg.drain.as_secs()
        );
    }
    if t.tracking_overflowed {
        println!("note: too many gaps to track duplicates; missing/duplicates are estimates");
    }
    if let Some(stalls) = &r.node_append_stalls {
        print!("{}", stalls.text());
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&r)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &a.plot {
        for f in plot::write_plots(dir, &r)? {
            eprintln!("wrote {}", f.display());
        }
    }
    let mut failures = Vec::new();
    for e in &r.errors {
        failures.push(e.clone());
    }
    if t.sent == 0 {
        failures.push("nothing was sent".to_string());
    }
    if cfg.consumers > 0 && t.received == 0 {
        failures.push("nothing was received".to_string());
    }
    if a.smoke && t.missing > 0 {
        failures.push(format!("{} sent messages were not received", t.missing));
    }
    if a.smoke && cfg.receipts && t.unreceipted > 0 {
        failures.push(format!("{} sends got no receipt", t.unreceipted));
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("halyard bench: {f}");
        }
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut v = vec!["bench"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.a)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("tcp://127.0.0.1:61616").as_deref(),
            Ok("127.0.0.1:61616")
        );
        assert_eq!(parse_url("stomp://h:1/").as_deref(), Ok("h:1"));
        assert_eq!(
            parse_url("localhost:61613").as_deref(),
            Ok("localhost:61613")
        );
        assert!(parse_url("tcp://host").is_err());
        assert!(parse_url("tcp://host:99999").is_err());
        assert!(parse_url("failover:(tcp://a:1,tcp://b:2)").is_err());
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).expect("parses");
        let c = config(&a).expect("valid");
        assert_eq!(c.destination, "/queue/bench");
        assert_eq!(c.protocol, Protocol::Stomp);
        assert_eq!(
            (c.producers, c.consumers, c.size_bytes, c.window),
            (1, 1, 1024, 1000)
        );
        assert!(c.persistent && c.receipts);
        assert_eq!(c.rate, Rate::Max);
        assert_eq!(c.ack, AckMode::ClientIndividual);
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.warmup, Duration::from_secs(2));
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--persistent",
            "false",
            "--receipts",
            "false",
            "--rate",
            "5000",
            "--ack",
            "auto",
            "--producers",
            "3",
            "--consumers",
            "0",
            "--size",
            "64",
        ])
        .expect("parses");
        let c = config(&a).expect("valid");
        assert!(!c.persistent && !c.receipts);
        assert_eq!(c.rate, Rate::PerSec(5000.0));
        assert_eq!(c.ack, AckMode::Auto);
        assert_eq!((c.producers, c.consumers), (3, 0));
        assert!(config(&parse(&["--size", "10"]).expect("parses")).is_err());
        assert!(parse(&["--rate", "fast"]).is_err());
        assert!(parse(&["--persistent", "maybe"]).is_err());
        assert!(parse(&["--ack", "client"]).is_err());
        assert!(parse(&["--protocol", "mqtt"]).is_err());
    }

    #[test]
    fn amqp_flags() {
        let a = parse(&[
            "--protocol",
            "amqp",
            "--url",
            "amqp://127.0.0.1:61627",
            "--user",
            "artemis",
            "--password",
            "secret",
        ])
        .expect("parses");
        let c = config(&a).expect("valid");
        assert_eq!(c.protocol, Protocol::Amqp);
        assert_eq!(c.addr, "127.0.0.1:61627");
        assert_eq!(c.login.as_deref(), Some("artemis"));
        assert_eq!(c.passcode.as_deref(), Some("secret"));
        let a = parse(&["--protocol", "amqp", "--destination", "/queue/"]).expect("parses");
        assert!(config(&a).is_err());
    }

    #[test]
    fn the_url_scheme_names_the_protocol_unless_told() {
        let protocol_of = |args: &[&str]| config(&parse(args).expect("parses")).map(|c| c.protocol);
        assert_eq!(
            protocol_of(&["--url", "amqp://127.0.0.1:5672"]),
            Ok(Protocol::Amqp)
        );
        assert_eq!(
            protocol_of(&["--url", "stomp://127.0.0.1:1"]),
            Ok(Protocol::Stomp)
        );
        assert_eq!(
            protocol_of(&["--url", "tcp://127.0.0.1:1"]),
            Ok(Protocol::Stomp)
        );
        assert_eq!(
            protocol_of(&["--url", "tcp://127.0.0.1:1", "--protocol", "amqp"]),
            Ok(Protocol::Amqp)
        );
        let err = protocol_of(&["--url", "amqp://127.0.0.1:1", "--protocol", "stomp"])
            .expect_err("they disagree");
        assert!(
            err.contains("--protocol stomp") && err.contains("amqp://"),
            "{err}"
        );
        assert!(protocol_of(&["--url", "stomp://127.0.0.1:1", "--protocol", "amqp"]).is_err());
    }

    #[test]
    fn node_metrics_flag() {
        let c = config(&parse(&[]).expect("parses")).expect("valid");
        assert_eq!(c.node_metrics, None);
        let a = parse(&["--node-metrics", "http://127.0.0.1:61703/metrics"]).expect("parses");
        let c = config(&a).expect("valid");
        assert_eq!(
            c.node_metrics.as_deref(),
            Some("http://127.0.0.1:61703/metrics")
        );
        let a = parse(&["--node-metrics", "127.0.0.1:61703"]).expect("parses");
        let e = config(&a).expect_err("not a URL");
        assert!(e.contains("--node-metrics"), "{e}");
    }

    #[test]
    fn smoke_is_short_and_exclusive() {
        let c = config(&parse(&["--smoke"]).expect("parses")).expect("valid");
        assert_eq!(c.duration, Duration::from_secs(2));
        assert_eq!(c.warmup, Duration::from_millis(500));
        assert_eq!((c.producers, c.consumers, c.window), (1, 1, 100));
        assert!(parse(&["--smoke", "--duration", "5"]).is_err());
    }
}
