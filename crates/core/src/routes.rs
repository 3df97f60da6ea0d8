//! Every path the Worker answers, defined once: the router, the logs and (later) the discovery
//! documents all read this table.

/// The HTTP methods the route table speaks of. Anything else is answered with 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

pub const HEALTH: &str = "/healthz";
pub const API_PREFIX: &str = "/api/";
pub const API_ROOT: &str = "/api";
pub const ADMIN_PARTNERS: &str = "/admin/partners";
pub const ADMIN_CLIENTS: &str = "/admin/clients";
pub const ADMIN_USERS: &str = "/admin/users";
pub const ADMIN_REGISTRATION_TOKENS: &str = "/admin/registration-tokens";
pub const ADMIN_AUDIT: &str = "/admin/audit";
pub const ADMIN_AUDIT_MIGRATE: &str = "/admin/audit/migrate";
pub const ADMIN_USAGE: &str = "/admin/usage";
/// Moves one page of the old usage object's rows into D1.
pub const ADMIN_USAGE_MIGRATE: &str = "/admin/usage/migrate";
/// Moves a batch of a partner's links from its store of the earlier layout into the shards.
pub const ADMIN_LINKS_MIGRATE: &str = "/admin/links/migrate";

pub const AUTHORIZE: &str = "/oauth2/authorize";
pub const TOKEN: &str = "/oauth2/token";
pub const USERINFO: &str = "/oauth2/userinfo";
pub const REVOKE: &str = "/oauth2/revoke";
pub const INTROSPECT: &str = "/oauth2/introspect";
pub const LOGOUT: &str = "/oauth2/logout";
/// Dynamic Client Registration (RFC 7591); each client's configuration endpoint (RFC 7592) is
/// below it ([`registration_client_path`]).
pub const REGISTER: &str = "/oauth2/register";

/// The path of a registered client's configuration endpoint.
pub fn registration_client_path(client_id: &str) -> String {
    format!("{REGISTER}/{client_id}")
}
pub const LOGIN: &str = "/login";
pub const LINK: &str = "/link";
/// The partner's server confirms a link the user agreed to.
pub const LINK_CONFIRM: &str = "/link/confirm";
pub const AUTO_LOGIN: &str = "/login/auto";
pub const ACCOUNT: &str = "/account";
/// The gateway's checks answered at the edge: who the bearer token speaks for.
pub const WHOAMI: &str = "/edge/whoami";
pub const JWKS: &str = "/.well-known/jwks.json";
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";

/// An endpoint the discovery documents publish: its metadata name and path.
pub struct Endpoint {
    pub metadata: &'static str,
    pub path: &'static str,
}

/// Every endpoint named in the discovery documents. Only endpoints the router serves belong
/// here; a test checks that each one routes.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        metadata: "authorization_endpoint",
        path: AUTHORIZE,
    },
    Endpoint {
        metadata: "token_endpoint",
        path: TOKEN,
    },
    Endpoint {
        metadata: "userinfo_endpoint",
        path: USERINFO,
    },
    Endpoint {
        metadata: "revocation_endpoint",
        path: REVOKE,
    },
    Endpoint {
        metadata: "introspection_endpoint",
        path: INTROSPECT,
    },
    Endpoint {
        metadata: "end_session_endpoint",
        path: LOGOUT,
    },
    Endpoint {
        metadata: "jwks_uri",
        path: JWKS,
    },
    Endpoint {
        metadata: "registration_endpoint",
        path: REGISTER,
    },
];

/// Methods a partner's browser code may use on partner-facing routes (CORS).
pub const API_METHODS: &[Method] = &[
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
];

/// A matched route. Path parameters are borrowed raw; handlers parse them into checked types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Liveness, and the no-op route benchmarks compare against.
    Health,
    /// The partner-facing API: checked at the edge, forwarded to the origin.
    Api,
    /// The gateway's checks, answered at the edge.
    Whoami,
    Authorize,
    Token,
    Userinfo,
    Revoke,
    Introspect,
    Logout,
    /// Registers a client with an initial access token (RFC 7591).
    Register,
    /// A registered client's configuration endpoint (RFC 7592).
    RegisterClient {
        id: &'a str,
    },
    Login,
    AutoLogin,
    Link,
    LinkConfirm,
    Account,
    AdminUserLinks {
        username: &'a str,
    },
    AdminUserLink {
        username: &'a str,
        partner: &'a str,
    },
    AdminAudit,
    /// Moves the old single audit object's events into the archive, a block per call.
    AdminAuditMigrate,
    AdminUsage,
    AdminUsageMigrate,
    AdminLinksMigrate,
    Jwks,
    /// Both discovery documents (OIDC and RFC 8414) share one handler.
    Discovery,
    AdminPartners,
    AdminPartner {
        id: &'a str,
    },
    AdminPartnerClients {
        id: &'a str,
    },
    AdminClient {
        id: &'a str,
    },
    /// Ends a client's registration access token (RFC 7592): the client stays.
    AdminClientRegistration {
        id: &'a str,
    },
    /// A partner's initial access tokens for Dynamic Client Registration.
    AdminPartnerRegistrationTokens {
        id: &'a str,
    },
    AdminRegistrationToken {
        id: &'a str,
    },
    AdminUser {
        username: &'a str,
    },
}

impl Route<'_> {
    /// The route's template, the only form of a path that is ever logged (paths under `/api` may
    /// carry personal data, query strings may carry secrets).
    pub fn template(&self) -> &'static str {
        match self {
            Route::Health => HEALTH,
            Route::Api => "/api/*",
            Route::Whoami => WHOAMI,
            Route::Authorize => AUTHORIZE,
            Route::Token => TOKEN,
            Route::Userinfo => USERINFO,
            Route::Revoke => REVOKE,
            Route::Introspect => INTROSPECT,
            Route::Logout => LOGOUT,
            Route::Login => LOGIN,
            Route::Link => LINK,
            Route::LinkConfirm => LINK_CONFIRM,
            Route::AutoLogin => AUTO_LOGIN,
            Route::Account => ACCOUNT,
            Route::AdminUserLinks { .. } => "/admin/users/{username}/links",
            Route::AdminUserLink { .. } => "/admin/users/{username}/links/{partner_id}",
            Route::AdminAudit => ADMIN_AUDIT,
            Route::AdminAuditMigrate => ADMIN_AUDIT_MIGRATE,
            Route::AdminUsage => ADMIN_USAGE,
            Route::AdminUsageMigrate => ADMIN_USAGE_MIGRATE,
            Route::AdminLinksMigrate => ADMIN_LINKS_MIGRATE,
            Route::Jwks => JWKS,
            Route::Discovery => "/.well-known/(openid-configuration|oauth-authorization-server)",
            Route::AdminPartners => ADMIN_PARTNERS,
            Route::AdminPartner { .. } => "/admin/partners/{partner_id}",
            Route::AdminPartnerClients { .. } => "/admin/partners/{partner_id}/clients",
            Route::AdminClient { .. } => "/admin/clients/{client_id}",
            Route::AdminClientRegistration { .. } => "/admin/clients/{client_id}/registration",
            Route::AdminPartnerRegistrationTokens { .. } => {
                "/admin/partners/{partner_id}/registration-tokens"
            }
            Route::AdminRegistrationToken { .. } => "/admin/registration-tokens/{token_id}",
            Route::Register => REGISTER,
            Route::RegisterClient { .. } => "/oauth2/register/{client_id}",
            Route::AdminUser { .. } => "/admin/users/{username}",
        }
    }

    /// Methods the route answers, besides `OPTIONS` preflights on partner-facing routes.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Health => &[Method::Get, Method::Head],
            Route::Api => API_METHODS,
            Route::Jwks | Route::Discovery | Route::Whoami => &[Method::Get, Method::Head],
            Route::Authorize
            | Route::Login
            | Route::Logout
            | Route::Link
            | Route::AutoLogin
            | Route::Account => &[Method::Get, Method::Post],
            Route::Token | Route::Revoke | Route::Introspect | Route::LinkConfirm => {
                &[Method::Post]
            }
            Route::Userinfo => &[Method::Get, Method::Post],
            Route::AdminPartners => &[Method::Get],
            Route::AdminPartner { .. } => &[Method::Get, Method::Put, Method::Delete],
            Route::AdminPartnerClients { .. } => &[Method::Get, Method::Post],
            Route::AdminClient { .. } => &[Method::Get, Method::Delete],
            Route::AdminClientRegistration { .. } => &[Method::Delete],
            Route::AdminPartnerRegistrationTokens { .. } => &[Method::Get, Method::Post],
            Route::AdminRegistrationToken { .. } => &[Method::Delete],
            Route::Register => &[Method::Post],
            Route::RegisterClient { .. } => &[Method::Get, Method::Put, Method::Delete],
            Route::AdminUser { .. } => &[Method::Get, Method::Put, Method::Delete],
            Route::AdminUserLinks { .. } => &[Method::Get],
            Route::AdminUserLink { .. } => &[Method::Delete],
            Route::AdminAudit | Route::AdminUsage => &[Method::Get],
            Route::AdminAuditMigrate => &[Method::Post],
            Route::AdminUsageMigrate => &[Method::Post],
            Route::AdminLinksMigrate => &[Method::Post],
        }
    }

    /// Partner-facing routes stand behind the partner gate and speak CORS.
    pub fn partner_facing(&self) -> bool {
        matches!(self, Route::Api)
    }

    /// Routes a partner's browser code may call cross-origin: preflights are answered through
    /// the gate, and responses to admitted partner origins carry CORS headers. The OAuth ones
    /// also serve servers, which send no `Origin`.
    /// Whether the route belongs to the admin API.
    pub fn is_admin(&self) -> bool {
        self.template().starts_with("/admin/")
    }

    pub fn cors(&self) -> bool {
        matches!(
            self,
            Route::Api | Route::Whoami | Route::Token | Route::Userinfo | Route::Revoke
        )
    }
}

/// The path of a serialized WHATWG URL (what the runtime's `request.url` is): from the first `/`
/// after the authority up to `?` or `#`, which a serialized path never holds unencoded. `/` when
/// there is none.
pub fn path_of_url(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    // The authority ends at the first of `/`, `?` or `#`; only a `/` starts a path.
    let Some(start) = after_scheme.find(['/', '?', '#']) else {
        return "/";
    };
    let path = after_scheme.get(start..).unwrap_or("/");
    if !path.starts_with('/') {
        return "/";
    }
    path.find(['?', '#'])
        .and_then(|end| path.get(..end))
        .unwrap_or(path)
}

/// Matches a request path (without query) to a route.
pub fn route(path: &str) -> Option<Route<'_>> {
    if path == HEALTH {
        return Some(Route::Health);
    }
    if path == API_ROOT || path.starts_with(API_PREFIX) {
        return Some(Route::Api);
    }
    if path == WHOAMI {
        return Some(Route::Whoami);
    }
    if path == JWKS {
        return Some(Route::Jwks);
    }
    if path == AUTHORIZE {
        return Some(Route::Authorize);
    }
    if path == TOKEN {
        return Some(Route::Token);
    }
    if path == USERINFO {
        return Some(Route::Userinfo);
    }
    if path == REVOKE {
        return Some(Route::Revoke);
    }
    if path == INTROSPECT {
        return Some(Route::Introspect);
    }
    if path == LOGOUT {
        return Some(Route::Logout);
    }
    if path == REGISTER {
        return Some(Route::Register);
    }
    if let Some(id) = under(path, REGISTER).filter(|r| !r.contains('/')) {
        return Some(Route::RegisterClient { id });
    }
    if path == LOGIN {
        return Some(Route::Login);
    }
    if path == LINK {
        return Some(Route::Link);
    }
    if path == LINK_CONFIRM {
        return Some(Route::LinkConfirm);
    }
    if path == AUTO_LOGIN {
        return Some(Route::AutoLogin);
    }
    if path == ACCOUNT {
        return Some(Route::Account);
    }
    if path == OPENID_CONFIGURATION || path == OAUTH_METADATA {
        return Some(Route::Discovery);
    }
    if path == ADMIN_PARTNERS {
        return Some(Route::AdminPartners);
    }
    if path == ADMIN_AUDIT {
        return Some(Route::AdminAudit);
    }
    if path == ADMIN_AUDIT_MIGRATE {
        return Some(Route::AdminAuditMigrate);
    }
    if path == ADMIN_USAGE {
        return Some(Route::AdminUsage);
    }
    if path == ADMIN_USAGE_MIGRATE {
        return Some(Route::AdminUsageMigrate);
    }
    if path == ADMIN_LINKS_MIGRATE {
        return Some(Route::AdminLinksMigrate);
    }
    if let Some(rest) = under(path, ADMIN_PARTNERS) {
        return match rest.split_once('/') {
            None => Some(Route::AdminPartner { id: rest }),
            Some((id, "clients")) if !id.is_empty() => Some(Route::AdminPartnerClients { id }),
            Some((id, "registration-tokens")) if !id.is_empty() => {
                Some(Route::AdminPartnerRegistrationTokens { id })
            }
            Some(_) => None,
        };
    }
    if let Some(rest) = under(path, ADMIN_CLIENTS) {
        return match rest.split_once('/') {
            None => Some(Route::AdminClient { id: rest }),
            Some((id, "registration")) if !id.is_empty() => {
                Some(Route::AdminClientRegistration { id })
            }
            Some(_) => None,
        };
    }
    if let Some(id) = under(path, ADMIN_REGISTRATION_TOKENS).filter(|r| !r.contains('/')) {
        return Some(Route::AdminRegistrationToken { id });
    }
    if let Some(rest) = under(path, ADMIN_USERS) {
        let mut parts = rest.split('/');
        return match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(username), None, None, None) => Some(Route::AdminUser { username }),
            (Some(username), Some("links"), None, None) if !username.is_empty() => {
                Some(Route::AdminUserLinks { username })
            }
            (Some(username), Some("links"), Some(partner), None)
                if !username.is_empty() && !partner.is_empty() =>
            {
                Some(Route::AdminUserLink { username, partner })
            }
            _ => None,
        };
    }
    None
}

/// The non-empty rest of `path` below `prefix/`.
fn under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_of_url_stops_at_the_query_and_fragment_and_keeps_encoding() {
        assert_eq!(path_of_url("https://a.example/api/v1/x?y=1"), "/api/v1/x");
        assert_eq!(path_of_url("https://a.example/a%2Fb#f"), "/a%2Fb");
        assert_eq!(path_of_url("http://127.0.0.1:8787/"), "/");
        assert_eq!(path_of_url("https://a.example"), "/");
        assert_eq!(path_of_url("https://a.example?x=/y"), "/");
        assert_eq!(path_of_url("https://a.example#/y"), "/");
        assert_eq!(path_of_url("https://u@a.example/p/q"), "/p/q");
    }

    use super::*;

    #[test]
    fn route_matches_each_template() {
        assert_eq!(route("/healthz"), Some(Route::Health));
        assert_eq!(route("/api"), Some(Route::Api));
        assert_eq!(route("/api/v1/classes"), Some(Route::Api));
        assert_eq!(route("/link"), Some(Route::Link));
        assert_eq!(route("/link/confirm"), Some(Route::LinkConfirm));
        assert_eq!(route("/admin/partners"), Some(Route::AdminPartners));
        assert_eq!(
            route("/admin/partners/acme"),
            Some(Route::AdminPartner { id: "acme" })
        );
        assert_eq!(
            route("/admin/partners/acme/clients"),
            Some(Route::AdminPartnerClients { id: "acme" })
        );
        assert_eq!(
            route("/admin/clients/abc"),
            Some(Route::AdminClient { id: "abc" })
        );
        assert_eq!(
            route("/admin/users/alice"),
            Some(Route::AdminUser { username: "alice" })
        );
        assert_eq!(route("/oauth2/register"), Some(Route::Register));
        assert_eq!(
            route("/oauth2/register/abc"),
            Some(Route::RegisterClient { id: "abc" })
        );
        assert_eq!(
            route("/admin/partners/acme/registration-tokens"),
            Some(Route::AdminPartnerRegistrationTokens { id: "acme" })
        );
        assert_eq!(
            route("/admin/registration-tokens/t1"),
            Some(Route::AdminRegistrationToken { id: "t1" })
        );
        assert_eq!(
            route("/admin/clients/abc/registration"),
            Some(Route::AdminClientRegistration { id: "abc" })
        );
    }

    #[test]
    fn route_rejects_near_misses() {
        for path in [
            "/",
            "/apix",
            "/healthz/",
            "/admin/partners/",
            "/admin/partners/a/b",
            "/admin/partners//clients",
            "/admin/partners/a/clients/x",
            "/admin/clients/",
            "/admin/clients/a/b",
            "/admin/clients//registration",
            "/oauth2/register/",
            "/oauth2/register/a/b",
            "/admin/registration-tokens",
            "/admin/registration-tokens/a/b",
            "/admin/users",
            "/admin",
            "/API/x",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }

    #[test]
    fn method_round_trips() {
        for m in [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
            Method::Options,
        ] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("get"), None);
        assert_eq!(Method::parse("TRACE"), None);
    }
}
