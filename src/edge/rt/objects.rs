//! Calling Durable Objects: one JSON command in, one JSON reply out. Transport failures are 503s.

use crate::edge::rt::config::Fault;
use crate::edge::rt::counts;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::region::Home;
use crate::store::{Command, Encoded};
use futures_util::future::{select, Either};
use serde::de::DeserializeOwned;
use std::time::Duration;
use worker::{Delay, Env, Method, Request, RequestInit};

/// Longest Durable Object name sent to the runtime (bytes).
pub const MAX_OBJECT_NAME_BYTES: usize = 512;

/// Where an object is reached: through its binding's namespace or the namespace of a
/// jurisdiction, and with the location hint it is created with (honoured only at creation). The
/// one place an object call's placement is chosen, so it can be counted here: every call passes
/// through [`send`] with its placement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub jurisdiction: Option<&'static str>,
    pub hint: Option<&'static str>,
}

impl Placement {
    /// The binding's own namespace, no hint: every object kind that holds nobody's data, and
    /// legacy users (created before regions).
    pub const GLOBAL: Placement = Placement {
        jurisdiction: None,
        hint: None,
    };

    /// How the counters of `scripts/scale.sh` name it: the jurisdiction and hint, or `global`.
    pub fn label(&self) -> &'static str {
        match (self.jurisdiction, self.hint) {
            (Some("eu"), _) => "eu jurisdiction",
            (_, Some("weur")) => "hint weur",
            (_, Some("enam")) => "hint enam",
            (_, Some("apac")) => "hint apac",
            (_, Some(_)) => "another hint",
            (None, None) => "global",
            (Some(_), None) => "another jurisdiction",
        }
    }

    /// The placement of a user's objects (their user object, their grants).
    pub fn of(home: Home) -> Placement {
        match home {
            None => Placement::GLOBAL,
            Some(region) => Placement {
                jurisdiction: region.jurisdiction(),
                hint: Some(region.location_hint()),
            },
        }
    }
}

/// Sends one typed command as its kind's wire enum. A command that is safe to run twice
/// ([`Command::IDEMPOTENT`]) is sent again when the exchange fails (`call_idempotent`, as the
/// documents call it): the object may have run it and only the reply have been lost, and
/// running it again answers the same (a redemption or refresh names its attempt, so its retry
/// is not taken for a replay). A call that timed out is not sent again: it has used the time a
/// caller may wait. Any other command is sent once. The answer is the command's own
/// reply or the object's refusal. Only the encoding and decoding are generic: the exchange is
/// one function for every command, which keeps the bundle small.
pub async fn call_command<C: Command>(
    env: &Env,
    binding: &str,
    object: &str,
    cmd: C,
) -> Result<C::Reply, ApiError> {
    call_command_in(env, binding, object, Placement::GLOBAL, cmd).await
}

/// [`call_command`] to the object named `object` in `placement`. The same name in another
/// placement is another object: the placement must be known before the first call.
pub async fn call_command_in<C: Command>(
    env: &Env,
    binding: &str,
    object: &str,
    placement: Placement,
    cmd: C,
) -> Result<C::Reply, ApiError> {
    let wire: C::Kind = cmd.into();
    let body =
        serde_json::to_string(&wire).map_err(|e| ApiError::unavailable(format!("encode: {e}")))?;
    let attempts = if C::IDEMPOTENT {
        IDEMPOTENT_ATTEMPTS
    } else {
        1
    };
    let reply = send(env, binding, object, placement, body, attempts).await?;
    serde_json::from_str::<Result<C::Reply, ApiError>>(&reply)
        .map_err(|e| ApiError::unavailable(format!("{binding} reply: {e}")))?
}

/// Attempts of an idempotent call: the first and two retries.
const IDEMPOTENT_ATTEMPTS: u32 = 3;

enum Failure {
    /// The exchange failed; the object may or may not have run the command.
    Exchange(ApiError),
    /// No answer within [`OBJECT_TIMEOUT`].
    TimedOut(ApiError),
}

async fn send(
    env: &Env,
    binding: &str,
    object: &str,
    placement: Placement,
    body: String,
    attempts: u32,
) -> Result<String, ApiError> {
    // Names come from checked values of bounded length; one that is not is refused as input,
    // never sent to the runtime (which would fail it as a 5xx).
    if object.len() > MAX_OBJECT_NAME_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a value in the request is too long",
        )
        .with_cause(format!("{binding}: object name of {} bytes", object.len())));
    }
    let _in_flight = counts::call("do", binding, object, command_tag(&body));
    counts::placed("do", binding, placement.label());
    let stub = stub(env, binding, object, placement)?;
    let mut attempt = 1;
    loop {
        match exchange(env, binding, &stub, &body).await {
            Ok(reply) => return Ok(reply),
            Err(Failure::Exchange(e)) if attempt < attempts => {
                let cause = e.cause.as_deref().unwrap_or("");
                worker::console_warn!("{binding}: attempt {attempt} failed, retrying: {cause}");
                Delay::from(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(Failure::Exchange(e) | Failure::TimedOut(e)) => return Err(e),
        }
    }
}

/// The stub of `object` in `placement`. A jurisdiction's namespace is asked of the binding's
/// (`DurableObjectNamespace.jurisdiction`, which workers-rs does not wrap). Local workerd does
/// not implement jurisdictions (it throws "Jurisdiction restrictions are not implemented in
/// workerd"): on a loopback issuer only, the jurisdiction's namespace is then stood in for by a
/// name prefix (`jurisdiction/{j}/{name}`) in the global namespace, which keeps what matters
/// for the code: the same name in the jurisdiction is another object. Anywhere else a
/// jurisdiction that cannot be had is a 503, never the global namespace.
fn stub(
    env: &Env,
    binding: &str,
    object: &str,
    placement: Placement,
) -> Result<worker::Stub, ApiError> {
    let unavailable = |e: worker::Error| ApiError::unavailable(format!("{binding} binding: {e}"));
    let ns = env.durable_object(binding).map_err(unavailable)?;
    let (ns, name, emulated) = match placement.jurisdiction {
        None => (ns, object.to_owned(), false),
        Some(j) => match jurisdiction(&ns, j) {
            Ok(sub) => (sub, object.to_owned(), false),
            Err(_) if crate::edge::rt::config::issuer_is_loopback(env) => {
                (ns, format!("jurisdiction/{j}/{object}"), true)
            }
            Err(e) => {
                return Err(ApiError::unavailable(format!(
                    "{binding}: jurisdiction {j}: {e:?}"
                )))
            }
        },
    };
    if crate::edge::rt::config::log_placement(env) {
        // Local only: which namespace and hint each call went to (no object name: it may hold
        // a username).
        worker::console_log!(
            "{}",
            serde_json::json!({ "placement": {
                "binding": binding,
                "jurisdiction": placement.jurisdiction,
                "hint": placement.hint,
                "emulated": emulated,
            }})
        );
    }
    match placement.hint {
        None => ns.get_by_name(&name),
        Some(hint) => ns.get_by_name_with_location_hint(&name, hint),
    }
    .map_err(unavailable)
}

/// The namespace of jurisdiction `j` within `ns`.
fn jurisdiction(
    ns: &worker::ObjectNamespace,
    j: &str,
) -> Result<worker::ObjectNamespace, wasm_bindgen::JsValue> {
    use wasm_bindgen::{JsCast, JsValue};
    let method: js_sys::Function =
        js_sys::Reflect::get(ns.as_ref(), &JsValue::from_str("jurisdiction"))?.dyn_into()?;
    method
        .call1(ns.as_ref(), &JsValue::from_str(j))?
        .dyn_into::<worker::ObjectNamespace>()
}

async fn exchange(
    env: &Env,
    binding: &str,
    stub: &worker::Stub,
    body: &str,
) -> Result<String, Failure> {
    let failed = |what: &str, e: worker::Error| {
        Failure::Exchange(ApiError::unavailable(format!("{binding} {what}: {e}")))
    };
    let fault = crate::edge::rt::config::injected_fault(env, binding, command_tag(body));
    if fault == Some(Fault::Fail) {
        return Err(Failure::Exchange(ApiError::unavailable(format!(
            "{binding}: injected fault"
        ))));
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(body.to_owned().into()));
    let req = Request::new_with_init("https://object.internal/command", &init)
        .map_err(|e| failed("request", e))?;
    // A bounded wait: an object that does not answer is a 503, not a request held until the
    // runtime gives up. (The object may still finish its command: callers treat a time-out
    // like any other failure, and commands are safe to retry or fail closed.)
    let round_trip = async move {
        match fault {
            Some(Fault::Hang) => Delay::from(Duration::from_secs(3_600)).await,
            Some(Fault::Late) => Delay::from(crate::edge::rt::config::LATE_BY).await,
            _ => {}
        }
        let mut resp = stub
            .fetch_with_request(req)
            .await
            .map_err(|e| failed("fetch", e))?;
        let reply = resp.text().await.map_err(|e| failed("reply", e))?;
        if fault == Some(Fault::Lost) {
            return Err(Failure::Exchange(ApiError::unavailable(format!(
                "{binding}: injected lost reply"
            ))));
        }
        Ok(reply)
    };
    within(OBJECT_TIMEOUT, round_trip).await.unwrap_or_else(|| {
        Err(Failure::TimedOut(ApiError::unavailable(format!(
            "{binding}: no answer within {} s",
            OBJECT_TIMEOUT.as_secs()
        ))))
    })
}

/// Awaits `fut` for at most `limit`: `None` if it did not finish in time (it is dropped).
pub async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let raced = select(Box::pin(fut), Box::pin(Delay::from(limit))).await;
    match raced {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

/// How long a KV read or write may take before it is a 503.
pub const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// A KV operation, bounded like a Durable Object call: a failure or time-out is a 503. Only for
/// reads and for writes that are safe to land late (the JS promise is not cancelled): a
/// revocation marker, never a registry record.
pub async fn kv_op<T, E: std::fmt::Display>(
    what: &str,
    key: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    let _in_flight = counts::kv(what, key);
    match within(KV_TIMEOUT, fut).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(ApiError::unavailable(format!("kv {what}: {e}"))),
        None => Err(ApiError::unavailable(format!(
            "kv {what}: no answer within {} s",
            KV_TIMEOUT.as_secs()
        ))),
    }
}

/// How long a Durable Object call may take before it is a 503.
pub const OBJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The variant name of an externally tagged command: `{"redeem":{..}}` or `"revoke_all"`.
fn command_tag(json: &str) -> &str {
    let rest = json.trim_start_matches(['{', '"']);
    rest.split('"').next().unwrap_or("")
}

/// The one shape of every object's `fetch`: decode the command (its kind's wire enum), run it
/// (`handle` of the kind's handler trait, which encodes its answer), log an internal cause,
/// answer. A command that does not decode is a server error (callers are ours).
pub async fn serve_commands<K, F, Fut>(
    mut req: worker::Request,
    object: &str,
    handle: F,
) -> worker::Result<worker::Response>
where
    K: DeserializeOwned,
    F: FnOnce(K) -> Fut,
    Fut: std::future::Future<Output = Encoded>,
{
    let encoded = match req.json::<K>().await {
        Ok(cmd) => handle(cmd).await,
        Err(e) => crate::store::encode::<()>(Err(ApiError::new(
            ErrorCode::ServerError,
            format!("malformed {object} command"),
        )
        .with_cause(e.to_string()))),
    };
    if let Some(cause) = &encoded.cause {
        worker::console_error!("{object}: {cause}");
    }
    let mut resp = worker::Response::ok(encoded.body)?;
    resp.headers_mut().set("content-type", "application/json")?;
    Ok(resp)
}

/// Text as an SQLite value.
pub fn sql_text(s: &str) -> worker::SqlStorageValue {
    worker::SqlStorageValue::String(s.to_owned())
}

/// Optional text as an SQLite value: `NULL` when absent.
pub fn sql_opt_text(s: Option<String>) -> worker::SqlStorageValue {
    s.map_or(
        worker::SqlStorageValue::Null,
        worker::SqlStorageValue::String,
    )
}

/// A count or time as an SQLite integer (saturating: SQLite integers are signed).
pub fn sql_int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// An object's SQLite storage, with its schema applied once per object instance (`ready`
/// remembers it). `schema` is `;`-separated `CREATE ... IF NOT EXISTS` statements.
pub fn sql(
    state: &worker::State,
    ready: &std::cell::Cell<bool>,
    schema: &str,
) -> Result<worker::SqlStorage, ApiError> {
    let sql = state.storage().sql();
    if !ready.get() {
        for stmt in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sql.exec(stmt, None)
                .map_err(|e| ApiError::unavailable(format!("schema: {e}")))?;
        }
        ready.set(true);
    }
    Ok(sql)
}
