//! Pure protocol logic: no `worker` types, no I/O, no clock or randomness of its own.

pub mod admin_auth;
pub mod api;
pub mod assertion;
pub mod audit;
pub mod authorize;
pub mod cache;
pub mod client;
pub mod client_auth;
pub mod dates;
pub mod discovery;
pub mod error;
pub mod form;
pub mod gate;
pub mod grant;
pub mod json;
pub mod keys;
pub mod link;
pub mod log;
pub mod origin;
pub mod partner;
pub mod password;
pub mod pkce;
pub mod ratelimit;
pub mod tokens;
pub mod usage;
pub mod user;
