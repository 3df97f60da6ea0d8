//! The `UserStore` Durable Object (one per user) and the admin API for users.
//! Password hashes are made and checked inside the object and never leave it.

use serde::de::DeserializeOwned;
use worker::{console_error, durable_object, DurableObject, Env, Request, Response, Result, State};

use super::respond;
use super::{config, objects, random, Outcome};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::password::{self, OWASP_ARGON2ID};
use crate::protocol::user::{UserRecord, UserView, Username};
use crate::store::users::{object_name, UserCommand, UserReply};

const PROFILE: &str = "profile";

pub async fn call(
    env: &Env,
    username: &Username,
    cmd: &UserCommand,
) -> std::result::Result<UserReply, ApiError> {
    objects::call(env, config::USERS_DO, &object_name(username), cmd).await
}

/// Maps a user object's reply for the admin API.
pub fn admin_outcome(reply: UserReply) -> Outcome {
    match reply {
        UserReply::Saved { user, created } => {
            let (status, outcome) = if created {
                (201, "created")
            } else {
                (200, "replaced")
            };
            Outcome::new(respond::json(status, &user, &[]), outcome)
        }
        UserReply::User { user } => Outcome::new(respond::json(200, &user, &[]), "ok"),
        UserReply::Deleted => Outcome::new(respond::empty(204, &[]), "deleted"),
        UserReply::BadCredentials => {
            Outcome::error(ApiError::new(ErrorCode::ServerError, "unexpected reply"))
        }
        UserReply::Failed { error } => Outcome::error(error),
    }
}

#[durable_object(fetch)]
pub struct UserStore {
    state: State,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("user storage: {e}"))
}

impl DurableObject for UserStore {
    fn new(state: State, _env: Env) -> Self {
        UserStore { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let reply = match req.json::<UserCommand>().await {
            Ok(cmd) => self
                .execute(cmd)
                .await
                .unwrap_or_else(|error| UserReply::Failed { error }),
            Err(e) => UserReply::Failed {
                error: ApiError::new(ErrorCode::ServerError, "malformed user command")
                    .with_cause(e.to_string()),
            },
        };
        if let UserReply::Failed { error } = &reply {
            if let Some(cause) = &error.cause {
                console_error!("user store: {cause}");
            }
        }
        Response::from_json(&reply)
    }
}

impl UserStore {
    async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> std::result::Result<Option<T>, ApiError> {
        self.state
            .storage()
            .get::<T>(key)
            .await
            .map_err(storage_err)
    }

    async fn execute(&self, cmd: UserCommand) -> std::result::Result<UserReply, ApiError> {
        let existing: Option<UserRecord> = self.get(PROFILE).await?;
        match cmd {
            UserCommand::Get => existing
                .map(|r| UserReply::User {
                    user: UserView::from(&r),
                })
                .ok_or_else(|| ApiError::not_found("user")),
            UserCommand::Delete => {
                if existing.is_none() {
                    return Err(ApiError::not_found("user"));
                }
                self.state
                    .storage()
                    .delete_all()
                    .await
                    .map_err(storage_err)?;
                Ok(UserReply::Deleted)
            }
            UserCommand::Put {
                username,
                spec,
                now,
            } => {
                let password_hash = match (&spec.password, &existing) {
                    (Some(pw), _) => {
                        let salt = random::bytes::<{ password::SALT_LEN }>()?;
                        password::hash_password(pw, &salt, OWASP_ARGON2ID)
                            .ok_or_else(|| ApiError::unavailable("password hashing failed"))?
                    }
                    (None, Some(old)) => old.password_hash.clone(),
                    (None, None) => {
                        return Err(ApiError::invalid_field(
                            "password",
                            "is required for a new user",
                        ))
                    }
                };
                let record = UserRecord {
                    username,
                    name: spec.name,
                    email: spec.email,
                    roles: spec.roles,
                    password_hash,
                    created_at: existing.as_ref().map_or(now, |r| r.created_at),
                    updated_at: now,
                };
                self.state
                    .storage()
                    .put(PROFILE, &record)
                    .await
                    .map_err(storage_err)?;
                Ok(UserReply::Saved {
                    user: UserView::from(&record),
                    created: existing.is_none(),
                })
            }
            UserCommand::VerifyPassword { password } => Ok(match existing {
                Some(r) if password::verify_password(&password, &r.password_hash) => {
                    UserReply::User {
                        user: UserView::from(&r),
                    }
                }
                Some(_) => UserReply::BadCredentials,
                None => {
                    password::verify_against_nothing(&password, OWASP_ARGON2ID);
                    UserReply::BadCredentials
                }
            }),
        }
    }
}
