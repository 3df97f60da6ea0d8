//! Security events: which request outcomes are recorded, and how they are recorded. Events carry
//! the route, the partner, the outcome and our own description of the reason: never a token, a
//! secret, a password or a username.

use serde::{Deserialize, Serialize};

use crate::routes::{Method, Route};

/// How long events are kept.
pub const RETENTION_S: u64 = 90 * 24 * 3600;
pub const PAGE_LIMIT: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 128 bits of randomness in hex, given at creation: what the pipeline deduplicates on.
    /// Events of the old `AuditLog` have none until moved (then `legacy` and their `seq`).
    #[serde(default)]
    pub id: String,
    /// The old `AuditLog`'s sequence number, kept on events moved from it; 0 (not shown) on others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    pub ts: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    pub route: String,
    pub status: u16,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub request_id: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The event type for a request's outcome, if it is a security event.
pub fn classify(
    route: Option<Route<'_>>,
    method: Option<Method>,
    status: u16,
    outcome: &str,
) -> Option<&'static str> {
    let route = route?;
    let writes = matches!(method, Some(Method::Put | Method::Post | Method::Delete));
    Some(match route {
        _ if outcome == "rate_limited" => "rate_limited",
        Route::Token if outcome == "code_replay" => "code_replay",
        Route::Token if outcome == "refresh_reuse" => "refresh_reuse",
        Route::Login if method == Some(Method::Post) => match outcome {
            "login_ok" => "login",
            "login_failed" => "login_failed",
            _ => "login_refused",
        },
        Route::Authorize if outcome == "code_issued" => "authorization",
        Route::Authorize if outcome == "access_denied" && method == Some(Method::Post) => {
            "consent_denied"
        }
        Route::Link if method == Some(Method::Post) || status >= 400 => match outcome {
            "link_consented" => "link_consent",
            "link_denied" => "link_denied",
            "login" => return None,
            _ => "link_refused",
        },
        Route::LinkConfirm => match outcome {
            "linked" => "link",
            "link_code_replay" => "link_code_replay",
            _ => "link_refused",
        },
        Route::AutoLogin => match outcome {
            "auto_login" => "auto_login",
            "not_linked" => "auto_login_not_linked",
            // Asking "is this you?" is not an event yet; the answer is.
            "auto_login_confirm" => return None,
            _ => "auto_login_refused",
        },
        Route::Account if method == Some(Method::Post) && status < 300 => "unlink",
        Route::Token | Route::Revoke | Route::Introspect if status == 401 => "client_auth_failed",
        Route::Token if outcome == "invalid_grant" => "grant_refused",
        Route::Revoke if status < 300 => "revocation",
        Route::Api | Route::Whoami => match outcome {
            "origin_not_allowed" => "origin_denied",
            "invalid_token" => "token_refused",
            "insufficient_scope" => "scope_denied",
            "partner_suspended" => "partner_suspended",
            _ => return None,
        },
        Route::Register | Route::RegisterClient { .. } if writes && status < 300 => {
            "client_registration"
        }
        Route::Register | Route::RegisterClient { .. } if status == 401 => {
            "registration_auth_failed"
        }
        Route::AdminPartners
        | Route::AdminPartner { .. }
        | Route::AdminPartnerClients { .. }
        | Route::AdminClient { .. }
        | Route::AdminClientRegistration { .. }
        | Route::AdminPartnerRegistrationTokens { .. }
        | Route::AdminRegistrationToken { .. }
        | Route::AdminUser { .. }
        | Route::AdminUserLink { .. }
            if writes && status < 300 =>
        {
            "admin_change"
        }
        _ if status == 401 && route.is_admin() => "admin_auth_failed",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_registrations_and_their_refusals_are_security_events() {
        assert_eq!(
            classify(Some(Route::Register), Some(Method::Post), 201, "registered"),
            Some("client_registration")
        );
        let manage = Route::RegisterClient { id: "abc" };
        assert_eq!(
            classify(Some(manage), Some(Method::Delete), 204, "deleted"),
            Some("client_registration")
        );
        assert_eq!(classify(Some(manage), Some(Method::Get), 200, "ok"), None);
        assert_eq!(
            classify(Some(manage), Some(Method::Get), 401, "invalid_token"),
            Some("registration_auth_failed")
        );
        let tokens = Route::AdminPartnerRegistrationTokens { id: "acme" };
        assert_eq!(
            classify(Some(tokens), Some(Method::Post), 201, "created"),
            Some("admin_change")
        );
    }

    #[test]
    fn security_outcomes_are_classified_and_others_are_not() {
        assert_eq!(
            classify(Some(Route::Login), Some(Method::Post), 401, "login_failed"),
            Some("login_failed")
        );
        assert_eq!(
            classify(Some(Route::Login), Some(Method::Get), 200, "login_form"),
            None
        );
        assert_eq!(
            classify(Some(Route::Link), Some(Method::Get), 403, "access_denied"),
            Some("link_refused")
        );
        assert_eq!(
            classify(Some(Route::Link), Some(Method::Post), 303, "link_consented"),
            Some("link_consent")
        );
        assert_eq!(
            classify(Some(Route::LinkConfirm), Some(Method::Post), 200, "linked"),
            Some("link")
        );
        assert_eq!(
            classify(
                Some(Route::LinkConfirm),
                Some(Method::Post),
                400,
                "invalid_grant"
            ),
            Some("link_refused")
        );
        assert_eq!(
            classify(
                Some(Route::LinkConfirm),
                Some(Method::Post),
                400,
                "link_code_replay"
            ),
            Some("link_code_replay")
        );
        assert_eq!(
            classify(
                Some(Route::AutoLogin),
                Some(Method::Post),
                303,
                "auto_login"
            ),
            Some("auto_login")
        );
        assert_eq!(
            classify(
                Some(Route::AutoLogin),
                Some(Method::Get),
                200,
                "auto_login_confirm"
            ),
            None
        );
        assert_eq!(
            classify(
                Some(Route::AutoLogin),
                Some(Method::Post),
                200,
                "auto_login_declined"
            ),
            Some("auto_login_refused")
        );
        assert_eq!(
            classify(Some(Route::Token), Some(Method::Post), 400, "invalid_grant"),
            Some("grant_refused")
        );
        assert_eq!(
            classify(Some(Route::Token), Some(Method::Post), 200, "tokens_issued"),
            None
        );
        assert_eq!(
            classify(
                Some(Route::Api),
                Some(Method::Get),
                403,
                "origin_not_allowed"
            ),
            Some("origin_denied")
        );
        assert_eq!(
            classify(
                Some(Route::AdminPartner { id: "a" }),
                Some(Method::Put),
                201,
                "created"
            ),
            Some("admin_change")
        );
        assert_eq!(
            classify(Some(Route::AdminPartners), Some(Method::Get), 200, "ok"),
            None
        );
        assert_eq!(
            classify(Some(Route::Health), Some(Method::Get), 200, "ok"),
            None
        );
        assert_eq!(classify(None, None, 404, "not_found"), None);
        for (route, status, outcome, kind) in [
            (Route::Token, 400, "refresh_reuse", Some("refresh_reuse")),
            (Route::Token, 400, "code_replay", Some("code_replay")),
            (Route::Token, 429, "rate_limited", Some("rate_limited")),
            (Route::Api, 429, "rate_limited", Some("rate_limited")),
            (Route::Login, 429, "rate_limited", Some("rate_limited")),
            (Route::Api, 401, "invalid_token", Some("token_refused")),
            (Route::Api, 403, "insufficient_scope", Some("scope_denied")),
            (Route::Api, 200, "forwarded", None),
            (Route::Whoami, 200, "ok", None),
        ] {
            assert_eq!(
                classify(Some(route), Some(Method::Post), status, outcome),
                kind,
                "{outcome}"
            );
        }
    }
}
