//! Automatic login's arrival rule: when a partner's login assertion may start a session at once,
//! and when the person in front of the browser is asked first.
//!
//! An assertion says nothing about the browser that presents it: a user of the partner who
//! captured the one made for their own account can forward it (a link in a message, a form on
//! another site), and the browser that opens it would be signed in as the sender (login CSRF).
//! Only the partner's own pages may sign a browser in silently, and a browser says where a
//! POST comes from in its `Origin` header, which pages cannot set or suppress. Any other arrival
//! (a GET with the assertion in the URL, a POST from another origin, `null`, or none) shows whom
//! the browser would be signed in as and waits for the person to confirm.
//!
//! `Sec-Fetch-Site` adds nothing here: a partner's page is always cross-site or same-site to us,
//! so the header cannot tell the partner's POST from an attacker's; `Origin` can.

use super::origin::Origin;

/// How the assertion reached `/login/auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival<'a> {
    /// A form POST (not a GET with the assertion in the URL).
    pub posted: bool,
    /// The request's `Origin` header, as received.
    pub origin: Option<&'a str>,
}

/// What to do with a valid assertion for a linked account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Posted by one of the partner's own pages: sign in now.
    AtOnce,
    /// Anything else: show whom the browser would be signed in as, and ask.
    AskFirst,
}

/// Whether an assertion from the partner with `partner_origins` starts a session on arrival.
pub fn start(arrival: Arrival<'_>, partner_origins: &[Origin]) -> Start {
    let from_partner = arrival
        .origin
        .and_then(Origin::from_header)
        .is_some_and(|o| partner_origins.contains(&o));
    if arrival.posted && from_partner {
        Start::AtOnce
    } else {
        Start::AskFirst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_post_from_the_partners_own_origin_signs_in_at_once() {
        let origins = [
            Origin::parse("https://app.acme.example").unwrap(),
            Origin::parse("https://www.acme.example").unwrap(),
        ];
        let arrive = |posted, origin| start(Arrival { posted, origin }, &origins);
        assert_eq!(
            arrive(true, Some("https://app.acme.example")),
            Start::AtOnce
        );
        assert_eq!(
            arrive(true, Some("https://www.acme.example")),
            Start::AtOnce
        );
        for (posted, origin, why) in [
            (
                false,
                Some("https://app.acme.example"),
                "a GET, even with the partner's Origin",
            ),
            (false, None, "a GET: a forwarded URL"),
            (true, None, "a POST without Origin"),
            (
                true,
                Some("null"),
                "an opaque origin (sandboxed frame, cross-origin redirect)",
            ),
            (true, Some("https://evil.example"), "another site's form"),
            (
                true,
                Some("https://app.acme.example.evil.example"),
                "suffix trick",
            ),
            (
                true,
                Some("https://APP.acme.example"),
                "not a browser's spelling",
            ),
            (true, Some("https://app.acme.example/"), "not an origin"),
            (true, Some("http://app.acme.example"), "another scheme"),
        ] {
            assert_eq!(arrive(posted, origin), Start::AskFirst, "{why}");
        }
        assert_eq!(
            start(
                Arrival {
                    posted: true,
                    origin: Some("https://app.acme.example")
                },
                &[]
            ),
            Start::AskFirst,
            "a partner without origins has no page to post from"
        );
    }
}
