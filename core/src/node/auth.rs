//! Logins, permissions and connection limits (`--security-file`,
//! `--max-connections`): who a connection is, and what it may do.
//!
//! A login's password is verified by the driver (argon2 is slow on
//! purpose); the node knows the users and roles, and checks permissions as
//! it executes operations.

use tracing::debug;

use super::config::PlantedBug;
use super::events::Event;
use super::node::Node;
use super::ops::{authorize, Op, OpError, Refusal, SubscribeTarget};
use super::ports::{ConnRequest, Output};
use crate::ids::ConnId;
use crate::security::{Permission, Secret};

impl Node {
    /// Why a connection opened now must be refused, if it must.
    pub(crate) fn connection_refusal(&self) -> Option<Refusal> {
        let open = self.conns.len();
        if open >= self.config.connections_max {
            return Some(Refusal::TooMany(format!(
                "too many connections (limit {})",
                self.config.connections_max
            )));
        }
        let pending = self
            .conns
            .values()
            .filter(|c| c.session.as_ref().is_none_or(|s| !s.peek().established()))
            .count();
        if pending >= self.config.pending_connections_max {
            return Some(Refusal::TooMany(format!(
                "too many connections waiting to log in (limit {})",
                self.config.pending_connections_max
            )));
        }
        None
    }

    /// A session asks to log `user` in: the driver verifies the password
    /// (against a decoy hash for an unknown user, so both cost the same).
    pub(crate) fn begin_login(&mut self, conn: ConnId, user: String, password: Secret) {
        let Some(security) = self.config.security.clone() else {
            // No users: nothing to check (sessions do not ask then).
            self.session_login_checked(conn, true);
            return;
        };
        if self.logins.contains_key(&conn) || self.principals.contains_key(&conn) {
            // One login per connection.
            self.session_login_checked(conn, false);
            return;
        }
        let hash = match security.users.get(&user) {
            Some(u) => u.password_hash.clone(),
            None => security.decoy_hash.clone(),
        };
        self.logins.insert(conn, user);
        self.outputs
            .push_back(Output::Conn(ConnRequest::CheckPassword {
                conn,
                hash,
                password,
            }));
    }

    pub(crate) fn on_password_checked(&mut self, conn: ConnId, ok: bool) {
        let Some(user) = self.logins.remove(&conn) else {
            return; // closed meanwhile
        };
        let principal = self
            .config
            .security
            .as_ref()
            .and_then(|s| s.principal(&user));
        let ok = match principal {
            Some(p) if ok => {
                self.principals.insert(conn, p);
                true
            }
            _ => {
                self.login_refused(conn, &user, "bad user name or password");
                false
            }
        };
        self.session_login_checked(conn, ok);
    }

    /// The driver verified the connection's TLS client certificate: its
    /// CN is the user (who must be in the security file).
    pub(crate) fn on_identified(&mut self, conn: ConnId, user: String) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        match self
            .config
            .security
            .as_ref()
            .and_then(|s| s.principal(&user))
        {
            Some(p) => {
                self.principals.insert(conn, p);
            }
            None => {
                self.login_refused(
                    conn,
                    &user,
                    "certificate names no user of the security file",
                );
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.refusal = Some(Refusal::Unauthorized(format!(
                        "login refused: the client certificate's user {user:?} is not in the security file"
                    )));
                }
            }
        }
    }

    fn login_refused(&mut self, conn: ConnId, user: &str, reason: &str) {
        self.counters.login_failures += 1;
        debug!(%conn, user, "login refused: {reason}");
        self.event(Event::LoginRefused {
            conn,
            user: user.to_string(),
        });
    }

    /// Checks `op` against the security file before it is executed.
    pub(crate) fn authorize_op(&mut self, conn: ConnId, op: &Op) -> Result<(), OpError> {
        if self.config.security.is_none() || self.bug(PlantedBug::PermissionsIgnored) {
            return Ok(());
        }
        let checks = self.permissions_for(op);
        let who = self.principals.get(&conn);
        for (permission, address) in checks {
            if let Err(denied) = authorize(&self.config, who, permission, &address) {
                self.counters.authorization_denied += 1;
                return Err(denied.into());
            }
        }
        Ok(())
    }

    /// The permissions an operation needs, on which addresses.
    fn permissions_for(&self, op: &Op) -> Vec<(Permission, String)> {
        let new_address = |a: &str| self.broker.plan_address(a).is_some();
        match op {
            Op::Send { message, .. } => {
                let a = &message.address;
                let mut v = vec![(Permission::Send, a.clone())];
                if new_address(a) {
                    v.push((Permission::CreateAddress, a.clone()));
                }
                v
            }
            Op::Subscribe(req) => match &req.target {
                SubscribeTarget::Queue { address } => {
                    let read = if req.browse {
                        Permission::Browse
                    } else {
                        Permission::Consume
                    };
                    let mut v = vec![(read, address.clone())];
                    if self.broker.queue_by_name(address).is_none() {
                        v.push((Permission::CreateAddress, address.clone()));
                    }
                    v
                }
                SubscribeTarget::Topic {
                    address, durable, ..
                } => {
                    let mut v = vec![(Permission::Consume, address.clone())];
                    if durable
                        .as_ref()
                        .is_some_and(|d| self.broker.queue_by_name(&d.queue_name()).is_none())
                    {
                        v.push((Permission::CreateDurableQueue, address.clone()));
                    }
                    v
                }
            },
            Op::Unsubscribe {
                durable: Some(d), ..
            } => self
                .broker
                .queue_by_name(&d.queue_name())
                .map(|q| vec![(Permission::DeleteDurableQueue, q.address.clone())])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}
