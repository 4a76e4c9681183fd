//! The `halyard` executable as a user runs it: its help, its refusal of bad
//! values, and one simulator seed end to end. (Building this test is also
//! what makes `cargo test --workspace` build the executable that
//! scripts/test.sh's later steps run.)

use std::process::{Command, Output};

fn halyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(args)
        .output()
        .expect("run the halyard executable")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_every_command() {
    let out = halyard(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for command in [
        "node",
        "produce",
        "consume",
        "sim",
        "proxy",
        "bench",
        "node-status",
        "queue",
        "user",
        "kafka-ceiling",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "--help does not list `{command}`:\n{help}"
        );
    }
}

#[test]
fn a_bad_value_is_refused_naming_the_flag_and_the_value() {
    let out = halyard(&["node", "--max-disk-usage", "150"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("--max-disk-usage") && err.contains("150"),
        "the error names neither the flag nor the value: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_flag_is_refused() {
    let out = halyard(&["node", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--no-such-flag"), "{out:?}");
}

#[test]
fn one_simulator_seed_runs_deterministically_without_violations() {
    let out = halyard(&["sim", "--seed", "3", "--check-determinism"]);
    assert!(out.status.success(), "{out:?}");
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(report.contains("violations: none"), "{report}");
    assert!(report.contains("trace hash"), "{report}");
}

#[test]
fn node_help_shows_the_mirroring_flags() {
    let out = halyard(&["node", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for flag in [
        "--mirror-listen <ADDR:PORT>",
        "--mirror <HOST:PORT>",
        "--mirror-sync [<BOOL>]",
        "--lock-coordinator <KIND:WHERE>",
        "--lock-id <NAME>",
        "--check-period-ms <N>",
    ] {
        assert!(help.contains(flag), "node --help lacks {flag}:\n{help}");
    }
}

#[test]
fn mirroring_without_a_usable_lock_coordinator_is_refused() {
    let tmp = std::env::temp_dir().join(format!("halyard-cli-mirror-{}", std::process::id()));
    let data = tmp.to_string_lossy().into_owned();
    let mirrored = |extra: &[&str]| {
        let mut args = vec![
            "node",
            "--listen",
            "127.0.0.1:47616",
            "--data-dir",
            &data,
            "--mirror-listen",
            "127.0.0.1:47617",
            "--mirror",
            "127.0.0.1:47618",
        ];
        args.extend_from_slice(extra);
        halyard(&args)
    };
    // Without a lock both brokers would accept clients.
    let out = mirrored(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("mirroring needs --lock-coordinator"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A Kafka lock coordinator without a port is named.
    let out = mirrored(&["--lock-coordinator", "kafka:127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("--lock-coordinator")
            && err.contains("kafka: \"127.0.0.1\" is not HOST:PORT: no port"),
        "{err}"
    );
    // A bad lock coordinator is named, as a usage error.
    let out = halyard(&["node", "--lock-coordinator", "nfs:/x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("--lock-coordinator") && err.contains("nfs"),
        "{err}"
    );
    // A flag that needs another says which.
    let out = halyard(&["node", "--check-period-ms", "500"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("--check-period-ms needs --mirror-listen"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
