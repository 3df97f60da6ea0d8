//! Partners: the checked identifiers and records, the admin input they are parsed from, and the
//! pure planning of a registry change (which origins it claims, what the edge must be told).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::discovery::Issuer;
use super::error::{ApiError, ErrorCode};
use super::origin::Origin;
use super::ratelimit::{parse_limits, RateLimits};

pub const MAX_PARTNER_ID_LEN: usize = 63;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_ORIGINS: usize = 32;
/// Longest `iss` of a partner: it is part of a storage key (`issuer:{iss}`; KV keys hold at
/// most 512 bytes), and longer ones in partners' JWTs are refused before any lookup.
pub const MAX_ISSUER_LEN: usize = 400;

/// `[a-z0-9][a-z0-9-]{0,62}`: safe in paths, KV keys and log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PartnerId(String);

impl PartnerId {
    pub fn parse(s: &str) -> Result<PartnerId, ApiError> {
        let valid = !s.is_empty()
            && s.len() <= MAX_PARTNER_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if valid {
            Ok(PartnerId(s.to_owned()))
        } else {
            Err(ApiError::invalid_field(
                "partner_id",
                "must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PartnerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PartnerId::parse(&s).map_err(|e| serde::de::Error::custom(e.description))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    Suspended,
}

/// What an operator asks for in `PUT /admin/partners/{id}`, after every field was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerSpec {
    pub name: String,
    pub origins: Vec<Origin>,
    pub status: PartnerStatus,
    /// The `iss` of the partner's own JWTs; absent: its first origin.
    pub issuer: Option<String>,
    /// The partner's public keys, inline...
    pub jwks: Option<Value>,
    /// ...or at an https URL on one of its origins.
    pub jwks_uri: Option<String>,
    /// Rate limits; absent: the defaults.
    pub rate_limits: Option<RateLimits>,
}

/// The stored partner record, as the admin API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub id: PartnerId,
    pub name: String,
    pub origins: Vec<Origin>,
    pub status: PartnerStatus,
    /// The `iss` the partner's JWTs must carry.
    #[serde(default)]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Rate limits set by the operator; absent: the defaults of `ratelimit::DEFAULT_LIMITS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Random, set when the partner is created and kept by every change: the partner's pairwise
    /// subjects (`tokens::pairwise_sub`) and its link store (`store::links::object_name`) are
    /// derived from it, so a partner created again under a removed one's id inherits no link and
    /// learns no subject of the old one. Absent on partners created before it existed: they keep
    /// the subjects and the link store they had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_salt: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
}

/// What the gate needs to know about an origin, published under the origin's KV key so that a
/// lookup is one read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateEntry {
    pub partner_id: PartnerId,
    pub status: PartnerStatus,
}

fn field_type_error(field: &str, want: &str) -> ApiError {
    ApiError::invalid_field(field, format!("must be {want}"))
}

/// Parses the JSON body of `PUT /admin/partners/{id}`. Every error names its field.
pub fn parse_partner_spec(body: &[u8]) -> Result<PartnerSpec, ApiError> {
    let obj = super::json::parse_object(body)?;
    const FIELDS: &[&str] = &[
        "name",
        "origins",
        "status",
        "issuer",
        "jwks",
        "jwks_uri",
        "rate_limits",
    ];
    if obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(super::json::unknown_member(None, FIELDS));
    }
    let origins = parse_origins(&obj)?;
    let (jwks, jwks_uri) = parse_keys(&obj, &origins)?;
    Ok(PartnerSpec {
        name: parse_name(&obj)?,
        status: parse_status(&obj)?,
        issuer: parse_issuer(&obj)?,
        jwks,
        jwks_uri,
        rate_limits: parse_limits(obj.get("rate_limits"))?,
        origins,
    })
}

fn parse_issuer(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match obj.get("issuer") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().len() > MAX_ISSUER_LEN => Err(ApiError::invalid_field(
            "issuer",
            format!("must be at most {MAX_ISSUER_LEN} bytes"),
        )),
        Some(Value::String(s)) => crate::protocol::discovery::Issuer::parse(s)
            .map(|i| Some(i.as_str().to_owned()))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "issuer",
                    "must be an https URL (plain http only on loopback) without query, fragment or trailing slash",
                )
            }),
        Some(_) => Err(field_type_error("issuer", "a string")),
    }
}

/// The partner's keys: an inline public JWK Set or an https URL on one of its origins.
fn parse_keys(
    obj: &Map<String, Value>,
    origins: &[Origin],
) -> Result<(Option<Value>, Option<String>), ApiError> {
    let jwks = obj.get("jwks").filter(|v| !v.is_null()).cloned();
    let uri = match obj.get("jwks_uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(field_type_error("jwks_uri", "a string")),
    };
    if jwks.is_some() && uri.is_some() {
        return Err(ApiError::invalid_field(
            "jwks_uri",
            "give jwks or jwks_uri, not both",
        ));
    }
    if let Some(j) = &jwks {
        crate::protocol::jwk::check_public_jwks(j, "jwks")?;
        crate::protocol::assertion::parse_public_jwks(j)
            .map_err(|e| ApiError::invalid_field("jwks", e))?;
    }
    if let Some(u) = &uri {
        let url = url::Url::parse(u)
            .map_err(|_| ApiError::invalid_field("jwks_uri", "is not an absolute URL"))?;
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::invalid_field(
                "jwks_uri",
                "must not have a fragment or credentials",
            ));
        }
        let on_origin = Origin::from_referer(u).is_some_and(|o| origins.contains(&o));
        if !on_origin {
            return Err(ApiError::invalid_field(
                "jwks_uri",
                "must be on one of the partner's origins",
            ));
        }
    }
    Ok((jwks, uri.map(|u| u.trim().to_owned())))
}

fn parse_name(obj: &Map<String, Value>) -> Result<String, ApiError> {
    let name = match obj.get("name") {
        None => return Err(ApiError::invalid_field("name", "is required")),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(field_type_error("name", "a string")),
    };
    if name.is_empty() {
        return Err(ApiError::invalid_field("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if !super::text::displayable(name) {
        return Err(ApiError::invalid_field(
            "name",
            super::text::NOT_DISPLAYABLE,
        ));
    }
    Ok(name.to_owned())
}

fn parse_origins(obj: &Map<String, Value>) -> Result<Vec<Origin>, ApiError> {
    let items = match obj.get("origins") {
        None => return Err(ApiError::invalid_field("origins", "is required")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(field_type_error("origins", "an array of strings")),
    };
    if items.is_empty() || items.len() > MAX_ORIGINS {
        return Err(ApiError::invalid_field(
            "origins",
            format!("must list between 1 and {MAX_ORIGINS} origins"),
        ));
    }
    let mut origins: Vec<Origin> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("origins[{i}]");
        let Value::String(s) = item else {
            return Err(field_type_error(&field, "a string"));
        };
        let origin =
            Origin::parse(s).map_err(|e| ApiError::invalid_field(&field, e.to_string()))?;
        if let Some(j) = origins.iter().position(|o| *o == origin) {
            return Err(ApiError::invalid_field(
                &field,
                format!("duplicates origins[{j}]"),
            ));
        }
        origins.push(origin);
    }
    Ok(origins)
}

fn parse_status(obj: &Map<String, Value>) -> Result<PartnerStatus, ApiError> {
    match obj.get("status") {
        None => Ok(PartnerStatus::Active),
        Some(Value::String(s)) if s == "active" => Ok(PartnerStatus::Active),
        Some(Value::String(s)) if s == "suspended" => Ok(PartnerStatus::Suspended),
        Some(_) => Err(field_type_error("status", "\"active\" or \"suspended\"")),
    }
}

/// The KV keys the registry publishes to the edge. Defined here so that the writer (the registry
/// Durable Object) and the reader (the gate) cannot disagree.
pub mod keys {
    use super::{Origin, PartnerId};

    /// Longest key KV stores (bytes). A longer one can never have been written, so a read of
    /// it is answered "absent" without asking KV (which would throw).
    pub const MAX_KEY_BYTES: usize = 512;

    pub fn origin(origin: &Origin) -> String {
        format!("origin:{origin}")
    }

    pub fn partner(id: &PartnerId) -> String {
        format!("partner:{id}")
    }

    /// The partner whose JWTs carry this `iss` (at most [`super::MAX_ISSUER_LEN`] bytes, so the
    /// key fits).
    pub fn issuer(iss: &str) -> String {
        format!("issuer:{iss}")
    }
}

/// One write the edge must see: a KV put (`Some`) or delete (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeWrite {
    pub key: String,
    pub value: Option<String>,
}

/// A registry change, decided: the new record and what to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutPlan {
    pub record: Partner,
    pub created: bool,
    /// Origins this partner newly claims.
    pub claimed: Vec<Origin>,
    /// Origins this partner no longer has.
    pub released: Vec<Origin>,
    pub edge_writes: Vec<EdgeWrite>,
}

fn to_json<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::unavailable(format!("serialize: {e}")))
}

/// Refuses a partner whose JWTs would carry our own issuer (`ours`), in any spelling that names
/// the same place (case of scheme and host, default port, trailing slash). Our ID and link
/// tokens carry our issuer: a partner's JWTs with it could not be told apart from ours by who
/// says they issued them, here or at a client that checks `iss`.
pub fn check_issuer_is_not_ours(spec: &PartnerSpec, ours: &Issuer) -> Result<(), ApiError> {
    if same_issuer(&resolved_issuer(spec), ours.as_str()) {
        return Err(ApiError::invalid_field(
            "issuer",
            "must not be the issuer of this service",
        ));
    }
    Ok(())
}

/// Whether two issuer URLs name the same place: scheme and host without case, the default port
/// spelt or not, the path without a trailing slash.
fn same_issuer(a: &str, b: &str) -> bool {
    let parts = |s: &str| {
        url::Url::parse(s.trim()).ok().map(|u| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_ascii_lowercase),
                u.port_or_known_default(),
                u.path().trim_end_matches('/').to_owned(),
            )
        })
    };
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// The `iss` a spec resolves to: the one given, or the first origin.
pub fn resolved_issuer(spec: &PartnerSpec) -> String {
    spec.issuer
        .clone()
        .or_else(|| spec.origins.first().map(|o| o.as_str().to_owned()))
        .unwrap_or_default()
}

/// Plans `PUT /admin/partners/{id}`. `owners` gives, for each requested origin that is already
/// claimed, the partner that holds it; `issuer_owner` the holder of the resolved issuer. One
/// origin, and one issuer, belongs to at most one partner. `new_salt` (random) becomes the
/// subject salt of a partner created now; an existing partner keeps its own (or its lack of one).
pub fn plan_put(
    id: PartnerId,
    spec: PartnerSpec,
    existing: Option<Partner>,
    owners: &[(Origin, PartnerId)],
    issuer_owner: Option<&PartnerId>,
    now: u64,
    new_salt: &str,
) -> Result<PutPlan, ApiError> {
    if let Some(owner) = issuer_owner.filter(|o| **o != id) {
        return Err(ApiError {
            field: Some("issuer".into()),
            ..ApiError::new(
                ErrorCode::IssuerConflict,
                format!("issuer: already belongs to partner {owner}"),
            )
        });
    }
    for (i, origin) in spec.origins.iter().enumerate() {
        if let Some((_, owner)) = owners.iter().find(|(o, p)| o == origin && *p != id) {
            return Err(ApiError {
                field: Some(format!("origins[{i}]")),
                ..ApiError::new(
                    ErrorCode::OriginConflict,
                    format!("origins[{i}]: already belongs to partner {owner}"),
                )
            });
        }
    }
    let old: BTreeSet<&Origin> = existing
        .as_ref()
        .map(|p| p.origins.iter().collect())
        .unwrap_or_default();
    let new: BTreeSet<&Origin> = spec.origins.iter().collect();
    let claimed: Vec<Origin> = new.difference(&old).map(|o| (*o).clone()).collect();
    let released: Vec<Origin> = old.difference(&new).map(|o| (*o).clone()).collect();

    let issuer = resolved_issuer(&spec);
    let old_issuer = existing
        .as_ref()
        .map(|p| p.issuer.clone())
        .filter(|i| !i.is_empty());
    let record = Partner {
        created_at: existing.as_ref().map_or(now, |p| p.created_at),
        updated_at: now,
        id,
        name: spec.name,
        origins: spec.origins,
        status: spec.status,
        issuer,
        jwks: spec.jwks,
        jwks_uri: spec.jwks_uri,
        rate_limits: spec.rate_limits,
        subject_salt: match &existing {
            Some(p) => p.subject_salt.clone(),
            None => Some(new_salt.to_owned()),
        },
    };
    let entry = to_json(&GateEntry {
        partner_id: record.id.clone(),
        status: record.status,
    })?;
    // Restrictions first: a released origin is unpublished before anything is granted.
    let mut edge_writes: Vec<EdgeWrite> = released
        .iter()
        .map(|o| EdgeWrite {
            key: keys::origin(o),
            value: None,
        })
        .collect();
    if let Some(old) = old_issuer.filter(|old| *old != record.issuer) {
        edge_writes.push(EdgeWrite {
            key: keys::issuer(&old),
            value: None,
        });
    }
    edge_writes.push(EdgeWrite {
        key: keys::partner(&record.id),
        value: Some(to_json(&record)?),
    });
    edge_writes.push(EdgeWrite {
        key: keys::issuer(&record.issuer),
        value: Some(record.id.as_str().to_owned()),
    });
    edge_writes.extend(record.origins.iter().map(|o| EdgeWrite {
        key: keys::origin(o),
        value: Some(entry.clone()),
    }));
    Ok(PutPlan {
        created: existing.is_none(),
        record,
        claimed,
        released,
        edge_writes,
    })
}

/// What the edge must forget when a partner is removed: its origins first, then its record.
pub fn plan_delete(existing: &Partner) -> Vec<EdgeWrite> {
    let mut writes: Vec<EdgeWrite> = existing
        .origins
        .iter()
        .map(|o| EdgeWrite {
            key: keys::origin(o),
            value: None,
        })
        .collect();
    writes.push(EdgeWrite {
        key: keys::issuer(&existing.issuer),
        value: None,
    });
    writes.push(EdgeWrite {
        key: keys::partner(&existing.id),
        value: None,
    });
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PartnerId {
        PartnerId::parse(s).unwrap()
    }
    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }
    fn spec(origins: &[&str]) -> PartnerSpec {
        PartnerSpec {
            name: "Acme".into(),
            origins: origins.iter().map(|o| origin(o)).collect(),
            status: PartnerStatus::Active,
            issuer: None,
            jwks: None,
            jwks_uri: None,
            rate_limits: None,
        }
    }

    #[test]
    fn a_partner_cannot_take_our_issuer_in_any_spelling() {
        let ours = Issuer::parse("https://id.school.example").unwrap();
        for theirs in [
            "https://id.school.example",
            "HTTPS://ID.School.Example",
            "https://id.school.example:443",
        ] {
            let mut s = spec(&["https://a.example"]);
            s.issuer = Some(theirs.to_owned());
            let err = check_issuer_is_not_ours(&s, &ours).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{theirs}");
            assert_eq!(err.field.as_deref(), Some("issuer"), "{theirs}");
        }
        assert!(same_issuer(
            "https://id.school.example/",
            "https://id.school.example"
        ));
        // The default issuer is the first origin: that cannot be ours either.
        let by_default = spec(&["https://id.school.example"]);
        assert!(check_issuer_is_not_ours(&by_default, &ours).is_err());
        let mut other = spec(&["https://a.example"]);
        assert!(check_issuer_is_not_ours(&other, &ours).is_ok());
        other.issuer = Some("https://id.school.example/partner".into());
        assert!(check_issuer_is_not_ours(&other, &ours).is_ok());
        other.issuer = Some("http://id.school.example".into());
        assert!(check_issuer_is_not_ours(&other, &ours).is_ok());
    }

    #[test]
    fn partner_issuer_and_name_are_bounded_and_displayable() {
        let long = format!("https://a.example/{}", "i".repeat(MAX_ISSUER_LEN));
        let body = format!(r#"{{"name":"A","origins":["https://a.example"],"issuer":"{long}"}}"#);
        let err = parse_partner_spec(body.as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("issuer"));
        // JSON escapes, as an operator's tool would send them.
        for name in [r"\u202eemcA", r"Ac\u200bme", r"Ac\u2028me", r"Acme\u0007"] {
            let body = format!(r#"{{"name":"{name}","origins":["https://a.example"]}}"#);
            let err = parse_partner_spec(body.as_bytes()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("name"), "{name}");
        }
    }

    #[test]
    fn partner_keys_and_issuer_are_checked() {
        let ok = parse_partner_spec(
            br#"{"name":"A","origins":["https://a.example"],"jwks_uri":"https://a.example/.well-known/jwks.json"}"#,
        )
        .unwrap();
        assert_eq!(
            ok.jwks_uri.as_deref(),
            Some("https://a.example/.well-known/jwks.json")
        );
        let plan = plan_put(id("acme"), ok, None, &[], None, 1, "salt").unwrap();
        assert_eq!(
            plan.record.issuer, "https://a.example",
            "issuer defaults to the first origin"
        );
        let cases: &[(&[u8], &str)] = &[
            (br#"{"name":"A","origins":["https://a.example"],"jwks_uri":"https://evil.example/jwks"}"#, "jwks_uri"),
            (br#"{"name":"A","origins":["https://a.example"],"jwks_uri":"https://a.example.evil.example/jwks"}"#, "jwks_uri"),
            (br#"{"name":"A","origins":["https://a.example"],"jwks_uri":"https://u:p@a.example/jwks"}"#, "jwks_uri"),
            (br#"{"name":"A","origins":["https://a.example"],"jwks_uri":"https://a.example/j","jwks":{"keys":[]}}"#, "jwks_uri"),
            (br#"{"name":"A","origins":["https://a.example"],"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}}"#, "jwks.keys[0]"),
            (br#"{"name":"A","origins":["https://a.example"],"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"short"}]}}"#, "jwks"),
            (br#"{"name":"A","origins":["https://a.example"],"issuer":"http://a.example"}"#, "issuer"),
            (br#"{"name":"A","origins":["https://a.example"],"issuer":"https://a.example/"}"#, "issuer"),
        ];
        for (body, field) in cases {
            let err = parse_partner_spec(body).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let inline = parse_partner_spec(
            br#"{"name":"A","origins":["https://a.example"],"issuer":"https://id.a.example","jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}}"#,
        )
        .unwrap();
        assert_eq!(inline.issuer.as_deref(), Some("https://id.a.example"));
        assert!(inline.jwks.is_some());
    }

    #[test]
    fn partner_id_accepts_slugs_only() {
        for good in ["acme", "a", "acme-learning-2", &"a".repeat(63)] {
            assert!(PartnerId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme_x",
            "acme/x",
            "acme%2f",
            "ä",
            &"a".repeat(64),
        ] {
            let err = PartnerId::parse(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("partner_id"), "{bad}");
        }
    }

    #[test]
    fn parse_spec_normalizes_and_defaults_status() {
        let s =
            parse_partner_spec(br#"{"name":" Acme ","origins":["https://App.Acme.example:443"]}"#)
                .unwrap();
        assert_eq!(s.name, "Acme");
        assert_eq!(s.origins, vec![origin("https://app.acme.example")]);
        assert_eq!(s.status, PartnerStatus::Active);
    }

    #[test]
    fn parse_spec_names_the_offending_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"origins":["https://a.example"]}"#, "name"),
            (br#"{"name":"","origins":["https://a.example"]}"#, "name"),
            (br#"{"name":5,"origins":["https://a.example"]}"#, "name"),
            (
                br#"{"name":"a\u0007","origins":["https://a.example"]}"#,
                "name",
            ),
            (br#"{"name":"A"}"#, "origins"),
            (br#"{"name":"A","origins":[]}"#, "origins"),
            (br#"{"name":"A","origins":"https://a.example"}"#, "origins"),
            (
                br#"{"name":"A","origins":["https://a.example",7]}"#,
                "origins[1]",
            ),
            (
                br#"{"name":"A","origins":["https://a.example","http://b.example"]}"#,
                "origins[1]",
            ),
            (
                br#"{"name":"A","origins":["https://a.example","https://A.example/"]}"#,
                "origins[1]",
            ),
            (
                br#"{"name":"A","origins":["https://a.example"],"status":"gone"}"#,
                "status",
            ),
        ];
        for (body, field) in cases {
            let err = parse_partner_spec(body).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert_eq!(
                err.field.as_deref(),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An unknown member is refused without naming it back: it is the caller's text.
        let err = parse_partner_spec(br#"{"name":"A","origins":["https://a.example"],"extra":1}"#)
            .unwrap_err();
        assert_eq!(err.field, None);
        assert!(!err.description.contains("extra"), "{}", err.description);
        let too_many: Vec<String> = (0..33)
            .map(|i| format!("\"https://a{i}.example\""))
            .collect();
        let body = format!("{{\"name\":\"A\",\"origins\":[{}]}}", too_many.join(","));
        assert_eq!(
            parse_partner_spec(body.as_bytes())
                .unwrap_err()
                .field
                .as_deref(),
            Some("origins")
        );
    }

    #[test]
    fn parse_spec_rejects_non_objects() {
        for body in [&b"[]"[..], b"null", b"not json", b""] {
            let err = parse_partner_spec(body).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert_eq!(err.field, None);
        }
    }

    #[test]
    fn plan_put_refuses_an_origin_owned_by_another_partner() {
        let owners = [(origin("https://b.example"), id("other"))];
        let err = plan_put(
            id("acme"),
            spec(&["https://a.example", "https://b.example"]),
            None,
            &owners,
            None,
            10,
            "salt",
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::OriginConflict);
        assert_eq!(err.field.as_deref(), Some("origins[1]"));
    }

    #[test]
    fn plan_put_refuses_an_issuer_of_another_partner() {
        let other = id("other");
        let err = plan_put(
            id("acme"),
            spec(&["https://a.example"]),
            None,
            &[],
            Some(&other),
            1,
            "salt",
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::IssuerConflict);
        assert_eq!(err.field.as_deref(), Some("issuer"));
        let own = id("acme");
        assert!(plan_put(
            id("acme"),
            spec(&["https://a.example"]),
            None,
            &[],
            Some(&own),
            1,
            "salt"
        )
        .is_ok());
    }

    #[test]
    fn plan_put_salts_a_new_partner_and_keeps_the_salt_or_its_lack() {
        let a = spec(&["https://a.example"]);
        let first = plan_put(id("acme"), a.clone(), None, &[], None, 1, "s1").unwrap();
        assert_eq!(first.record.subject_salt.as_deref(), Some("s1"));
        let owners = [(origin("https://a.example"), id("acme"))];
        let again = plan_put(
            id("acme"),
            a.clone(),
            Some(first.record),
            &owners,
            None,
            2,
            "s2",
        );
        assert_eq!(again.unwrap().record.subject_salt.as_deref(), Some("s1"));
        // A record from before salts existed stays without one: its subjects do not change.
        let mut legacy = plan_put(id("acme"), a.clone(), None, &[], None, 1, "s3")
            .unwrap()
            .record;
        legacy.subject_salt = None;
        let kept = plan_put(id("acme"), a, Some(legacy), &owners, None, 2, "s4").unwrap();
        assert_eq!(kept.record.subject_salt, None);
    }

    #[test]
    fn plan_put_keeps_created_at_and_diffs_origins() {
        let first = plan_put(
            id("acme"),
            spec(&["https://a.example", "https://b.example"]),
            None,
            &[],
            None,
            10,
            "salt",
        )
        .unwrap();
        assert!(first.created);
        assert_eq!(first.claimed.len(), 2);
        let owners = [
            (origin("https://a.example"), id("acme")),
            (origin("https://b.example"), id("acme")),
        ];
        let second = plan_put(
            id("acme"),
            spec(&["https://b.example", "https://c.example"]),
            Some(first.record),
            &owners,
            None,
            20,
            "salt",
        )
        .unwrap();
        assert!(!second.created);
        assert_eq!(second.record.created_at, 10);
        assert_eq!(second.record.updated_at, 20);
        assert_eq!(second.claimed, vec![origin("https://c.example")]);
        assert_eq!(second.released, vec![origin("https://a.example")]);
        // The released origin is unpublished before anything else is written.
        assert_eq!(
            second.edge_writes[0],
            EdgeWrite {
                key: "origin:https://a.example".into(),
                value: None
            }
        );
        let published: Vec<&str> = second.edge_writes.iter().map(|w| w.key.as_str()).collect();
        // The default issuer (the first origin) moved from a to b: the old one is unpublished.
        assert_eq!(
            published,
            [
                "origin:https://a.example",
                "issuer:https://a.example",
                "partner:acme",
                "issuer:https://b.example",
                "origin:https://b.example",
                "origin:https://c.example"
            ]
        );
    }

    #[test]
    fn gate_entry_carries_status_for_one_read_lookups() {
        let mut s = spec(&["https://a.example"]);
        s.status = PartnerStatus::Suspended;
        let plan = plan_put(id("acme"), s, None, &[], None, 1, "salt").unwrap();
        let entry = plan
            .edge_writes
            .iter()
            .find(|w| w.key == "origin:https://a.example")
            .and_then(|w| w.value.clone())
            .unwrap();
        let entry: GateEntry = serde_json::from_str(&entry).unwrap();
        assert_eq!(entry.status, PartnerStatus::Suspended);
        assert_eq!(entry.partner_id, id("acme"));
    }

    #[test]
    fn plan_delete_unpublishes_origins_then_record() {
        let plan = plan_put(
            id("acme"),
            spec(&["https://a.example"]),
            None,
            &[],
            None,
            1,
            "salt",
        )
        .unwrap();
        let writes = plan_delete(&plan.record);
        assert!(writes.iter().all(|w| w.value.is_none()));
        let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "origin:https://a.example",
                "issuer:https://a.example",
                "partner:acme"
            ]
        );
    }
}
