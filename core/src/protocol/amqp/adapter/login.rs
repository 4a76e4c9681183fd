//! SASL logins against the node's users: PLAIN is checked by the node (the
//! driver verifies the password); ANONYMOUS only without users, or when a
//! TLS client certificate already named the user.

use super::session::AmqpSession;
use crate::node::{SessionAction, SessionCx};
use crate::protocol::amqp::connection::SaslAuth;
use crate::security::Secret;

impl AmqpSession {
    pub(super) fn on_sasl(&mut self, cx: &mut SessionCx<'_>, auth: SaslAuth) {
        if cx.config.security.is_none() || cx.principal.is_some() {
            let _ = self.conn.sasl_outcome(true);
            return;
        }
        match (auth.mechanism.as_str(), auth.username, auth.password) {
            ("PLAIN", Some(user), Some(password)) => {
                self.logging_in = true;
                cx.push(SessionAction::Login {
                    user,
                    password: Secret(password.into_bytes()),
                });
            }
            _ => {
                // ANONYMOUS (not offered with users) or PLAIN without a user.
                cx.push(SessionAction::ClientError(
                    "login refused: this broker has users; log in with SASL PLAIN".into(),
                ));
                let _ = self.conn.sasl_outcome(false);
            }
        }
    }
}
