//! Tests of the flock-based file lock, within one process and against a
//! child process running util-linux `flock`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use halyard_io::local::FileLock;

#[test]
fn second_acquire_fails_while_held_and_succeeds_after_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("server.lock");
    assert!(!path.exists());

    let first = FileLock::try_acquire(&path)
        .expect("acquire")
        .expect("free lock");
    assert!(path.exists(), "lock file is created");
    assert_eq!(first.path(), path);
    assert!(
        FileLock::try_acquire(&path).expect("try again").is_none(),
        "a second open file must not get the lock while the first holds it"
    );

    first.release();
    let second = FileLock::try_acquire(&path)
        .expect("acquire")
        .expect("released lock is free");

    // Dropping releases it too.
    drop(second);
    assert!(FileLock::try_acquire(&path).expect("acquire").is_some());
}

#[test]
fn missing_folder_is_an_error_not_a_held_lock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err =
        FileLock::try_acquire(&tmp.path().join("no/such/dir/server.lock")).expect_err("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

/// Runs util-linux `flock -n PATH true`: exit 0 if it could take the lock.
fn child_can_lock(path: &Path) -> bool {
    Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .expect("run util-linux flock (is it installed?)")
        .success()
}

#[test]
fn child_process_cannot_take_our_lock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("server.lock");
    let lock = FileLock::try_acquire(&path)
        .expect("acquire")
        .expect("free lock");
    assert!(!child_can_lock(&path), "child took a lock we hold");
    lock.release();
    assert!(
        child_can_lock(&path),
        "child could not take a released lock"
    );
}

#[test]
fn lock_held_by_a_child_process_is_refused_until_it_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("server.lock");
    // The child takes the lock, says so, and holds it until its stdin closes.
    let mut child = Command::new("flock")
        .arg(&path)
        .arg("-c")
        .arg("echo locked; read _")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run util-linux flock (is it installed?)");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read child");
    assert_eq!(line.trim(), "locked");

    let refused = FileLock::try_acquire(&path).expect("try acquire");
    let mut stdin = child.stdin.take().expect("stdin");
    if refused.is_some() {
        let _ = child.kill();
        panic!("got the lock while the child held it");
    }
    stdin.write_all(b"done\n").expect("tell child to exit");
    drop(stdin);
    assert!(child.wait().expect("wait child").success());

    assert!(
        FileLock::try_acquire(&path).expect("acquire").is_some(),
        "lock must be free once the child exited"
    );
}
