//! Which claims about a user an app receives: those of the scopes it was granted (OpenID Connect
//! Core §5.4), and those it asked for one by one in the `claims` request parameter (§5.5). Only
//! claims we hold and the app is registered for are released: a claim belongs to one scope
//! ([`scope_of`]), and a claim asked for by name is released only if the app may have that
//! scope, the person consented to it (the consent page names the scope), and it was asked for.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};
use super::user::UserView;

/// Longest `claims` parameter accepted (a request naming every claim we hold is far shorter).
pub const MAX_CLAIMS_PARAM_LEN: usize = 4096;

/// The claims a scope releases, of those we hold.
pub fn claims_of(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &["name", "preferred_username", "updated_at"],
        "email" => &["email", "email_verified"],
        "roles" => &["roles"],
        _ => &[],
    }
}

/// The scope that covers a claim we hold; `None` for a claim we do not hold (it is ignored).
pub fn scope_of(claim: &str) -> Option<&'static str> {
    ["profile", "email", "roles"]
        .into_iter()
        .find(|s| claims_of(s).contains(&claim))
}

/// Authentication context classes (OpenID Connect Core §2 `acr`): a session the person started
/// with their password, and one a partner started by automatic login through an account link.
pub const ACR_PASSWORD: &str = "urn:edgeward:acr:password";
pub const ACR_PARTNER: &str = "urn:edgeward:acr:partner";
pub const ACR_VALUES: &[&str] = &[ACR_PASSWORD, ACR_PARTNER];

/// What the ID token says of `acr` for a session of class `session_acr`, given the request's
/// `acr_values` and the `claims` parameter's `acr` (§5.5.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acr {
    /// Not asked for: no `acr` claim.
    Omit,
    Claim(&'static str),
    /// Asked for as essential with values this session is not: the authentication fails.
    Unmet,
}

pub fn acr_for(session_acr: &'static str, acr_values: &[String], claims: &ClaimsRequest) -> Acr {
    if let Some(AcrRequest {
        essential: true,
        values,
    }) = &claims.acr
    {
        if !values.is_empty() && !values.iter().any(|v| v == session_acr) {
            return Acr::Unmet;
        }
    }
    let asked = !acr_values.is_empty() || claims.acr.is_some();
    if asked {
        Acr::Claim(session_acr)
    } else {
        Acr::Omit
    }
}

/// The `claims` parameter's `id_token.acr` (§5.5.1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrRequest {
    #[serde(default)]
    pub essential: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Every claim about the user we can release, for discovery's `claims_supported`.
pub const USER_CLAIMS: &[&str] = &[
    "name",
    "preferred_username",
    "updated_at",
    "email",
    "email_verified",
    "roles",
];

/// Claims asked for by name, each already one the client may have (its covering scope is one
/// the client is registered for). `id_token` may also name `auth_time`, which the ID token
/// always carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token: Vec<String>,
    /// `id_token.acr`, if it was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<AcrRequest>,
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, why)
}

impl ClaimsRequest {
    /// Parses the `claims` parameter: a JSON object whose `userinfo` and `id_token` members are
    /// objects of claim names, each `null` or an object (`essential`, `value`, `values`). A
    /// claim we do not hold, or whose scope the client may not have, is left out (§5.5.1: the
    /// OP need not release what is asked for); one that is released is released whether or not
    /// it is `essential`, and its `value`s do not change what it is. A parameter that is not
    /// such an object is `invalid_request`.
    pub fn parse(raw: Option<&str>, client_scopes: &[String]) -> Result<ClaimsRequest, ApiError> {
        let Some(raw) = raw else {
            return Ok(ClaimsRequest::default());
        };
        if raw.len() > MAX_CLAIMS_PARAM_LEN {
            return Err(invalid("claims is too long"));
        }
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(raw) else {
            return Err(invalid("claims must be a JSON object"));
        };
        let may = |c: &str| scope_of(c).is_some_and(|s| client_scopes.iter().any(|x| x == s));
        let mut out = ClaimsRequest::default();
        for (member, list) in [
            ("userinfo", &mut out.userinfo),
            ("id_token", &mut out.id_token),
        ] {
            let Some(v) = top.get(member) else { continue };
            let Value::Object(requested) = v else {
                return Err(invalid("claims members must be JSON objects"));
            };
            for (name, spec) in requested {
                if !matches!(spec, Value::Null | Value::Object(_)) {
                    return Err(invalid(
                        "each requested claim must be null or a JSON object",
                    ));
                }
                if member == "id_token" && name == "acr" {
                    out.acr = Some(acr_request(spec)?);
                    continue;
                }
                let wanted = may(name) || (member == "id_token" && name == "auth_time");
                if wanted && !list.contains(name) {
                    list.push(name.clone());
                }
            }
            list.sort();
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.userinfo.is_empty() && self.id_token.is_empty() && self.acr.is_none()
    }

    /// The scopes that cover the claims asked for: the person consents to these too.
    pub fn scopes(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for c in self.userinfo.iter().chain(&self.id_token) {
            if let Some(s) = scope_of(c) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// As the `claims` parameter, for carrying the request through login and consent.
    pub fn to_param(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let as_obj = |names: &[String]| -> Value {
            Value::Object(names.iter().map(|n| (n.clone(), Value::Null)).collect())
        };
        let mut top = Map::new();
        if !self.userinfo.is_empty() {
            top.insert("userinfo".into(), as_obj(&self.userinfo));
        }
        if !self.id_token.is_empty() || self.acr.is_some() {
            let mut id = Map::new();
            if let Value::Object(m) = as_obj(&self.id_token) {
                id = m;
            }
            if let Some(a) = &self.acr {
                let mut spec = Map::new();
                if a.essential {
                    spec.insert("essential".into(), true.into());
                }
                if !a.values.is_empty() {
                    spec.insert("values".into(), a.values.clone().into());
                }
                id.insert("acr".into(), Value::Object(spec));
            }
            top.insert("id_token".into(), Value::Object(id));
        }
        Some(Value::Object(top).to_string())
    }
}

/// Longest `acr` value kept, and most values: a class name is short, and few are asked for.
const MAX_ACR_LEN: usize = 128;
const MAX_ACR_VALUES: usize = 8;

/// One `acr` value, kept if it is a short displayable string.
fn acr_value_ok(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_ACR_LEN && super::text::displayable(v)
}

fn acr_request(spec: &Value) -> Result<AcrRequest, ApiError> {
    let Value::Object(m) = spec else {
        return Ok(AcrRequest::default());
    };
    let essential = matches!(m.get("essential"), Some(Value::Bool(true)));
    let mut values: Vec<String> = Vec::new();
    match (m.get("value"), m.get("values")) {
        (Some(Value::String(v)), None) if acr_value_ok(v) => values.push(v.clone()),
        (None, Some(Value::Array(vs))) if vs.len() <= MAX_ACR_VALUES => {
            for v in vs {
                match v {
                    Value::String(s) if acr_value_ok(s) => values.push(s.clone()),
                    _ => return Err(invalid("acr values must be short strings")),
                }
            }
        }
        (None, None) => {}
        _ => return Err(invalid("acr value or values must be short strings")),
    }
    Ok(AcrRequest { essential, values })
}

/// The request's `acr_values` (space-separated), those that are short displayable strings, at
/// most [`MAX_ACR_VALUES`].
pub fn parse_acr_values(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or("")
        .split(' ')
        .filter(|v| acr_value_ok(v))
        .take(MAX_ACR_VALUES)
        .map(str::to_owned)
        .collect()
}

/// The value of one claim about `user`, if we hold it.
fn value_of(claim: &str, user: &UserView) -> Option<Value> {
    Some(match claim {
        "name" => user.name.clone().into(),
        "preferred_username" => user.username.as_str().into(),
        "updated_at" => user.updated_at.into(),
        "email" => user.email.clone()?.into(),
        "email_verified" => {
            user.email.as_ref()?;
            user.email_verified.into()
        }
        "roles" => user.roles.clone().into(),
        _ => return None,
    })
}

/// The claims released to an app granted `scopes`, plus those it asked for by name (`named`,
/// from a [`ClaimsRequest`]), from the user's profile.
pub fn released(scopes: &[String], named: &[String], user: &UserView) -> Map<String, Value> {
    let mut out = Map::new();
    let from_scopes = scopes.iter().flat_map(|s| claims_of(s).iter().copied());
    for claim in from_scopes.chain(named.iter().map(String::as_str)) {
        if !out.contains_key(claim) {
            if let Some(v) = value_of(claim, user) {
                out.insert(claim.to_owned(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::user::Username;

    fn user(email: Option<&str>, verified: bool) -> UserView {
        UserView {
            username: Username::parse("dora").unwrap(),
            name: "Dora".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            roles: vec!["pupil".into()],
            created_at: 1,
            updated_at: 2,
            region: None,
        }
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn scopes_release_their_claims_we_hold_and_no_others() {
        let u = user(Some("d@school.example"), true);
        let all = released(&scopes(&["openid", "profile", "email", "roles"]), &[], &u);
        assert_eq!(all["name"], "Dora");
        assert_eq!(all["preferred_username"], "dora");
        assert_eq!(all["updated_at"], 2);
        assert_eq!(all["email"], "d@school.example");
        assert_eq!(all["email_verified"], true);
        assert_eq!(all["roles"], serde_json::json!(["pupil"]));
        assert!(released(&scopes(&["openid"]), &[], &u).is_empty());
        let only_email = released(&scopes(&["openid", "email"]), &[], &u);
        assert_eq!(only_email.len(), 2);
        // No email: neither email nor email_verified.
        assert!(released(&scopes(&["email"]), &[], &user(None, false)).is_empty());
        assert_eq!(
            released(&scopes(&["email"]), &[], &user(Some("a@b.example"), false))["email_verified"],
            false
        );
    }

    #[test]
    fn claims_parameter_keeps_claims_the_client_may_have_and_ignores_the_rest() {
        let client = scopes(&["openid", "profile"]);
        let r = ClaimsRequest::parse(
            Some(r#"{"userinfo":{"name":{"essential":true},"email":null,"shoe_size":null},"id_token":{"auth_time":{"essential":true},"preferred_username":null},"other":1}"#),
            &client,
        )
        .unwrap();
        assert_eq!(
            r.userinfo,
            vec!["name"],
            "email's scope is not the client's"
        );
        assert_eq!(r.id_token, vec!["auth_time", "preferred_username"]);
        assert_eq!(r.scopes(), vec!["profile"]);
        let u = user(Some("d@school.example"), true);
        let got = released(&scopes(&["openid"]), &r.userinfo, &u);
        assert_eq!(got.len(), 1);
        assert_eq!(got["name"], "Dora");
        // Round trip through login and consent.
        let again = ClaimsRequest::parse(r.to_param().as_deref(), &client).unwrap();
        assert_eq!(again, r);
        assert_eq!(
            ClaimsRequest::parse(None, &client).unwrap(),
            ClaimsRequest::default()
        );
    }

    #[test]
    fn acr_is_named_when_asked_for_and_an_essential_one_unmet_fails() {
        let client = scopes(&["openid"]);
        let none = ClaimsRequest::default();
        assert_eq!(acr_for(ACR_PASSWORD, &[], &none), Acr::Omit);
        assert_eq!(
            acr_for(ACR_PASSWORD, &parse_acr_values(Some("1 2")), &none),
            Acr::Claim(ACR_PASSWORD),
            "acr_values are voluntary: the session's class is named"
        );
        let essential = ClaimsRequest::parse(
            Some(
                r#"{"id_token":{"acr":{"essential":true,"values":["urn:edgeward:acr:password"]}}}"#,
            ),
            &client,
        )
        .unwrap();
        assert_eq!(
            acr_for(ACR_PASSWORD, &[], &essential),
            Acr::Claim(ACR_PASSWORD)
        );
        assert_eq!(acr_for(ACR_PARTNER, &[], &essential), Acr::Unmet);
        let voluntary =
            ClaimsRequest::parse(Some(r#"{"id_token":{"acr":null}}"#), &client).unwrap();
        assert_eq!(
            acr_for(ACR_PARTNER, &[], &voluntary),
            Acr::Claim(ACR_PARTNER)
        );
        // Round trip through login and consent.
        let again = ClaimsRequest::parse(essential.to_param().as_deref(), &client).unwrap();
        assert_eq!(again, essential);
        assert!(
            ClaimsRequest::parse(Some(r#"{"id_token":{"acr":{"values":[1]}}}"#), &client).is_err()
        );
        assert_eq!(
            parse_acr_values(Some("a  b\u{1}")).len(),
            1,
            "empty and undisplayable values dropped"
        );
    }

    #[test]
    fn claims_parameter_that_is_not_the_right_json_is_invalid_request() {
        let client = scopes(&["openid", "profile"]);
        for bad in [
            "not json",
            "[]",
            r#"{"userinfo":[]}"#,
            r#"{"userinfo":{"name":true}}"#,
            r#"{"id_token":"x"}"#,
        ] {
            let err = ClaimsRequest::parse(Some(bad), &client).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad}");
        }
        let long = format!(
            r#"{{"userinfo":{{"name":null}},"x":"{}"}}"#,
            "a".repeat(MAX_CLAIMS_PARAM_LEN)
        );
        assert!(ClaimsRequest::parse(Some(&long), &client).is_err());
    }
}
