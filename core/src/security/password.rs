//! Password hashes: argon2id in the PHC string format
//! (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
//!
//! Pure computation, so it lives in core; the salt is an input (the caller
//! draws it), and verifying costs tens of milliseconds at the default
//! parameters, so drivers run it off their event loop
//! (`ConnRequest::CheckPassword`).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Salt bytes `hash` takes (RFC 9106 recommends 16).
pub const SALT_BYTES: usize = 16;

/// The PHC string of `password` with argon2id's default parameters
/// (19 MiB, 2 passes, 1 lane: OWASP's minimum for argon2id).
pub fn hash(password: &[u8], salt: &[u8; SALT_BYTES]) -> String {
    match Argon2::default().hash_password_with_salt(password, salt) {
        Ok(h) => h.to_string(),
        // Only an out-of-range salt or parameter fails, and both are fixed here.
        Err(e) => unreachable!("argon2id with default parameters: {e}"),
    }
}

/// A hash with the cheapest parameters argon2 allows (8 KiB, 1 pass):
/// for the simulator and tests, where thousands of logins must cost
/// microseconds. Never for a real security file.
pub fn hash_cheap(password: &[u8], salt: &[u8; SALT_BYTES]) -> String {
    let params = match argon2::Params::new(8, 1, 1, None) {
        Ok(p) => p,
        Err(e) => unreachable!("argon2's minimum parameters: {e}"),
    };
    let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    match a.hash_password_with_salt(password, salt) {
        Ok(h) => h.to_string(),
        Err(e) => unreachable!("argon2id with minimum parameters: {e}"),
    }
}

/// Whether `hash` is a PHC string this module can verify against.
pub fn check_format(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash)
        .map_err(|e| format!("not a PHC password hash ({e}); make one with `halyard user hash`"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm {} is not argon2id; make the hash with `halyard user hash`",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `hash` (constant time in the password; the
/// cost is set by the parameters in the hash).
pub fn verify(hash: &str, password: &[u8]) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

/// A hash verified when the user is unknown, so that an unknown user costs
/// the same time as a wrong password (no user-name oracle).
pub fn decoy_hash() -> String {
    hash(b"no such user", &[7; SALT_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash(b"secret", &[1; SALT_BYTES]);
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        check_format(&h).unwrap();
        assert!(verify(&h, b"secret"));
        assert!(!verify(&h, b"secreT"));
        assert!(!verify("not a hash", b"secret"));
        assert!(check_format("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").is_err());
        assert!(check_format("plain").is_err());
    }
}
