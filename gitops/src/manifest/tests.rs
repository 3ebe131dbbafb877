use super::*;

fn desired(sha256: DigestChange) -> Desired {
    Desired {
        version: "v42".into(),
        uri: "s3://b/v42".into(),
        sha256,
    }
}

fn doc(model: &str) -> String {
    format!("kind: RankingModel\nmetadata:\n  name: m\nspec:\n  model:\n{model}")
}

fn refused(text: &str, change: DigestChange) -> EditError {
    edit_model(text, "m", &desired(change)).unwrap_err()
}

#[test]
fn an_alias_bomb_next_to_the_model_is_refused_before_loading() {
    // The check after the edit loads the whole file with libyaml: 9 million
    // nodes from 36 KB, unless the limits stop it first.
    let text = format!(
        "{}---\n{}",
        doc("    version: \"1\"\n    uri: s3://b/1\n"),
        crate::yaml_limits::quadratic_bomb(3000)
    );
    let err = refused(&text, DigestChange::Unspecified);
    assert!(matches!(err, EditError::Limit(_)), "{err:?}");
    assert!(err.to_string().contains("more than 5000000 nodes"), "{err}");
    assert!(matches!(read_model(&text, "m"), Err(EditError::Limit(_))));
}

#[test]
fn reads_current_values() {
    let text = doc("    version: \"1\"\n    uri: s3://b/1\n");
    let current = read_model(&text, "m").unwrap();
    assert_eq!(current.version, "1");
    assert_eq!(current.sha256, None);
}

#[test]
fn unchanged_when_already_at_target() {
    let text = doc("    version: v42 # c\n    uri: 's3://b/v42'\n");
    let edit = edit_model(&text, "m", &desired(DigestChange::Unspecified)).unwrap();
    assert_eq!(edit.text, text);
}

#[test]
fn refuses_alias_anchor_tag_block_and_multiline_values() {
    let cases = [
        "    version: *v\n    uri: x\n",
        "    version: &v v1\n    uri: x\n",
        "    version: !!str 1\n    uri: x\n",
        "    version: |\n      v1\n    uri: x\n",
        "    version: v1\n      continued\n    uri: x\n",
        "    version: v1\n    version: v2\n    uri: x\n",
    ];
    for (i, model) in cases.iter().enumerate() {
        let text = if i == 0 {
            format!("x: &v v0\n---\n{}", doc(model))
        } else {
            doc(model)
        };
        let error = refused(&text, DigestChange::Unspecified);
        assert!(
            matches!(
                error,
                EditError::Unsafe {
                    path: "spec.model.version",
                    ..
                } | EditError::Parse(_)
            ),
            "{model}: {error:?}"
        );
    }
}

#[test]
fn refuses_missing_ambiguous_and_stale_digest() {
    let text = doc("    version: v1\n    uri: x\n");
    assert!(matches!(
        edit_model(&text, "other", &desired(DigestChange::Unspecified)),
        Err(EditError::NotFound { .. })
    ));
    let twice = format!("{text}---\n{text}");
    assert!(matches!(
        refused(&twice, DigestChange::Unspecified),
        EditError::Ambiguous { count: 2, .. }
    ));
    let no_uri = doc("    version: v1\n");
    assert!(matches!(
        refused(&no_uri, DigestChange::Unspecified),
        EditError::Missing {
            path: "spec.model.uri",
            ..
        }
    ));
    let pinned = doc("    version: v1\n    uri: x\n    sha256: ab\n");
    assert_eq!(
        refused(&pinned, DigestChange::Unspecified),
        EditError::StaleDigest
    );
}

#[test]
fn refuses_digest_insert_or_removal_in_flow_style() {
    let flow = doc("    {version: v1, uri: x}\n");
    assert!(matches!(
        refused(&flow, DigestChange::Set("ab".into())),
        EditError::Unsafe { .. }
    ));
    let flow = doc("    {version: v1, uri: x, sha256: ab}\n");
    assert!(matches!(
        refused(&flow, DigestChange::Remove),
        EditError::Unsafe { .. }
    ));
}

#[test]
fn removes_digest_line_with_its_comment() {
    let text = doc("    version: v1\n    sha256: ab # old\n    uri: x\n");
    let edit = edit_model(&text, "m", &desired(DigestChange::Remove)).unwrap();
    assert_eq!(edit.text, doc("    version: v42\n    uri: s3://b/v42\n"));
    let last = doc("    version: v1\n    uri: x\n    sha256: ab");
    let edit = edit_model(&last, "m", &desired(DigestChange::Remove)).unwrap();
    assert_eq!(edit.text, doc("    version: v42\n    uri: s3://b/v42"));
}

#[test]
fn inserts_digest_after_the_last_entry() {
    let text = "kind: RankingModel\nmetadata: {name: m}\nspec:\n  model:\n    version: v1\n    uri: x\n  other: 1\n";
    let edit = edit_model(text, "m", &desired(DigestChange::Set("ab".into()))).unwrap();
    assert_eq!(
        edit.text,
        "kind: RankingModel\nmetadata: {name: m}\nspec:\n  model:\n    version: v42\n    uri: s3://b/v42\n    sha256: \"ab\"\n  other: 1\n"
    );
}
