//! The admin API: operators manage partners. Every call is authorized first.

use worker::{Env, Request};

use super::config;
use super::registry;
use super::respond;
use super::Outcome;
use crate::protocol::admin_auth::check_admin;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::{parse_partner_spec, PartnerId};
use crate::routes::{Method, Route};
use crate::store::registry::{RegistryCommand, RegistryReply};

/// Largest admin request body.
pub const MAX_BODY: usize = 64 * 1024;

pub async fn handle(
    req: Request,
    env: &Env,
    route: Route<'_>,
    method: Method,
    now_ms: u64,
) -> Outcome {
    let auth = req.headers().get("authorization").ok().flatten();
    if let Err(e) = check_admin(config::admin_token(env).as_deref(), auth.as_deref()) {
        return Outcome::error(e);
    }
    match run(req, env, route, method, now_ms).await {
        Ok(out) => out,
        Err(e) => Outcome::error(e),
    }
}

async fn read_body(mut req: Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body must be at most {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let ct = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "content-type must be application/json",
        ));
    }
    let body = req
        .bytes()
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("unreadable body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(body)
}

async fn run(
    req: Request,
    env: &Env,
    route: Route<'_>,
    method: Method,
    now_ms: u64,
) -> Result<Outcome, ApiError> {
    let cmd = match (route, method) {
        (Route::AdminPartners, Method::Get) => RegistryCommand::List,
        (Route::AdminPartner { id }, Method::Get) => RegistryCommand::Get {
            id: PartnerId::parse(id)?,
        },
        (Route::AdminPartner { id }, Method::Delete) => RegistryCommand::Delete {
            id: PartnerId::parse(id)?,
        },
        (Route::AdminPartner { id }, Method::Put) => {
            let id = PartnerId::parse(id)?;
            let spec = parse_partner_spec(&read_body(req).await?)?;
            RegistryCommand::Put {
                id,
                spec,
                now: now_ms / 1000,
            }
        }
        _ => return Err(ApiError::method_not_allowed(route.methods())),
    };
    Ok(match registry::call(env, &cmd).await? {
        RegistryReply::Saved { partner, created } => {
            let id = partner.id.clone();
            let status = if created { 201 } else { 200 };
            let outcome = if created { "created" } else { "replaced" };
            Outcome::new(respond::json(status, &partner, &[]), outcome).partner(id)
        }
        RegistryReply::Partner { partner } => {
            let id = partner.id.clone();
            Outcome::new(respond::json(200, &partner, &[]), "ok").partner(id)
        }
        RegistryReply::Partners { partners } => Outcome::new(
            respond::json(200, &serde_json::json!({ "partners": partners }), &[]),
            "ok",
        ),
        RegistryReply::Deleted => Outcome::new(respond::empty(204, &[]), "deleted"),
        RegistryReply::Failed { error } => Outcome::error(error),
    })
}
