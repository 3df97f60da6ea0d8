//! Pure protocol logic: no `worker` types, no I/O, no clock or randomness of its own.

pub mod admin_auth;
pub mod cache;
pub mod client;
pub mod discovery;
pub mod error;
pub mod gate;
pub mod keys;
pub mod log;
pub mod origin;
pub mod partner;
pub mod password;
pub mod user;
