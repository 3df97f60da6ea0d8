//! The endpoints: one module per route family. Each reads its request, runs the pure checks and
//! the flows it needs, and answers an [`Outcome`](crate::edge::rt::respond::Outcome). Endpoints do
//! not import one another.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod autologin;
pub mod discovery;
pub mod gateway;
pub mod link;
pub mod logout;
pub mod registration;
pub mod revocation;
pub mod token;
pub mod userinfo;
