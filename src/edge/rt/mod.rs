//! Runtime helpers over `worker`: object calls and the serve path, queue sends, R2, D1, KV and its isolate cache,
//! config, the clock, randomness, work for after the response, bodies, responses, cookies and pages, our signing keys, and
//! the revocation markers in KV.

pub mod body;
pub mod browser;
pub mod clock;
pub mod config;
pub mod counts;
pub mod d1;
pub mod keys;
pub mod kvcache;
pub mod later;
pub mod objects;
pub mod outbound;
pub mod queue;
pub mod r2;
pub mod random;
pub mod request;
pub mod respond;
pub mod revoked;
