//! Users, roles and permissions (`--security-file`): who may log in, and
//! which roles may do what on which addresses.
//!
//! Sans-IO like the rest of core: the file's text comes in as a string, the
//! salt of a new hash as bytes; verifying a password is handed to the driver
//! (`ConnRequest::CheckPassword`) because it is slow on purpose.

mod file;
mod model;
pub mod password;
mod pattern;

pub use file::{parse, SecurityFileError};
pub use model::{Denied, Permission, Principal, Rule, Secret, Security, User, MANAGEMENT_ADDRESS};
pub use pattern::{Pattern, Specificity};
