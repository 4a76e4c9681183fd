//! Lock adapters.
pub mod file;
