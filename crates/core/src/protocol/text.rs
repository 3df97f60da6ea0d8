//! Text that people read: names of partners, clients and users, shown on consent, account and
//! admin pages. What it may not contain is decided here once.

/// Whether `c` may not appear in a displayed name: control characters (Unicode Cc, and the line
/// and paragraph separators), bidirectional formatting (which can make a page show "Acme" for a
/// name that is stored as something else) and zero-width characters (which make two names look
/// the same).
pub fn hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                  // ARABIC LETTER MARK
            | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202A}'..='\u{202E}'   // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner and invisible operators
            | '\u{2066}'..='\u{2069}'   // bidirectional isolates
            | '\u{FEFF}' // zero-width no-break space (BOM)
        )
}

/// Whether `s` has no character [`hidden_or_control`] refuses.
pub fn displayable(s: &str) -> bool {
    !s.chars().any(hidden_or_control)
}

/// What a refused name is told, for the `description` of its 400.
pub const NOT_DISPLAYABLE: &str =
    "must not contain control, bidirectional formatting or zero-width characters";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_controls_bidi_or_zero_width_characters_are_not_displayable() {
        for bad in [
            "Acme\u{0007}",
            "Acme\nInc",
            "Acme\u{007F}",
            "Acme\u{0085}",
            "\u{202E}emcA",
            "Acme\u{202A}",
            "Acme\u{202D}",
            "Acme\u{2066}x\u{2069}",
            "Acme\u{2067}",
            "Acme\u{2068}",
            "Acme\u{200E}",
            "Acme\u{200F}",
            "Ac\u{200B}me",
            "Ac\u{200C}me",
            "Ac\u{200D}me",
            "Acme\u{FEFF}",
            "Acme\u{061C}",
            "Acme\u{2028}",
            "Acme\u{2029}",
        ] {
            assert!(!displayable(bad), "{bad:?}");
        }
        for good in [
            "Acme",
            "Zoë's School",
            "学校",
            "مدرسة",
            "Acme – Year 5 (2026)",
            "😀",
        ] {
            assert!(displayable(good), "{good:?}");
        }
    }
}
