//! The `LinkStore` Durable Object: account links of one partner. Each command is one synchronous
//! stretch of SQLite statements, so concurrent links cannot break the one-to-one rule.

use std::cell::Cell;

use serde::Deserialize;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

use super::{config, objects};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::PartnerId;
use crate::protocol::user::Username;
use crate::store::links::{object_name, LinkCommand, LinkReply, SCHEMA};

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
struct Row {
    partner_sub: String,
    username: String,
}

fn text(s: &str) -> SqlStorageValue {
    SqlStorageValue::String(s.to_owned())
}

impl DurableObject for LinkStore {
    fn new(state: State, _env: Env) -> Self {
        LinkStore {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let reply = match req.json::<LinkCommand>().await {
            Ok(cmd) => self
                .execute(cmd)
                .unwrap_or_else(|error| LinkReply::Failed { error }),
            Err(e) => LinkReply::Failed {
                error: ApiError::new(ErrorCode::ServerError, "malformed link command")
                    .with_cause(e.to_string()),
            },
        };
        Response::from_json(&reply)
    }
}

impl LinkStore {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            sql.exec(SCHEMA, None).map_err(err)?;
            self.schema_ready.set(true);
        }
        Ok(sql)
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
                now,
            } => {
                let by_sub = self.rows(
                    &sql,
                    "SELECT partner_sub, username FROM links WHERE partner_sub = ?",
                    &partner_sub,
                )?;
                let by_user = self.rows(
                    &sql,
                    "SELECT partner_sub, username FROM links WHERE username = ?",
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
                            "INSERT INTO links (partner_sub, username, created_at) VALUES (?, ?, ?)",
                            vec![
                                text(&partner_sub),
                                text(username.as_str()),
                                SqlStorageValue::Integer(i64::try_from(now).unwrap_or(i64::MAX)),
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
                    "SELECT partner_sub, username FROM links WHERE partner_sub = ?",
                    &partner_sub,
                )?;
                Ok(
                    match rows.first().and_then(|r| Username::parse(&r.username).ok()) {
                        Some(username) => LinkReply::Found { username },
                        None => LinkReply::NotFound,
                    },
                )
            }
            LinkCommand::Unlink { username } => {
                sql.exec(
                    "DELETE FROM links WHERE username = ?",
                    vec![text(username.as_str())],
                )
                .map_err(err)?;
                Ok(LinkReply::Unlinked)
            }
        }
    }
}

fn err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("link storage: {e}"))
}
