//! `halyard user hash`: a password hash for the security file.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;
use halyard_core::security::password;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Read a password from standard input (one trailing newline is dropped) and print its argon2id hash for the security file
    Hash,
}

/// Longest password read (argon2 takes any length; this bounds the read).
const PASSWORD_BYTES_MAX: u64 = 4096;

pub fn run(cmd: UserCmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        UserCmd::Hash => {
            let mut pw = Vec::new();
            std::io::stdin()
                .take(PASSWORD_BYTES_MAX + 1)
                .read_to_end(&mut pw)?;
            if pw.len() as u64 > PASSWORD_BYTES_MAX {
                return Err(format!("password longer than {PASSWORD_BYTES_MAX} bytes").into());
            }
            if pw.ends_with(b"\n") {
                pw.pop();
                if pw.ends_with(b"\r") {
                    pw.pop();
                }
            }
            if pw.is_empty() {
                return Err(
                    "empty password on standard input (try: printf 'secret' | halyard user hash)"
                        .into(),
                );
            }
            let mut salt = [0u8; password::SALT_BYTES];
            getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
            println!("{}", password::hash(&pw, &salt));
            Ok(ExitCode::SUCCESS)
        }
    }
}
