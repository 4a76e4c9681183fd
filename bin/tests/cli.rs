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
