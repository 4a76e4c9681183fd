//! Journal adapters.
pub mod local;
