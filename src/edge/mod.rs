//! The only code that touches `worker`: HTTP in and out, KV, Durable Objects, vars and secrets.
//! In layers, each a folder; imports run one way (tests/layers.rs fails the build otherwise):
//! this router → `endpoints` (requests) and `consumers` (queue batches) → `flows` → `calls` →
//! `rt`, and `objects` → `rt`.

pub mod calls;
pub mod consumers;
pub mod endpoints;
pub mod flows;
pub mod objects;
pub mod rt;

use crate::edge::rt::request::Request;
use worker::{console_log, Context, Env, Response};

use self::calls::{audit as edge_audit, usage};
use self::endpoints::{
    account, admin, authorize, autologin, discovery, gateway, link, logout, registration,
    revocation, token, userinfo,
};
use self::flows::gate;
use self::rt::clock::now_ms;
use self::rt::respond::{self, Outcome};
use self::rt::{config, counts, later};
use crate::protocol::audit::{classify, AuditEvent};

use crate::protocol::error::ApiError;
use crate::protocol::log::RequestLog;
use crate::routes::{self, Method, Route};

/// Production requests carry Cloudflare's ray id; local ones get the isolate's random prefix and
/// their number in the isolate.
fn request_id(req: &Request) -> String {
    if let Some(ray) = req.headers().get("cf-ray").ok().flatten() {
        if ray.len() <= 64 && ray.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return ray;
        }
    }
    // No ray (local runs): this isolate's random prefix, drawn once, and its count of requests.
    thread_local! {
        static PREFIX: std::cell::OnceCell<Option<u32>> = const { std::cell::OnceCell::new() };
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let Some(prefix) = PREFIX.with(|p| {
        *p.get_or_init(|| {
            let mut bytes = [0u8; 4];
            getrandom::getrandom(&mut bytes).ok()?;
            Some(u32::from_le_bytes(bytes))
        })
    }) else {
        return "unknown".to_owned();
    };
    let n = COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    format!("{prefix:08x}{n:08x}")
}

/// A batch from one of the Worker's queues, handed to that queue's consumer. A batch from a
/// queue nobody consumes here is retried (so it reaches a dead-letter queue, never the floor).
pub async fn consume(batch: worker::MessageBatch<String>, env: Env) {
    let queue = batch.queue();
    match queue.as_str() {
        "edgeward-audit" | "edgeward-audit-dlq" => consumers::audit::consume(batch, env).await,
        "edgeward-usage" | "edgeward-usage-dlq" => consumers::usage::consume(batch, env).await,
        _ => {
            worker::console_error!("queue {queue}: no consumer here; retrying the batch");
            batch.retry_all();
        }
    }
}

const HSTS: &str = "strict-transport-security";

pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let started = now_ms();
    let id = request_id(&req);
    // From the raw method: `worker::Method` reads unknown methods (PROPFIND, ...) as GET.
    let method = Method::parse(&req.inner().method());
    let path = req.path().to_owned();
    let route = routes::route(&path);
    let template = route.map_or("(unmatched)", |r| r.template());
    #[cfg(feature = "io-counts")]
    if path == counts::PATH && config::issuer_is_loopback(&env) {
        let reset = req.url().is_ok_and(|u| u.query() == Some("reset=1"));
        return respond::text(200, &counts::imp::snapshot(reset));
    }

    let mut out = dispatch(req, &env, route, method, started).await;
    later::hand_over(&ctx);

    let status = out.response.status_code();
    let headers = out.response.headers_mut();
    let _ = headers.set("x-request-id", &id);
    // RFC 6797: browsers that once reached us over https never try plain http again. Not on a
    // loopback http issuer (local development), and not over an origin's own choice.
    if config::issuer_is_https(&env) && !headers.has(HSTS).unwrap_or(true) {
        let _ = headers.set(HSTS, "max-age=31536000");
    }
    let line = RequestLog {
        ts: started,
        request_id: &id,
        method: method.map_or("OTHER", |m| m.as_str()),
        route: template,
        status,
        outcome: out.outcome,
        partner: out.partner.as_ref().map(|p| p.as_str()),
        duration_ms: now_ms().saturating_sub(started),
        cause: out.cause.as_deref(),
    };
    console_log!("{}", line.to_json());
    let counted = method != Some(Method::Options); // preflights are the browser's
    if let (true, Some(Route::Api | Route::Whoami | Route::Token), Some(partner)) =
        (counted, route, &out.partner)
    {
        usage::record(
            &env,
            &ctx,
            started,
            usage::Counted {
                partner: partner.as_str(),
                client: out.client.as_deref().unwrap_or("-"),
                status,
                // Refused at the edge: any 4xx that is not the origin's own answer.
                denied: (400..500).contains(&status) && out.outcome != "forwarded",
                duration_ms: line.duration_ms,
            },
        );
    }
    if let Some(kind) = classify(route, method, status, out.outcome) {
        let event = AuditEvent {
            id: edge_audit::new_id(&id, started),
            seq: 0,
            ts: started / 1000,
            kind: kind.to_owned(),
            partner: out.partner.as_ref().map(|p| p.to_string()),
            route: template.to_owned(),
            status,
            outcome: out.outcome.to_owned(),
            reason: out.reason.clone(),
            request_id: id.clone(),
        };
        if edge_audit::admit(&event, started) {
            ctx.wait_until(counts::background(edge_audit::record(env.clone(), event)));
        }
    }
    out.response
}

async fn dispatch(
    req: Request,
    env: &Env,
    route: Option<Route<'_>>,
    method: Option<Method>,
    now: u64,
) -> Outcome {
    // CORS preflights are answered by the gate on the routes that speak CORS; elsewhere OPTIONS
    // is an ordinary method (404 or 405), and says nothing about the caller's origin.
    if method == Some(Method::Options) {
        if let Some(r) = route.filter(|r| r.cors()) {
            return gate::preflight(&req, env, now, r.methods()).await;
        }
    }
    let Some(route) = route else {
        return Outcome::error(ApiError::not_found("route"));
    };
    let Some(method) = method.filter(|m| route.methods().contains(m)) else {
        return Outcome::error(ApiError::method_not_allowed(route.methods()));
    };
    match route {
        Route::Health => Outcome::new(respond::text(200, "ok"), "ok"),
        Route::Api => gateway::api(req, env, method, now).await,
        Route::Whoami => gateway::whoami(&req, env, now).await,
        Route::Authorize => authorize::authorize(req, env, method, now).await,
        Route::Login => authorize::login(req, env, method, now).await,
        Route::Link => link::link(req, env, method, now).await,
        Route::LinkConfirm => link::confirm(req, env, now).await,
        Route::AutoLogin => autologin::autologin(req, env, method, now).await,
        Route::Account => account::account(req, env, method, now).await,
        Route::Token | Route::Userinfo | Route::Revoke => {
            // Browser-based clients (public clients with PKCE) call these cross-origin.
            let origin = req.headers().get("origin").ok().flatten();
            let mut out = match route {
                Route::Token => token::token(req, env, now).await,
                Route::Userinfo => userinfo::userinfo(req, env, now).await,
                _ => revocation::revoke(req, env, now).await,
            };
            if let Some(origin) = origin {
                gate::add_cors(&mut out.response, env, &origin, now).await;
            }
            out
        }
        Route::Introspect => revocation::introspect(req, env, now).await,
        Route::Logout => logout::logout(req, env, method, now).await,
        Route::Register => registration::register(req, env, now)
            .await
            .unwrap_or_else(Outcome::error),
        Route::RegisterClient { id } => registration::manage(req, env, id, method, now)
            .await
            .unwrap_or_else(Outcome::error),
        Route::Jwks => discovery::jwks(env),
        Route::Discovery => discovery::discovery(env),
        Route::AdminPartners
        | Route::AdminPartner { .. }
        | Route::AdminPartnerClients { .. }
        | Route::AdminClient { .. }
        | Route::AdminClientRegistration { .. }
        | Route::AdminPartnerRegistrationTokens { .. }
        | Route::AdminRegistrationToken { .. }
        | Route::AdminUser { .. }
        | Route::AdminUserLinks { .. }
        | Route::AdminUserLink { .. }
        | Route::AdminAudit
        | Route::AdminAuditMigrate
        | Route::AdminUsage
        | Route::AdminUsageMigrate
        | Route::AdminLinksMigrate => admin::handle(req, env, route, method, now).await,
    }
}
