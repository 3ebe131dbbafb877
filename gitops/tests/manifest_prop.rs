//! Property test: generated manifests (random comments, blank lines, quoting styles, key
//! order, indentation, extra documents, CRLF, final newline or not) are edited and the output
//! must equal an oracle built from the same pieces with only the target values swapped.

use mlctl_gitops::manifest::{Desired, DigestChange, edit_model};
use proptest::prelude::*;

const NEW_VERSION: &str = "2026-12-01.1";
const NEW_URI: &str = "s3://models/ranker/2026-12-01.1/model.txt";
const NEW_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[derive(Debug, Clone, Copy)]
enum Style {
    Plain,
    Single,
    Double,
}

fn quote(value: &str, style: Style) -> String {
    match style {
        Style::Plain => value.to_string(),
        Style::Single => format!("'{value}'"),
        Style::Double => format!("\"{value}\""),
    }
}

/// What the editor must write for a new value replacing one of `style`:
/// a plain scalar that starts with a digit must be quoted.
fn expected_new(value: &str, style: Style) -> String {
    match style {
        Style::Plain if value.starts_with(|c: char| c.is_ascii_digit()) => format!("\"{value}\""),
        other => quote(value, other),
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: &'static str,
    style: Style,
    comment: Option<String>,
    blank_or_comment_before: Option<String>,
}

#[derive(Debug, Clone)]
struct Manifest {
    crlf: bool,
    final_newline: bool,
    indent: usize,
    before_docs: usize,
    after_docs: usize,
    entries: Vec<Entry>,
    has_digest: bool,
    remove_digest: bool,
    spec_after: bool,
}

fn comment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("# plain comment".to_string()),
        Just("# version: 1.0 — looks like a key".to_string()),
        Just("#no-space 'quoted' \"dq\"".to_string()),
        "# [a-z: ]{0,12}".prop_map(|s| s),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![Just(Style::Plain), Just(Style::Single), Just(Style::Double)]
}

fn entry(key: &'static str) -> impl Strategy<Value = Entry> {
    (
        style(),
        proptest::option::of(comment()),
        proptest::option::of(prop_oneof![Just(String::new()), comment()]),
    )
        .prop_map(move |(style, comment, blank_or_comment_before)| Entry {
            key,
            style,
            comment,
            blank_or_comment_before,
        })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(2usize), Just(4usize)],
        0..3usize,
        0..3usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        (
            entry("version"),
            entry("uri"),
            entry("format"),
            entry("sha256"),
        ),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            |(
                crlf,
                final_newline,
                indent,
                before_docs,
                after_docs,
                has_digest,
                remove,
                spec_after,
                entries,
                rotation,
            )| {
                let (v, u, f, s) = entries;
                let mut entries = vec![v, u, f];
                if has_digest {
                    entries.push(s);
                }
                let n = entries.len();
                entries.rotate_left(rotation.index(n));
                Manifest {
                    crlf,
                    final_newline,
                    indent,
                    before_docs,
                    after_docs,
                    entries,
                    has_digest,
                    remove_digest: remove && has_digest,
                    spec_after,
                }
            },
        )
}

const OTHER_DOC: &str = "# another object\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels: &l {a: \"1\"}\ndata:\n  version: \"1.0\"   # not ours\n  copy: *l\n";
const OTHER_MODEL: &str = "apiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata:\n  name: other\nspec:\n  model:\n    version: v1\n    uri: s3://x\n";

/// Builds (input, expected output) line by line.
fn render(m: &Manifest) -> (String, String, Desired) {
    let mut input: Vec<String> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    let both = |line: String, input: &mut Vec<String>, expected: &mut Vec<String>| {
        input.push(line.clone());
        expected.push(line);
    };
    for i in 0..m.before_docs {
        for line in (if i % 2 == 0 { OTHER_DOC } else { OTHER_MODEL }).lines() {
            both(line.to_string(), &mut input, &mut expected);
        }
        both("---".into(), &mut input, &mut expected);
    }
    for line in [
        "apiVersion: mlctl.io/v1alpha1",
        "kind: RankingModel",
        "metadata:",
    ] {
        both(line.into(), &mut input, &mut expected);
    }
    let pad = " ".repeat(m.indent);
    both(
        format!("{pad}name: search-ranker"),
        &mut input,
        &mut expected,
    );
    both("spec:".into(), &mut input, &mut expected);
    both(format!("{pad}model:"), &mut input, &mut expected);
    let inner = " ".repeat(2 * m.indent);
    let last = m.entries.len() - 1;
    for (i, e) in m.entries.iter().enumerate() {
        if let Some(extra) = &e.blank_or_comment_before {
            let line = if extra.is_empty() {
                String::new()
            } else {
                format!("{inner}{extra}")
            };
            both(line, &mut input, &mut expected);
        }
        let (old, new) = match e.key {
            "version" => ("2026-11-20.3", Some(NEW_VERSION)),
            "uri" => ("s3://models/ranker/2026-11-20.3/model.txt", Some(NEW_URI)),
            "sha256" => ("0000", (!m.remove_digest).then_some(NEW_DIGEST)),
            _ => ("lightgbm", None),
        };
        let tail = e
            .comment
            .as_ref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        input.push(format!("{inner}{}: {}{tail}", e.key, quote(old, e.style)));
        match (e.key, new) {
            ("sha256", None) => {}
            (_, Some(new)) => expected.push(format!(
                "{inner}{}: {}{tail}",
                e.key,
                expected_new(new, e.style)
            )),
            (_, None) => expected.push(format!("{inner}{}: {}{tail}", e.key, quote(old, e.style))),
        }
        if i == last && !m.has_digest {
            expected.push(format!("{inner}sha256: \"{NEW_DIGEST}\""));
        }
    }
    if m.spec_after {
        both(
            format!("{pad}replicas: 3  # after the model"),
            &mut input,
            &mut expected,
        );
    }
    for i in 0..m.after_docs {
        both("---".into(), &mut input, &mut expected);
        for line in (if i % 2 == 0 { OTHER_MODEL } else { OTHER_DOC }).lines() {
            both(line.to_string(), &mut input, &mut expected);
        }
    }
    let eol = if m.crlf { "\r\n" } else { "\n" };
    let join = |lines: &[String]| {
        let mut text = lines.join(eol);
        if m.final_newline {
            text.push_str(eol);
        }
        text
    };
    let desired = Desired {
        version: NEW_VERSION.into(),
        uri: NEW_URI.into(),
        sha256: if m.remove_digest {
            DigestChange::Remove
        } else {
            DigestChange::Set(NEW_DIGEST.into())
        },
    };
    (join(&input), join(&expected), desired)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn only_the_target_values_change(m in manifest()) {
        let (input, expected, desired) = render(&m);
        let edit = edit_model(&input, "search-ranker", &desired)
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{input}")))?;
        prop_assert_eq!(&edit.text, &expected, "input:\n{}", input);
        let again = edit_model(&edit.text, "search-ranker", &desired).unwrap();
        prop_assert_eq!(again.text, edit.text);
    }
}
