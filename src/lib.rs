//! edgeward: the edge authorization layer of a school platform, as a Cloudflare Worker.
//!
//! This file is the Worker's entry and nothing else; see ARCHITECTURE.md for the map.

// Outside tests, a panic is a bug: errors travel as values to one wire mapping.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::disallowed_methods
    )
)]

// The pure layer is its own crate (crates/core), without `worker`: the compiler keeps I/O out.
pub use edgeward_core::{pages, protocol, routes, store};

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(target_arch = "wasm32")]
pub use edge::objects::{
    audit::AuditLog, audit_buffer::AuditBuffer, grants::GrantStore, limits::RateLimiter,
    links::LinkStore, registry::Registry, replay::ReplayStore, usage::UsageLog, users::UserStore,
};

#[cfg(target_arch = "wasm32")]
mod entry {
    use worker::{event, Context, Env, MessageBatch, Response, Result};

    #[event(start)]
    fn start() {
        console_error_panic_hook::set_once();
    }

    // The runtime's request as it is: `edge::rt::request` reads its properties when asked.
    #[event(fetch)]
    async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
        Ok(crate::edge::handle(req.into(), env, ctx).await)
    }

    #[event(queue)]
    async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
        crate::edge::rt::counts::background(crate::edge::consume(batch, env)).await;
        Ok(())
    }
}
