//! The HTML a person sees: login, consent and error pages. Server-rendered, no JavaScript (but
//! for the one constant line that submits a form-post response, allowed by its hash alone),
//! accessible (labels, visible focus, contrast above WCAG AA) and usable on a phone. Every value
//! that reaches a page is escaped here.

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1b1f24;line-height:1.5}\
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}\
h1{font-size:1.4rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=text],input[type=password]{box-sizing:border-box;width:100%;padding:.6rem;font-size:1rem;border:1px solid #5b6470;border-radius:.3rem}\
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.3rem;border:2px solid #0b4f9c;cursor:pointer;margin:1rem .5rem 0 0}\
button.primary{background:#0b4f9c;color:#fff}button.secondary{background:#fff;color:#0b4f9c}\
:focus-visible{outline:3px solid #b35c00;outline-offset:2px}\
.error{background:#fdecea;border-left:4px solid #a4161a;padding:.5rem .75rem;color:#6b0f12}\
ul{padding-left:1.2rem}.muted{color:#4a525c;font-size:.9rem}\
@media (max-width:30rem){main{margin:0;border-radius:0;min-height:100vh}}";

/// Headers every page carries: no caching, no framing (clickjacking of the consent page), no
/// scripts at all.
pub const PAGE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        esc(title)
    )
}

fn hidden(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect()
}

/// The app a sign-in is for, as the login page shows it: its name, and the logo and links it
/// registered (the logo only while it is on its partner's origins; [`login_csp`] allows it).
pub struct AppView<'a> {
    pub name: &'a str,
    pub logo_uri: Option<&'a str>,
    pub policy_uri: Option<&'a str>,
    pub tos_uri: Option<&'a str>,
}

/// The page CSP, with images also from `origin` (an app's logo on its partner's origin).
pub fn login_csp(logo_origin: &str) -> String {
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' {logo_origin}; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn app_html(app: Option<&AppView<'_>>) -> (String, String) {
    let Some(app) = app else {
        return (String::new(), String::new());
    };
    let logo = app
        .logo_uri
        .map(|u| {
            format!(
                "<img src=\"{}\" alt=\"\" width=\"48\" height=\"48\" style=\"vertical-align:middle;margin-right:.5rem\">",
                esc(u)
            )
        })
        .unwrap_or_default();
    let intro = format!(
        "<p>{logo}to continue to <strong>{}</strong></p>",
        esc(app.name)
    );
    // The link says where it goes: a look-alike page on another host shows its host.
    let link = |uri: Option<&str>, words: &str| {
        uri.map(|u| {
            let host = url::Url::parse(u)
                .ok()
                .and_then(|p| p.host_str().map(str::to_owned))
                .unwrap_or_default();
            format!(
                "<a href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">{words}</a> ({})",
                esc(u),
                esc(&host)
            )
        })
    };
    let links: Vec<String> = [
        link(app.policy_uri, "privacy policy"),
        link(app.tos_uri, "terms of service"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let footer = if links.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">{}'s {}</p>",
            esc(app.name),
            links.join(" and ")
        )
    };
    (intro, footer)
}

/// The login form. `error` is shown above it (the same text whether or not the user exists).
pub fn login(
    action: &str,
    csrf: &str,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    app: Option<&AppView<'_>>,
) -> String {
    let (intro, footer) = app_html(app);
    let error_html = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let described = if error.is_some() {
        " aria-describedby=\"login-error\""
    } else {
        ""
    };
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in to your school account</h1>{intro}{error_html}\
<form method=\"post\" action=\"{}\">{}\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus{described}>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{described}>\
<button type=\"submit\" class=\"primary\">Sign in</button></form>{footer}",
            esc(action),
            hidden(&[("csrf", csrf.to_owned()), ("return_to", return_to.to_owned())]),
            esc(username),
        ),
    )
}

/// What a scope lets an app see, in words a pupil can follow.
fn scope_words(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => "Know that it is you (an identifier used only by this app)",
        "profile" => "See your name and username",
        "email" => "See your email address",
        "roles" => "See your roles at school (for example pupil or teacher)",
        "offline_access" => "Stay connected when you are not using it",
        _ => return None,
    })
}

/// What the consent page shows and carries.
pub struct ConsentView<'a> {
    pub client_name: &'a str,
    pub partner_name: &'a str,
    pub partner_origin: &'a str,
    pub scopes: &'a [String],
    /// The authorization request, repeated as hidden fields.
    pub request_fields: &'a [(&'static str, String)],
    pub user_name: &'a str,
}

/// The consent page: names the app and its partner, lists what it asks for, Allow and Deny.
pub fn consent(action: &str, csrf: &str, v: &ConsentView<'_>) -> String {
    let ConsentView {
        client_name,
        partner_name,
        partner_origin,
        scopes,
        request_fields,
        user_name,
    } = v;
    let items: String = scopes
        .iter()
        .map(|s| match scope_words(s) {
            Some(w) => format!("<li>{}</li>", esc(w)),
            None => format!("<li>Use the platform API: <code>{}</code></li>", esc(s)),
        })
        .collect();
    let mut fields = request_fields.to_vec();
    fields.push(("csrf", csrf.to_owned()));
    layout(
        "Allow access?",
        &format!(
            "<h1>Allow {} to use your account?</h1>\
<p>{} is provided by <strong>{}</strong> ({}). You are signed in as <strong>{}</strong>.</p>\
<p>It will be able to:</p><ul>{items}</ul>\
<form method=\"post\" action=\"{}\">{}\
<button type=\"submit\" name=\"decision\" value=\"allow\" class=\"primary\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
            esc(client_name),
            esc(client_name),
            esc(partner_name),
            esc(partner_origin),
            esc(user_name),
            esc(action),
            hidden(&fields),
        ),
    )
}

/// The linking consent page: names the partner and what linking allows.
pub fn link_consent(
    action: &str,
    csrf: &str,
    partner_name: &str,
    partner_origin: &str,
    account_label: &str,
    user_name: &str,
    request: &str,
) -> String {
    layout(
        "Link your account?",
        &format!(
            "<h1>Link your {} account to your school account?</h1>\
<p>You are signed in as <strong>{}</strong>. <strong>{}</strong> ({}) asks to link this account of yours there \
with this one:</p>\
<p class=\"partner-words\">{} calls it: <strong>{}</strong></p>\
<p>If that is not your account at {}, choose Deny.</p><p>Once linked, {} can:</p>\
<ul><li>Sign you in here without your password</li>\
<li>Recognise your school account (by an identifier only it sees)</li></ul>\
<form method=\"post\" action=\"{}\">{}\
<button type=\"submit\" name=\"decision\" value=\"allow\" class=\"primary\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
            esc(partner_name),
            esc(user_name),
            esc(partner_name),
            esc(partner_origin),
            esc(partner_name),
            esc(account_label),
            esc(partner_name),
            esc(partner_name),
            esc(action),
            hidden(&[("request", request.to_owned()), ("csrf", csrf.to_owned())]),
        ),
    )
}

/// Asks before an automatic login that did not come from the partner's own page: the browser
/// may have been handed someone else's login link. `fields` carry the assertion and where to go
/// next; the answer is `decision` `yes` or `no`.
pub fn auto_login_confirm(
    action: &str,
    csrf: &str,
    partner_name: &str,
    user_name: &str,
    fields: &[(&str, String)],
) -> String {
    let mut all = fields.to_vec();
    all.push(("csrf", csrf.to_owned()));
    layout(
        "Is this you?",
        &format!(
            "<h1>Is this you?</h1>\
<p><strong>{}</strong> wants to sign you in as <strong>{}</strong>. Is this you?</p>\
<p class=\"muted\">If it is not you, or someone sent you this link, choose No: you would be \
using their account, and they could see what you do.</p>\
<form method=\"post\" action=\"{}\">{}\
<button type=\"submit\" name=\"decision\" value=\"yes\" class=\"primary\">Yes, continue as {}</button>\
<button type=\"submit\" name=\"decision\" value=\"no\" class=\"secondary\">No, this is not me</button></form>",
            esc(partner_name),
            esc(user_name),
            esc(action),
            hidden(&all),
            esc(user_name),
        ),
    )
}

/// After the person said an automatic login was not for them.
pub fn auto_login_declined() -> String {
    layout(
        "Not signed in",
        "<h1>You were not signed in</h1><p>Nothing was changed. You can close this page.</p>",
    )
}

/// One linked partner on the account page.
pub struct LinkedPartner<'a> {
    pub partner_id: &'a str,
    pub partner_name: &'a str,
    /// The link's date, `YYYY-MM-DD`.
    pub linked_on: &'a str,
    /// Waiting for the user to confirm it after a new password.
    pub paused: bool,
    /// The partner's name for the account linked, shown as the partner's words.
    pub account_label: Option<&'a str>,
}

/// The account page: who is signed in and their linked partners, each with an Unlink button.
pub fn account(
    action: &str,
    csrf: &str,
    user_name: &str,
    links: &[LinkedPartner<'_>],
    notice: Option<&str>,
) -> String {
    let notice = notice
        .map(|n| format!("<p role=\"status\">{}</p>", esc(n)))
        .unwrap_or_default();
    let list = if links.is_empty() {
        "<p>No apps are linked to your account.</p>".to_owned()
    } else {
        let items: String = links
            .iter()
            .map(|l| {
                let confirm = if l.paused {
                    format!(
                        "<p>Paused: you set a new password, so this app cannot sign you in until \
you confirm that it may.</p><form method=\"post\" action=\"{}\">{}<button type=\"submit\" \
class=\"primary\" aria-label=\"Confirm {}\">Confirm</button></form>",
                        esc(action),
                        hidden(&[
                            ("partner_id", l.partner_id.to_owned()),
                            ("action", "confirm".to_owned()),
                            ("csrf", csrf.to_owned())
                        ]),
                        esc(l.partner_name),
                    )
                } else {
                    String::new()
                };
                let label = l
                    .account_label
                    .map(|a| {
                        format!(
                            " <span class=\"partner-words\">({} calls it: <strong>{}</strong>)</span>",
                            esc(l.partner_name),
                            esc(a)
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "<li><strong>{}</strong>{label} <span class=\"muted\">linked on {}</span>{confirm}\
<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"secondary\" \
aria-label=\"Unlink {}\">Unlink</button></form></li>",
                    esc(l.partner_name),
                    esc(l.linked_on),
                    esc(action),
                    hidden(&[
                        ("partner_id", l.partner_id.to_owned()),
                        ("csrf", csrf.to_owned())
                    ]),
                    esc(l.partner_name),
                )
            })
            .collect();
        format!("<ul>{items}</ul>")
    };
    layout(
        "Your account",
        &format!("<h1>Your account</h1><p>Signed in as <strong>{}</strong>.</p>{notice}<h2>Linked apps</h2>{list}", esc(user_name)),
    )
}

/// Asks before signing out when the request could not prove which app sent it.
pub fn logout_confirm(action: &str, csrf: &str, fields: &[(&'static str, String)]) -> String {
    let mut all = fields.to_vec();
    all.push(("csrf", csrf.to_owned()));
    layout(
        "Sign out?",
        &format!(
            "<h1>Sign out of your school account?</h1><form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"primary\">Sign out</button></form>",
            esc(action),
            hidden(&all)
        ),
    )
}

pub fn signed_out() -> String {
    layout(
        "Signed out",
        "<h1>You are signed out</h1><p>You can close this page.</p>",
    )
}

/// The one script any page runs: it submits the form-post response's form (OAuth 2.0 Form Post
/// Response Mode §2). The page's CSP allows this text alone, by its SHA-256
/// ([`FORM_POST_CSP`]); a browser without scripts shows the button instead.
pub const FORM_POST_SCRIPT: &str = "document.forms[0].submit()";

/// The form-post page's `content-security-policy`, in place of [`PAGE_HEADERS`]' own: the same,
/// but with [`FORM_POST_SCRIPT`] allowed by its hash.
pub const FORM_POST_CSP: &str = "default-src 'none'; script-src 'sha256-ePniVEkSivX/c7XWBGafqh8tSpiRrKiqYeqbG7N1TOE='; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// The authorization response as a form the browser posts to the client's (verified) redirect
/// URI: submitted at once by [`FORM_POST_SCRIPT`], or by the button without scripts.
pub fn form_post(action: &str, fields: &[(&'static str, String)]) -> String {
    layout(
        "Returning to the app",
        &format!(
            "<h1>Returning to the app</h1><form method=\"post\" action=\"{}\">{}\
<noscript><button type=\"submit\" class=\"primary\">Continue</button></noscript></form>\
<script>{FORM_POST_SCRIPT}</script>",
            esc(action),
            hidden(fields)
        ),
    )
}

/// An error the user sees instead of being redirected anywhere.
pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>\
<p class=\"muted\">You can close this page and go back to the app you came from.</p>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_post_page_csp_allows_exactly_its_script() {
        use base64ct::{Base64, Encoding};
        use sha2::{Digest, Sha256};
        let hash = Base64::encode_string(&Sha256::digest(FORM_POST_SCRIPT.as_bytes()));
        let csp = FORM_POST_CSP;
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}'")),
            "{csp}"
        );
        let page = form_post(
            "https://app.example/cb?a=1&b=\"",
            &[("code", "c<1>".into()), ("state", "s\"x".into())],
        );
        assert!(page.contains(&format!("<script>{FORM_POST_SCRIPT}</script>")));
        assert!(page.contains("action=\"https://app.example/cb?a=1&amp;b=&quot;\""));
        assert!(page.contains("value=\"c&lt;1&gt;\"") && page.contains("value=\"s&quot;x\""));
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn pages_escape_everything_they_show() {
        let evil = "<script>alert(1)</script>\"'&";
        let app = AppView {
            name: evil,
            logo_uri: Some(evil),
            policy_uri: Some(evil),
            tos_uri: Some(evil),
        };
        let page = login("/login", evil, evil, evil, Some(evil), Some(&app));
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("\"'&<"));
        assert!(page.contains("&lt;script&gt;"));
        let scopes = [evil.to_owned()];
        let fields = [("state", evil.to_owned())];
        let v = ConsentView {
            client_name: evil,
            partner_name: evil,
            partner_origin: evil,
            scopes: &scopes,
            request_fields: &fields,
            user_name: evil,
        };
        let page = consent("/x", "c", &v);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("\"'&<"));
        assert!(!error(evil, evil).contains("<script>alert"));
        let page = auto_login_confirm("/x", "c", evil, evil, &[("assertion", evil.to_owned())]);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("\"'&<"));
    }

    #[test]
    fn login_page_names_the_app_with_its_logo_and_links() {
        let app = AppView {
            name: "Acme Classroom",
            logo_uri: Some("https://app.acme.example/logo.png"),
            policy_uri: Some("https://app.acme.example/privacy"),
            tos_uri: None,
        };
        let page = login("/login", "tok", "/x", "", None, Some(&app));
        assert!(page.contains("to continue to <strong>Acme Classroom</strong>"));
        assert!(page.contains("<img src=\"https://app.acme.example/logo.png\""));
        assert!(page
            .contains("<a href=\"https://app.acme.example/privacy\" rel=\"noopener noreferrer\""));
        assert!(!page.contains("terms of service"));
        assert_eq!(
            login_csp("https://app.acme.example"),
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https://app.acme.example; frame-ancestors 'none'; base-uri 'none'"
        );
    }

    #[test]
    fn login_form_has_labelled_username_and_password_fields() {
        let page = login("/login", "tok", "/oauth2/authorize?x=1", "", None, None);
        assert!(page.contains("<label for=\"username\">"));
        assert!(page.contains("name=\"username\""));
        assert!(page.contains("<label for=\"password\">"));
        assert!(page.contains("name=\"password\""));
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }

    #[test]
    fn consent_form_submits_allow_or_deny() {
        let scopes = ["openid".to_owned()];
        let v = ConsentView {
            client_name: "App",
            partner_name: "Acme",
            partner_origin: "https://acme.example",
            scopes: &scopes,
            request_fields: &[],
            user_name: "Alice",
        };
        let page = consent("/oauth2/authorize", "tok", &v);
        assert!(page.contains("name=\"decision\" value=\"allow\""));
        assert!(page.contains("name=\"decision\" value=\"deny\""));
    }
}
