//! An off-the-shelf OpenID Connect client, the `openidconnect` crate, driving edgeward's code
//! flow from discovery: authorize, the login and consent forms, token exchange with PKCE, the ID
//! token verified against the published JWKS (signature, nonce, at_hash), userinfo, refresh,
//! revocation. The end-to-end tests run it against the built Worker; it exits non-zero on any
//! failure and prints a one-line JSON summary on success.
//!
//! Revocation is the one step done by hand: the library refuses plain-http endpoints for it, and
//! the local test server is http.
//!
//! Usage: oidc_client ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI USERNAME PASSWORD ALG
//! (ALG: the client's registered ID-token algorithm, RS256 or EdDSA)

use std::collections::HashMap;
use std::error::Error;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::blocking::Client;
use reqwest::redirect::Policy;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into().into())
}

/// Hidden inputs of the page's form, unescaped.
fn hidden_fields(html: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in html.split("<input").skip(1) {
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            let start = part.find(&key)? + key.len();
            let end = part[start..].find('"')? + start;
            Some(part[start..end].to_owned())
        };
        if attr("type").as_deref() == Some("hidden") {
            if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
                let v = v
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                out.insert(n, v);
            }
        }
    }
    out
}

/// Plays the person at the browser: follows redirects, fills the login form, allows consent.
fn browser_flow(
    issuer: &str,
    start: &str,
    redirect_uri: &str,
    username: &str,
    password: &str,
) -> Result<url::Url> {
    let browser = Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()?;
    let mut resp = browser.get(start).send()?;
    for _ in 0..8 {
        let status = resp.status().as_u16();
        if status == 302 || status == 303 {
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("redirect without location")?
                .to_owned();
            if location.starts_with(redirect_uri) {
                return Ok(url::Url::parse(&location)?);
            }
            let next = url::Url::parse(issuer)?.join(&location)?;
            if !next.as_str().starts_with(issuer) {
                return fail(format!("redirected to an unexpected place: {next}"));
            }
            resp = browser.get(next).send()?;
            continue;
        }
        let html = resp.text()?;
        if status != 200 {
            return fail(format!("unexpected status {status}"));
        }
        let mut form = hidden_fields(&html);
        let path = if html.contains("name=\"password\"") {
            form.insert("username".into(), username.into());
            form.insert("password".into(), password.into());
            "/login"
        } else if html.contains("name=\"decision\"") {
            form.insert("decision".into(), "allow".into());
            "/oauth2/authorize"
        } else {
            return fail("unexpected page");
        };
        resp = browser.post(format!("{issuer}{path}")).form(&form).send()?;
    }
    fail("too many redirects")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [issuer, client_id, client_secret, redirect_uri, username, password, alg] = args.as_slice()
    else {
        return fail(
            "usage: oidc_client ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI USERNAME PASSWORD ALG",
        );
    };
    let http = Client::builder().redirect(Policy::none()).build()?;

    let metadata = CoreProviderMetadata::discover(&IssuerUrl::new(issuer.clone())?, &http)?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.clone()),
        Some(ClientSecret::new(client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri.clone())?);

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();

    let callback = browser_flow(issuer, auth_url.as_str(), redirect_uri, username, password)?;
    let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    if query.get("state") != Some(csrf.secret()) {
        return fail("state does not match");
    }
    if query.get("iss") != Some(issuer) {
        return fail("iss (RFC 9207) does not match");
    }
    let code = query.get("code").ok_or("no code in the callback")?;

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request(&http)?;
    let id_token = tokens.id_token().ok_or("no ID token")?;
    let mut id_verifier = client.id_token_verifier();
    if alg == "EdDSA" {
        // The library accepts RS256 only unless told otherwise.
        id_verifier = id_verifier.set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);
    }
    let claims = id_token.claims(&id_verifier, &nonce)?;
    let expected_hash = claims.access_token_hash().ok_or("no at_hash")?;
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg()?,
        id_token.signing_key(&id_verifier)?,
    )?;
    if actual_hash != *expected_hash {
        return fail("at_hash does not match the access token");
    }

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)?
        .request(&http)?;
    if userinfo.subject() != claims.subject() {
        return fail("userinfo sub differs from the ID token's");
    }
    let name = userinfo
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();

    let refresh = tokens.refresh_token().ok_or("no refresh token")?;
    let refreshed = client.exchange_refresh_token(refresh)?.request(&http)?;
    let rotated = refreshed
        .refresh_token()
        .ok_or("no rotated refresh token")?;
    if rotated.secret() == refresh.secret() {
        return fail("the refresh token did not rotate");
    }
    // The library refuses to revoke over plain http (our local test server); revoke as RFC 7009
    // says, with the client's Basic credentials, and let the library show the token is dead.
    let revoked = http
        .post(format!("{issuer}/oauth2/revoke"))
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("token", rotated.secret().as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()?;
    if !revoked.status().is_success() {
        return fail(format!("revocation answered {}", revoked.status()));
    }
    if client
        .exchange_refresh_token(rotated)?
        .request(&http)
        .is_ok()
    {
        return fail("a revoked refresh token still worked");
    }

    println!(
        "{{\"ok\":true,\"alg\":\"{}\",\"sub\":\"{}\",\"name\":\"{}\"}}",
        alg,
        claims.subject().as_str(),
        name
    );
    Ok(())
}
