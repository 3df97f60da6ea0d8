//! The authorization endpoint and the login page: the browser side of the code flow.

use crate::edge::calls::{limits, users};
use crate::edge::flows::{gate, user_grant};
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::objects::Placement;
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{body, config, kvcache, random};
use crate::pages;
use crate::protocol::address::{address_group, client_address};
use crate::protocol::authorize::{self, AuthRequest, Next, ResponseMode, ToClient};
use crate::protocol::claims;
use crate::protocol::client::ClientRecord;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::{ApiError, Detail, ErrorCode};
use crate::protocol::form::Params;
use crate::protocol::grant::{self, CodeState, Grant, CODE_TTL_S};
use crate::protocol::link::{session_serves, SessionUse};
use crate::protocol::partner::{keys, Partner, PartnerStatus};
use crate::protocol::password::{verify_against_nothing, OWASP_ARGON2ID};
use crate::protocol::ratelimit::{limited, login_slots, Slot};
use crate::protocol::region::Home;
use crate::protocol::tokens::ACCESS_TOKEN_TTL_S;
use crate::protocol::user::{UserView, Username};
use crate::routes::{self, Method};
use crate::store::users::{Consent, Consented, Login, LoginOutcome, Session, SessionState};
use base64ct::{Base64UrlUnpadded, Encoding};
use futures_util::future::join_all;
use worker::Env;

const LOGIN_FAILED: &str = "The username or password is not right. Check them and try again.";

const FORM_EXPIRED: &str = "This form has expired or was not sent from this browser. Go back, reload the page and try again.";

/// A request whose client and redirect URI were verified: from here, errors may be redirected.
struct Verified {
    client: ClientRecord,
    partner: Partner,
    request: AuthRequest,
}

/// Phase 1 and 2 of the request checks. `Err(Outcome)` is already the answer: an error page
/// before the redirect URI is verified, an error redirect after.
async fn verify(
    env: &Env,
    params: &Params,
    issuer: &Issuer,
    now_ms: u64,
) -> Result<Verified, Outcome> {
    let page = |e: ApiError| browser::error_page(&e);
    let client_id = authorize::client_id(params).map_err(page)?;
    let client: ClientRecord = kvcache::get_json(env, &client_id.kv_key(), now_ms)
        .await
        .map_err(page)?
        .ok_or_else(|| {
            page(ApiError::new(
                ErrorCode::InvalidRequest,
                "client_id is not a known client",
            ))
        })?;
    let redirect_uri = authorize::redirect_uri(params, &client).map_err(page)?;
    // The redirect URI must still be on an origin of the client's partner, and the partner active.
    let not_allowed = || {
        page(ApiError::new(
            ErrorCode::AccessDenied,
            "this app is not allowed to sign users in at the moment",
        ))
    };
    let origin = redirect_uri.origin().ok_or_else(not_allowed)?;
    let entry = gate::lookup(env, &origin, now_ms).await.map_err(page)?;
    if !entry
        .is_some_and(|e| e.partner_id == client.partner_id && e.status == PartnerStatus::Active)
    {
        return Err(not_allowed());
    }
    let partner: Partner = kvcache::get_json(env, &keys::partner(&client.partner_id), now_ms)
        .await
        .map_err(page)?
        .filter(|p: &Partner| p.status == PartnerStatus::Active)
        .ok_or_else(not_allowed)?;
    let request = authorize::parse(params, &client, redirect_uri.clone()).map_err(|e| {
        let mode = ResponseMode::of_params(params);
        let to = ToClient::error(
            &redirect_uri,
            mode,
            &e,
            params.get("state"),
            issuer.as_str(),
        );
        send(&to, &[], e.code.as_str())
    })?;
    Ok(Verified {
        client,
        partner,
        request,
    })
}

/// The authorization response, to the verified redirect URI in the request's mode: a redirect
/// (query), or a page whose form the browser posts there (form_post).
fn send(to: &ToClient, cookies: &[String], outcome: &'static str) -> Outcome {
    match to.mode {
        ResponseMode::Query => browser::redirect(302, &to.location(), cookies, outcome),
        ResponseMode::FormPost => browser::form_post(
            pages::form_post(to.uri.as_str(), &to.pairs),
            cookies,
            outcome,
        ),
    }
}

fn error_redirect(v: &Verified, issuer: &Issuer, code: ErrorCode, why: &str) -> Outcome {
    let err = ApiError::new(code, why);
    let to = ToClient::error(
        &v.request.redirect_uri,
        v.request.response_mode,
        &err,
        v.request.state.as_deref(),
        issuer.as_str(),
    );
    send(&to, &[], code.as_str()).partner(v.partner.id.clone())
}

struct SessionView {
    username: Username,
    /// Where the user lives, from the session cookie.
    home: Home,
    session_hash: String,
    user: UserView,
    sub: String,
    auth_time: u64,
    consented: bool,
    via_link: Option<crate::protocol::user::LinkVia>,
    password_epoch: u32,
}

async fn session(
    env: &Env,
    cookies: &Cookies,
    req: &Request,
    v: &Verified,
    now: u64,
) -> Result<Option<SessionView>, ApiError> {
    let Some((username, home, session_hash)) = cookies.session(req) else {
        return Ok(None);
    };
    let cmd = Session {
        session_hash: session_hash.clone(),
        partner_id: v.client.partner_id.clone(),
        partner_salt: v.partner.subject_salt.clone(),
        client_id: v.client.client_id.clone(),
        scopes: v.request.consent_scopes(),
        now,
    };
    match users::call(env, &username, home, cmd).await? {
        // A session from automatic login counts only for its partner's clients and consent the
        // user gave before; otherwise, sign in with the password.
        Some(SessionState {
            user,
            sub,
            auth_time,
            consented,
            via_link,
            password_epoch,
        }) if session_serves(
            via_link.as_ref(),
            SessionUse::Authorize {
                partner: &v.client.partner_id,
                consented,
            },
        ) =>
        {
            Ok(Some(SessionView {
                username,
                home,
                session_hash,
                user,
                sub,
                auth_time,
                consented,
                via_link,
                password_epoch,
            }))
        }
        Some(_) | None => Ok(None),
    }
}

fn to_login(v: &Verified) -> Outcome {
    let return_to = v.request.endpoint_path(routes::AUTHORIZE, true);
    let mut pairs = vec![("return_to", return_to.as_str())];
    if let Some(hint) = &v.request.login_hint {
        pairs.push(("login_hint", hint));
    }
    let location = format!(
        "{}?{}",
        routes::LOGIN,
        crate::protocol::form::encode(&pairs)
    );
    browser::redirect(302, &location, &[], "login").partner(v.partner.id.clone())
}

/// Issues the one-time code: a new grant object holding it, then the redirect (RFC 9207 `iss`).
async fn issue_code(
    env: &Env,
    issuer: &Issuer,
    v: &Verified,
    s: &SessionView,
    now: u64,
) -> Result<Outcome, ApiError> {
    // The class of the session's authentication, named in the ID token when asked for; asked
    // for as essential with other values, the authentication fails (OIDC Core §5.5.1.1).
    let session_acr = if s.via_link.is_some() {
        claims::ACR_PARTNER
    } else {
        claims::ACR_PASSWORD
    };
    let mut id_claims = claims::released(&[], &v.request.claims.id_token, &s.user);
    match claims::acr_for(session_acr, &v.request.acr_values, &v.request.claims) {
        claims::Acr::Omit => {}
        claims::Acr::Claim(acr) => {
            id_claims.insert("acr".into(), acr.into());
        }
        claims::Acr::Unmet => {
            return Ok(error_redirect(
                v,
                issuer,
                ErrorCode::AccessDenied,
                "the requested authentication context class cannot be met",
            ))
        }
    }
    // The grant lives with its user: its id names the user's region.
    let random_id = Base64UrlUnpadded::encode_string(&random::bytes::<{ grant::ID_LEN }>()?);
    let grant_id = grant::grant_id_in(s.home, &random_id);
    let (code, code_hash) = grant::handle(&grant_id, &random::bytes::<{ grant::SECRET_LEN }>()?);
    let g = Grant {
        grant_id,
        client_id: v.client.client_id.clone(),
        partner_id: v.client.partner_id.clone(),
        username: Some(s.username.clone()),
        sub: s.sub.clone(),
        scopes: v.request.scopes.clone(),
        nonce: v.request.nonce.clone(),
        auth_time: Some(s.auth_time),
        // The scopes' claims are the UserInfo endpoint's (OpenID Connect Core §5.4, the code
        // flow); the ID token carries only what was asked of it by name, and `acr`.
        id_claims,
        claims: v.request.claims.clone(),
        created_at: now,
        code: Some(CodeState {
            hash: code_hash,
            redirect_uri: v.request.redirect_uri.clone(),
            code_challenge: v.request.code_challenge.clone(),
            expires_at: now + CODE_TTL_S,
            used: false,
            redeemed_by: None,
        }),
        refresh: None,
        revoked: false,
        password_epoch: s.password_epoch,
    };
    // A session that came through an account link: the grant ends if the link does, and is
    // kept on the link's list for its whole life (a refresh token may come of it). The session
    // serves only the clients of the partner it came through (`session_serves`): `v.partner`
    // is that partner as it is now, and its salt names its link store.
    let via = s.via_link.as_ref().map(|via| user_grant::ViaLink {
        partner: &v.partner,
        linked_with: &via.partner_id,
        partner_sub: &via.partner_sub,
        until: now + grant::GRANT_ABSOLUTE_S,
        gone: ApiError::new(
            ErrorCode::AccessDenied,
            "the account link this session came through was removed",
        ),
    });
    // The grant ends with the user's password; refused if the session just ended.
    // Kept on the user's list while its code, and the access token redeemed from it, may live;
    // each refresh keeps it there for its new access token (`users::grant_user`).
    let lives_s = CODE_TTL_S + ACCESS_TOKEN_TTL_S;
    user_grant::issue(env, &g, lives_s, Some(s.session_hash.clone()), via).await?;
    let to = ToClient::new(
        &v.request.redirect_uri,
        v.request.response_mode,
        vec![("code", code)],
        v.request.state.as_deref(),
        issuer.as_str(),
    );
    Ok(send(&to, &[], "code_issued").partner(v.partner.id.clone()))
}

fn consent_page(
    req: &Request,
    cookies: &Cookies,
    v: &Verified,
    s: &SessionView,
) -> Result<Outcome, ApiError> {
    let (csrf, new_cookie) = cookies.csrf(req)?;
    let origin = v
        .request
        .redirect_uri
        .origin()
        .map(|o| o.to_string())
        .unwrap_or_default();
    let fields = v.request.to_params(false);
    let consent_scopes = v.request.consent_scopes();
    let view = pages::ConsentView {
        client_name: &v.client.name,
        partner_name: &v.partner.name,
        partner_origin: &origin,
        scopes: &consent_scopes,
        request_fields: &fields,
        user_name: &s.user.name,
    };
    let html = pages::consent(routes::AUTHORIZE, &csrf, &view);
    let cookies: Vec<String> = new_cookie.into_iter().collect();
    Ok(browser::page(200, html, &cookies, "consent").partner(v.partner.id.clone()))
}

pub async fn authorize(req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let mut out = authorize_any(req, env, method, now_ms).await;
    // After a form post (consent), 303: the browser must not repeat the POST at the client
    // (RFC 9700 §4.12).
    if method == Method::Post && out.response.status_code() == 302 {
        out.response = out.response.with_status(303);
    }
    out
}

async fn authorize_any(req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let mut req = req;
    let posted = method == Method::Post;
    let params = match body::params(&mut req, posted).await {
        Ok(p) => p,
        Err(e) => return browser::error_page(&e),
    };
    // A request object (by value or by reference) becomes the request it stands for.
    let params =
        match crate::edge::flows::request_object::resolve(env, params, &issuer, now_ms).await {
            Ok(p) => p,
            Err(e) => return browser::error_page(&e),
        };
    let v = match verify(env, &params, &issuer, now_ms).await {
        Ok(v) => v,
        Err(outcome) => return outcome,
    };
    let result = async {
        let s = session(env, &cookies, &req, &v, now).await?;
        // A POST is the consent form when it carries the user's decision; any other POST is an
        // authorization request sent by form (OpenID Connect Core §3.1.2.1), like a GET.
        if posted && params.has("decision") {
            // The consent form: only from this browser, only with a live session.
            if !cookies.csrf_ok(&req, params.get("csrf")) {
                return Ok(browser::error_page(&ApiError::new(
                    ErrorCode::AccessDenied,
                    FORM_EXPIRED,
                )));
            }
            let Some(s) = s else {
                return Ok(to_login(&v));
            };
            return match params.get("decision") {
                Some("allow") => {
                    let cmd = Consent {
                        session_hash: s.session_hash.clone(),
                        client_id: v.client.client_id.clone(),
                        scopes: v.request.consent_scopes(),
                        now,
                    };
                    match users::call(env, &s.username, s.home, cmd).await? {
                        Consented::Recorded => issue_code(env, &issuer, &v, &s, now).await,
                        Consented::NoSession => Ok(to_login(&v)),
                    }
                }
                Some("deny") => Ok(error_redirect(
                    &v,
                    &issuer,
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                )),
                _ => Ok(browser::error_page(&ApiError::new(
                    ErrorCode::InvalidRequest,
                    "decision must be allow or deny",
                ))),
            };
        }
        let step = authorize::next_step(
            &v.request,
            s.as_ref().map(|s| s.auth_time),
            s.as_ref().is_some_and(|s| s.consented),
            now,
        );
        match (step, s) {
            (Next::Fail(code), _) => Ok(error_redirect(
                &v,
                &issuer,
                code,
                "the user must sign in or consent first",
            )),
            (Next::Login, _) | (_, None) => Ok(to_login(&v)),
            (Next::Consent, Some(s)) => consent_page(&req, &cookies, &v, &s),
            (Next::Issue, Some(s)) => issue_code(env, &issuer, &v, &s, now).await,
        }
    }
    .await;
    // The redirect URI is verified: a failure now goes back to the client as server_error or
    // temporarily_unavailable, never to an unverified place.
    result.unwrap_or_else(|e| {
        let mut out = error_redirect(&v, &issuer, e.code, &e.description);
        out.cause = e.cause;
        out
    })
}

/// The app a sign-in continues to, as the login page shows it.
struct App {
    name: String,
    about: crate::protocol::client::AppLinks,
    /// The logo's origin, while it is one of the partner's (else no logo is shown).
    logo_origin: Option<crate::protocol::origin::Origin>,
}

impl App {
    fn view(&self) -> pages::AppView<'_> {
        pages::AppView {
            name: &self.name,
            logo_uri: self
                .logo_origin
                .as_ref()
                .and(self.about.logo_uri.as_deref()),
            policy_uri: self.about.policy_uri.as_deref(),
            tos_uri: self.about.tos_uri.as_deref(),
        }
    }
}

/// The client of the authorization request a sign-in returns to, when the page has something of
/// it to show. Only decoration: a failure to read it shows the plain page.
async fn app_for(env: &Env, return_to: &str, now_ms: u64) -> Option<App> {
    let query = return_to
        .strip_prefix(routes::AUTHORIZE)?
        .strip_prefix('?')?;
    let params = Params::parse(query.as_bytes()).ok()?;
    let client_id = crate::protocol::client::ClientId::parse(params.get("client_id")?)?;
    let client: ClientRecord = kvcache::get_json(env, &client_id.kv_key(), now_ms)
        .await
        .ok()??;
    if client.about.is_empty() {
        return None;
    }
    let partner: Option<Partner> = kvcache::get_json(
        env,
        &crate::protocol::partner::keys::partner(&client.partner_id),
        now_ms,
    )
    .await
    .ok()?;
    // A suspended partner's apps are shown nothing of (their sign-ins do not go on anyway).
    if !partner
        .as_ref()
        .is_some_and(|p| p.status == PartnerStatus::Active)
    {
        return None;
    }
    let logo_origin = client
        .about
        .logo_uri
        .as_deref()
        .and_then(crate::protocol::origin::Origin::from_referer)
        .filter(|o| partner.as_ref().is_some_and(|p| p.origins.contains(o)));
    Some(App {
        name: client.name,
        about: client.about,
        logo_origin,
    })
}

fn return_path(params: &Params) -> Option<String> {
    authorize::safe_return_path(
        params.get("return_to")?,
        &[routes::AUTHORIZE, routes::ACCOUNT, routes::LINK],
    )
}

pub async fn login(req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let mut req = req;
    let params = match body::params(&mut req, method == Method::Post).await {
        Ok(p) => p,
        Err(e) => return browser::error_page(&e),
    };
    let app = match return_path(&params) {
        Some(r) => app_for(env, &r, now_ms).await,
        None => None,
    };
    let csp = app
        .as_ref()
        .and_then(|a| a.logo_origin.as_ref())
        .map(|o| pages::login_csp(o.as_str()));
    if method == Method::Get {
        let Some(return_to) = return_path(&params) else {
            return browser::error_page(&ApiError::new(
                ErrorCode::InvalidRequest,
                "this sign-in link is not valid",
            ));
        };
        return match cookies.csrf(&req) {
            Ok((csrf, new_cookie)) => {
                let cookies: Vec<String> = new_cookie.into_iter().collect();
                // The client's `login_hint`, if it is one a page may show (as `parse` keeps it).
                let hint = params
                    .get("login_hint")
                    .filter(|h| {
                        h.len() <= authorize::MAX_LOGIN_HINT_LEN
                            && crate::protocol::text::displayable(h)
                    })
                    .unwrap_or("");
                let html = pages::login(
                    routes::LOGIN,
                    &csrf,
                    &return_to,
                    hint,
                    None,
                    app.as_ref().map(App::view).as_ref(),
                );
                browser::page_with_csp(200, html, &cookies, "login_form", csp.as_deref())
            }
            Err(e) => browser::error_page(&e),
        };
    }
    if !cookies.csrf_ok(&req, params.get("csrf")) {
        return browser::error_page(&ApiError::new(ErrorCode::AccessDenied, FORM_EXPIRED));
    }
    let Some(return_to) = return_path(&params) else {
        return browser::error_page(&ApiError::new(
            ErrorCode::InvalidRequest,
            "this sign-in link is not valid",
        ));
    };
    let typed = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let csrf = params.get("csrf").unwrap_or("").to_owned();
    let failed = |csrf: &str| {
        let html = pages::login(
            routes::LOGIN,
            csrf,
            &return_to,
            typed,
            Some(LOGIN_FAILED),
            app.as_ref().map(App::view).as_ref(),
        );
        browser::page_with_csp(401, html, &[], "login_failed", csp.as_deref())
    };
    let user = Username::from_login(typed);
    // A browser where this user signed in before brings its device cookie: it is limited on its
    // own, so failures elsewhere (someone guessing, or locking the user out) do not stop it.
    let mut device = user.as_ref().and_then(|u| cookies.device(&req, u));
    // Where the typed username lives, from the directory (KV, read at this edge through the
    // isolate cache), first: the sign-in counters that name the user live in the user's region
    // (those of the network in the region the request comes from). An unknown username finds no
    // entry and is asked of the global namespace, as before regions, which answers it with the
    // same work as a wrong password.
    let home = match &user {
        Some(u) => match users::home_of(env, u, now_ms).await {
            Ok(home) => home,
            Err(e) => return browser::error_page(&e),
        },
        None => None,
    };
    let visitor = config::visitor_region(&req, env);
    let places = Places {
        user: Placement::of(home),
        network: Placement::of(visitor),
    };
    loop {
        let taken =
            LoginAttempt::take(env, &req, user.clone(), device.as_deref(), places, now_ms).await;
        let attempts = match taken {
            Ok(a) => a,
            Err(e) if e.code == ErrorCode::RateLimited => {
                let wait = match e.detail {
                    Detail::RateLimit { reset_s, .. } => reset_s,
                    _ => 60,
                };
                let message =
                    format!("Too many sign-in attempts. Wait {wait} seconds, then try again.");
                let html = pages::login(
                    routes::LOGIN,
                    &csrf,
                    &return_to,
                    typed,
                    Some(&message),
                    app.as_ref().map(App::view).as_ref(),
                );
                let mut out =
                    browser::page_with_csp(429, html, &[], "rate_limited", csp.as_deref());
                let _ = out
                    .response
                    .headers_mut()
                    .set("retry-after", &wait.to_string());
                out.reason = Some(e.description);
                return out;
            }
            Err(e) => return browser::error_page(&e),
        };
        let Some(username) = &user else {
            // Same work and the same answer as for a wrong password.
            verify_against_nothing(password, OWASP_ARGON2ID);
            return failed(&csrf);
        };
        let secrets = cookies
            .new_session(username, home)
            .and_then(|s| Ok((s, cookies.new_device(username)?)));
        let ((session_cookie, session_hash), (device_cookie, device_hash)) = match secrets {
            Ok(v) => v,
            Err(e) => return browser::error_page(&e),
        };
        let cmd = Login {
            password: password.to_owned(),
            session_hash,
            now: now_ms / 1000,
            device_hash: device.clone(),
            new_device_hash: Some(device_hash),
        };
        match users::call(env, username, home, cmd).await {
            Ok(LoginOutcome::LoggedIn { .. }) => {
                // Only failed attempts count: a success gives its slots back.
                attempts.give_back();
                return browser::redirect(
                    303,
                    &issuer.url(&return_to),
                    &[session_cookie, device_cookie],
                    "login_ok",
                );
            }
            Ok(LoginOutcome::UntrustedDevice) if device.is_some() => {
                // Not a device of this user's: the attempt counts as any other browser's.
                attempts.give_back();
                device = None;
            }
            Err(error) => return browser::error_page(&error),
            Ok(LoginOutcome::BadCredentials | LoginOutcome::UntrustedDevice) => {
                return failed(&csrf)
            }
        }
    }
}

/// The slots a password attempt took from the sign-in limits (failed attempts per
/// `LOGIN_WINDOW_SECONDS`, counters chosen by `protocol::ratelimit::login_slots`): taken before
/// the password is checked, so concurrent guesses cannot overrun the limit, and given back when
/// the attempt succeeds (into this isolate's lease: a success costs no limiter call).
struct LoginAttempt {
    slots: Vec<Slot>,
}

/// Where the sign-in counters live: those about the user in the user's region, those about the
/// network in the region the request comes from.
#[derive(Clone, Copy)]
struct Places {
    user: Placement,
    network: Placement,
}

impl LoginAttempt {
    /// `device`: the hash of the browser's device cookie for `username`, if it has one; its
    /// attempts are counted per device instead of per username (from this network and from
    /// all).
    async fn take(
        env: &Env,
        req: &Request,
        username: Option<Username>,
        device: Option<&str>,
        places: Places,
        now_ms: u64,
    ) -> Result<LoginAttempt, ApiError> {
        let ip = client_ip(req);
        let window_ms = config::login_window_ms(env);
        let wanted = login_slots(
            &ip,
            username.as_ref().map(Username::as_str),
            device,
            &config::login_limits(env),
        );
        let granted = join_all(wanted.iter().map(|s| {
            let placement = if s.of_user {
                places.user
            } else {
                places.network
            };
            limits::acquire(env, &s.key, s.limit, window_ms, placement, now_ms)
        }))
        .await;
        let mut attempt = LoginAttempt { slots: Vec::new() };
        let mut refused = None;
        for (slot, g) in wanted.into_iter().zip(granted) {
            match g {
                Ok(limits::Admission::Admitted(taken)) => attempt.slots.push(taken),
                Ok(limits::Admission::Refused(window)) => {
                    refused = Some(limited(slot.why, window, now_ms));
                }
                Err(e) => refused = Some(e),
            }
        }
        match refused {
            None => Ok(attempt),
            Some(e) => {
                // The attempt is not made: what it took goes back.
                attempt.give_back();
                Err(e)
            }
        }
    }

    fn give_back(&self) {
        for slot in &self.slots {
            limits::give_back(slot);
        }
    }
}

/// The caller's address group as Cloudflare reports the connection (`CF-Connecting-IP`, which
/// clients cannot set through Cloudflare): the IPv4 address, or the IPv6 /64 (one holder has
/// them all); `unknown` where there is none, such as local development.
fn client_ip(req: &Request) -> String {
    let header = req.headers().get("cf-connecting-ip").ok().flatten();
    client_address(header.as_deref()).map_or_else(|| "unknown".to_owned(), address_group)
}
