//! The admin API: operators manage partners, their OAuth clients, and platform users.
//! Every call is authorized first; nothing else is looked at before that.

use crate::edge::calls::{registry, usage, users};
use crate::edge::flows::{revoke, unlink};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, random, respond};
use crate::protocol::admin_auth::check_admin;
use crate::protocol::client::{check_signing_keys, parse_client_spec, ClientId, ClientRecord};
use crate::protocol::client_auth::secret_hash;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::{check_issuer_is_not_ours, parse_partner_spec, PartnerId};
use crate::protocol::region::Home;
use crate::protocol::registration::parse_token_spec;
use crate::protocol::user::{parse_user_spec, UserSpec, Username};
use crate::routes::{Method, Route};
use crate::store::registry::{
    CreateClient, CreateRegistrationToken, Delete, DeleteClient, EndRegistrationAccess, Get,
    GetClient, List, ListClients, ListRegistrationTokens, Put, RemovalDone,
    RevokeRegistrationToken, Saved,
};
use crate::store::usage::parse_migrate_request;
use crate::store::users as user_store;
use base64ct::{Base64UrlUnpadded, Encoding};
use worker::{Env, Result};

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
    let now = now_ms / 1000;
    let result = match route {
        Route::AdminAudit | Route::AdminAuditMigrate | Route::AdminUsage => {
            let query = req
                .url()
                .ok()
                .and_then(|u| u.query().map(str::to_owned))
                .unwrap_or_default();
            return match route {
                Route::AdminUsage => usage::query(env, &query, now).await,
                Route::AdminAuditMigrate => {
                    crate::edge::calls::audit::migrate(env, &query, now).await
                }
                _ => crate::edge::calls::audit::query(env, &query, now).await,
            };
        }
        Route::AdminUsageMigrate => migrate_usage(req, env, now_ms).await,
        Route::AdminLinksMigrate => migrate_links(req, env, now_ms).await,
        Route::AdminUser { username } => user(req, env, username, method, now).await,
        Route::AdminUserLinks { username } => user_links(env, username, now).await,
        Route::AdminUserLink { username, partner } => unlink(env, username, partner, now).await,
        _ => registry_route(req, env, route, method, now).await,
    };
    result.unwrap_or_else(Outcome::error)
}

/// `POST /admin/links/migrate` `{"partner": id}`: moves a batch of the partner's links from its
/// store of the earlier layout into their shards (`flows::link_migration`); `done`: none left.
/// Running it again adds nothing twice.
async fn migrate_links(req: Request, env: &Env, now_ms: u64) -> Result<Outcome, ApiError> {
    let partner = crate::store::links::parse_migrate_request(&read_body(req).await?)?;
    let batch = crate::edge::flows::link_migration::move_batch(env, &partner, now_ms).await?;
    let body = serde_json::json!({
        "moved": batch.moved,
        "skipped": batch.skipped,
        "done": batch.done,
    });
    Ok(Outcome::new(respond::json(200, &body, &[]), "ok").partner(partner))
}

/// `POST /admin/usage/migrate`: moves one page of the old usage object's rows into D1; the
/// answer says how many moved, how many an earlier run had moved, and where the next page
/// starts (`done`: none left). Running it again from any point adds nothing twice.
async fn migrate_usage(req: Request, env: &Env, now_ms: u64) -> Result<Outcome, ApiError> {
    let (after, limit) = parse_migrate_request(&read_body(req).await?)?;
    let page = usage::migrate_page(env, after, limit, now_ms).await?;
    let body = serde_json::json!({
        "moved": page.moved,
        "already_moved": page.already,
        "next": page.next,
        "done": page.done,
    });
    Ok(Outcome::new(respond::json(200, &body, &[]), "ok"))
}

async fn read_body(mut req: Request) -> Result<Vec<u8>, ApiError> {
    crate::edge::rt::body::json(&mut req, MAX_BODY).await
}

fn client_id_param(id: &str) -> Result<ClientId, ApiError> {
    ClientId::parse(id).ok_or_else(|| ApiError::not_found("client"))
}

async fn registry_route(
    req: Request,
    env: &Env,
    route: Route<'_>,
    method: Method,
    now: u64,
) -> Result<Outcome, ApiError> {
    let partner_outcome = |partner: crate::protocol::partner::Partner| {
        let id = partner.id.clone();
        Outcome::new(respond::json(200, &partner, &[]), "ok").partner(id)
    };
    Ok(match (route, method) {
        (Route::AdminPartners, Method::Get) => {
            let partners = registry::call(env, List {}).await?;
            Outcome::new(
                respond::json(200, &serde_json::json!({ "partners": partners }), &[]),
                "ok",
            )
        }
        (Route::AdminPartner { id }, Method::Get) => partner_outcome(
            registry::call(
                env,
                Get {
                    id: PartnerId::parse(id)?,
                },
            )
            .await?,
        ),
        (Route::AdminPartner { id }, Method::Delete) => {
            let id = PartnerId::parse(id)?;
            let partner = registry::call(env, Delete { id }).await?;
            forget_partner(&partner.id);
            // Gone from the registry and the edge; now what it held ends. A failure, or more
            // than one request does, is a 503: the same DELETE again goes on from there.
            let salt = partner.subject_salt.as_deref();
            if !unlink::end_partner(env, &partner.id, salt, now).await? {
                return Err(ApiError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the partner is removed; ending its account links is not finished: repeat the request",
                ));
            }
            registry::call(
                env,
                RemovalDone {
                    id: partner.id.clone(),
                },
            )
            .await?;
            Outcome::new(respond::empty(204, &[]), "deleted").partner(partner.id)
        }
        (Route::AdminPartner { id }, Method::Put) => {
            let id = PartnerId::parse(id)?;
            let spec = parse_partner_spec(&read_body(req).await?)?;
            check_issuer_is_not_ours(&spec, &config::issuer(env)?)?;
            let Saved { partner, created } = registry::call(env, Put { id, spec, now }).await?;
            forget_partner(&partner.id);
            let id = partner.id.clone();
            let (status, outcome) = if created {
                (201, "created")
            } else {
                (200, "replaced")
            };
            Outcome::new(respond::json(status, &partner, &[]), outcome).partner(id)
        }
        (Route::AdminPartnerClients { id }, Method::Get) => {
            let partner_id = PartnerId::parse(id)?;
            let clients = registry::call(env, ListClients { partner_id }).await?;
            Outcome::new(
                respond::json(200, &serde_json::json!({ "clients": clients }), &[]),
                "ok",
            )
        }
        (Route::AdminPartnerClients { id }, Method::Post) => {
            let partner_id = PartnerId::parse(id)?;
            let spec = parse_client_spec(&read_body(req).await?)?;
            // Refused now rather than a 503 at the token endpoint later.
            let available = crate::edge::rt::keys::key_set(env)?.signing_algs();
            check_signing_keys(&spec, &available)?;
            let client_id =
                ClientId::parse(&Base64UrlUnpadded::encode_string(&random::bytes::<16>()?))
                    .ok_or_else(|| ApiError::unavailable("client id generation"))?;
            // A client secret is generated here and shown once in the reply; only its hash is
            // stored.
            let mut new_secret: Option<String> = None;
            let secret_hash = if spec.token_endpoint_auth_method.uses_secret() {
                let secret = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
                let hash = secret_hash(&secret);
                new_secret = Some(secret);
                Some(hash)
            } else {
                None
            };
            let cmd = CreateClient {
                partner_id,
                client_id,
                spec,
                secret_hash,
                now,
            };
            let client = registry::call(env, cmd).await?;
            client_outcome(client, new_secret, (201, "created"))?
        }
        (Route::AdminClient { id }, Method::Get) => {
            let client_id = client_id_param(id)?;
            let client = registry::call(env, GetClient { client_id }).await?;
            client_outcome(client, None, (200, "ok"))?
        }
        (Route::AdminClient { id }, Method::Delete) => {
            let client_id = client_id_param(id)?;
            let key = client_id.kv_key();
            registry::call(env, DeleteClient { client_id }).await?;
            crate::edge::rt::kvcache::forget(&key);
            Outcome::new(respond::empty(204, &[]), "deleted")
        }
        (Route::AdminClientRegistration { id }, Method::Delete) => {
            let client_id = client_id_param(id)?;
            registry::call(env, EndRegistrationAccess { client_id }).await?;
            Outcome::new(respond::empty(204, &[]), "deleted")
        }
        (Route::AdminPartnerRegistrationTokens { id }, Method::Get) => {
            let partner_id = PartnerId::parse(id)?;
            let tokens = registry::call(env, ListRegistrationTokens { partner_id }).await?;
            Outcome::new(
                respond::json(
                    200,
                    &serde_json::json!({ "registration_tokens": tokens }),
                    &[],
                ),
                "ok",
            )
        }
        (Route::AdminPartnerRegistrationTokens { id }, Method::Post) => {
            let partner_id = PartnerId::parse(id)?;
            let spec = parse_token_spec(&read_body(req).await?)?;
            // The token is shown once, in this reply; the registry keeps its hash.
            let token = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
            let cmd = CreateRegistrationToken {
                partner_id,
                id: Base64UrlUnpadded::encode_string(&random::bytes::<12>()?),
                token_hash: secret_hash(&token),
                spec,
                now,
            };
            let record = registry::call(env, cmd).await?;
            let partner = record.partner_id.clone();
            let mut body = serde_json::to_value(&record)
                .map_err(|e| ApiError::unavailable(format!("encode token: {e}")))?;
            if let Some(obj) = body.as_object_mut() {
                obj.insert("token".into(), token.into());
            }
            Outcome::new(respond::json(201, &body, &[]), "created").partner(partner)
        }
        (Route::AdminRegistrationToken { id }, Method::Delete) => {
            let id = (*id).to_owned();
            registry::call(env, RevokeRegistrationToken { id }).await?;
            Outcome::new(respond::empty(204, &[]), "deleted")
        }
        _ => return Err(ApiError::method_not_allowed(route.methods())),
    })
}

/// A partner this request changed: this isolate forgets its cached record at once (others
/// within the cache lifetime), so its new keys work from the next request on.
fn forget_partner(id: &PartnerId) {
    crate::edge::rt::kvcache::forget(&crate::protocol::partner::keys::partner(id));
}

/// A client record for the admin API, with its new secret (shown once) when it has one.
fn client_outcome(
    client: ClientRecord,
    new_secret: Option<String>,
    (status, outcome): (u16, &'static str),
) -> Result<Outcome, ApiError> {
    let partner = client.partner_id.clone();
    let mut body = serde_json::to_value(&client)
        .map_err(|e| ApiError::unavailable(format!("encode client: {e}")))?;
    if let (Some(secret), Some(obj)) = (new_secret, body.as_object_mut()) {
        obj.insert("client_secret".into(), secret.into());
    }
    Ok(Outcome::new(respond::json(status, &body, &[]), outcome).partner(partner))
}

async fn user(
    req: Request,
    env: &Env,
    username: &str,
    method: Method,
    now: u64,
) -> Result<Outcome, ApiError> {
    let username = Username::parse(username)?;
    // Where the user lives: the directory, from KV itself (this isolate's cached answer may
    // predate a creation elsewhere). No entry: a legacy user, or nobody.
    let home = users::home_fresh(env, &username, now * 1000).await?;
    // A new password or a removed user: the grants end now. The change itself is made either
    // way; a failure revoking is a 503, and the same request again revokes what is left.
    match method {
        Method::Get => {
            let user = users::call(env, &username, home, user_store::Get {}).await?;
            Ok(Outcome::new(respond::json(200, &user, &[]), "ok"))
        }
        Method::Delete => {
            let deleted = users::call(env, &username, home, user_store::Delete {}).await;
            if let Ok(user_store::Deleted { revoke }) = &deleted {
                revoke::revoke_for_user(env, &username, home, revoke).await?;
            }
            // The directory entry goes last (also when an earlier attempt removed the user
            // and failed after), so the username may be created again in another region.
            if home.is_some()
                && matches!(
                    &deleted,
                    Ok(_)
                        | Err(ApiError {
                            code: ErrorCode::NotFound,
                            ..
                        })
                )
            {
                users::forget_home(env, &username).await?;
            }
            deleted?;
            Ok(Outcome::new(respond::empty(204, &[]), "deleted"))
        }
        Method::Put => {
            // Whether the password is required is decided by the user's object, which knows
            // whether the user exists; a new user's region, here, before the object is made.
            let mut spec = parse_user_spec(&read_body(req).await?, false)?;
            let home = placement_for_put(env, &username, home, &spec).await?;
            spec.region = home;
            let cmd = user_store::Put {
                username: username.clone(),
                spec,
                now,
            };
            let user_store::Saved {
                user,
                created,
                revoke,
            } = users::call(env, &username, home, cmd).await?;
            revoke::revoke_for_user(env, &username, home, &revoke).await?;
            let (status, outcome) = if created {
                (201, "created")
            } else {
                (200, "replaced")
            };
            Ok(Outcome::new(respond::json(status, &user, &[]), outcome))
        }
        _ => Err(ApiError::method_not_allowed(
            Route::AdminUser { username: "" }.methods(),
        )),
    }
}

/// Where `PUT /admin/users/{username}` saves the user. An existing user stays where they live:
/// a body that names another region is refused (a PUT does not move a user; docs/storage.md
/// says how). A new user is created in the region the body names, or in `DEFAULT_USER_REGION`;
/// with neither, the request is refused. The directory entry is written before the object is
/// made, so no user object is ever without it (a creation that fails after it is finished by
/// the same request again).
async fn placement_for_put(
    env: &Env,
    username: &Username,
    home: Home,
    spec: &UserSpec,
) -> Result<Home, ApiError> {
    let moving = |lives: &str| {
        ApiError::invalid_field(
            "region",
            format!("the user lives in {lives}; a PUT does not move a user"),
        )
    };
    if let Some(lives) = home {
        return match spec.region {
            Some(asked) if asked != lives => Err(moving(lives.as_str())),
            _ => Ok(home),
        };
    }
    // No entry: a user from before regions (in the global namespace), or a new one.
    match users::call(env, username, None, user_store::Get {}).await {
        Ok(_) if spec.region.is_some() => Err(moving("no region (created before regions)")),
        Ok(_) => Ok(None),
        Err(e) if e.code == ErrorCode::NotFound => {
            if spec.password.is_none() {
                return Err(ApiError::invalid_field(
                    "password",
                    "is required for a new user",
                ));
            }
            let region = match spec.region {
                Some(r) => r,
                None => config::default_user_region(env)?.ok_or_else(|| {
                    ApiError::invalid_field("region", "is required for a new user")
                })?,
            };
            users::record_home(env, username, region).await?;
            Ok(Some(region))
        }
        Err(e) => Err(e),
    }
}

async fn user_links(env: &Env, username: &str, now: u64) -> Result<Outcome, ApiError> {
    let username = Username::parse(username)?;
    let home = users::home_fresh(env, &username, now * 1000).await?;
    let cmd = user_store::Links {
        session_hash: None,
        now: 0,
    };
    // Without a session asked about, the links are always answered.
    let links = users::call(env, &username, home, cmd)
        .await?
        .map(|l| l.links)
        .unwrap_or_default();
    Ok(Outcome::new(
        respond::json(200, &serde_json::json!({ "links": links }), &[]),
        "ok",
    ))
}

async fn unlink(env: &Env, username: &str, partner: &str, now: u64) -> Result<Outcome, ApiError> {
    let username = Username::parse(username)?;
    let partner = PartnerId::parse(partner)?;
    let home = users::home_fresh(env, &username, now * 1000).await?;
    let cmd = user_store::Links {
        session_hash: None,
        now: 0,
    };
    let links = users::call(env, &username, home, cmd)
        .await?
        .map(|l| l.links);
    let Some(link) = links
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.partner_id == partner)
    else {
        return Err(ApiError::not_found("link"));
    };
    // The link's shard: the partner account it is to, in the user's region.
    let place = link
        .partner_sub
        .as_deref()
        .map(|sub| crate::store::links::Place::of(home, sub));
    let salt = crate::edge::calls::links::salt_of(env, &partner, now * 1000).await?;
    unlink::unlink(env, &partner, salt.as_deref(), &username, home, place, now).await?;
    Ok(Outcome::new(respond::empty(204, &[]), "unlinked").partner(partner))
}
