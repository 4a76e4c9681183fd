//! `halyard mirror compare DIR DIR`: do two brokers' queues hold the same
//! messages? Each broker's journal (`DIR/journal`) is read without opening
//! it (no lock: works on running brokers), replayed into a broker state,
//! and each queue's message count and checksum compared
//! (`halyard_core::mirror::digest`). Exit 0: the same; 1: they differ
//! (each difference printed); 2: a journal could not be read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use halyard_core::broker::{Broker, BrokerConfig};
use halyard_core::journal::decode_entry;
use halyard_core::mirror::digest::{digest, QueueDigest};

/// Reads a journal being written may meet a segment a cleaning just
/// deleted: try again this many times.
const READ_ATTEMPTS: usize = 3;

#[derive(Subcommand, Debug)]
pub enum MirrorCmd {
    /// Compare the queues two brokers' journals hold (their --data-dir folders; running or not)
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// One broker's --data-dir
    #[arg(value_name = "DATA_DIR")]
    a: PathBuf,
    /// The other broker's --data-dir
    #[arg(value_name = "DATA_DIR")]
    b: PathBuf,
}

pub fn run(cmd: MirrorCmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        MirrorCmd::Compare(a) => compare(&a),
    }
}

fn compare(args: &CompareArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let a = queues(&args.a)?;
    let b = queues(&args.b)?;
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut differ = 0usize;
    println!(
        "{:<40} {:>12} {:>12}  same",
        "queue",
        args.a.display(),
        args.b.display()
    );
    for name in names {
        let (da, db) = (a.get(name), b.get(name));
        let same = da == db;
        if !same {
            differ += 1;
        }
        let show = |d: Option<&QueueDigest>| d.map_or("-".to_string(), |d| d.messages.to_string());
        println!(
            "{:<40} {:>12} {:>12}  {}",
            name,
            show(da),
            show(db),
            if same { "yes" } else { "NO" }
        );
    }
    if differ == 0 {
        println!("the same: {} queues", a.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{differ} queues differ");
        Ok(ExitCode::from(1))
    }
}

/// The queues the journal under `data_dir` holds, replayed.
fn queues(data_dir: &Path) -> Result<BTreeMap<String, QueueDigest>, String> {
    let dir = data_dir.join("journal");
    if !dir.is_dir() {
        return Err(format!(
            "{}: no journal folder (is it a --data-dir?)",
            dir.display()
        ));
    }
    let mut last = String::new();
    for _ in 0..READ_ATTEMPTS {
        // No paging: every body in memory, so the checksum covers them.
        let mut broker = Broker::new(BrokerConfig {
            page_above_bytes: 0,
            ..BrokerConfig::default()
        });
        let mut bad = None;
        let read = halyard_io::local::peek_journal(&dir, |batch| {
            for e in batch {
                match decode_entry(&e.key, e.value.as_deref()) {
                    Ok(entry) => broker.apply(&entry),
                    Err(err) => {
                        bad.get_or_insert_with(|| {
                            format!(
                                "{}: undecodable entry {:?}: {err}",
                                dir.display(),
                                String::from_utf8_lossy(&e.key)
                            )
                        });
                    }
                }
            }
        });
        match (read, bad) {
            (Ok(_), None) => return Ok(digest(&broker)),
            (Ok(_), Some(b)) => return Err(b),
            (Err(e), _) => last = format!("{}: {e}", dir.display()),
        }
    }
    Err(last)
}
