//! The flows that span several objects or checks, each with one owner: admitting a partner at the
//! gate, verifying our tokens and partners' JWTs, authenticating clients, admitting a token at the
//! gateway, issuing a user grant, revoking, unlinking, finding a linked user, rate limits.

pub mod admission;
pub mod bearer;
pub mod client_auth;
pub mod gate;
pub mod limits;
pub mod link_migration;
pub mod linked;
pub mod partner_jwt;
pub mod partner_keys;
pub mod request_object;
pub mod revoke;
pub mod unlink;
pub mod user_grant;
