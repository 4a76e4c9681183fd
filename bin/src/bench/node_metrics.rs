//! `--node-metrics URL`: the node's append stalls during the measured
//! window.
//!
//! A Halyard node with `--http` exports on `/metrics` the histogram
//! `halyard_journal_compaction_stall_seconds`: how long the local
//! journal's append loop paused for compaction work (an append arriving
//! during a pause waits at most that long), and the gauge
//! `halyard_journal_compaction_stall_max_seconds` (the longest pause since
//! the node started). The bench scrapes the endpoint when the measured
//! window starts and again when it ends, and reports the difference: the
//! pauses of the measured window, per bucket.
//!
//! Nothing here fails the bench: a scrape that fails, a node that exports
//! no such histogram, or an answer that makes no sense becomes a
//! [`StallReport`] saying so.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use tokio::sync::watch;

/// The histogram's family name (samples `_bucket`, `_sum`, `_count`).
pub const STALL_HISTOGRAM: &str = "halyard_journal_compaction_stall_seconds";
/// The longest pause since the node started, in seconds.
pub const STALL_MAX_GAUGE: &str = "halyard_journal_compaction_stall_max_seconds";
/// Pauses longer than this are counted apart.
pub const LONG_PAUSE_SECS: f64 = 0.020;

/// Largest answer read; a node's whole scrape is a few tens of KiB.
const BODY_MAX: u64 = 8 << 20;
/// Most buckets accepted in the histogram.
const BUCKETS_MAX: usize = 256;
/// One scrape (connect, request, answer) takes at most this long.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Counts are exact integers in an f64 up to 2^53.
const COUNT_MAX: f64 = 9_007_199_254_740_992.0;

/// `--node-metrics`: a plain `http://HOST[:PORT]/PATH` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let host = url
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!(
            "--node-metrics {url:?}: expected http://HOST:PORT/metrics (plain HTTP)"
        ));
    }
    Ok(())
}

/// A cumulative histogram as exported: bucket `i` counts every pause up
/// to `buckets[i].0` seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Cumulative {
    /// (upper bound in seconds, cumulative count), ascending; the last
    /// bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub sum_secs: f64,
    pub count: u64,
}

/// What one scrape says about stalls.
#[derive(Clone, Debug, PartialEq)]
pub struct Scrape {
    /// `None`: the node exports no such histogram.
    pub stalls: Option<Cumulative>,
    /// The longest pause since the node started, if exported.
    pub max_secs: Option<f64>,
}

/// A sample's labels: (name, value).
type Labels = Vec<(String, String)>;

/// One sample line: its name, its labels, its value (the first field
/// after the labels; a timestamp or exemplar after it is ignored).
struct Sample<'a> {
    name: &'a str,
    labels: Labels,
    value: &'a str,
}

/// Splits a sample line: `None` if it does not begin with a metric name,
/// else that name and the sample, or why the rest is not one.
fn sample(line: &str) -> Option<(&str, Result<Sample<'_>, String>)> {
    let end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return None;
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        match parse_labels(rest) {
            Ok((l, after)) => {
                labels = l;
                rest = after;
            }
            Err(e) => return Some((name, Err(e))),
        }
    }
    let sample = match rest.split_ascii_whitespace().next() {
        Some(value) => Ok(Sample {
            name,
            labels,
            value,
        }),
        None => Err("no value".to_string()),
    };
    Some((name, sample))
}

/// `{a="x",b="y\"z"}` and the text after it.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut chars = s.char_indices().skip(1).peekable();
    loop {
        while chars.next_if(|(_, c)| *c == ' ' || *c == ',').is_some() {}
        let Some((start, c)) = chars.next() else {
            return Err("unterminated label set".into());
        };
        if c == '}' {
            return Ok((labels, &s[start + 1..]));
        }
        if !(c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("bad label name starting with {c:?}"));
        }
        let mut name = String::from(c);
        while let Some((_, c)) = chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('=') || chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name}: expected =\"value\""));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("label {name}: unterminated value")),
                Some((_, '"')) => break,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("label {name}: bad escape")),
                },
                Some((_, c)) => value.push(c),
            }
        }
        if labels.len() >= 64 {
            return Err("more than 64 labels".into());
        }
        labels.push((name, value));
        match chars.peek() {
            Some((_, ',' | '}' | ' ')) => {}
            _ => return Err("expected , or } after a label".into()),
        }
    }
}

fn float(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .map_err(|_| format!("{v:?} is not a number"))
}

fn count(v: &str) -> Result<u64, String> {
    let x = float(v)?;
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= COUNT_MAX {
        Ok(x as u64)
    } else {
        Err(format!("{v:?} is not a count"))
    }
}

/// `le="..."`: a number of seconds or +Inf.
fn bound(labels: &[(String, String)]) -> Result<f64, String> {
    let (_, le) = labels
        .iter()
        .find(|(n, _)| n == "le")
        .ok_or("a bucket without an le label")?;
    let b = match le.as_str() {
        "+Inf" | "Inf" | "+inf" | "inf" => f64::INFINITY,
        _ => float(le)?,
    };
    if b.is_nan() || b < 0.0 {
        return Err(format!("bad bucket bound le={le:?}"));
    }
    Ok(b)
}

/// Reads the stall histogram and gauge out of a scrape in the Prometheus
/// (or OpenMetrics) text format. Other metrics are skipped unread. An
/// answer with no metric at all, or a stall histogram that is malformed,
/// incomplete or inconsistent, is an error.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let bucket = format!("{STALL_HISTOGRAM}_bucket");
    let sum = format!("{STALL_HISTOGRAM}_sum");
    let cnt = format!("{STALL_HISTOGRAM}_count");
    let ours = |name: &str| [&bucket, &sum, &cnt, STALL_MAX_GAUGE].contains(&name);
    let mut recognised = 0usize;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let (mut sum_secs, mut count_v, mut max_secs) = (None, None, None);
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches('\r').trim_start();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            recognised += usize::from(line.starts_with("# "));
            continue;
        }
        let s = match sample(line) {
            None => continue,
            Some((name, Err(e))) if ours(name) => {
                return Err(format!("line {}: {name}: {e}", i + 1))
            }
            Some((_, Err(_))) => continue,
            Some((_, Ok(s))) => s,
        };
        recognised += usize::from(float(s.value).is_ok());
        let at = |e: String| format!("line {}: {}: {e}", i + 1, s.name);
        let once = |seen: bool| {
            if seen {
                Err(at("appears twice".into()))
            } else {
                Ok(())
            }
        };
        if s.name == bucket {
            let b = bound(&s.labels).map_err(at)?;
            if buckets.iter().any(|(x, _)| *x == b) {
                return Err(at(format!("two buckets with le={b}")));
            }
            if buckets.len() >= BUCKETS_MAX {
                return Err(at(format!("more than {BUCKETS_MAX} buckets")));
            }
            buckets.push((b, count(s.value).map_err(at)?));
        } else if s.name == sum {
            once(sum_secs.is_some())?;
            let v = float(s.value).map_err(at)?;
            if !v.is_finite() || v < 0.0 {
                return Err(at(format!("{v} is not a sum of pauses")));
            }
            sum_secs = Some(v);
        } else if s.name == cnt {
            once(count_v.is_some())?;
            count_v = Some(count(s.value).map_err(at)?);
        } else if s.name == STALL_MAX_GAUGE {
            once(max_secs.is_some())?;
            let v = float(s.value).map_err(at)?;
            if !v.is_finite() || v < 0.0 {
                return Err(at(format!("{v} is not a pause")));
            }
            max_secs = Some(v);
        }
    }
    if recognised == 0 {
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect::<String>();
        return Err(format!(
            "the answer is not in the Prometheus text format (it begins {first:?})"
        ));
    }
    if buckets.is_empty() && sum_secs.is_none() && count_v.is_none() {
        return Ok(Scrape {
            stalls: None,
            max_secs,
        });
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let name = STALL_HISTOGRAM;
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return Err(format!("{name} has no le=\"+Inf\" bucket"));
    }
    if let Some(w) = buckets.windows(2).find(|w| w[1].1 < w[0].1) {
        return Err(format!(
            "{name}: bucket le={} counts {} but le={} only {} (buckets are cumulative)",
            w[0].0, w[0].1, w[1].0, w[1].1
        ));
    }
    let total = buckets.last().map_or(0, |b| b.1);
    let (Some(sum_secs), Some(count)) = (sum_secs, count_v) else {
        return Err(format!("{name} lacks its _sum or _count"));
    };
    if count != total {
        return Err(format!(
            "{name}_count is {count} but its +Inf bucket {total}"
        ));
    }
    Ok(Scrape {
        stalls: Some(Cumulative {
            buckets,
            sum_secs,
            count,
        }),
        max_secs,
    })
}

/// The pauses between two scrapes, per bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    /// (upper bound in seconds, pauses in this bucket only), ascending;
    /// the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

/// `after - before`, turned from cumulative into per-bucket counts. The
/// two must have the same buckets and no count may go down (it does if the
/// node restarted between the scrapes).
pub fn delta(before: &Cumulative, after: &Cumulative) -> Result<Delta, String> {
    let bounds = |c: &Cumulative| c.buckets.iter().map(|b| b.0).collect::<Vec<_>>();
    if bounds(before) != bounds(after) {
        return Err(format!(
            "{STALL_HISTOGRAM} changed its buckets between the scrapes"
        ));
    }
    let went_down =
        || format!("{STALL_HISTOGRAM} went down between the scrapes (did the node restart?)");
    let mut out = Vec::with_capacity(after.buckets.len());
    let mut below = 0;
    for (&(le, b), &(_, a)) in before.buckets.iter().zip(&after.buckets) {
        let cumulative = a.checked_sub(b).ok_or_else(went_down)?;
        let n = cumulative.checked_sub(below).ok_or_else(|| {
            format!("{STALL_HISTOGRAM}: the window's buckets are not cumulative at le={le}")
        })?;
        out.push((le, n));
        below = cumulative;
    }
    let count = after
        .count
        .checked_sub(before.count)
        .ok_or_else(went_down)?;
    Ok(Delta {
        buckets: out,
        count,
        // Float sums may differ by a rounding error.
        sum_secs: (after.sum_secs - before.sum_secs).max(0.0),
    })
}

impl Delta {
    /// The upper bound of the highest bucket with a pause in it.
    pub fn max_bound(&self) -> Option<f64> {
        self.buckets.iter().rev().find(|b| b.1 > 0).map(|b| b.0)
    }

    /// Pauses above `secs`: those in buckets above the highest bound at
    /// or below `secs` (exact when `secs` is a bound, as 20 ms is).
    pub fn over(&self, secs: f64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| b.0 > secs)
            .map(|b| b.1)
            .sum()
    }
}

/// A bucket bound in milliseconds in the JSON: a number, or "+Inf".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundMs(pub f64);

impl BoundMs {
    fn of_secs(secs: f64) -> BoundMs {
        if secs.is_finite() {
            BoundMs(secs_to_ms(secs))
        } else {
            BoundMs(f64::INFINITY)
        }
    }
}

impl Serialize for BoundMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_str("+Inf")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketCount {
    /// Upper bound (ms) of the bucket; "+Inf" for the last.
    pub le_ms: BoundMs,
    /// Pauses in this bucket only (not cumulative).
    pub count: u64,
}

/// `node_append_stalls` in the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StallReport {
    pub url: String,
    /// "ok"; "missing": the node exports no compaction-stall histogram;
    /// "error": a scrape failed or made no sense (see `error`).
    pub status: &'static str,
    pub error: Option<String>,
    /// Seconds between the two scrapes' answers (the measured window).
    pub window_secs: Option<f64>,
    pub buckets: Option<Vec<BucketCount>>,
    pub count: Option<u64>,
    pub sum_ms: Option<f64>,
    /// Pauses longer than 20 ms.
    pub over_20ms: Option<u64>,
    /// `over_20ms / count`; null without pauses.
    pub over_20ms_share: Option<f64>,
    /// Upper bound of the highest bucket reached; null without pauses.
    pub max_le_ms: Option<BoundMs>,
    /// The node's longest pause since it started (its gauge, at the end).
    pub node_max_ms: Option<f64>,
}

impl StallReport {
    fn failed(url: &str, status: &'static str, error: String) -> StallReport {
        StallReport {
            url: url.to_string(),
            status,
            error: Some(error),
            window_secs: None,
            buckets: None,
            count: None,
            sum_ms: None,
            over_20ms: None,
            over_20ms_share: None,
            max_le_ms: None,
            node_max_ms: None,
        }
    }

    /// From the two scrapes' answers (or why each failed).
    pub fn build(
        url: &str,
        before: Result<Scrape, String>,
        after: Result<Scrape, String>,
        window_secs: f64,
    ) -> StallReport {
        let error = |e: String| StallReport::failed(url, "error", e);
        let (before, after) = match (before, after) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) => return error(format!("scrape at the window's start: {e}")),
            (_, Err(e)) => return error(format!("scrape at the window's end: {e}")),
        };
        let (Some(b), Some(a)) = (&before.stalls, &after.stalls) else {
            return StallReport::failed(
                url,
                "missing",
                format!("the node exported no compaction-stall histogram ({STALL_HISTOGRAM})"),
            );
        };
        let d = match delta(b, a) {
            Ok(d) => d,
            Err(e) => return error(e),
        };
        let over = d.over(LONG_PAUSE_SECS);
        StallReport {
            url: url.to_string(),
            status: "ok",
            error: None,
            window_secs: Some(window_secs),
            buckets: Some(
                d.buckets
                    .iter()
                    .map(|&(le, count)| BucketCount {
                        le_ms: BoundMs::of_secs(le),
                        count,
                    })
                    .collect(),
            ),
            count: Some(d.count),
            sum_ms: Some(secs_to_ms(d.sum_secs)),
            over_20ms: Some(over),
            over_20ms_share: (d.count > 0).then(|| over as f64 / d.count as f64),
            max_le_ms: d.max_bound().map(BoundMs::of_secs),
            node_max_ms: after.max_secs.map(secs_to_ms),
        }
    }

    /// The lines printed after the bench's table.
    pub fn text(&self) -> String {
        let head = format!(
            "node append stalls (journal compaction pauses) in the measured window, {}",
            self.url
        );
        let (Some(buckets), Some(count), Some(sum_ms), Some(over)) =
            (&self.buckets, self.count, self.sum_ms, self.over_20ms)
        else {
            let why = self.error.as_deref().unwrap_or("no figures");
            return if self.status == "missing" {
                format!("{head}: {why}\n")
            } else {
                format!("{head}:\nwarning: {why}\n")
            };
        };
        let mut out = format!(
            "{head} ({:.1} s between scrapes):\n",
            self.window_secs.unwrap_or(0.0)
        );
        // The +Inf bucket reads "> the last finite bound".
        let last_finite = buckets
            .iter()
            .rev()
            .map(|b| b.le_ms.0)
            .find(|b| b.is_finite());
        let name = |le: BoundMs| match (le.0.is_finite(), last_finite) {
            (true, _) => format!("<= {}", ms_text(le.0)),
            (false, Some(l)) => format!("> {}", ms_text(l)),
            (false, None) => "any".to_string(),
        };
        for b in buckets {
            out.push_str(&format!("  {:>10}: {}\n", name(b.le_ms), b.count));
        }
        let share = self
            .over_20ms_share
            .map_or(String::new(), |s| format!(" ({:.1}%)", s * 100.0));
        out.push_str(&format!(
            "  pauses: {count}, {sum_ms:.3} ms in all; largest bucket reached: {}; over 20 ms: {over}{share}",
            self.max_le_ms.map_or("none".to_string(), name)
        ));
        if let Some(m) = self.node_max_ms {
            out.push_str(&format!("; the node's longest since it started: {m:.3} ms"));
        }
        out.push('\n');
        out
    }
}

/// Seconds to milliseconds, to the nanosecond (no float noise in the
/// JSON).
fn secs_to_ms(secs: f64) -> f64 {
    (secs * 1e9).round() / 1e6
}

/// `1 ms`, `0.5 ms`, `1 s`.
fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", ms / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// One GET of `url`: the body, or why not (naming the URL).
fn get(url: &str) -> Result<String, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(SCRAPE_TIMEOUT)
        .redirects(0)
        .try_proxy_from_env(false)
        .build();
    let response = match agent
        .get(url)
        .set("Accept", "text/plain")
        .set("Connection", "close")
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!("GET {url}: HTTP {code} {}", r.status_text()))
        }
        Err(ureq::Error::Transport(t)) => {
            let why = t.message().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(format!("GET {url}: {}{why}", t.kind()));
        }
    };
    let mut body = Vec::new();
    response
        .into_reader()
        .take(BODY_MAX + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("GET {url}: reading the answer: {e}"))?;
    if body.len() as u64 > BODY_MAX {
        return Err(format!(
            "GET {url}: the answer is larger than {BODY_MAX} bytes"
        ));
    }
    String::from_utf8(body).map_err(|_| format!("GET {url}: the answer is not UTF-8"))
}

/// One scrape, parsed, off the async threads.
async fn scrape(url: &str) -> Result<Scrape, String> {
    let u = url.to_string();
    let body = tokio::task::spawn_blocking(move || get(&u))
        .await
        .map_err(|e| format!("GET {url}: {e}"))??;
    parse(&body).map_err(|e| format!("{url}: {e}"))
}

/// Returns once the run is told to stop (or can no longer be told).
async fn stopped(mut abort: watch::Receiver<bool>) {
    let _ = abort.wait_for(|stop| *stop).await;
}

/// Scrapes `url` at `start` and at `end` (or at once if `abort` fires
/// first) and reports the stalls between the two.
pub async fn scrape_window(
    url: String,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    abort: watch::Receiver<bool>,
) -> StallReport {
    tokio::select! {
        _ = tokio::time::sleep_until(start) => {}
        _ = stopped(abort.clone()) => {
            return StallReport::failed(&url, "error", "the run stopped before its measured window".into());
        }
    }
    let before = scrape(&url).await;
    let t0 = Instant::now();
    if let Err(e) = &before {
        return StallReport::failed(&url, "error", format!("scrape at the window's start: {e}"));
    }
    tokio::select! {
        _ = tokio::time::sleep_until(end) => {}
        _ = stopped(abort) => {}
    }
    let after = scrape(&url).await;
    StallReport::build(&url, before, after, t0.elapsed().as_secs_f64())
}
