//! Journal adapters: the local segment-file journal and its driver thread.
pub mod local;
pub mod local_port;
pub mod port;

pub use local_port::spawn_local_journal;
pub use port::JournalHandle;
