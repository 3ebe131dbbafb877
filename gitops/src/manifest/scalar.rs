//! Rendering a replacement scalar in the style of the one it replaces, quoting
//! whenever a plain scalar could be read as anything but a string.

use granit_parser::ScalarStyle;

/// Renders `value` for a position that held a scalar of `style`.
/// `in_flow` is true inside `{…}`/`[…]`, where more characters are indicators.
pub(crate) fn render(value: &str, style: ScalarStyle, in_flow: bool) -> String {
    match style {
        ScalarStyle::Plain if plain_is_safe(value, in_flow) => value.to_string(),
        ScalarStyle::SingleQuoted if !value.chars().any(char::is_control) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => double_quoted(value),
    }
}

pub(crate) fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A deliberately narrow notion of "safe as a plain scalar": it must read as the
/// same string under YAML 1.1 (go-yaml, which kubectl and Argo CD use) and YAML 1.2.
/// Anything starting with a digit, sign or dot (numbers, dates, `.inf`) and the
/// 1.1 booleans/nulls are quoted instead.
pub(crate) fn plain_is_safe(value: &str, in_flow: bool) -> bool {
    const RESERVED: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    let Some(first) = value.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/') {
        return false;
    }
    if RESERVED.contains(&value.to_ascii_lowercase().as_str()) {
        return false;
    }
    value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '/' | '@' | '+' | '=' | '-' | '%' | '~')
            || (c == ':' && !in_flow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_dates_and_booleans_are_quoted() {
        for value in [
            "1.2",
            "2026-11-20",
            "2026-11-20.3",
            "-1",
            ".5",
            "1e3",
            "0x1F",
            "yes",
            "Off",
            "~",
            "",
        ] {
            assert!(!plain_is_safe(value, false), "{value}");
            assert_eq!(
                render(value, ScalarStyle::Plain, false),
                format!("\"{value}\"")
            );
        }
    }

    #[test]
    fn plain_strings_stay_plain() {
        for value in [
            "v1.2.3",
            "s3://models/ranker/1/model.txt",
            "abc123",
            "release-7",
        ] {
            assert_eq!(render(value, ScalarStyle::Plain, false), value);
        }
        assert_eq!(render("s3://x", ScalarStyle::Plain, true), "\"s3://x\"");
    }

    #[test]
    fn quoting_styles_are_kept_and_escaped() {
        assert_eq!(render("it's", ScalarStyle::SingleQuoted, false), "'it''s'");
        assert_eq!(
            render("a\"b\\", ScalarStyle::DoubleQuoted, false),
            "\"a\\\"b\\\\\""
        );
        assert_eq!(
            render("a\nb", ScalarStyle::SingleQuoted, false),
            "\"a\\nb\""
        );
    }

    #[test]
    fn rendered_scalars_read_back_as_strings() {
        for value in [
            "1.2", "it's", "a\"b", "x: y", "#c", "s3://b/k", "yes", "ü\u{7}",
        ] {
            for style in [
                ScalarStyle::Plain,
                ScalarStyle::SingleQuoted,
                ScalarStyle::DoubleQuoted,
            ] {
                let doc = format!("k: {}\n", render(value, style, false));
                let parsed: std::collections::BTreeMap<String, String> =
                    serde_yaml_ng::from_str(&doc).unwrap();
                assert_eq!(parsed["k"], value, "{doc}");
            }
        }
    }
}
