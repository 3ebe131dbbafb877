//! Text from a cluster or a remote — status and condition messages, event
//! notes, abort reasons, API and GitHub error messages, pull-request titles —
//! is written by someone else and may carry terminal control sequences: an
//! ESC sequence can recolour, move the cursor, retitle the window or hide
//! what follows, a CR can overwrite a line, and bidi controls reorder it.
//! Every printer of `mlctl` passes what it prints through [`escape_controls`]
//! (or [`escape_json_controls`] for JSON) just before writing it, so that such
//! characters show up visibly (`\x1b`) instead of acting.

use std::borrow::Cow;

/// `text` with every control character but newline and tab written as a
/// visible escape: C0 and DEL as `\xNN`, C1 (U+0080..U+009F) as `\u{NN}`,
/// and the bidi embedding, override and isolate controls as `\u{NNNN}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// JSON as serde_json writes it, with the controls it leaves raw (DEL and C1,
/// which only occur inside strings) written as `\u00NN`: still the same JSON
/// value, and inert on a terminal. (C0 is already escaped by serde_json; YAML
/// output is escaped by libyaml's emitter.)
pub fn escape_json_controls(json: &str) -> Cow<'_, str> {
    let raw = |c: char| matches!(c as u32, 0x7f..=0x9f) || is_bidi_control(c);
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)
}

/// The bidi controls that reorder what follows (the "Trojan Source" ones).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_acted_on() {
        for (text, want) in [
            ("plain text, ünïcode", "plain text, ünïcode"),
            ("two\nlines\tand a tab", "two\nlines\tand a tab"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
            ("ok\rfailed", "ok\\x0dfailed"),
            ("del\x7f bell\x07 nul\0", "del\\x7f bell\\x07 nul\\x00"),
            ("\u{9b}31m C1 CSI", "\\u{9b}31m C1 CSI"),
            ("a\u{202e}cba", "a\\u{202e}cba"),
        ] {
            assert_eq!(escape_controls(text), want, "{text:?}");
        }
        assert!(matches!(escape_controls("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_raw_controls() {
        let value = serde_json::json!({"message": "a\u{1b}[2Jb\u{9b}c\u{7f}d\u{202e}"});
        let text = serde_json::to_string(&value).unwrap();
        let escaped = escape_json_controls(&text);
        assert!(
            !escaped
                .chars()
                .any(|c| c.is_control() || is_bidi_control(c)),
            "{escaped}"
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }
}
