//! `halyard node-status` and `halyard queue stat|purge|move|retry|browse|delete`:
//! the management API (`--http` of a node) from the command line, as
//! aligned tables or `--json`.

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

/// How long a call may take (a purge waits for the journal).
const CALL_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The node's HTTP endpoint (its --http address)
    #[arg(
        long,
        env = "HALYARD_MANAGE_URL",
        default_value = "http://127.0.0.1:8161",
        value_name = "URL"
    )]
    http: String,
    /// Log in as this user (a node with --security-file; the user needs `manage`). The password comes from HALYARD_PASSWORD, never from the command line
    #[arg(long, env = "HALYARD_USER", value_name = "USER")]
    user: Option<String>,
    /// Print the API's JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct NodeStatusArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Queues with their depth, consumers and counters (like `artemis queue stat`)
    Stat {
        #[command(flatten)]
        target: Target,
    },
    /// Remove the waiting messages of a queue (messages out with consumers stay)
    Purge {
        queue: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move the waiting messages of a queue to the anycast queue of another address
    Move {
        queue: String,
        /// The address to move them to
        #[arg(long, value_name = "ADDRESS")]
        to: String,
        #[command(flatten)]
        target: Target,
    },
    /// Send dead letters (or expired messages) back to the address each came from
    Retry {
        /// The queue to empty [default: DLQ]
        #[arg(default_value = "DLQ")]
        queue: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show the first messages of a queue: headers and the start of the body
    Browse {
        queue: String,
        /// Messages to show (1-1000)
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a durable queue and its messages (refused while it has consumers)
    Delete {
        queue: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot reach the node: {why} (is a node running with --http at {url}?)")]
    Unreachable { url: String, why: String },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("{url} answered something that is not JSON: {why}")]
    NotJson { url: String, why: String },
}

fn call(method: &str, target: &Target, path: &str) -> Result<Value, CallError> {
    let url = format!("{}{}", target.http.trim_end_matches('/'), path);
    let mut request = ureq::request(method, &url).timeout(CALL_TIMEOUT);
    if let Some(user) = &target.user {
        let password = std::env::var("HALYARD_PASSWORD").unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.set("Authorization", &format!("Basic {token}"));
    }
    let answer = request.call();
    let response = match answer {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            let body: Value = r.into_json().unwrap_or(Value::Null);
            let message = body["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned();
            return Err(CallError::Refused { status, message });
        }
        Err(e) => {
            return Err(CallError::Unreachable {
                url: target.http.clone(),
                why: e.to_string(),
            })
        }
    };
    response.into_json().map_err(|e| CallError::NotJson {
        url,
        why: e.to_string(),
    })
}

fn queue_path(queue: &str, rest: &str) -> String {
    format!(
        "/api/queues/{}{rest}",
        utf8_percent_encode(queue, NON_ALPHANUMERIC)
    )
}

/// Columns padded to their widest cell; numbers right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric = |i: usize| !rows.is_empty() && rows.iter().all(|r| r[i].parse::<f64>().is_ok());
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric(i) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn finish(result: Result<(), CallError>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ CallError::Refused { .. }) => {
            eprintln!("halyard: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn node_status(args: NodeStatusArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let t = &args.target;
    finish(call("GET", t, "/api/cluster").map(|v| {
        if t.json {
            println!("{v:#}");
            return;
        }
        let rows: Vec<Vec<String>> = v["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|n| {
                if n["reachable"] == Value::Bool(false) {
                    return vec![
                        "?".into(),
                        "unreachable".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        text(&n["http"]),
                    ];
                }
                vec![
                    text(&n["node_id"]),
                    text(&n["state"]),
                    text(&n["epoch"]),
                    if n["ready"] == Value::Bool(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                    format!("{:.0}", n["uptime_seconds"].as_f64().unwrap_or(0.0)),
                    text(&n["messages"]),
                    text(&n["http"]),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["NODE", "STATE", "EPOCH", "READY", "UPTIME_S", "MESSAGES", "HTTP"],
                &rows
            )
        );
    }))
}

pub fn queue(cmd: QueueCmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        QueueCmd::Stat { target } => finish(call("GET", &target, "/api/queues").map(|v| {
            if target.json {
                println!("{v:#}");
                return;
            }
            let rows: Vec<Vec<String>> = v["queues"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|q| {
                    [
                        "name",
                        "address",
                        "routing",
                        "messages",
                        "consumers",
                        "added",
                        "delivered",
                        "acknowledged",
                        "dead_lettered",
                        "expired",
                    ]
                    .iter()
                    .map(|k| text(&q[*k]))
                    .collect()
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "QUEUE",
                        "ADDRESS",
                        "ROUTING",
                        "MESSAGES",
                        "CONSUMERS",
                        "ADDED",
                        "DELIVERED",
                        "ACKED",
                        "DEAD_LETTERED",
                        "EXPIRED"
                    ],
                    &rows
                )
            );
            let listed = rows.len();
            if v["queues_total"]
                .as_u64()
                .is_some_and(|t| t as usize > listed)
            {
                println!(
                    "({listed} of {} queues: the fullest)",
                    text(&v["queues_total"])
                );
            }
        })),
        QueueCmd::Purge { queue, target } => {
            change(&target, "POST", &queue_path(&queue, "/purge"), |v| {
                format!("purged {} message(s) from {queue}", text(&v["purged"]))
            })
        }
        QueueCmd::Move { queue, to, target } => {
            let path = format!(
                "{}?to={}",
                queue_path(&queue, "/move"),
                utf8_percent_encode(&to, NON_ALPHANUMERIC)
            );
            change(&target, "POST", &path, |v| {
                format!(
                    "moved {} message(s) from {queue} to {to}",
                    text(&v["moved"])
                )
            })
        }
        QueueCmd::Retry { queue, target } => {
            change(&target, "POST", &queue_path(&queue, "/retry"), |v| {
                format!(
                    "moved {} message(s) from {queue} back to their addresses ({} skipped: no anycast address to go back to)",
                    text(&v["moved"]),
                    text(&v["skipped"])
                )
            })
        }
        QueueCmd::Delete { queue, target } => {
            change(&target, "DELETE", &queue_path(&queue, ""), |v| {
                format!(
                    "deleted {queue} ({} message(s) with it)",
                    text(&v["messages"])
                )
            })
        }
        QueueCmd::Browse {
            queue,
            limit,
            target,
        } => {
            let path = format!("{}?limit={limit}", queue_path(&queue, "/messages"));
            finish(call("GET", &target, &path).map(|v| {
                if target.json {
                    println!("{v:#}");
                    return;
                }
                let rows: Vec<Vec<String>> = v["messages"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|m| {
                        let headers = m["headers"]
                            .as_object()
                            .map(|h| {
                                h.iter()
                                    .map(|(k, v)| format!("{k}={}", text(v)))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        let preview: String = text(&m["body_preview"])
                            .chars()
                            .take(40)
                            .map(|c| if c.is_control() { '.' } else { c })
                            .collect();
                        vec![
                            text(&m["id"]),
                            text(&m["state"]),
                            text(&m["priority"]),
                            text(&m["deliveries"]),
                            text(&m["original_address"]),
                            text(&m["body_bytes"]),
                            headers,
                            preview,
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "STATE",
                            "PRIORITY",
                            "DELIVERIES",
                            "ORIGINAL_ADDRESS",
                            "BYTES",
                            "HEADERS",
                            "BODY"
                        ],
                        &rows
                    )
                );
            }))
        }
    }
}

/// A change: the API's answer as a sentence (more batches to go are said).
fn change(
    target: &Target,
    method: &str,
    path: &str,
    say: impl Fn(&Value) -> String,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    finish(call(method, target, path).map(|v| {
        if target.json {
            println!("{v:#}");
            return;
        }
        println!("{}", say(&v));
        if v["remaining"].as_u64().is_some_and(|r| r > 0) {
            println!(
                "{} more waiting: run it again (one call takes at most {} messages)",
                text(&v["remaining"]),
                halyard_core::node::ADMIN_BATCH_MAX
            );
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let t = table(
            &["QUEUE", "MESSAGES"],
            &[
                vec!["orders".into(), "5".into()],
                vec!["DLQ".into(), "120".into()],
            ],
        );
        assert_eq!(t, "QUEUE   MESSAGES\norders         5\nDLQ          120\n");
    }

    #[test]
    fn queue_names_are_escaped_in_paths() {
        assert_eq!(queue_path("a b/c", "/purge"), "/api/queues/a%20b%2Fc/purge");
    }
}
