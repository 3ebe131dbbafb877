//! Lossless editing of a RankingModel manifest: locate `spec.model.{version,uri,sha256}`
//! with a span-reporting YAML parser, splice new bytes into exactly those ranges, then
//! re-parse the result with a second, independent parser (libyaml through serde_yaml_ng)
//! and check that nothing but the intended values changed. Anything that cannot be edited
//! that way (aliases, tags, block scalars, flow-style insertions…) is refused, never reformatted.

mod scalar;
mod tree;
mod verify;

use std::ops::Range;

use granit_parser::ScalarStyle;
use serde::{Deserialize, Serialize};

use tree::{Map, Node, Scalar};

/// The kind this editor changes.
pub const KIND: &str = "RankingModel";

/// What `spec.model` points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub version: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What to do with `spec.model.sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestChange {
    /// Set (replace or insert) the digest.
    Set(String),
    /// Remove the key if present.
    Remove,
    /// Not given: allowed only when the manifest has no digest (a stale digest would make
    /// the init container reject the new artifact).
    Unspecified,
}

/// The desired `spec.model` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub version: String,
    pub uri: String,
    pub sha256: DigestChange,
}

impl Desired {
    /// True when `current` already is what we want.
    pub fn is_satisfied_by(&self, current: &ModelRef) -> bool {
        let digest_ok = match &self.sha256 {
            DigestChange::Set(digest) => current.sha256.as_deref() == Some(digest.as_str()),
            DigestChange::Remove | DigestChange::Unspecified => current.sha256.is_none(),
        };
        current.version == self.version && current.uri == self.uri && digest_ok
    }
}

/// The result of an edit: the values before, and the new file text (equal to the input
/// when nothing needed to change).
#[derive(Debug, Clone)]
pub struct Edit {
    pub before: ModelRef,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("the file is not valid YAML: {0}")]
    Parse(String),
    #[error("the manifest is refused: {0}")]
    Limit(#[from] crate::yaml_limits::YamlLimitError),
    #[error("no {KIND} named {name:?} in the file (found: {found})")]
    NotFound { name: String, found: String },
    #[error("{count} {KIND} documents are named {name:?}; refusing to guess which one to edit")]
    Ambiguous { name: String, count: usize },
    #[error("{path} is missing in {KIND} {name:?}")]
    Missing { name: String, path: &'static str },
    #[error("cannot edit {path} safely: {reason}; edit it by hand or simplify the YAML")]
    Unsafe { path: &'static str, reason: String },
    #[error(
        "the manifest pins spec.model.sha256 but no new digest was given; a stale digest would make \
         the new artifact fail verification. Pass --sha256 DIGEST, or --no-sha256 to remove it"
    )]
    StaleDigest,
    #[error("internal check failed after editing (the file was not changed): {0}")]
    Verification(String),
}

/// Reads the current `spec.model` of the RankingModel `name`.
pub fn read_model(text: &str, name: &str) -> Result<ModelRef, EditError> {
    let docs = tree::parse_documents(text)?;
    let model = find_model(&docs, name)?;
    current_values(model, name)
}

/// Changes `spec.model` of the RankingModel `name` to `desired`, touching no other byte.
pub fn edit_model(text: &str, name: &str, desired: &Desired) -> Result<Edit, EditError> {
    let docs = tree::parse_documents(text)?;
    let model = find_model(&docs, name)?;
    let before = current_values(model, name)?;
    if desired.is_satisfied_by(&before) {
        return Ok(Edit {
            before,
            text: text.to_string(),
        });
    }
    let mut splices: Vec<(Range<usize>, String)> = Vec::new();
    for (key, path, value) in [
        ("version", "spec.model.version", &desired.version),
        ("uri", "spec.model.uri", &desired.uri),
    ] {
        let scalar = editable_scalar(text, model, key, path)?.ok_or(EditError::Missing {
            name: name.to_string(),
            path,
        })?;
        if &scalar.value != value {
            splices.push(replace(scalar, value, model.flow));
        }
    }
    let digest = editable_scalar(text, model, "sha256", "spec.model.sha256")?;
    match (&desired.sha256, digest) {
        (DigestChange::Set(new), Some(old)) if &old.value != new => {
            splices.push(replace(old, new, model.flow));
        }
        (DigestChange::Set(_), Some(_)) | (DigestChange::Remove, None) => {}
        (DigestChange::Set(new), None) => splices.push(insert_digest(text, model, new)?),
        (DigestChange::Remove, Some(_)) => splices.push(remove_digest(text, model)?),
        (DigestChange::Unspecified, Some(_)) => return Err(EditError::StaleDigest),
        (DigestChange::Unspecified, None) => {}
    }
    splices.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = text.to_string();
    for (range, replacement) in splices {
        out.replace_range(range, &replacement);
    }
    verify::same_except_model(text, &out, name, desired)?;
    let after = read_model(&out, name)?;
    if !desired.is_satisfied_by(&after) {
        return Err(EditError::Verification(format!(
            "re-reading the edited file gave {after:?}"
        )));
    }
    Ok(Edit { before, text: out })
}

fn find_model<'a>(docs: &'a [Node], name: &str) -> Result<&'a Map, EditError> {
    let mut matches = Vec::new();
    let mut others = Vec::new();
    for root in docs.iter().filter_map(Node::as_map) {
        if root.get("kind").and_then(Node::as_str) != Some(KIND) {
            continue;
        }
        let doc_name = root
            .get("metadata")
            .and_then(Node::as_map)
            .and_then(|metadata| metadata.get("name"))
            .and_then(Node::as_str);
        if doc_name == Some(name) {
            matches.push(root);
        } else {
            others.push(doc_name.unwrap_or("<unnamed>").to_string());
        }
    }
    let root = match matches.as_slice() {
        [root] => *root,
        [] => {
            return Err(EditError::NotFound {
                name: name.to_string(),
                found: if others.is_empty() {
                    format!("no {KIND}")
                } else {
                    others.join(", ")
                },
            });
        }
        _ => {
            return Err(EditError::Ambiguous {
                name: name.to_string(),
                count: matches.len(),
            });
        }
    };
    let missing = |path| EditError::Missing {
        name: name.to_string(),
        path,
    };
    let spec = unique(root, "spec", "spec")?.ok_or_else(|| missing("spec"))?;
    let spec = mapping(spec, "spec")?;
    let model = unique(spec, "model", "spec.model")?.ok_or_else(|| missing("spec.model"))?;
    mapping(model, "spec.model")
}

fn mapping<'a>(node: &'a Node, path: &'static str) -> Result<&'a Map, EditError> {
    match node {
        Node::Map(map) => Ok(map),
        Node::Alias => Err(unsafe_edit(path, "it is an alias (*anchor)")),
        _ => Err(unsafe_edit(path, "it is not a mapping")),
    }
}

fn unique<'a>(map: &'a Map, key: &str, path: &'static str) -> Result<Option<&'a Node>, EditError> {
    let mut entries = map.entries_for(key);
    let first = entries.next().map(|(_, value)| value);
    if entries.next().is_some() {
        return Err(unsafe_edit(path, "the key appears twice"));
    }
    Ok(first)
}

fn unsafe_edit(path: &'static str, reason: &str) -> EditError {
    EditError::Unsafe {
        path,
        reason: reason.to_string(),
    }
}

fn current_values(model: &Map, name: &str) -> Result<ModelRef, EditError> {
    let read = |key: &str, path: &'static str| -> Result<Option<String>, EditError> {
        match unique(model, key, path)? {
            None => Ok(None),
            Some(Node::Scalar(scalar)) => Ok(Some(scalar.value.clone())),
            Some(_) => Err(unsafe_edit(path, "it is not a scalar")),
        }
    };
    let missing = |path| EditError::Missing {
        name: name.to_string(),
        path,
    };
    Ok(ModelRef {
        version: read("version", "spec.model.version")?
            .ok_or_else(|| missing("spec.model.version"))?,
        uri: read("uri", "spec.model.uri")?.ok_or_else(|| missing("spec.model.uri"))?,
        sha256: read("sha256", "spec.model.sha256")?,
    })
}

/// The scalar under `key`, checked to be one whose bytes we can replace in place.
fn editable_scalar<'a>(
    text: &str,
    model: &'a Map,
    key: &str,
    path: &'static str,
) -> Result<Option<&'a Scalar>, EditError> {
    let scalar = match unique(model, key, path)? {
        None => return Ok(None),
        Some(Node::Scalar(scalar)) => scalar,
        Some(Node::Alias) => return Err(unsafe_edit(path, "it is an alias (*anchor)")),
        Some(_) => return Err(unsafe_edit(path, "it is not a scalar")),
    };
    if scalar.anchored {
        return Err(unsafe_edit(
            path,
            "it carries an anchor (&name) that other nodes may alias",
        ));
    }
    if scalar.tagged {
        return Err(unsafe_edit(path, "it carries an explicit tag"));
    }
    let raw = text
        .get(scalar.bytes.clone())
        .ok_or_else(|| unsafe_edit(path, "the parser reported an invalid position"))?;
    if raw.contains(['\n', '\r']) {
        return Err(unsafe_edit(path, "the value spans several lines"));
    }
    let span_ok = match scalar.style {
        ScalarStyle::Plain => raw == scalar.value,
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let quote = if scalar.style == ScalarStyle::SingleQuoted {
                '\''
            } else {
                '"'
            };
            raw.len() >= 2
                && raw.starts_with(quote)
                && raw.ends_with(quote)
                && serde_yaml_ng::from_str::<String>(raw).ok().as_deref()
                    == Some(scalar.value.as_str())
        }
        _ => return Err(unsafe_edit(path, "it is a block scalar (| or >)")),
    };
    if !span_ok {
        return Err(unsafe_edit(
            path,
            "the value's position in the file could not be confirmed",
        ));
    }
    Ok(Some(scalar))
}

fn replace(old: &Scalar, new: &str, in_flow: bool) -> (Range<usize>, String) {
    (old.bytes.clone(), scalar::render(new, old.style, in_flow))
}

/// Start of the line holding `pos`, and the start of the next line (or the end of text).
fn line_bounds(text: &str, pos: usize) -> (usize, Option<usize>) {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let next = text[pos..].find('\n').map(|i| pos + i + 1);
    (start, next)
}

/// True when only blanks or a comment follow `pos` on its line.
fn rest_of_line_is_blank_or_comment(text: &str, pos: usize) -> bool {
    let (_, next) = line_bounds(text, pos);
    let rest = text[pos..next.unwrap_or(text.len())].trim();
    rest.is_empty() || rest.starts_with('#')
}

/// The line ending used by the line holding `pos` (or by the file, for its last line).
fn line_ending_at(text: &str, pos: usize) -> &'static str {
    let (_, next) = line_bounds(text, pos);
    let probe = next.map_or_else(|| text.find('\n').map(|i| i + 1), Some);
    match probe {
        Some(end) if end >= 2 && text.as_bytes()[end - 2] == b'\r' => "\r\n",
        _ => "\n",
    }
}

const DIGEST_PATH: &str = "spec.model.sha256";

/// Inserts `sha256: "…"` on its own line after the last simple entry of `spec.model`,
/// indented like the sibling keys.
fn insert_digest(
    text: &str,
    model: &Map,
    digest: &str,
) -> Result<(Range<usize>, String), EditError> {
    if model.flow {
        return Err(unsafe_edit(
            DIGEST_PATH,
            "adding a key to a flow-style mapping ({…}) would need reformatting",
        ));
    }
    let simple_entry = |(key, value): &(Node, Node)| match (key, value) {
        (Node::Scalar(key), Node::Scalar(value))
            if !text[key.bytes.start..value.bytes.end].contains('\n')
                && matches!(
                    value.style,
                    ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                )
                && rest_of_line_is_blank_or_comment(text, value.bytes.end) =>
        {
            Some((key.bytes.start, value.bytes.end))
        }
        _ => None,
    };
    let anchor = model
        .entries
        .last()
        .and_then(simple_entry)
        .or_else(|| model.entries_for("uri").next().and_then(simple_entry))
        .ok_or_else(|| unsafe_edit(DIGEST_PATH, "found no single-line entry to insert it after"))?;
    let (key_start, value_end) = anchor;
    let (line_start, _) = line_bounds(text, key_start);
    let prefix = &text[line_start..key_start];
    if !prefix.chars().all(|c| c == ' ' || c == '-') {
        return Err(unsafe_edit(
            DIGEST_PATH,
            "the sibling keys' indentation is unusual",
        ));
    }
    let indent = " ".repeat(prefix.chars().count());
    let eol = line_ending_at(text, value_end);
    let entry = format!("{indent}sha256: {}", scalar::double_quoted(digest));
    Ok(match line_bounds(text, value_end).1 {
        Some(next) => (next..next, format!("{entry}{eol}")),
        None => (text.len()..text.len(), format!("{eol}{entry}")),
    })
}

/// Removes the whole `sha256: …` line (with its comment).
fn remove_digest(text: &str, model: &Map) -> Result<(Range<usize>, String), EditError> {
    if model.flow {
        return Err(unsafe_edit(
            DIGEST_PATH,
            "removing a key from a flow-style mapping ({…}) would need reformatting",
        ));
    }
    let Some((Node::Scalar(key), Node::Scalar(value))) = model.entries_for("sha256").next() else {
        return Err(unsafe_edit(
            DIGEST_PATH,
            "it is not a plain key: value pair",
        ));
    };
    let (line_start, next_line) = line_bounds(text, key.bytes.start);
    let own_line = text[line_start..key.bytes.start].chars().all(|c| c == ' ');
    let one_line = !text[key.bytes.start..value.bytes.end].contains('\n');
    if !own_line || !one_line || !rest_of_line_is_blank_or_comment(text, value.bytes.end) {
        return Err(unsafe_edit(
            DIGEST_PATH,
            "the key does not sit alone on its own line",
        ));
    }
    let end = next_line.unwrap_or(text.len());
    // On the last line without a newline, take the preceding line break instead.
    let start = if next_line.is_none() {
        text[..line_start]
            .strip_suffix("\r\n")
            .or_else(|| text[..line_start].strip_suffix('\n'))
            .map_or(line_start, str::len)
    } else {
        line_start
    };
    Ok((start..end, String::new()))
}

#[cfg(test)]
mod tests;
