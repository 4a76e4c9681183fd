//! The file lock coordinator (`--lock-coordinator file:DIR`): two contenders
//! in one process, and a contender in a child process (this test binary run
//! again as a lock holder).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use halyard_core::coordinator::LockState;
use halyard_io::coordinator::{
    CoordinatorError, FileCoordinator, FileVersion, HeldLock, LockCoordinator,
};

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn contender(dir: &std::path::Path, node: &str) -> FileCoordinator {
    FileCoordinator::new(dir, "mirror-cluster-clients", node).expect("coordinator")
}

#[test]
fn one_holder_at_a_time_and_epochs_grow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = contender(tmp.path(), "a");
    let b = contender(tmp.path(), "b");
    let held_a = a.try_acquire_now().expect("acquire").expect("free");
    assert_eq!(held_a.epoch(), 1);
    assert!(b.try_acquire_now().expect("try").is_none(), "held by a");
    held_a.release_now();
    let held_b = b.try_acquire_now().expect("acquire").expect("released");
    assert_eq!(held_b.epoch(), 2);
    drop(held_b);
    let held_a = a.try_acquire_now().expect("acquire").expect("dropped");
    assert_eq!(held_a.epoch(), 3);
    assert_eq!(
        std::fs::read_to_string(&a.paths().epoch).expect("epoch file"),
        "3\n"
    );
}

#[test]
fn the_state_is_versioned_and_read_by_the_next_holder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = contender(tmp.path(), "a");
    let b = contender(tmp.path(), "b");
    let held = a.try_acquire_now().unwrap().unwrap();
    let read = held.read_state_now().unwrap();
    assert_eq!(read.state, None);
    assert_eq!(read.version, FileVersion(0));
    let v1 = held
        .write_state_now(&set(&["a", "b"]), read.version)
        .unwrap();
    assert_eq!(v1, FileVersion(1));
    // A write naming a version it did not read is refused.
    assert!(matches!(
        held.write_state_now(&set(&["a"]), read.version),
        Err(CoordinatorError::StaleVersion)
    ));
    let v2 = held.write_state_now(&set(&["a"]), v1).unwrap();
    assert_eq!(
        std::fs::read_to_string(&a.paths().state).unwrap(),
        "halyard-file-lock-state 1\nversion 2\nepoch 1\nin-sync a\n"
    );
    assert!(
        held.write_state_now(&set(&["a b"]), v2).is_err(),
        "names with spaces are refused"
    );
    held.release_now();
    let held = b.try_acquire_now().unwrap().unwrap();
    let read = held.read_state_now().unwrap();
    assert_eq!(read.state, Some(LockState::new(1, ["a"])));
    assert_eq!(read.version, v2);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_holder_whose_lock_file_was_deleted_is_fenced_by_the_next_acquisition() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = contender(tmp.path(), "a");
    let b = contender(tmp.path(), "b");
    let held_a = a.try_acquire_now().unwrap().unwrap();
    let v = held_a.read_state_now().unwrap().version;
    held_a.check_now().expect("held");
    // An operator deletes the lock file: a no longer holds the lock at the
    // path, and b can take a new one.
    std::fs::remove_file(&a.paths().lock).unwrap();
    assert!(matches!(
        held_a.check_now(),
        Err(CoordinatorError::Lost { .. })
    ));
    assert!(matches!(
        held_a.write_state_now(&set(&["a"]), v),
        Err(CoordinatorError::Lost { .. })
    ));
    let held_b = b.try_acquire_now().unwrap().unwrap();
    assert_eq!(held_b.epoch(), 2);
    // a's stale-epoch write is refused, as fenced.
    let err = held_a.write_state_now(&set(&["a"]), v).unwrap_err();
    assert!(
        matches!(err, CoordinatorError::Fenced { epoch: 1 }),
        "{err}"
    );
    assert_eq!(
        err.refusal(),
        halyard_core::coordinator::WriteRefusal::Fenced
    );
    held_b.write_state_now(&set(&["b"]), v).expect("b writes");
    assert_eq!(b.peek().unwrap().1.state, Some(LockState::new(2, ["b"])));
}

#[test]
fn the_trait_face_drives_the_same_lock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = contender(tmp.path(), "a");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let held = LockCoordinator::try_acquire(&a).await.unwrap().unwrap();
        let read = HeldLock::read_state(&held).await.unwrap();
        let v = HeldLock::write_state(&held, &set(&["a"]), read.version)
            .await
            .unwrap();
        assert_eq!(v, FileVersion(1));
        HeldLock::check(&held).unwrap();
        HeldLock::release(held).await.unwrap();
    });
    assert!(FileCoordinator::new(tmp.path(), "a/b", "a").is_err());
    assert!(FileCoordinator::new(&tmp.path().join("missing"), "x", "a").is_err());
}

/// Run as a child by the test below (ignored otherwise): takes the lock,
/// prints its epoch, and holds it until killed.
#[test]
#[ignore]
fn child_lock_holder() {
    let Ok(dir) = std::env::var("HALYARD_TEST_FILE_LOCK_DIR") else {
        return;
    };
    let c = contender(std::path::Path::new(&dir), "child");
    let held = c
        .try_acquire_now()
        .unwrap()
        .expect("the parent left it free");
    println!("HELD epoch {}", held.epoch());
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_lock_held_by_another_process_passes_when_it_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let parent = contender(tmp.path(), "parent");
    let first = parent.try_acquire_now().unwrap().unwrap();
    assert_eq!(first.epoch(), 1);
    first.release_now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_lock_holder", "--ignored", "--nocapture"])
        .env("HALYARD_TEST_FILE_LOCK_DIR", tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run this test binary as a child");
    let stdout = child.stdout.take().unwrap();
    let held_line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("HELD "));
    assert_eq!(held_line.as_deref(), Some("HELD epoch 2"));
    assert!(
        parent.try_acquire_now().unwrap().is_none(),
        "the child holds it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel dropped the child's flock with its process.
    let held = parent
        .try_acquire_now()
        .unwrap()
        .expect("free after the kill");
    assert_eq!(held.epoch(), 3);
}
