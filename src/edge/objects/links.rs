//! The `LinkStore` Durable Object: account links of one partner. Each command is one synchronous
//! stretch of SQLite statements, so concurrent links cannot break the one-to-one rule.

use crate::edge::rt::objects;
use crate::edge::rt::objects::sql_text as text;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::link::{redeem, PendingLink, Redemption, MAX_PENDING_LINKS_PER_USER};
use crate::protocol::user::Username;
use crate::store::links::{
    AddGrant, Confirm, Confirmed, Export, Exported, ForgetGrants, GrantListed, Import, Imported,
    LinkCommand, LinkHandler, LinkRefusal, LinkUse, LinkedAccount, Lookup, LookupUse, Moved,
    MovedLink, Propose, Proposed, Retire, Retired, Undo, Unlink, MAX_LINK_GRANTS, MOVE_BATCH,
    RETIRE_BATCH, SCHEMA, UNLINK_BATCH, USED_PRUNE_BATCH,
};
use serde::Deserialize;
use std::cell::Cell;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

#[durable_object(fetch)]
pub struct LinkStore {
    state: State,
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct GrantRow {
    grant_id: String,
}

/// Whether a pending link can be made now.
enum Linkable {
    /// The partner account or the user is linked otherwise.
    Refused(LinkRefusal),
    /// It exists already, the same way.
    Already,
    Free,
}

#[derive(Deserialize)]
struct PendingRow {
    record: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: u64,
}

#[derive(Deserialize)]
struct UserRow {
    username: String,
}

#[derive(Deserialize)]
struct ExportRow {
    partner_sub: String,
    username: String,
    user_sub: String,
    created_at: u64,
}

#[derive(Deserialize)]
struct UsedRow {
    key: String,
    expires_at: u64,
}

#[derive(Deserialize)]
struct ListedRow {
    grant_id: String,
    expires_at: u64,
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
        objects::serve_commands(req, "link store", |cmd: LinkCommand| self.handle(cmd)).await
    }
}

impl LinkStore {
    /// Why `pending` could not be linked now, if it could not: the partner account is linked to
    /// someone else, or the user to another account at the partner. A link of a deleted user
    /// whose username was given to someone new is stale, and goes.
    fn linkable(
        &self,
        sql: &SqlStorage,
        pending: &PendingLink,
    ) -> std::result::Result<Linkable, ApiError> {
        let username = pending.username.as_str();
        sql.exec(
            "DELETE FROM links WHERE username = ? AND user_sub != ?",
            vec![text(username), text(&pending.user_sub)],
        )
        .map_err(err)?;
        let by_sub = self.rows(
            sql,
            "SELECT partner_sub, username, user_sub FROM links WHERE partner_sub = ?",
            &pending.partner_sub,
        )?;
        let by_user = self.rows(
            sql,
            "SELECT partner_sub, username, user_sub FROM links WHERE username = ?",
            username,
        )?;
        Ok(match (by_sub.first(), by_user.first()) {
            (Some(s), _) if s.username == username => Linkable::Already,
            (Some(_), _) => Linkable::Refused(LinkRefusal::PartnerAccountTaken),
            (None, Some(u)) if u.partner_sub != pending.partner_sub => {
                Linkable::Refused(LinkRefusal::UserAlreadyLinked)
            }
            _ => Linkable::Free,
        })
    }

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

    /// The platform user `partner_sub` is linked to here, if any.
    fn linked_account(
        &self,
        sql: &SqlStorage,
        partner_sub: &str,
    ) -> std::result::Result<Option<LinkedAccount>, ApiError> {
        let rows = self.rows(
            sql,
            "SELECT partner_sub, username, user_sub FROM links WHERE partner_sub = ?",
            partner_sub,
        )?;
        Ok(rows.first().and_then(|r| {
            Username::parse(&r.username)
                .ok()
                .map(|username| LinkedAccount {
                    username,
                    user_sub: r.user_sub.clone(),
                })
        }))
    }

    /// Whether the partner was removed (`Retire`).
    fn retired(&self, sql: &SqlStorage) -> std::result::Result<bool, ApiError> {
        let rows: Vec<CountRow> = sql
            .exec("SELECT COUNT(*) AS n FROM retired", None)
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(rows.first().is_some_and(|r| r.n > 0))
    }
}

impl LinkHandler for LinkStore {
    async fn retire(&self, _: Retire) -> std::result::Result<Vec<Username>, ApiError> {
        let sql = self.sql()?;
        sql.exec("INSERT OR IGNORE INTO retired (one) VALUES (1)", None)
            .map_err(err)?;
        // Retired, nobody links any more: everyone still linked or with listed grants
        // is to be unlinked, and stays listed until done (`Retired`).
        sql.exec(
            "INSERT OR IGNORE INTO retiring (username) SELECT username FROM links \
             UNION SELECT username FROM link_grants_by_user",
            None,
        )
        .map_err(err)?;
        let users: Vec<UserRow> = sql
            .exec(
                "SELECT username FROM retiring ORDER BY username LIMIT ?",
                vec![objects::sql_int(u64::from(RETIRE_BATCH))],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(users
            .iter()
            .filter_map(|u| Username::parse(&u.username).ok())
            .collect())
    }

    async fn finish_retiring(
        &self,
        Retired { username }: Retired,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        sql.exec(
            "DELETE FROM retiring WHERE username = ?",
            vec![text(username.as_str())],
        )
        .map_err(err)?;
        Ok(())
    }

    async fn propose(
        &self,
        Propose {
            code_hash,
            pending,
            now,
        }: Propose,
    ) -> std::result::Result<Proposed, ApiError> {
        let sql = self.sql()?;
        // A removed partner's store links nobody, finds nobody and lists no new grant.
        if self.retired(&sql)? {
            return Err(ApiError::new(
                ErrorCode::AccessDenied,
                "This partner was removed.",
            ));
        }
        if let Linkable::Refused(refusal) = self.linkable(&sql, &pending)? {
            return Ok(Proposed::Refused(refusal));
        }
        // Unconfirmed links expire; a user keeps only the newest few per partner.
        sql.exec(
            "DELETE FROM pending_links WHERE expires_at <= ?",
            vec![objects::sql_int(now)],
        )
        .map_err(err)?;
        sql.exec(
            "DELETE FROM pending_links WHERE code_hash IN (SELECT code_hash FROM \
             pending_links WHERE username = ? ORDER BY expires_at DESC LIMIT -1 OFFSET ?)",
            vec![
                text(pending.username.as_str()),
                objects::sql_int(MAX_PENDING_LINKS_PER_USER - 1),
            ],
        )
        .map_err(err)?;
        let record = serde_json::to_string(&pending)
            .map_err(|e| ApiError::unavailable(format!("pending link: {e}")))?;
        sql.exec(
            "INSERT INTO pending_links (code_hash, username, expires_at, record) VALUES (?, ?, ?, ?)",
            vec![
                text(&code_hash),
                text(pending.username.as_str()),
                objects::sql_int(pending.expires_at),
                text(&record),
            ],
        )
        .map_err(err)?;
        Ok(Proposed::Kept)
    }

    async fn confirm(
        &self,
        Confirm {
            code_hash,
            partner_sub,
            request_jti_hash,
            attempt,
            now,
        }: Confirm,
    ) -> std::result::Result<Confirmed, ApiError> {
        let sql = self.sql()?;
        // A removed partner's store links nobody, finds nobody and lists no new grant.
        if self.retired(&sql)? {
            return Ok(Confirmed::CodeInvalid);
        }
        let rows: Vec<PendingRow> = sql
            .exec(
                "SELECT record FROM pending_links WHERE code_hash = ?",
                vec![text(&code_hash)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        let Some(mut pending) = rows
            .first()
            .and_then(|r| serde_json::from_str::<PendingLink>(&r.record).ok())
        else {
            return Ok(Confirmed::CodeInvalid);
        };
        let burn = |sql: &SqlStorage| burn_code(sql, &code_hash);
        match redeem(&pending, &partner_sub, &request_jti_hash, &attempt, now) {
            Redemption::Refuse => {
                burn(&sql)?;
                Ok(Confirmed::CodeInvalid)
            }
            Redemption::Replay if pending.created => {
                // Only the link this code made: one made since by other means stays.
                remove_link(
                    &sql,
                    &pending.partner_sub,
                    &pending.username,
                    &pending.user_sub,
                )?;
                burn(&sql)?;
                Ok(Confirmed::CodeReplayed {
                    username: pending.username,
                })
            }
            // The code confirmed a link that was there before it: a replay undoes
            // nothing it did not make.
            Redemption::Replay => {
                burn(&sql)?;
                Ok(Confirmed::CodeInvalid)
            }
            Redemption::Again => Ok(Confirmed::Linked {
                created: pending.created,
                pending,
            }),
            Redemption::Confirm => {
                let created = match self.linkable(&sql, &pending)? {
                    Linkable::Refused(refusal) => {
                        burn(&sql)?;
                        return Ok(Confirmed::Refused(refusal));
                    }
                    Linkable::Already => false,
                    Linkable::Free => true,
                };
                if created {
                    sql.exec(
                        "INSERT INTO links (partner_sub, username, user_sub, created_at) VALUES (?, ?, ?, ?)",
                        vec![
                            text(&pending.partner_sub),
                            text(pending.username.as_str()),
                            text(&pending.user_sub),
                            objects::sql_int(now),
                        ],
                    )
                    .map_err(err)?;
                }
                // Kept, redeemed, until it expires: a second redemption is a replay.
                pending.confirmed_by = Some(attempt);
                pending.created = created;
                let record = serde_json::to_string(&pending)
                    .map_err(|e| ApiError::unavailable(format!("pending link: {e}")))?;
                sql.exec(
                    "UPDATE pending_links SET record = ? WHERE code_hash = ?",
                    vec![text(&record), text(&code_hash)],
                )
                .map_err(err)?;
                Ok(Confirmed::Linked { created, pending })
            }
        }
    }

    async fn lookup(
        &self,
        Lookup { partner_sub }: Lookup,
    ) -> std::result::Result<Option<LinkedAccount>, ApiError> {
        let sql = self.sql()?;
        // A removed partner's store links nobody, finds nobody and lists no new grant.
        if self.retired(&sql)? {
            return Ok(None);
        }
        self.linked_account(&sql, &partner_sub)
    }

    async fn lookup_use(&self, cmd: LookupUse) -> std::result::Result<LinkUse, ApiError> {
        let sql = self.sql()?;
        if self.retired(&sql)? {
            return Ok(LinkUse::NotLinked);
        }
        let Some(account) = self.linked_account(&sql, &cmd.partner_sub)? else {
            return Ok(LinkUse::NotLinked);
        };
        sql.exec(
            &format!(
                "DELETE FROM used_assertions WHERE key IN (SELECT key FROM used_assertions \
                 WHERE expires_at < ? ORDER BY expires_at LIMIT {USED_PRUNE_BATCH})"
            ),
            vec![objects::sql_int(cmd.now)],
        )
        .map_err(err)?;
        let used: Vec<CountRow> = sql
            .exec(
                "SELECT COUNT(*) AS n FROM used_assertions WHERE key = ?",
                vec![text(&cmd.key_hash)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        if used.first().is_some_and(|r| r.n > 0) {
            return Ok(LinkUse::Used);
        }
        if cmd.use_it {
            sql.exec(
                "INSERT INTO used_assertions (key, expires_at) VALUES (?, ?)",
                vec![text(&cmd.key_hash), objects::sql_int(cmd.expires_at)],
            )
            .map_err(err)?;
        }
        Ok(LinkUse::Found(account))
    }

    async fn unlink(
        &self,
        Unlink {
            username,
            now,
            remove,
        }: Unlink,
    ) -> std::result::Result<Vec<String>, ApiError> {
        let sql = self.sql()?;
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
        Ok(grants.into_iter().map(|g| g.grant_id).collect())
    }

    async fn add_grant(
        &self,
        AddGrant {
            username,
            grant_id,
            expires_at,
            now,
        }: AddGrant,
    ) -> std::result::Result<GrantListed, ApiError> {
        let sql = self.sql()?;
        // A removed partner's store links nobody, finds nobody and lists no new grant.
        if self.retired(&sql)? {
            return Ok(GrantListed::NotLinked);
        }
        // Only while the link exists: a grant issued as it is being removed is refused.
        let linked = self.rows(
            &sql,
            "SELECT partner_sub, username, user_sub FROM links WHERE username = ?",
            username.as_str(),
        )?;
        if linked.is_empty() {
            return Ok(GrantListed::NotLinked);
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
        Ok(GrantListed::Listed)
    }

    async fn forget_grants(
        &self,
        ForgetGrants {
            username,
            grant_ids,
        }: ForgetGrants,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        for gid in grant_ids {
            sql.exec(
                "DELETE FROM link_grants_by_user WHERE username = ? AND grant_id = ?",
                vec![text(username.as_str()), text(&gid)],
            )
            .map_err(err)?;
        }
        Ok(())
    }

    async fn undo(&self, cmd: Undo) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        remove_link(&sql, &cmd.partner_sub, &cmd.username, &cmd.user_sub)?;
        burn_code(&sql, &cmd.code_hash)
    }

    async fn export(
        &self,
        Export { limit, now }: Export,
    ) -> std::result::Result<Exported, ApiError> {
        let sql = self.sql()?;
        let rows: Vec<ExportRow> = sql
            .exec(
                "SELECT partner_sub, username, user_sub, created_at FROM links \
                 ORDER BY partner_sub LIMIT ?",
                vec![objects::sql_int(u64::from(limit.min(MOVE_BATCH)))],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        let mut moved = Vec::with_capacity(rows.len());
        for row in rows {
            let Ok(username) = Username::parse(&row.username) else {
                continue;
            };
            // Grants of the earlier table carry no expiry: as long as any grant may live.
            let listed: Vec<ListedRow> = sql
                .exec(
                    "SELECT grant_id, expires_at FROM link_grants_by_user WHERE username = ? \
                     AND expires_at > ? UNION SELECT grant_id, ? AS expires_at FROM link_grants \
                     WHERE partner_sub = ?",
                    vec![
                        text(username.as_str()),
                        objects::sql_int(now),
                        objects::sql_int(now + crate::protocol::grant::GRANT_ABSOLUTE_S),
                        text(&row.partner_sub),
                    ],
                )
                .and_then(|c| c.to_array())
                .map_err(err)?;
            moved.push(MovedLink {
                partner_sub: row.partner_sub,
                username,
                user_sub: row.user_sub,
                created_at: row.created_at,
                grants: listed
                    .into_iter()
                    .map(|g| (g.grant_id, g.expires_at))
                    .collect(),
            });
        }
        let used: Vec<UsedRow> = sql
            .exec(
                "SELECT key, expires_at FROM used_assertions WHERE expires_at >= ? LIMIT 4096",
                vec![objects::sql_int(now)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(Exported {
            links: moved,
            used: used.into_iter().map(|u| (u.key, u.expires_at)).collect(),
        })
    }

    async fn import(
        &self,
        Import { links, used }: Import,
    ) -> std::result::Result<Imported, ApiError> {
        let sql = self.sql()?;
        for (key, expires_at) in &used {
            sql.exec(
                "INSERT OR IGNORE INTO used_assertions (key, expires_at) VALUES (?, ?)",
                vec![text(key), objects::sql_int(*expires_at)],
            )
            .map_err(err)?;
        }
        let mut done = Imported::default();
        for link in links {
            let by_sub = self.rows(
                &sql,
                "SELECT partner_sub, username, user_sub FROM links WHERE partner_sub = ?",
                &link.partner_sub,
            )?;
            let by_user = self.rows(
                &sql,
                "SELECT partner_sub, username, user_sub FROM links WHERE username = ?",
                link.username.as_str(),
            )?;
            let same =
                |r: &Row| r.partner_sub == link.partner_sub && r.username == link.username.as_str();
            let fits = by_sub.iter().chain(by_user.iter()).all(same);
            if !fits {
                // Linked otherwise since the upgrade: that link stands.
                done.skipped += 1;
                continue;
            }
            sql.exec(
                "INSERT OR IGNORE INTO links (partner_sub, username, user_sub, created_at) \
                 VALUES (?, ?, ?, ?)",
                vec![
                    text(&link.partner_sub),
                    text(link.username.as_str()),
                    text(&link.user_sub),
                    objects::sql_int(link.created_at),
                ],
            )
            .map_err(err)?;
            for (grant_id, expires_at) in &link.grants {
                sql.exec(
                    "INSERT INTO link_grants_by_user (username, grant_id, expires_at) \
                     VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    vec![
                        text(link.username.as_str()),
                        text(grant_id),
                        objects::sql_int(*expires_at),
                    ],
                )
                .map_err(err)?;
            }
            done.imported += 1;
        }
        Ok(done)
    }

    async fn moved(&self, Moved { partner_subs }: Moved) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        for sub in partner_subs {
            sql.exec(
                "DELETE FROM link_grants_by_user WHERE username IN \
                 (SELECT username FROM links WHERE partner_sub = ?)",
                vec![text(&sub)],
            )
            .map_err(err)?;
            sql.exec(
                "DELETE FROM link_grants WHERE partner_sub = ?",
                vec![text(&sub)],
            )
            .map_err(err)?;
            sql.exec("DELETE FROM links WHERE partner_sub = ?", vec![text(&sub)])
                .map_err(err)?;
        }
        Ok(())
    }
}

/// Removes exactly the link of `partner_sub` to this person (`username` with `user_sub`): a
/// link made since by other means stays.
fn remove_link(
    sql: &SqlStorage,
    partner_sub: &str,
    username: &Username,
    user_sub: &str,
) -> Result<(), ApiError> {
    sql.exec(
        "DELETE FROM links WHERE partner_sub = ? AND username = ? AND user_sub = ?",
        vec![text(partner_sub), text(username.as_str()), text(user_sub)],
    )
    .map(|_| ())
    .map_err(err)
}

/// Forgets the pending link of a link code: redeeming the code again finds nothing.
fn burn_code(sql: &SqlStorage, code_hash: &str) -> Result<(), ApiError> {
    sql.exec(
        "DELETE FROM pending_links WHERE code_hash = ?",
        vec![text(code_hash)],
    )
    .map(|_| ())
    .map_err(err)
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
