//! Latency histograms, percentile extraction, the report and its table.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::node_metrics::StallReport;

/// Highest latency a histogram holds: one hour in microseconds. Larger
/// values are clamped to it (and then the max says "an hour").
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Fixed, valid bounds: construction cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records a latency given in nanoseconds (rounded up to whole µs, so a
/// nonzero latency never reads as zero).
pub fn record_ns(h: &mut Histogram<u64>, latency_ns: u64) {
    h.saturating_record(latency_ns.div_ceil(1000));
}

/// The percentiles of the full series: 0 to 99.999 % in steps of a tenth of
/// a "nine" (0, 20.6, 36.9, ... 90, ... 99, ... 99.9, ...), then 100 (max).
pub fn series_percentiles() -> Vec<f64> {
    let mut v: Vec<f64> = (0..=50)
        .map(|i| {
            let nines = f64::from(i) / 10.0;
            100.0 * (1.0 - 10f64.powf(-nines))
        })
        .collect();
    v.push(100.0);
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Messages recorded (those scheduled inside the measured window).
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub percentiles: Vec<PercentilePoint>,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Value at `percentile` (0..=100) in milliseconds.
pub fn percentile_ms(h: &Histogram<u64>, percentile: f64) -> f64 {
    if percentile >= 100.0 {
        return us_to_ms(h.max());
    }
    us_to_ms(h.value_at_quantile(percentile / 100.0))
}

/// `None` for an empty histogram.
pub fn summarize(h: &Histogram<u64>) -> Option<LatencySummary> {
    if h.is_empty() {
        return None;
    }
    Some(LatencySummary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: percentile_ms(h, 50.0),
        p90_ms: percentile_ms(h, 90.0),
        p99_ms: percentile_ms(h, 99.0),
        p999_ms: percentile_ms(h, 99.9),
        max_ms: percentile_ms(h, 100.0),
        percentiles: series_percentiles()
            .into_iter()
            .map(|p| PercentilePoint {
                // Four decimals are plenty (99.999 needs three).
                percentile: (p * 1e4).round() / 1e4,
                ms: percentile_ms(h, p),
            })
            .collect(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigReport {
    /// `stomp` or `amqp`.
    pub protocol: String,
    pub url: String,
    pub destination: String,
    pub producers: usize,
    pub consumers: usize,
    pub size_bytes: usize,
    pub persistent: bool,
    pub receipts: bool,
    pub window: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    /// `"max"` or the target total rate in messages per second.
    pub rate: String,
    pub ack: String,
}

/// Whole-run counts, warm-up and drain included.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Messages written to the broker.
    pub sent: u64,
    /// Sends the broker confirmed with a RECEIPT.
    pub receipted: u64,
    /// Sends still without a receipt at the end (receipts on).
    pub unreceipted: u64,
    /// Messages of this run delivered to consumers (duplicates included).
    pub received: u64,
    /// Deliveries expected: sent, times the consumers for a topic.
    pub expected: u64,
    /// Expected deliveries that never came (should be 0 for a queue).
    pub missing: u64,
    /// Deliveries of a message a consumer group had already seen.
    pub duplicates: u64,
    /// Messages left on the destination by someone else (acked, ignored).
    pub foreign: u64,
    /// Open loop: messages scheduled before the deadline but never sent
    /// because the window was full (the broker could not keep up).
    pub behind_schedule: u64,
    /// True when duplicate tracking gave up (too many gaps) and counts only.
    pub tracking_overflowed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measured {
    pub seconds: f64,
    /// Sends written inside the measured window.
    pub sent: u64,
    /// Deliveries received inside the measured window.
    pub received: u64,
    pub msg_per_sec_sent: f64,
    pub msg_per_sec_received: f64,
    /// Body bytes only (headers and framing excluded), 1 MB = 10^6 bytes.
    pub mb_per_sec_sent: f64,
    pub mb_per_sec_received: f64,
}

impl Measured {
    pub fn new(seconds: f64, sent: u64, received: u64, size_bytes: usize) -> Measured {
        let secs = seconds.max(1e-9);
        let per = |n: u64| n as f64 / secs;
        Measured {
            seconds,
            sent,
            received,
            msg_per_sec_sent: per(sent),
            msg_per_sec_received: per(received),
            mb_per_sec_sent: per(sent) * size_bytes as f64 / 1e6,
            mb_per_sec_received: per(received) * size_bytes as f64 / 1e6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latencies {
    /// From the (scheduled) send to the RECEIPT (AMQP: the `accepted`
    /// disposition); null without receipts.
    pub send_to_receipt: Option<LatencySummary>,
    /// From the (scheduled) send to the consumer reading the MESSAGE.
    pub end_to_end: Option<LatencySummary>,
    /// Open loop only (null in closed loop): from a send's scheduled time
    /// to the producer taking it up. Both latencies above include it; a
    /// large lag with an empty window means the bench itself ran late.
    pub send_lag: Option<LatencySummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measure,
    Drain,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the producers started.
    pub second: usize,
    pub phase: Phase,
    pub sent: u64,
    pub received: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub label: String,
    pub config: ConfigReport,
    pub totals: Totals,
    pub measured: Measured,
    pub latency_ms: Latencies,
    pub per_second: Vec<Second>,
    /// ERROR frames and lost connections, first few only.
    pub errors: Vec<String>,
    /// `--node-metrics`: the node's append stalls (journal compaction
    /// pauses) in the measured window; null without the flag.
    pub node_append_stalls: Option<StallReport>,
}

/// Per-second series from counters; trailing idle seconds of the drain are
/// cut. `warmup_secs` and `duration_secs` place the phase boundaries.
pub fn per_second(
    sent: &[u64],
    received: &[u64],
    warmup_secs: f64,
    duration_secs: f64,
) -> Vec<Second> {
    let n = sent.len().max(received.len());
    let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let measure_end = warmup_secs + duration_secs;
    let mut last = 0;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = get(sent, i);
        let r = get(received, i);
        let t = i as f64;
        let phase = if t + 1.0 <= warmup_secs {
            Phase::Warmup
        } else if t < measure_end {
            Phase::Measure
        } else {
            Phase::Drain
        };
        if phase != Phase::Drain || s + r > 0 {
            last = i + 1;
        }
        out.push(Second {
            second: i,
            phase,
            sent: s,
            received: r,
        });
    }
    out.truncate(last);
    out
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.1}"),
        Some(x) if x >= 10.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

/// The human table: one block of two lines (send->receipt, end-to-end) per
/// report.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let label_w = reports
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(5);
    out.push_str(&format!(
        "{:<label_w$}  {:>11}  {:>11}  {:>8}  {:<14}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}\n",
        "label",
        "msg/s sent",
        "msg/s recv",
        "MB/s",
        "latency (ms)",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max"
    ));
    for r in reports {
        let confirmed = if r.config.protocol == "amqp" {
            "send->accepted"
        } else {
            "send->receipt"
        };
        let mut rows: Vec<(&str, &Option<LatencySummary>)> = vec![
            (confirmed, &r.latency_ms.send_to_receipt),
            ("end-to-end", &r.latency_ms.end_to_end),
        ];
        if r.latency_ms.send_lag.is_some() {
            rows.push(("send lag", &r.latency_ms.send_lag));
        }
        for (i, (name, l)) in rows.iter().enumerate() {
            let (label, sent, recv, mb) = if i == 0 {
                (
                    r.label.clone(),
                    format!("{:.0}", r.measured.msg_per_sec_sent),
                    format!("{:.0}", r.measured.msg_per_sec_received),
                    format!("{:.2}", r.measured.mb_per_sec_received),
                )
            } else {
                Default::default()
            };
            let f = |g: fn(&LatencySummary) -> f64| ms(l.as_ref().map(g));
            out.push_str(&format!(
                "{label:<label_w$}  {sent:>11}  {recv:>11}  {mb:>8}  {name:<14}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}\n",
                f(|s| s.p50_ms),
                f(|s| s.p90_ms),
                f(|s| s.p99_ms),
                f(|s| s.p999_ms),
                f(|s| s.max_ms),
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn uniform_1_to_10000_us() -> Histogram<u64> {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1000);
        }
        h
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= b.abs() * rel
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let h = uniform_1_to_10000_us();
        let s = summarize(&h).expect("not empty");
        assert_eq!(s.count, 10_000);
        // 3 significant digits: within 0.1 %.
        assert!(close(s.p50_ms, 5.0, 0.002), "{}", s.p50_ms);
        assert!(close(s.p90_ms, 9.0, 0.002), "{}", s.p90_ms);
        assert!(close(s.p99_ms, 9.9, 0.002), "{}", s.p99_ms);
        assert!(close(s.p999_ms, 9.99, 0.002), "{}", s.p999_ms);
        assert!(close(s.max_ms, 10.0, 0.002), "{}", s.max_ms);
        assert!(close(s.mean_ms, 5.0005, 0.002), "{}", s.mean_ms);
        // The series is monotonic, starts at the minimum and ends at the max.
        assert_eq!(s.percentiles.first().map(|p| p.percentile), Some(0.0));
        assert_eq!(s.percentiles.last().map(|p| p.percentile), Some(100.0));
        assert!(close(s.percentiles[0].ms, 0.001, 0.002));
        assert_eq!(s.percentiles.last().map(|p| p.ms), Some(s.max_ms));
        for w in s.percentiles.windows(2) {
            assert!(w[0].percentile < w[1].percentile);
            assert!(w[0].ms <= w[1].ms);
        }
    }

    #[test]
    fn series_has_the_nines() {
        let p = series_percentiles();
        assert_eq!(p.len(), 52);
        for want in [0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0] {
            assert!(p.iter().any(|x| (x - want).abs() < 1e-9), "{want}");
        }
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert_eq!(summarize(&new_histogram()), None);
    }

    #[test]
    fn huge_and_tiny_latencies_are_clamped_not_lost() {
        let mut h = new_histogram();
        record_ns(&mut h, 1);
        record_ns(&mut h, u64::MAX / 2);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn per_second_phases_and_trailing_idle_cut() {
        let sent = [10, 10, 10, 10, 0, 0, 0, 0];
        let recv = [9, 10, 10, 10, 1, 0, 0, 0];
        let s = per_second(&sent, &recv, 1.0, 3.0);
        let phases: Vec<Phase> = s.iter().map(|x| x.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::Warmup,
                Phase::Measure,
                Phase::Measure,
                Phase::Measure,
                Phase::Drain
            ]
        );
        assert_eq!(s[4].received, 1);
        // A fractional warm-up: the second that straddles it is measured.
        let s = per_second(&sent, &recv, 0.5, 2.0);
        assert_eq!(s[0].phase, Phase::Measure);
        assert_eq!(s[2].phase, Phase::Measure);
        assert_eq!(s[3].phase, Phase::Drain);
    }

    pub(crate) fn sample_report() -> Report {
        let h = uniform_1_to_10000_us();
        Report {
            label: "halyard".into(),
            config: ConfigReport {
                protocol: "stomp".into(),
                url: "tcp://127.0.0.1:61616".into(),
                destination: "/queue/bench".into(),
                producers: 1,
                consumers: 1,
                size_bytes: 1024,
                persistent: true,
                receipts: true,
                window: 1000,
                duration_secs: 10.0,
                warmup_secs: 2.0,
                rate: "max".into(),
                ack: "client-individual".into(),
            },
            totals: Totals {
                sent: 120,
                receipted: 120,
                received: 120,
                expected: 120,
                ..Totals::default()
            },
            measured: Measured::new(10.0, 100, 100, 1024),
            latency_ms: Latencies {
                send_to_receipt: summarize(&h),
                end_to_end: None,
                send_lag: None,
            },
            per_second: per_second(&[10; 12], &[10; 12], 2.0, 10.0),
            errors: vec![],
            node_append_stalls: None,
        }
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample_report()).expect("serializes");
        for key in [
            "label",
            "config",
            "totals",
            "measured",
            "latency_ms",
            "per_second",
            "errors",
            "node_append_stalls",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["config"]["rate"], "max");
        assert_eq!(v["config"]["size_bytes"], 1024);
        assert_eq!(v["totals"]["missing"], 0);
        assert_eq!(v["measured"]["msg_per_sec_sent"], 10.0);
        assert!(
            (v["measured"]["mb_per_sec_received"].as_f64().unwrap_or(0.0) - 0.01024).abs() < 1e-12
        );
        let s2r = &v["latency_ms"]["send_to_receipt"];
        for key in [
            "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
        ] {
            assert!(s2r[key].is_number(), "{key}");
        }
        let series = s2r["percentiles"].as_array().expect("array");
        assert_eq!(series.len(), 52);
        assert!(series[0]["percentile"].is_number() && series[0]["ms"].is_number());
        assert!(v["latency_ms"]["end_to_end"].is_null());
        assert!(
            v["latency_ms"]["send_lag"].is_null(),
            "closed loop has no lag"
        );
        assert!(v["node_append_stalls"].is_null());
        let ps = v["per_second"].as_array().expect("array");
        assert_eq!(ps.len(), 12);
        assert_eq!(ps[0]["phase"], "warmup");
        assert_eq!(ps[2]["phase"], "measure");
        assert_eq!(ps[0]["sent"], 10);
    }

    #[test]
    fn table_has_both_latency_rows() {
        let t = table(&[sample_report()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("p99.9"));
        assert!(lines[1].starts_with("halyard") && lines[1].contains("send->receipt"));
        assert!(
            lines[1].contains("10.00") || lines[1].contains("5.00"),
            "{t}"
        );
        assert!(lines[2].contains("end-to-end") && lines[2].trim_end().ends_with('-'));
    }

    #[test]
    fn open_loop_table_has_a_send_lag_row() {
        let mut r = sample_report();
        let mut lag = new_histogram();
        record_ns(&mut lag, 150_000);
        r.latency_ms.send_lag = summarize(&lag);
        let t = table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[3].contains("send lag") && lines[3].contains("0.150"),
            "{t}"
        );
        let v = serde_json::to_value(sample_report()).expect("serializes");
        assert!(v["latency_ms"].get("send_lag").is_some());
    }
}
