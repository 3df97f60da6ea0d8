//! Reading the Worker's vars and secrets, with their documented defaults.

use crate::protocol::api::{ScopeMap, DEFAULT_MAX_BODY_BYTES};
use crate::protocol::discovery::Issuer;
use crate::protocol::error::ApiError;
use crate::protocol::ratelimit::LoginLimits;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::Env;

/// Default lifetime of the in-isolate gate cache, in seconds.
pub const DEFAULT_GATE_CACHE_TTL_S: u64 = 30;

/// Upper bound, so a typo cannot keep a removed partner admitted for long.
pub const MAX_GATE_CACHE_TTL_S: u64 = 300;

pub const PARTNERS_KV: &str = "PARTNERS";

pub const REGISTRY_DO: &str = "REGISTRY";

pub const USERS_DO: &str = "USERS";

pub const GRANTS_DO: &str = "GRANTS";

pub const REPLAY_DO: &str = "REPLAY";

pub const LINKS_DO: &str = "LINKS";

pub const AUDIT_DO: &str = "AUDIT";

pub const AUDIT_BUFFER_DO: &str = "AUDIT_BUFFER";

pub const AUDIT_QUEUE: &str = "AUDIT_QUEUE";

pub const AUDIT_ARCHIVE_R2: &str = "AUDIT_ARCHIVE";

pub const LIMITS_DO: &str = "LIMITS";

pub const USAGE_DO: &str = "USAGE";

pub fn gate_cache_ttl_ms(env: &Env) -> u64 {
    once_per_isolate(&GATE_CACHE_TTL_MS, || {
        var(env, "GATE_CACHE_TTL_SECONDS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_GATE_CACHE_TTL_S)
            .min(MAX_GATE_CACHE_TTL_S)
            * 1000
    })
}

/// The `REPLAY_LEGACY_UNTIL` var (seconds since the epoch): until then a claim also asks the
/// per-signer replay object of the layout before issue 13. Empty or unset: no old objects. A value
/// that does not parse is a 503 (fail closed), never "no old objects".
pub fn replay_legacy_until(env: &Env) -> Result<Option<u64>, ApiError> {
    crate::store::replay::parse_legacy_until(&var(env, "REPLAY_LEGACY_UNTIL").unwrap_or_default())
}

/// The `LINKS_LEGACY` var: `1` while an upgraded deployment still has links in the one store
/// per partner of the layout before issue 13 (until `/admin/links/migrate` has moved them all):
/// a link not found in its shards is then looked for there too, and unlinking and a partner's
/// removal reach it. Empty or unset: no old stores. Anything else is a 503 (fail closed).
pub fn links_legacy(env: &Env) -> Result<bool, ApiError> {
    match var(env, "LINKS_LEGACY").as_deref().map(str::trim) {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(ApiError::unavailable("LINKS_LEGACY must be 1, 0 or empty")),
    }
}

/// Where the request most likely comes from (`protocol::region::of_visitor`, from
/// `request.cf`). Locally (a loopback issuer only) the `x-edgeward-visitor-region` header
/// stands in for the geolocation workerd does not have, so tests and `scripts/scale.sh` can
/// send a pupil's request from their region.
pub fn visitor_region(req: &super::request::Request, env: &Env) -> crate::protocol::region::Home {
    if issuer_is_loopback(env) {
        if let Some(r) = req
            .headers()
            .get("x-edgeward-visitor-region")
            .ok()
            .flatten()
            .and_then(|v| crate::protocol::region::Region::from_tag(&v))
        {
            return Some(r);
        }
    }
    let cf = req.cf()?;
    crate::protocol::region::of_visitor(cf.country().as_deref(), cf.continent().as_deref())
}

pub fn admin_token(env: &Env) -> Option<String> {
    env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string())
}

/// The `ISSUER` var: every token's `iss` and the base of every endpoint URL. Unset or invalid,
/// everything that issues or checks tokens answers 503.
pub fn issuer(env: &Env) -> Result<Issuer, ApiError> {
    parsed_once(&ISSUER, || {
        var(env, "ISSUER").and_then(|v| Issuer::parse(&v))
    })
    .ok_or_else(|| {
        ApiError::unavailable("ISSUER is not set to an https URL (or a loopback http URL)")
    })
}

thread_local! {
    static ISSUER_HTTPS: Cell<Option<bool>> = const { Cell::new(None) };
    static USAGE_FLUSH_MS: Cell<Option<u64>> = const { Cell::new(None) };
    static GATE_CACHE_TTL_MS: Cell<Option<u64>> = const { Cell::new(None) };
    static ISSUER: RefCell<Option<Issuer>> = const { RefCell::new(None) };
    static ORIGIN_URL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A var parsed once per isolate, when it parses (vars do not change in an isolate's life); one
/// that does not is parsed again at the next ask, and is its caller's 503 each time.
fn parsed_once<T: Clone>(
    cell: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    parse: impl FnOnce() -> Option<T>,
) -> Option<T> {
    if let Some(hit) = cell.with(|c| c.borrow().clone()) {
        return Some(hit);
    }
    let value = parse()?;
    cell.with(|c| *c.borrow_mut() = Some(value.clone()));
    Some(value)
}

/// A var-derived value, worked out once per isolate (vars do not change in an isolate's life):
/// for what every request asks.
fn once_per_isolate<T: Copy>(
    cell: &'static std::thread::LocalKey<Cell<Option<T>>>,
    work: impl FnOnce() -> T,
) -> T {
    cell.with(|c| {
        c.get().unwrap_or_else(|| {
            let v = work();
            c.set(Some(v));
            v
        })
    })
}

/// Whether the issuer is an https URL (a deployment, not local development).
pub fn issuer_is_https(env: &Env) -> bool {
    once_per_isolate(&ISSUER_HTTPS, || {
        var(env, "ISSUER").is_some_and(|i| i.starts_with("https://"))
    })
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// The `ORIGIN_URL` var: where the gateway forwards `/api/*` (the request path is appended).
/// The same rule as the issuer: https, or http on loopback; no query or trailing slash.
pub fn origin_url(env: &Env) -> Result<String, ApiError> {
    parsed_once(&ORIGIN_URL, || {
        var(env, "ORIGIN_URL")
            .and_then(|v| Issuer::parse(&v))
            .map(|u| u.as_str().to_owned())
    })
    .ok_or_else(|| {
        ApiError::unavailable("ORIGIN_URL is not set to an https URL (or a loopback http URL)")
    })
}

thread_local! {
    static SCOPES: RefCell<Option<Rc<ScopeMap>>> = const { RefCell::new(None) };
}

/// The `API_SCOPES` var, parsed once per isolate. Unset or invalid, the gateway answers 503:
/// it never forwards a route whose scope it cannot tell.
pub fn api_scopes(env: &Env) -> Result<Rc<ScopeMap>, ApiError> {
    if let Some(hit) = SCOPES.with(|c| c.borrow().clone()) {
        return Ok(hit);
    }
    let raw = var(env, "API_SCOPES").unwrap_or_default();
    let map = Rc::new(ScopeMap::parse(&raw).map_err(ApiError::unavailable)?);
    SCOPES.with(|c| *c.borrow_mut() = Some(map.clone()));
    Ok(map)
}

/// The `API_MAX_BODY_BYTES` var: the largest request body the gateway forwards.
pub fn api_max_body(env: &Env) -> u64 {
    var(env, "API_MAX_BODY_BYTES")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BODY_BYTES)
}

/// Default failed sign-ins per username from one network per 5 minutes
/// (`LOGIN_FAILURES_PER_USER`).
pub const DEFAULT_LOGIN_FAILURES_PER_USER: u32 = 10;

/// Default failed sign-ins per username from all networks together per 5 minutes
/// (`LOGIN_FAILURES_PER_USER_ALL_NETWORKS`): ten networks' worth, so one attacker's addresses
/// do not lock the user out of new browsers, while guessing spread over many stays bounded.
pub const DEFAULT_LOGIN_FAILURES_PER_USER_ALL_NETWORKS: u32 = 100;

/// Default failed sign-ins per IP per 5 minutes (`LOGIN_FAILURES_PER_IP`): a school's pupils
/// may share one address.
pub const DEFAULT_LOGIN_FAILURES_PER_IP: u32 = 100;

fn positive(env: &Env, name: &str, default: u32) -> u32 {
    var(env, name)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Calls a minute to client registration per partner, and to one client's configuration
/// endpoint (`REGISTRATIONS_PER_MINUTE`, default 30): each reaches the one registry object.
pub fn registrations_per_minute(env: &Env) -> u32 {
    positive(env, "REGISTRATIONS_PER_MINUTE", 30)
}

/// The window of the login limits (`LOGIN_WINDOW_SECONDS`, default 300): a username or network
/// that used up its failures waits at most this long.
pub fn login_window_ms(env: &Env) -> u64 {
    u64::from(positive(env, "LOGIN_WINDOW_SECONDS", 300)).min(3600) * 1000
}

/// The sign-in limits per window: `LOGIN_FAILURES_PER_IP` per network,
/// `LOGIN_FAILURES_PER_USER` per username from one network (or per trusted browser), and
/// `LOGIN_FAILURES_PER_USER_ALL_NETWORKS` per username from all networks together.
pub fn login_limits(env: &Env) -> LoginLimits {
    let per_network_user = positive(
        env,
        "LOGIN_FAILURES_PER_USER",
        DEFAULT_LOGIN_FAILURES_PER_USER,
    );
    LoginLimits {
        per_network: positive(env, "LOGIN_FAILURES_PER_IP", DEFAULT_LOGIN_FAILURES_PER_IP),
        per_network_user,
        per_user: positive(
            env,
            "LOGIN_FAILURES_PER_USER_ALL_NETWORKS",
            DEFAULT_LOGIN_FAILURES_PER_USER_ALL_NETWORKS,
        ),
    }
}

/// How often an isolate hands its usage counts over (`USAGE_FLUSH_SECONDS`, default 10; 0:
/// after every request).
pub fn usage_flush_ms(env: &Env) -> u64 {
    once_per_isolate(&USAGE_FLUSH_MS, || {
        var(env, "USAGE_FLUSH_SECONDS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(10)
            .min(300)
            * 1000
    })
}

/// Whether the issuer is a loopback http URL: a local run, never a deployment. Test-only
/// switches (fault injection, the storage-call counters, the placement log, the local stand-in
/// for jurisdictions, seeding the old audit log) act only then.
pub fn issuer_is_loopback(env: &Env) -> bool {
    var(env, "ISSUER")
        .is_some_and(|i| i.starts_with("http://127.0.0.1:") || i.starts_with("http://localhost:"))
}

/// What an injected fault does to a Durable Object call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails at once, as if the object could not be reached.
    Fail,
    /// The call never answers (until the caller's time-out).
    Hang,
    /// The object runs the command, but its reply is lost on the way back.
    Lost,
    /// The call is sent [`LATE_BY`] late (within the caller's time-out): what runs meanwhile
    /// reaches the object first.
    Late,
}

/// How late a `…:late` call is sent.
pub const LATE_BY: std::time::Duration = std::time::Duration::from_secs(3);

thread_local! {
    /// How often each counted fault (`…:lost_once`, `…:failN`) has fired in this isolate.
    static FIRED: RefCell<Vec<(String, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Counts one more firing of `spec`, if it has fired fewer than `limit` times.
fn fire_counted(spec: &str, limit: u32) -> bool {
    FIRED.with(|fired| {
        let mut fired = fired.borrow_mut();
        match fired.iter_mut().find(|(s, _)| s == spec) {
            Some((_, n)) if *n >= limit => false,
            Some((_, n)) => {
                *n += 1;
                true
            }
            None => {
                fired.push((spec.to_owned(), 1));
                limit > 0
            }
        }
    })
}

/// Fault injection for the tests: the var `EDGEWARD_INJECT_FAULTS` lists Durable Object calls
/// that fail (`BINDING:command`), hang (`BINDING:command:hang`), or run but lose their reply
/// (`BINDING:command:lost` every time, `BINDING:command:lost_once` the first time in an
/// isolate), are sent late (`BINDING:command:late`, by [`LATE_BY`]), or fail only the first N times in an isolate (`BINDING:command:failN`); `*` stands
/// for every command; comma-separated. `PARTNERS:put_revoked` (with the same suffixes, `hang` and
/// `lost` aside) fails the KV write of a revocation marker before it reaches KV. Honoured only while the issuer is a
/// loopback http URL, so it can never act in a deployment.
pub fn injected_fault(env: &Env, binding: &str, command: &str) -> Option<Fault> {
    let list = var(env, "EDGEWARD_INJECT_FAULTS").filter(|l| !l.is_empty())?;
    if !issuer_is_loopback(env) {
        return None;
    }
    list.split(',').find_map(|f| {
        let spec = f.trim();
        let mut parts = spec.split(':');
        let (b, c, kind) = (parts.next()?, parts.next()?, parts.next());
        if b != binding || (c != "*" && c != command) {
            return None;
        }
        match kind {
            Some("hang") => Some(Fault::Hang),
            Some("lost") => Some(Fault::Lost),
            Some("late") => Some(Fault::Late),
            Some("lost_once") => fire_counted(spec, 1).then_some(Fault::Lost),
            Some(k) => match k.strip_prefix("fail").map(str::parse::<u32>) {
                Some(Ok(limit)) => fire_counted(spec, limit).then_some(Fault::Fail),
                _ => Some(Fault::Fail),
            },
            None => Some(Fault::Fail),
        }
    })
}

/// Local tests only: `EDGEWARD_AUDIT_LEGACY=1` writes events to the old single `AuditLog`
/// object as before the archive (to seed a log for the migration to move). Honoured only while
/// the issuer is a loopback http URL, like fault injection.
pub fn legacy_audit_writes(env: &Env) -> bool {
    issuer_is_loopback(env) && var(env, "EDGEWARD_AUDIT_LEGACY").as_deref() == Some("1")
}

/// Local tests only: `EDGEWARD_LINKS_LEGACY_WRITES=1` makes new links in the partner's one store of
/// the layout before issue 13, as that layout did (no place in the link code, no partner
/// account in the user's record), to seed links for the move to move. Loopback issuer only.
pub fn legacy_link_writes(env: &Env) -> bool {
    issuer_is_loopback(env) && var(env, "EDGEWARD_LINKS_LEGACY_WRITES").as_deref() == Some("1")
}

/// The var `EDGEWARD_LOG_PLACEMENT` (`1`): log the placement of every object call, on a
/// loopback issuer only.
pub fn log_placement(env: &Env) -> bool {
    var(env, "EDGEWARD_LOG_PLACEMENT").is_some_and(|v| v == "1") && issuer_is_loopback(env)
}

/// The var `DEFAULT_USER_REGION`: the region of a new user whose `PUT /admin/users/{username}`
/// names none. Empty or unset (the default): a new user must name one. A value that is not a
/// region is a 503 (a misconfiguration, never silently no region).
pub fn default_user_region(env: &Env) -> Result<Option<crate::protocol::region::Region>, ApiError> {
    match var(env, "DEFAULT_USER_REGION").filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => crate::protocol::region::Region::parse(v.trim())
            .map(Some)
            .map_err(|_| ApiError::unavailable("DEFAULT_USER_REGION is not a region")),
    }
}

/// For the test of the usage migration only: `EDGEWARD_USAGE_TO_LEGACY_OBJECT=1` makes isolates
/// hand their counts to the old `UsageLog` object as before D1, to seed it. Honoured only while
/// the issuer is a loopback http URL, so it can never act in a deployment.
pub fn usage_to_legacy_object(env: &Env) -> bool {
    var(env, "EDGEWARD_USAGE_TO_LEGACY_OBJECT").is_some_and(|v| v == "1") && issuer_is_loopback(env)
}

pub const USAGE_QUEUE: &str = "USAGE_QUEUE";

/// The audience of our access tokens: the platform API behind the gateway.
pub fn api_audience(issuer: &Issuer) -> String {
    issuer.url("/api")
}
