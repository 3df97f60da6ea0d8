//! What a browser carries between requests: the session cookie, the CSRF cookie, and the pages.
//! Cookies are `__Host-` prefixed, `HttpOnly`, `Secure`, `SameSite=Lax` when the issuer is
//! https; on a loopback http issuer (local development) the prefix and `Secure` are dropped,
//! since browsers refuse them there.

use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{random, respond};
use crate::pages;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::ApiError;
use crate::protocol::grant::hash_secret;
use crate::protocol::region::{Home, Region};
use crate::protocol::user::{Username, DEVICE_TTL_S, SESSION_TTL_S};
use base64ct::{Base64UrlUnpadded, Encoding};
use subtle::ConstantTimeEq;

pub struct Cookies {
    secure: bool,
}

impl Cookies {
    pub fn for_issuer(issuer: &Issuer) -> Cookies {
        Cookies {
            secure: issuer.as_str().starts_with("https://"),
        }
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-edgeward_{base}")
        } else {
            format!("edgeward_{base}")
        }
    }

    fn set(&self, base: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.name(base)
        )
    }

    pub fn read(&self, req: &Request, base: &str) -> Option<String> {
        let header = req.headers().get("cookie").ok().flatten()?;
        let name = self.name(base);
        header.split(';').find_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            (k == name && !v.is_empty() && v.len() <= 256).then(|| v.to_owned())
        })
    }

    /// The session cookie `{username}.{secret}.{region}` (`{username}.{secret}` for a legacy
    /// user, and every cookie from before regions): which user object to ask, where, and the
    /// hash of the secret the session is stored under. The region comes with the cookie so no
    /// request of the session looks it up; a cookie that names another region than the user's
    /// reaches an object that holds no such session, and is no session.
    pub fn session(&self, req: &Request) -> Option<(Username, Home, String)> {
        let raw = self.read(req, "session")?;
        let (rest, last) = raw.rsplit_once('.')?;
        let (user, home, secret) = if last.len() == 43 {
            (rest, None, last)
        } else {
            let region = Region::parse(last).ok()?;
            let (user, secret) = rest.rsplit_once('.')?;
            (user, Some(region), secret)
        };
        let user = Username::parse(user).ok()?;
        (secret.len() == 43).then(|| (user, home, hash_secret(secret)))
    }

    /// A new session secret for `user`, who lives in `home`: the cookie to set, and the hash to
    /// store.
    pub fn new_session(&self, user: &Username, home: Home) -> Result<(String, String), ApiError> {
        let secret = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
        let hash = hash_secret(&secret);
        let value = match home {
            Some(region) => format!("{user}.{secret}.{region}"),
            None => format!("{user}.{secret}"),
        };
        Ok((self.set("session", &value, SESSION_TTL_S), hash))
    }

    /// The device cookie `{username}.{secret}` of a browser where `user` signed in before: the
    /// hash its secret is stored under, if the cookie names `user`.
    pub fn device(&self, req: &Request, user: &Username) -> Option<String> {
        let raw = self.read(req, "device")?;
        let (named, secret) = raw.rsplit_once('.')?;
        (named == user.as_str() && secret.len() == 43).then(|| hash_secret(secret))
    }

    /// A new device secret for `user`: the cookie to set, and the hash to store.
    pub fn new_device(&self, user: &Username) -> Result<(String, String), ApiError> {
        self.new_user_secret("device", user, DEVICE_TTL_S)
    }

    fn new_user_secret(
        &self,
        base: &str,
        user: &Username,
        ttl_s: u64,
    ) -> Result<(String, String), ApiError> {
        let secret = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
        let hash = hash_secret(&secret);
        Ok((self.set(base, &format!("{user}.{secret}"), ttl_s), hash))
    }

    pub fn clear_session(&self) -> String {
        self.set("session", "", 0)
    }

    /// The browser's CSRF token, and the `Set-Cookie` to send if it is new.
    pub fn csrf(&self, req: &Request) -> Result<(String, Option<String>), ApiError> {
        if let Some(existing) = self.read(req, "csrf").filter(|v| v.len() == 43) {
            return Ok((existing, None));
        }
        let token = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
        let cookie = self.set("csrf", &token, SESSION_TTL_S);
        Ok((token, Some(cookie)))
    }

    /// A form post is accepted only with the CSRF token of this browser's cookie.
    pub fn csrf_ok(&self, req: &Request, submitted: Option<&str>) -> bool {
        match (self.read(req, "csrf"), submitted) {
            (Some(cookie), Some(form)) => bool::from(cookie.as_bytes().ct_eq(form.as_bytes())),
            _ => false,
        }
    }
}

/// An HTML page response with the page security headers and any cookies.
pub fn page(status: u16, html: String, cookies: &[String], outcome: &'static str) -> Outcome {
    page_with_csp(status, html, cookies, outcome, None)
}

/// The form-post authorization response page: [`page`], with the CSP that allows its one script.
pub fn form_post(html: String, cookies: &[String], outcome: &'static str) -> Outcome {
    page_with_csp(200, html, cookies, outcome, Some(pages::FORM_POST_CSP))
}

/// [`page`] with its own content security policy (`None`: the pages' one).
pub fn page_with_csp(
    status: u16,
    html: String,
    cookies: &[String],
    outcome: &'static str,
    csp: Option<&str>,
) -> Outcome {
    let mut headers: Vec<(&str, String)> = pages::PAGE_HEADERS
        .iter()
        .map(|(k, v)| match csp {
            Some(csp) if *k == "content-security-policy" => (*k, csp.to_owned()),
            _ => (*k, (*v).to_owned()),
        })
        .collect();
    for c in cookies {
        headers.push(("set-cookie", c.clone()));
    }
    let resp = worker::Response::ok(html)
        .map(|r| {
            r.with_status(status)
                .with_headers(respond::headers(&headers))
        })
        .unwrap_or_else(|_| respond::empty(500, &[]));
    Outcome::new(resp, outcome)
}

/// An error shown to the person, never a redirect.
pub fn error_page(err: &ApiError) -> Outcome {
    let status = err.code.status();
    let title = if status >= 500 {
        "Something went wrong"
    } else {
        "This sign-in request cannot continue"
    };
    let mut out = page(
        status,
        pages::error(title, &err.wire_description()),
        &[],
        err.code.as_str(),
    );
    out.cause = err.cause.clone();
    out
}

/// A redirect (302 after GET, 303 after a form post) with no-store and any cookies.
pub fn redirect(status: u16, location: &str, cookies: &[String], outcome: &'static str) -> Outcome {
    let mut headers = vec![
        ("location", location.to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    for c in cookies {
        headers.push(("set-cookie", c.clone()));
    }
    Outcome::new(respond::empty(status, &headers), outcome)
}
