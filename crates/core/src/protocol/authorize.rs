//! The authorization endpoint's decisions (RFC 6749 §4.1, OpenID Connect Core §3.1.2, RFC 7636,
//! RFC 9207), in two phases. Until the client and its redirect URI are verified, every error is
//! shown to the user and never redirected; after that, errors go back to the client.

use super::claims::ClaimsRequest;
use super::client::{ClientId, ClientRecord, GrantType, RedirectUri};
use super::error::{ApiError, ErrorCode};
use super::form::{self, Params};
use super::pkce;

pub const MAX_STATE_LEN: usize = 2048;
pub const MAX_NONCE_LEN: usize = 512;
/// `login_hint` longer than this is not shown (a username is far shorter).
pub const MAX_LOGIN_HINT_LEN: usize = 256;

/// How the authorization response travels to the client (OAuth 2.0 Multiple Response Type
/// Encoding Practices §2.1; OAuth 2.0 Form Post Response Mode §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseMode {
    /// In the redirect URI's query (the default for `code`).
    #[default]
    Query,
    /// As an HTML form the browser posts to the redirect URI.
    FormPost,
}

impl ResponseMode {
    /// The request's `response_mode`; `None` for a mode we do not answer in.
    pub fn parse(raw: Option<&str>) -> Option<ResponseMode> {
        match raw {
            None | Some("query") => Some(ResponseMode::Query),
            Some("form_post") => Some(ResponseMode::FormPost),
            Some(_) => None,
        }
    }

    /// The mode an error about the request is answered in: the request's, or the default when
    /// the mode itself is what is wrong.
    pub fn of_params(params: &Params) -> ResponseMode {
        ResponseMode::parse(params.get("response_mode")).unwrap_or_default()
    }
}

/// `prompt` (OIDC Core §3.1.2.1). `none` excludes the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A checked authorization request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The PKCE challenge (S256); `None` only for a client registered without PKCE, whose
    /// request then carries a `nonce`.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
    pub response_mode: ResponseMode,
    /// OpenID Connect Core §3.1.2.1: pre-fills the login form's username (shown escaped).
    pub login_hint: Option<String>,
    /// Claims asked for by name (§5.5), those the client may have.
    pub claims: ClaimsRequest,
    /// `acr_values` (§3.1.2.1): the ID token then names the session's class (`protocol::claims`).
    pub acr_values: Vec<String>,
}

fn shown(description: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, description)
}

/// The client id of a request, checked for shape only. Errors are shown, never redirected.
pub fn client_id(params: &Params) -> Result<ClientId, ApiError> {
    let raw = params
        .get("client_id")
        .ok_or_else(|| shown("client_id is missing"))?;
    ClientId::parse(raw).ok_or_else(|| shown("client_id is not a known client"))
}

/// Phase 1: the redirect URI must be exactly one the client registered (RFC 9700 §4.1.3),
/// and the client must use the code flow. Errors are shown, never redirected.
pub fn redirect_uri(params: &Params, client: &ClientRecord) -> Result<RedirectUri, ApiError> {
    let raw = params
        .get("redirect_uri")
        .ok_or_else(|| shown("redirect_uri is missing"))?;
    let registered = client
        .redirect_uris
        .iter()
        .find(|r| r.as_str() == raw)
        .ok_or_else(|| shown("redirect_uri is not registered for this client"))?;
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(shown("this client may not use the authorization code flow"));
    }
    Ok(registered.clone())
}

fn redirected(code: ErrorCode, description: &str) -> ApiError {
    ApiError::new(code, description)
}

/// Phase 2: everything else. Errors from here are redirected to the verified redirect URI.
pub fn parse(
    params: &Params,
    client: &ClientRecord,
    redirect_uri: RedirectUri,
) -> Result<AuthRequest, ApiError> {
    if params.has("request") {
        return Err(redirected(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.has("request_uri") {
        return Err(redirected(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => {
            return Err(redirected(
                ErrorCode::InvalidRequest,
                "response_type is missing",
            ))
        }
        Some(_) => {
            return Err(redirected(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ))
        }
    }
    let response_mode = ResponseMode::parse(params.get("response_mode")).ok_or_else(|| {
        redirected(
            ErrorCode::InvalidRequest,
            "response_mode must be query or form_post",
        )
    })?;
    let scopes = parse_scopes(params.get("scope"), client)?;
    let state = params.get("state").map(str::to_owned);
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(redirected(ErrorCode::InvalidRequest, "state is too long"));
    }
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return Err(redirected(ErrorCode::InvalidRequest, "nonce is too long"));
    }
    let code_challenge = pkce_of(params, client, &scopes)?;
    let claims = ClaimsRequest::parse(params.get("claims"), &client.scopes)
        .map_err(|e| redirected(e.code, &e.description))?;
    let prompt = parse_prompt(params.get("prompt"))?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= 1_000_000_000)
                .ok_or_else(|| {
                    redirected(
                        ErrorCode::InvalidRequest,
                        "max_age must be a number of seconds",
                    )
                })?,
        ),
    };
    // A hint is only a suggestion: one too long to be a username, or not text a page may
    // show, is dropped rather than refused.
    let login_hint = params
        .get("login_hint")
        .filter(|h| h.len() <= MAX_LOGIN_HINT_LEN && super::text::displayable(h))
        .map(str::to_owned);
    Ok(AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        scopes,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        response_mode,
        login_hint,
        claims,
        acr_values: super::claims::parse_acr_values(params.get("acr_values")),
    })
}

/// The request's PKCE challenge (RFC 7636, S256 only). Required unless the client was
/// registered without it (a confidential client, `require_pkce: false`, that checks the
/// OpenID Connect `nonce` of its ID tokens instead, RFC 9700 §2.1.1): such a request must then
/// be an OpenID Connect request. The nonce is the client's defence, so its absence is not ours
/// to refuse (OpenID Connect Core §3.1.2.1 makes it optional for the code flow, and the
/// conformance suite's `oidcc-ensure-request-without-nonce-succeeds-for-code-flow` expects a
/// code); when it is sent, the ID token carries it.
fn pkce_of(
    params: &Params,
    client: &ClientRecord,
    scopes: &[String],
) -> Result<Option<String>, ApiError> {
    let Some(challenge) = params.get("code_challenge") else {
        if client.require_pkce {
            return Err(redirected(
                ErrorCode::InvalidRequest,
                "PKCE code_challenge is required",
            ));
        }
        if !scopes.iter().any(|s| s == "openid") {
            return Err(redirected(
                ErrorCode::InvalidRequest,
                "a request without PKCE must be an OpenID Connect request (scope openid)",
            ));
        }
        return Ok(None);
    };
    if params.get("code_challenge_method") != Some("S256") {
        return Err(redirected(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        ));
    }
    if !pkce::challenge_ok(challenge) {
        return Err(redirected(
            ErrorCode::InvalidRequest,
            "code_challenge must be 43 base64url characters (S256)",
        ));
    }
    Ok(Some(challenge.to_owned()))
}

/// The requested scopes the client is registered for, in order, repeats dropped. A scope the
/// client is not registered for (or that we do not know) is left out rather than refused
/// (RFC 6749 §3.3: the server may grant less than was asked; OpenID Connect Core §3.1.2.1:
/// unknown scope values are ignored); the token response names what was granted. Nothing left
/// is `invalid_scope`.
pub fn parse_scopes(raw: Option<&str>, client: &ClientRecord) -> Result<Vec<String>, ApiError> {
    let raw = raw.ok_or_else(|| redirected(ErrorCode::InvalidScope, "scope is required"))?;
    let mut scopes: Vec<String> = Vec::new();
    for s in raw.split(' ').filter(|s| !s.is_empty()) {
        if client.scopes.iter().any(|c| c == s) && !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(redirected(
            ErrorCode::InvalidScope,
            "none of the requested scopes is registered for this client",
        ));
    }
    Ok(scopes)
}

fn parse_prompt(raw: Option<&str>) -> Result<Prompt, ApiError> {
    let mut p = Prompt::default();
    for v in raw.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        match v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            _ => {
                return Err(redirected(
                    ErrorCode::InvalidRequest,
                    "prompt may only be none, login or consent",
                ))
            }
        }
    }
    if p.none && (p.login || p.consent) {
        return Err(redirected(
            ErrorCode::InvalidRequest,
            "prompt=none excludes other values",
        ));
    }
    Ok(p)
}

/// What happens next for a checked request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Login,
    Consent,
    Issue,
    Fail(ErrorCode),
}

/// Decides from the session's `auth_time` (None: not logged in) and whether the user already
/// consented to these scopes for this client.
pub fn next_step(req: &AuthRequest, auth_time: Option<u64>, consented: bool, now: u64) -> Next {
    let too_old = match (auth_time, req.max_age) {
        (Some(t), Some(max)) => now.saturating_sub(t) > max,
        _ => false,
    };
    if auth_time.is_none() || req.prompt.login || too_old {
        return if req.prompt.none {
            Next::Fail(ErrorCode::LoginRequired)
        } else {
            Next::Login
        };
    }
    if req.prompt.consent || !consented {
        return if req.prompt.none {
            Next::Fail(ErrorCode::ConsentRequired)
        } else {
            Next::Consent
        };
    }
    Next::Issue
}

impl AuthRequest {
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }

    /// What the person consents to: the scopes asked for, and those covering the claims asked
    /// for by name.
    pub fn consent_scopes(&self) -> Vec<String> {
        let mut out = self.scopes.clone();
        for s in self.claims.scopes() {
            if !out.iter().any(|x| x == s) {
                out.push(s.to_owned());
            }
        }
        out
    }

    /// The request as parameters: for the consent form's hidden fields and for returning to
    /// the endpoint after login. `after_login` drops `prompt=login` (the login just happened)
    /// and `max_age` (satisfied by it).
    pub fn to_params(&self, after_login: bool) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.as_str().to_owned()),
            ("redirect_uri", self.redirect_uri.as_str().to_owned()),
            ("scope", self.scope_string()),
        ];
        if let Some(c) = &self.code_challenge {
            out.push(("code_challenge", c.clone()));
            out.push(("code_challenge_method", "S256".to_owned()));
        }
        if self.response_mode == ResponseMode::FormPost {
            out.push(("response_mode", "form_post".to_owned()));
        }
        if let Some(h) = &self.login_hint {
            out.push(("login_hint", h.clone()));
        }
        if let Some(c) = self.claims.to_param() {
            out.push(("claims", c));
        }
        if !self.acr_values.is_empty() {
            out.push(("acr_values", self.acr_values.join(" ")));
        }
        if let Some(s) = &self.state {
            out.push(("state", s.clone()));
        }
        if let Some(n) = &self.nonce {
            out.push(("nonce", n.clone()));
        }
        let mut prompt: Vec<&str> = Vec::new();
        if self.prompt.none {
            prompt.push("none");
        }
        if self.prompt.login && !after_login {
            prompt.push("login");
        }
        if self.prompt.consent {
            prompt.push("consent");
        }
        if !prompt.is_empty() {
            out.push(("prompt", prompt.join(" ")));
        }
        if let (Some(m), false) = (self.max_age, after_login) {
            out.push(("max_age", m.to_string()));
        }
        out
    }

    /// The path and query of this request at our authorize endpoint.
    pub fn endpoint_path(&self, path: &str, after_login: bool) -> String {
        let pairs = self.to_params(after_login);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("{path}?{}", form::encode(&refs))
    }
}

/// Appends response parameters to a (verified) redirect URI, keeping its own query.
pub fn redirect_to(uri: &RedirectUri, pairs: &[(&str, &str)]) -> String {
    let base = uri.as_str();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", form::encode(pairs))
}

/// An authorization response on its way to the verified redirect URI, in the request's mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToClient {
    pub uri: RedirectUri,
    pub mode: ResponseMode,
    pub pairs: Vec<(&'static str, String)>,
}

impl ToClient {
    /// The response with `state` and RFC 9207's `iss` after `pairs`.
    pub fn new(
        uri: &RedirectUri,
        mode: ResponseMode,
        mut pairs: Vec<(&'static str, String)>,
        state: Option<&str>,
        issuer: &str,
    ) -> ToClient {
        if let Some(s) = state {
            pairs.push(("state", s.to_owned()));
        }
        pairs.push(("iss", issuer.to_owned()));
        ToClient {
            uri: uri.clone(),
            mode,
            pairs,
        }
    }

    /// The error response of RFC 6749 §4.1.2.1.
    pub fn error(
        uri: &RedirectUri,
        mode: ResponseMode,
        err: &ApiError,
        state: Option<&str>,
        issuer: &str,
    ) -> ToClient {
        let pairs = vec![
            ("error", err.code.as_str().to_owned()),
            ("error_description", err.wire_description()),
        ];
        ToClient::new(uri, mode, pairs, state, issuer)
    }

    /// Where a query-mode response sends the browser.
    pub fn location(&self) -> String {
        let refs: Vec<(&str, &str)> = self.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_to(&self.uri, &refs)
    }
}

/// Where a login form may send the browser back to: our own authorize endpoint or account
/// page only, as a path. Anything else is refused (no open redirect through the login page).
pub fn safe_return_path(raw: &str, allowed_prefixes: &[&str]) -> Option<String> {
    let ok = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.contains('\\')
        && !raw.chars().any(char::is_control)
        && allowed_prefixes.iter().any(|p| {
            raw == *p || raw.starts_with(&format!("{p}?")) || raw.starts_with(&format!("{p}/"))
        });
    ok.then(|| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client::AuthMethod;
    use crate::protocol::jwk::SigningAlg;
    use crate::protocol::partner::PartnerId;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: ClientId::parse("client-0001").unwrap(),
            partner_id: PartnerId::parse("acme").unwrap(),
            name: "Acme".into(),
            redirect_uris: vec![RedirectUri::parse("https://app.acme.example/cb?v=1").unwrap()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["openid".into(), "profile".into()],
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            jwks_uri: None,
            id_token_signed_response_alg: SigningAlg::EdDSA,
            userinfo_signed_response_alg: None,
            require_pkce: true,
            post_logout_redirect_uris: None,
            about: crate::protocol::client::AppLinks::default(),
            request_uris: vec![],
            request_object_signing_alg: None,
            registered_with: None,
            secret_hash: None,
            created_at: 0,
        }
    }

    fn params(q: &str) -> Params {
        Params::parse(q.as_bytes()).unwrap()
    }

    fn full(extra: &str) -> String {
        format!(
            "response_type=code&client_id=client-0001&redirect_uri=https%3A%2F%2Fapp.acme.example%2Fcb%3Fv%3D1&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
        )
    }

    fn parse_full(extra: &str) -> Result<AuthRequest, ApiError> {
        let p = params(&full(extra));
        let uri = redirect_uri(&p, &client()).unwrap();
        parse(&p, &client(), uri)
    }

    #[test]
    fn authorize_redirect_uri_must_match_exactly() {
        let c = client();
        for bad in [
            "https://app.acme.example/cb",
            "https://app.acme.example/cb?v=1&x=2",
            "https://app.acme.example/cb?v=1/",
            "https://APP.acme.example/cb?v=1",
            "https://app.acme.example/cb?v=1#f",
            "https://app.acme.example:443/cb?v=1",
            "https://u@app.acme.example/cb?v=1",
            "https://app.acme.example/c",
            "https://app.acme.example/cb?v=12",
            "http://app.acme.example/cb?v=1",
            "https://app.acme.example.evil.example/cb?v=1",
        ] {
            let q = format!(
                "redirect_uri={}",
                form::encode(&[("x", bad)]).trim_start_matches("x=")
            );
            let err = redirect_uri(&params(&q), &c).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad}");
        }
        assert!(redirect_uri(
            &params("redirect_uri=https%3A%2F%2Fapp.acme.example%2Fcb%3Fv%3D1"),
            &c
        )
        .is_ok());
        assert!(redirect_uri(&params(""), &c).is_err());
    }

    #[test]
    fn authorize_without_pkce_only_for_a_client_registered_so_and_with_openid() {
        let no_challenge = full("")
            .replace(&format!("code_challenge={CHALLENGE}&"), "")
            .replace("&code_challenge_method=S256", "");
        let without = ClientRecord {
            require_pkce: false,
            ..client()
        };
        let try_with = |c: &ClientRecord, extra: &str| {
            let p = params(&format!("{no_challenge}{extra}"));
            let uri = redirect_uri(&p, c).unwrap();
            parse(&p, c, uri)
        };
        assert_eq!(
            try_with(&client(), "&nonce=n").unwrap_err().description,
            "PKCE code_challenge is required"
        );
        assert_eq!(try_with(&without, "&nonce=n").unwrap().code_challenge, None);
        assert_eq!(try_with(&without, "").unwrap().code_challenge, None);
        let p = params(&format!(
            "{}&nonce=n",
            no_challenge.replace("scope=openid", "scope=profile")
        ));
        let uri = redirect_uri(&p, &without).unwrap();
        assert_eq!(
            parse(&p, &without, uri).unwrap_err().code,
            ErrorCode::InvalidRequest,
            "and the openid scope"
        );
        // PKCE sent anyway is checked as always.
        let ok = parse_full("&nonce=n").unwrap();
        assert_eq!(ok.code_challenge.as_deref(), Some(CHALLENGE));
    }

    #[test]
    fn authorize_response_mode_query_or_form_post_and_login_hint() {
        assert_eq!(parse_full("").unwrap().response_mode, ResponseMode::Query);
        assert_eq!(
            parse_full("&response_mode=query").unwrap().response_mode,
            ResponseMode::Query
        );
        let r = parse_full("&response_mode=form_post&login_hint=dora").unwrap();
        assert_eq!(r.response_mode, ResponseMode::FormPost);
        assert_eq!(r.login_hint.as_deref(), Some("dora"));
        let again = r.endpoint_path("/oauth2/authorize", true);
        assert!(again.contains("response_mode=form_post") && again.contains("login_hint=dora"));
        let long = "x".repeat(MAX_LOGIN_HINT_LEN + 1);
        assert_eq!(
            parse_full(&format!("&login_hint={long}"))
                .unwrap()
                .login_hint,
            None
        );
        assert_eq!(parse_full("&login_hint=a%00b").unwrap().login_hint, None);
        assert_eq!(
            ResponseMode::of_params(&params("response_mode=fragment")),
            ResponseMode::Query
        );
    }

    #[test]
    fn authorize_requires_pkce_s256() {
        assert!(parse_full("").is_ok());
        let no_challenge = full("").replace(&format!("code_challenge={CHALLENGE}&"), "");
        let p = params(&no_challenge);
        let uri = redirect_uri(&p, &client()).unwrap();
        assert_eq!(
            parse(&p, &client(), uri).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        for method in ["", "&x=1"] {
            let q = full(method).replace("&code_challenge_method=S256", "");
            let p = params(&q);
            let uri = redirect_uri(&p, &client()).unwrap();
            assert_eq!(
                parse(&p, &client(), uri).unwrap_err().description,
                "code_challenge_method must be S256"
            );
        }
        let plain = full("").replace("code_challenge_method=S256", "code_challenge_method=plain");
        let p = params(&plain);
        let uri = redirect_uri(&p, &client()).unwrap();
        assert_eq!(
            parse(&p, &client(), uri).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn authorize_checks_response_type_scope_prompt_and_request_objects() {
        let q = full("").replace("response_type=code", "response_type=token");
        let p = params(&q);
        let uri = redirect_uri(&p, &client()).unwrap();
        assert_eq!(
            parse(&p, &client(), uri).unwrap_err().code,
            ErrorCode::UnsupportedResponseType
        );
        // A scope the client is not registered for is left out; none left is invalid_scope.
        let q = full("").replace("scope=openid", "scope=openid+email+openid");
        let p = params(&q);
        let uri = redirect_uri(&p, &client()).unwrap();
        assert_eq!(parse(&p, &client(), uri).unwrap().scopes, vec!["openid"]);
        let q = full("").replace("scope=openid", "scope=email+unknown");
        let p = params(&q);
        let uri = redirect_uri(&p, &client()).unwrap();
        assert_eq!(
            parse(&p, &client(), uri).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        assert_eq!(
            parse_full("&prompt=none+login").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_full("&prompt=select_account").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_full("&request=x").unwrap_err().code,
            ErrorCode::RequestNotSupported
        );
        assert_eq!(
            parse_full("&request_uri=x").unwrap_err().code,
            ErrorCode::RequestUriNotSupported
        );
        assert_eq!(
            parse_full("&response_mode=fragment").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_full("&max_age=-1").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let ok = parse_full("&scope2=x&prompt=login+consent&max_age=60&nonce=n1&state=s1").unwrap();
        assert!(ok.prompt.login && ok.prompt.consent);
        assert_eq!(ok.max_age, Some(60));
    }

    #[test]
    fn next_step_honours_prompt_and_max_age() {
        let mut r = parse_full("").unwrap();
        assert_eq!(next_step(&r, None, false, 100), Next::Login);
        assert_eq!(next_step(&r, Some(90), false, 100), Next::Consent);
        assert_eq!(next_step(&r, Some(90), true, 100), Next::Issue);
        r.prompt.none = true;
        assert_eq!(
            next_step(&r, None, true, 100),
            Next::Fail(ErrorCode::LoginRequired)
        );
        assert_eq!(
            next_step(&r, Some(90), false, 100),
            Next::Fail(ErrorCode::ConsentRequired)
        );
        r.prompt = Prompt {
            login: true,
            ..Prompt::default()
        };
        assert_eq!(next_step(&r, Some(99), true, 100), Next::Login);
        r.prompt = Prompt {
            consent: true,
            ..Prompt::default()
        };
        assert_eq!(next_step(&r, Some(99), true, 100), Next::Consent);
        r.prompt = Prompt::default();
        r.max_age = Some(10);
        assert_eq!(next_step(&r, Some(80), true, 100), Next::Login);
        assert_eq!(next_step(&r, Some(90), true, 100), Next::Issue);
    }

    #[test]
    fn return_to_after_login_drops_prompt_login_and_max_age() {
        let r = parse_full("&prompt=login&max_age=5&state=x%26y").unwrap();
        let path = r.endpoint_path("/oauth2/authorize", true);
        assert!(!path.contains("prompt"));
        assert!(!path.contains("max_age"));
        assert!(path.contains("state=x%26y"));
        let again = Params::parse(path.split_once('?').unwrap().1.as_bytes()).unwrap();
        let uri = redirect_uri(&again, &client()).unwrap();
        let reparsed = parse(&again, &client(), uri).unwrap();
        assert_eq!(reparsed.state.as_deref(), Some("x&y"));
        assert!(!reparsed.prompt.login);
    }

    #[test]
    fn error_redirect_keeps_the_registered_query_and_adds_state_and_iss() {
        let uri = RedirectUri::parse("https://app.acme.example/cb?v=1").unwrap();
        let err = ApiError::new(ErrorCode::AccessDenied, "the user said no");
        assert_eq!(
            ToClient::error(&uri, ResponseMode::Query, &err, Some("s 1"), "https://id.example")
                .location(),
            "https://app.acme.example/cb?v=1&error=access_denied&error_description=the+user+said+no&state=s+1&iss=https%3A%2F%2Fid.example"
        );
    }

    #[test]
    fn login_return_path_is_local_and_limited() {
        let allowed = ["/oauth2/authorize", "/account"];
        assert!(safe_return_path("/oauth2/authorize?client_id=x", &allowed).is_some());
        assert!(safe_return_path("/account", &allowed).is_some());
        for bad in [
            "https://evil.example/",
            "//evil.example/oauth2/authorize",
            "/\\evil.example",
            "/oauth2/authorizeX",
            "/admin/partners",
            "oauth2/authorize",
            "/account\n",
            "",
        ] {
            assert_eq!(safe_return_path(bad, &allowed), None, "{bad:?}");
        }
    }
}
