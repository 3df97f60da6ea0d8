//! The `LinkStore` Durable Object: account links of one partner. Each command is one synchronous
//! stretch of SQLite statements, so concurrent links cannot break the one-to-one rule.

use std::cell::Cell;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::objects::sql_text as text;
use super::{config, objects};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::PartnerId;
use crate::protocol::user::Username;
use crate::store::links::{
    object_name, LinkCommand, LinkReply, MAX_LINK_GRANTS, SCHEMA, UNLINK_BATCH,
};

pub async fn call(
    env: &Env,
    partner: &PartnerId,
    cmd: &LinkCommand,
) -> std::result::Result<LinkReply, ApiError> {
    objects::call(env, config::LINKS_DO, &object_name(partner), cmd).await
}

#[durable_object(fetch)]
pub struct LinkStore {
    state: State,
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct GrantRow {
    grant_id: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: u64,
}

#[derive(Deserialize)]
struct Row {
    partner_sub: String,
    username: String,
    user_sub: String,
}

impl DurableObject for LinkStore {
    fn new(state: State, _env: Env) -> Self {
        LinkStore {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "link store", |cmd: LinkCommand| async move {
            self.execute(cmd)
        })
        .await
    }
}

impl LinkStore {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }

    fn rows(
        &self,
        sql: &SqlStorage,
        query: &str,
        arg: &str,
    ) -> std::result::Result<Vec<Row>, ApiError> {
        sql.exec(query, vec![text(arg)])
            .and_then(|c| c.to_array())
            .map_err(err)
    }

    fn execute(&self, cmd: LinkCommand) -> std::result::Result<LinkReply, ApiError> {
        let sql = self.sql()?;
        match cmd {
            LinkCommand::Link {
                partner_sub,
                username,
                user_sub,
                now,
            } => {
                // A link of a deleted user whose username was given to someone new is stale.
                sql.exec(
                    "DELETE FROM links WHERE username = ? AND user_sub != ?",
                    vec![text(username.as_str()), text(&user_sub)],
                )
                .map_err(err)?;
                let by_sub = self.rows(
                    &sql,
                    "SELECT partner_sub, username, user_sub FROM links WHERE partner_sub = ?",
                    &partner_sub,
                )?;
                let by_user = self.rows(
                    &sql,
                    "SELECT partner_sub, username, user_sub FROM links WHERE username = ?",
                    username.as_str(),
                )?;
                match (by_sub.first(), by_user.first()) {
                    (Some(s), _) if s.username == username.as_str() => {
                        Ok(LinkReply::Linked { created: false })
                    }
                    (Some(_), _) => Ok(LinkReply::PartnerAccountTaken),
                    (None, Some(u)) if u.partner_sub != partner_sub => {
                        Ok(LinkReply::UserAlreadyLinked)
                    }
                    _ => {
                        sql.exec(
                            "INSERT INTO links (partner_sub, username, user_sub, created_at) VALUES (?, ?, ?, ?)",
                            vec![
                                text(&partner_sub),
                                text(username.as_str()),
                                text(&user_sub),
                                objects::sql_int(now),
                            ],
                        )
                        .map_err(err)?;
                        Ok(LinkReply::Linked { created: true })
                    }
                }
            }
            LinkCommand::Lookup { partner_sub } => {
                let rows = self.rows(
                    &sql,
                    "SELECT partner_sub, username, user_sub FROM links WHERE partner_sub = ?",
                    &partner_sub,
                )?;
                let found = rows.first().and_then(|r| {
                    Username::parse(&r.username)
                        .ok()
                        .map(|u| (u, r.user_sub.clone()))
                });
                Ok(match found {
                    Some((username, user_sub)) => LinkReply::Found { username, user_sub },
                    None => LinkReply::NotFound,
                })
            }
            LinkCommand::Unlink {
                username,
                now,
                remove,
            } => {
                // The link goes at once (rows of the earlier table move over first); its grants
                // stay listed until revoked and forgotten, so a retry finds the rest.
                if remove {
                    sql.exec(
                        "INSERT INTO link_grants_by_user (username, grant_id, expires_at) \
                         SELECT l.username, g.grant_id, ? FROM link_grants g \
                         JOIN links l ON l.partner_sub = g.partner_sub WHERE l.username = ? \
                         ON CONFLICT DO NOTHING",
                        vec![
                            objects::sql_int(now + crate::protocol::grant::GRANT_ABSOLUTE_S),
                            text(username.as_str()),
                        ],
                    )
                    .map_err(err)?;
                    sql.exec(
                        "DELETE FROM link_grants WHERE partner_sub IN \
                         (SELECT partner_sub FROM links WHERE username = ?)",
                        vec![text(username.as_str())],
                    )
                    .map_err(err)?;
                    sql.exec(
                        "DELETE FROM links WHERE username = ?",
                        vec![text(username.as_str())],
                    )
                    .map_err(err)?;
                }
                prune_expired(&sql, &username, now)?;
                let grants: Vec<GrantRow> = sql
                    .exec(
                        "SELECT grant_id FROM link_grants_by_user WHERE username = ? LIMIT ?",
                        vec![
                            text(username.as_str()),
                            objects::sql_int(u64::from(UNLINK_BATCH)),
                        ],
                    )
                    .and_then(|c| c.to_array())
                    .map_err(err)?;
                Ok(LinkReply::Unlinked {
                    grant_ids: grants.into_iter().map(|g| g.grant_id).collect(),
                })
            }
            LinkCommand::AddGrant {
                username,
                grant_id,
                expires_at,
                now,
            } => {
                // Only while the link exists: a grant issued as it is being removed is refused.
                let linked = self.rows(
                    &sql,
                    "SELECT partner_sub, username, user_sub FROM links WHERE username = ?",
                    username.as_str(),
                )?;
                if linked.is_empty() {
                    return Ok(LinkReply::NotFound);
                }
                prune_expired(&sql, &username, now)?;
                let listed: Vec<CountRow> = sql
                    .exec(
                        "SELECT COUNT(*) AS n FROM link_grants_by_user WHERE username = ?",
                        vec![text(username.as_str())],
                    )
                    .and_then(|c| c.to_array())
                    .map_err(err)?;
                if listed.first().map_or(0, |r| r.n) >= u64::from(MAX_LINK_GRANTS) {
                    return Err(ApiError::new(
                        ErrorCode::TemporarilyUnavailable,
                        "too many authorizations through this link; try again later",
                    ));
                }
                sql.exec(
                    "INSERT INTO link_grants_by_user (username, grant_id, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    vec![
                        text(username.as_str()),
                        text(&grant_id),
                        objects::sql_int(expires_at),
                    ],
                )
                .map_err(err)?;
                Ok(LinkReply::Done)
            }
            LinkCommand::ForgetGrants {
                username,
                grant_ids,
            } => {
                for gid in grant_ids {
                    sql.exec(
                        "DELETE FROM link_grants_by_user WHERE username = ? AND grant_id = ?",
                        vec![text(username.as_str()), text(&gid)],
                    )
                    .map_err(err)?;
                }
                Ok(LinkReply::Done)
            }
        }
    }
}

/// Drops `username`'s listed grants that have expired.
fn prune_expired(sql: &SqlStorage, username: &Username, now: u64) -> Result<(), ApiError> {
    sql.exec(
        "DELETE FROM link_grants_by_user WHERE username = ? AND expires_at <= ?",
        vec![text(username.as_str()), objects::sql_int(now)],
    )
    .map(|_| ())
    .map_err(err)
}

fn err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("link storage: {e}"))
}

/// Ends a link: the partner's record first (automatic login stops at once), then every grant
/// issued through it, then the user's own list.
pub async fn unlink(
    env: &Env,
    partner: &PartnerId,
    username: &Username,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    // Batch by batch: each revoked, then forgotten, so a failure leaves the rest for a retry.
    // Only the first call removes the link; the sessions it started end right after.
    let mut first = true;
    loop {
        let cmd = LinkCommand::Unlink {
            username: username.clone(),
            now,
            remove: first,
        };
        let grant_ids = match call(env, partner, &cmd).await? {
            LinkReply::Unlinked { grant_ids } => grant_ids,
            LinkReply::NotFound => Vec::new(),
            LinkReply::Failed { error } => return Err(error),
            _ => return Err(ApiError::unavailable("unexpected link reply")),
        };
        if first {
            let end = crate::store::users::UserCommand::EndLinkSessions {
                partner_id: partner.clone(),
            };
            match super::users::call(env, username, &end).await? {
                crate::store::users::UserReply::Failed { error }
                    if error.code != ErrorCode::NotFound =>
                {
                    return Err(error)
                }
                _ => {}
            }
            first = false;
        }
        if grant_ids.is_empty() {
            break;
        }
        super::grants::revoke_all(env, &grant_ids).await?;
        let forget = LinkCommand::ForgetGrants {
            username: username.clone(),
            grant_ids,
        };
        if let LinkReply::Failed { error } = call(env, partner, &forget).await? {
            return Err(error);
        }
    }
    let forget = crate::store::users::UserCommand::ForgetLink {
        partner_id: partner.clone(),
    };
    match super::users::call(env, username, &forget).await? {
        crate::store::users::UserReply::Failed { error } if error.code != ErrorCode::NotFound => {
            Err(error)
        }
        _ => Ok(true),
    }
}

/// Lists a grant issued through `username`'s link with `partner` until `expires_at`, so
/// unlinking ends it. If the link is gone (removed meanwhile), the grant is revoked again and
/// `gone` is the error: nothing is issued from it.
pub async fn add_grant(
    env: &Env,
    partner: &PartnerId,
    username: &Username,
    grant_id: &str,
    expires_at: u64,
    now: u64,
    gone: ApiError,
) -> std::result::Result<(), ApiError> {
    let cmd = LinkCommand::AddGrant {
        username: username.clone(),
        grant_id: grant_id.to_owned(),
        expires_at,
        now,
    };
    match call(env, partner, &cmd).await? {
        LinkReply::Done => Ok(()),
        LinkReply::NotFound => {
            // Best effort: the grant's code or token has not been handed out.
            let _ = super::grants::revoke_all(env, &[grant_id.to_owned()]).await;
            Err(gone)
        }
        LinkReply::Failed { error } => Err(error),
        _ => Err(ApiError::unavailable("unexpected link reply")),
    }
}
