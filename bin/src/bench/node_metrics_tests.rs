//! `--node-metrics`: the stall histogram's parser, the window's delta and
//! the report, on sample scrapes (the node's own format, the Prometheus
//! format, missing metrics, garbage), and a scrape of a fake HTTP server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::node_metrics::{
    check_url, delta, parse, scrape_window, Cumulative, Scrape, StallReport, STALL_HISTOGRAM,
};

/// The bounds the node exports, in seconds.
const BOUNDS: [&str; 11] = [
    "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "+Inf",
];

/// A scrape in the node's format (OpenMetrics from prometheus-client:
/// `_sum` and `_count` first, `# UNIT`, `# EOF`), around other metrics,
/// with the stall histogram holding `cumulative` counts.
fn scrape_text(cumulative: [u64; 11], sum: &str, max: Option<&str>) -> String {
    let mut t = String::from(
        "# HELP halyard_node_info The node's name and version (always 1).\n\
         # TYPE halyard_node_info gauge\n\
         halyard_node_info{node=\"halyard-62101\",version=\"0.1.0\"} 1.0\n\
         # HELP halyard_journal_durable_latency_seconds From a journal append issued to the journal saying it is durable.\n\
         # TYPE halyard_journal_durable_latency_seconds histogram\n\
         # UNIT halyard_journal_durable_latency_seconds seconds\n\
         halyard_journal_durable_latency_seconds_sum 0.5\n\
         halyard_journal_durable_latency_seconds_count 9\n\
         halyard_journal_durable_latency_seconds_bucket{le=\"0.001\"} 4\n\
         halyard_journal_durable_latency_seconds_bucket{le=\"+Inf\"} 9\n",
    );
    t += &format!(
        "# HELP {STALL_HISTOGRAM} Pauses of the local journal's append loop for compaction work.\n\
         # TYPE {STALL_HISTOGRAM} histogram\n\
         # UNIT {STALL_HISTOGRAM} seconds\n\
         {STALL_HISTOGRAM}_sum {sum}\n\
         {STALL_HISTOGRAM}_count {}\n",
        cumulative[10]
    );
    for (le, n) in BOUNDS.iter().zip(cumulative) {
        t += &format!("{STALL_HISTOGRAM}_bucket{{le=\"{le}\"}} {n}\n");
    }
    if let Some(m) = max {
        t += &format!(
            "# HELP halyard_journal_compaction_stall_max_seconds Longest pause since start.\n\
             # TYPE halyard_journal_compaction_stall_max_seconds gauge\n\
             halyard_journal_compaction_stall_max_seconds {m}\n"
        );
    }
    t + "# EOF\n"
}

fn stalls(text: &str) -> Cumulative {
    parse(text)
        .expect("parses")
        .stalls
        .expect("has the histogram")
}

#[test]
fn parses_the_nodes_format() {
    let s = parse(&scrape_text(
        [3, 5, 5, 6, 6, 7, 7, 7, 7, 7, 7],
        "0.0123",
        Some("0.04"),
    ))
    .expect("parses");
    let h = s.stalls.expect("has the histogram");
    assert_eq!(h.count, 7);
    assert_eq!(h.sum_secs, 0.0123);
    assert_eq!(h.buckets.len(), 11);
    assert_eq!(h.buckets[0], (0.001, 3));
    assert_eq!(h.buckets[9], (1.0, 7));
    assert_eq!(h.buckets[10], (f64::INFINITY, 7));
    assert_eq!(s.max_secs, Some(0.04));
}

#[test]
fn parses_the_prometheus_format_too() {
    // Buckets first, in any order, float counts, timestamps, CRLF, extra
    // labels and spaces, and exemplars after the value.
    let text = format!(
        "# TYPE {h} histogram\r\n\
         {h}_bucket{{le=\"+Inf\", journal=\"local\"}} 2 1700000000000\r\n\
         {h}_bucket{{journal=\"local\",le=\"0.01\",}} 1.0 # {{trace_id=\"a\"}} 0.004\r\n\
         {h}_sum 0.034\r\n\
         {h}_count 2\r\n\
         {h}_created 1700000000.0\r\n\
         {h}_bucket_total 99\r\n",
        h = STALL_HISTOGRAM
    );
    let h = stalls(&text);
    assert_eq!(h.buckets, vec![(0.01, 1), (f64::INFINITY, 2)]);
    assert_eq!(h.count, 2);
}

#[test]
fn a_node_without_the_histogram_is_missing_not_an_error() {
    let text = scrape_text([0; 11], "0.0", None).replace(STALL_HISTOGRAM, "halyard_other_seconds");
    assert_eq!(
        parse(&text),
        Ok(Scrape {
            stalls: None,
            max_secs: None
        })
    );
    let r = StallReport::build("http://n/metrics", parse(&text), parse(&text), 5.0);
    assert_eq!(r.status, "missing");
    assert!(r.count.is_none() && r.buckets.is_none());
    let t = r.text();
    assert!(
        t.contains("the node exported no compaction-stall histogram"),
        "{t}"
    );
    assert!(t.contains("http://n/metrics"), "{t}");
    let v = serde_json::to_value(&r).expect("serializes");
    assert_eq!(v["status"], "missing");
    assert!(v["buckets"].is_null() && v["count"].is_null());
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    for text in [
        "",
        "\n\n",
        "<html><body>404 Not Found</body></html>",
        "{\"node\": \"halyard\"}",
        "\u{0}\u{1}\u{fffd}",
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains("not in the Prometheus text format"), "{e}");
    }
    let good = scrape_text([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "0.001", None);
    let h = STALL_HISTOGRAM;
    let broken = [
        // not a count, not a number, a bad bound, a bucket without le
        good.replace("le=\"0.002\"} 1", "le=\"0.002\"} 1.5"),
        good.replace(&format!("{h}_sum 0.001"), &format!("{h}_sum lots")),
        good.replace("le=\"0.005\"", "le=\"soon\""),
        good.replace("{le=\"0.01\"}", ""),
        // unterminated labels, a bad escape
        good.replace("{le=\"0.02\"}", "{le=\"0.02\""),
        good.replace("{le=\"0.02\"}", "{le=\"0.02\\q\"}"),
        // a bucket or the gauge without a value
        good.replace("le=\"0.2\"} 1", "le=\"0.2\"}"),
        format!("{good}halyard_journal_compaction_stall_max_seconds\n"),
        // no +Inf, not cumulative, _count disagreeing, no _sum, twice
        good.replace(&format!("{h}_bucket{{le=\"+Inf\"}} 1\n"), ""),
        good.replace("le=\"0.5\"} 1", "le=\"0.5\"} 0"),
        good.replace(&format!("{h}_count 1"), &format!("{h}_count 2")),
        good.replace(&format!("{h}_sum 0.001\n"), ""),
        good.replace(
            &format!("{h}_sum 0.001\n"),
            &format!("{h}_sum 1\n{h}_sum 1\n"),
        ),
        good.replace("le=\"0.1\"", "le=\"0.05\""),
        good.replace(&format!("{h}_sum 0.001"), &format!("{h}_sum -1")),
    ];
    for text in &broken {
        assert_ne!(text, &good);
        assert!(parse(text).is_err(), "{text}");
    }
    // Garbage in other metrics' lines is not ours to judge.
    let noisy = format!("!!! garbage\nother{{a=\"unterminated 3\n{good}");
    assert_eq!(stalls(&noisy), stalls(&good));
}

#[test]
fn the_delta_turns_cumulative_counts_into_the_windows_buckets() {
    let before = stalls(&scrape_text(
        [3, 5, 5, 6, 6, 7, 7, 7, 7, 7, 7],
        "0.0123",
        None,
    ));
    let after = stalls(&scrape_text(
        [10, 14, 15, 16, 16, 19, 20, 20, 20, 20, 20],
        "0.3123",
        Some("0.09"),
    ));
    let d = delta(&before, &after).expect("same buckets");
    let per: Vec<u64> = d.buckets.iter().map(|b| b.1).collect();
    // cumulative growth 7 9 10 10 10 12 13 13 13 13 13
    assert_eq!(per, [7, 2, 1, 0, 0, 2, 1, 0, 0, 0, 0]);
    assert_eq!(d.count, 13);
    assert!((d.sum_secs - 0.3).abs() < 1e-12);
    assert_eq!(d.max_bound(), Some(0.1));
    assert_eq!(d.over(0.020), 3);
    // Nothing during the window.
    let none = delta(&after, &after).expect("same");
    assert_eq!(none.count, 0);
    assert_eq!(none.max_bound(), None);
    assert_eq!(none.over(0.020), 0);
}

#[test]
fn a_restarted_node_or_new_buckets_are_errors() {
    let before = stalls(&scrape_text([5; 11], "1", None));
    let after = stalls(&scrape_text([1; 11], "0.1", None));
    let e = delta(&before, &after).expect_err("went down");
    assert!(e.contains("restart"), "{e}");
    let mut other = before.clone();
    other.buckets.remove(3);
    assert!(delta(&before, &other).is_err());
}

#[test]
fn the_report_and_its_json() {
    let before = parse(&scrape_text([0; 11], "0", None));
    let after = parse(&scrape_text(
        [3, 5, 5, 6, 6, 6, 6, 7, 7, 7, 8],
        "2.0123",
        Some("1.7"),
    ));
    let r = StallReport::build("http://127.0.0.1:62102/metrics", before, after, 5.02);
    assert_eq!(r.status, "ok");
    assert_eq!(r.count, Some(8));
    assert_eq!(r.over_20ms, Some(2));
    assert_eq!(r.over_20ms_share, Some(0.25));
    assert_eq!(r.node_max_ms, Some(1700.0));
    let v = serde_json::to_value(&r).expect("serializes");
    let b = v["buckets"].as_array().expect("buckets");
    assert_eq!(b.len(), 11);
    assert_eq!(b[0]["le_ms"], 1.0);
    assert_eq!(b[0]["count"], 3);
    assert_eq!(b[4]["le_ms"], 20.0);
    assert_eq!(b[9]["le_ms"], 1000.0);
    assert_eq!(b[10]["le_ms"], "+Inf");
    assert_eq!(b[10]["count"], 1);
    assert_eq!(v["max_le_ms"], "+Inf");
    assert_eq!(v["count"], 8);
    assert!((v["sum_ms"].as_f64().expect("number") - 2012.3).abs() < 1e-9);
    assert!(v["error"].is_null());
    let t = r.text();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 13, "{t}");
    assert!(lines[1].trim_start().starts_with("<= 1 ms: 3"), "{t}");
    assert!(lines[2].trim_start().starts_with("<= 2 ms: 2"), "{t}");
    assert!(lines[10].trim_start().starts_with("<= 1 s: 0"), "{t}");
    assert!(lines[11].trim_start().starts_with("> 1 s: 1"), "{t}");
    assert!(lines[12].contains("pauses: 8, 2012.300 ms in all"), "{t}");
    assert!(lines[12].contains("largest bucket reached: > 1 s"), "{t}");
    assert!(lines[12].contains("over 20 ms: 2 (25.0%)"), "{t}");
    assert!(lines[12].contains("since it started: 1700.000 ms"), "{t}");
}

#[test]
fn a_failed_scrape_is_a_warning() {
    let ok = parse(&scrape_text([0; 11], "0", None));
    let r = StallReport::build(
        "http://x/metrics",
        Err("GET http://x/metrics: refused".into()),
        ok,
        1.0,
    );
    assert_eq!(r.status, "error");
    assert!(r.error.as_deref().is_some_and(|e| e.contains("refused")));
    assert!(r.text().contains("warning: scrape at the window's start"));
    let v = serde_json::to_value(&r).expect("serializes");
    assert_eq!(v["status"], "error");
    assert!(v["error"].is_string() && v["count"].is_null());
}

#[test]
fn urls() {
    assert!(check_url("http://127.0.0.1:61703/metrics").is_ok());
    assert!(check_url("http://node/metrics").is_ok());
    assert!(check_url("https://node/metrics").is_err());
    assert!(check_url("127.0.0.1:61703/metrics").is_err());
    assert!(check_url("http:///metrics").is_err());
}

/// Answers `answers.len()` GETs on a fresh port, one connection each.
fn fake_node(answers: Vec<String>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/metrics", l.local_addr().expect("addr"));
    let h = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for body in answers {
            let (s, _) = l.accept().expect("accepts");
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).expect("request line");
            requests.push(line.trim_end().to_string());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).expect("header") == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut s = r.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        requests
    });
    (url, h)
}

#[tokio::test]
async fn scrapes_at_the_windows_start_and_end() {
    let (url, server) = fake_node(vec![
        scrape_text([1; 11], "0.001", None),
        scrape_text([2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3], "0.05", Some("0.04")),
    ]);
    let now = tokio::time::Instant::now();
    let (_stop, abort) = tokio::sync::watch::channel(false);
    let r = scrape_window(url.clone(), now, now + Duration::from_millis(50), abort).await;
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.count, Some(2));
    assert_eq!(r.over_20ms, Some(1));
    assert!(r.window_secs.is_some_and(|s| s >= 0.04), "{r:?}");
    let requests = server.join().expect("server");
    assert_eq!(requests, ["GET /metrics HTTP/1.1"; 2]);
}

#[tokio::test]
async fn an_unreachable_node_is_reported_with_its_url() {
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let now = tokio::time::Instant::now();
    let (_stop, abort) = tokio::sync::watch::channel(false);
    let r = scrape_window(url.clone(), now, now, abort).await;
    assert_eq!(r.status, "error");
    let e = r.error.expect("why");
    assert!(e.contains(&url), "{e}");
}

#[tokio::test]
async fn a_run_stopped_before_its_window_scrapes_nothing() {
    let now = tokio::time::Instant::now();
    let (stop, abort) = tokio::sync::watch::channel(false);
    stop.send_replace(true);
    let r = scrape_window(
        "http://127.0.0.1:9/metrics".into(),
        now + Duration::from_secs(3600),
        now + Duration::from_secs(7200),
        abort,
    )
    .await;
    assert_eq!(r.status, "error");
    assert!(r.error.is_some_and(|e| e.contains("stopped before")));
}
