//! Lock adapters: the file lock (one machine or a shared folder).
pub mod file;
pub mod port;

pub use port::{spawn_file_lock, FileLockConfig, LockHandle, LockMsg};
