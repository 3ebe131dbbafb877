//! Loading an artifact: format detection and dispatch to the format's parser, plus
//! the one tree-assembly step every parser shares. The signatures here are the
//! contract the server, `predict` and the benchmarks are built against.

use super::{Ensemble, Node, Test, Tree};

/// The format named by `MODEL_FORMAT` / `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Detect from the content (also what `MODEL_FORMAT=custom` means).
    Auto,
    /// LightGBM text model.
    Lightgbm,
    /// XGBoost JSON or UBJSON model (told apart by content).
    Xgboost,
    /// ONNX tree ensemble.
    Onnx,
}

/// Why an artifact cannot be served. The message names the construct (objective,
/// field, operator, attribute) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a model of the expected format.
    #[error("not a {format} model: {reason}")]
    Malformed {
        /// The format that was tried.
        format: &'static str,
        /// What is wrong, with the line, field or offset.
        reason: String,
    },
    /// A well-formed model that uses something mlctl-ranker does not score; refused
    /// rather than scored wrongly.
    #[error("unsupported {format} model: {reason}")]
    Unsupported {
        /// The format.
        format: &'static str,
        /// What is unsupported.
        reason: String,
    },
    /// The content matches no known format (with `--format auto`).
    #[error("cannot detect the model format: {0}")]
    Unknown(String),
}

/// Parses an artifact into an ensemble, validated ([`Ensemble::validate`]).
pub fn load(bytes: &[u8], format: Format) -> Result<Ensemble, LoadError> {
    let format = match format {
        Format::Auto => detect(bytes)?,
        other => other,
    };
    let (ensemble, name) = match format {
        Format::Lightgbm => (super::lightgbm::parse(bytes)?, "lightgbm"),
        Format::Xgboost if is_ubjson(bytes) => (super::xgboost::parse_ubjson(bytes)?, "xgboost"),
        Format::Xgboost => (super::xgboost::parse_json(bytes)?, "xgboost"),
        Format::Onnx | Format::Auto => (super::onnx::parse(bytes)?, "onnx"),
    };
    // A parser that produced an ensemble breaking the evaluators' invariants has met
    // an artifact it misread; say so instead of serving it.
    ensemble.validate().map_err(|e| LoadError::Malformed {
        format: name,
        reason: e.0,
    })?;
    Ok(ensemble)
}

/// Tells the formats apart by their first bytes: each has a distinctive opening.
fn detect(bytes: &[u8]) -> Result<Format, LoadError> {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    if trimmed.starts_with("tree\n")
        || trimmed.starts_with("tree\r\n")
        || (trimmed.starts_with("tree") && text.contains("version=v"))
    {
        return Ok(Format::Lightgbm);
    }
    if trimmed.starts_with('{') && text.contains("\"learner\"") {
        return Ok(Format::Xgboost);
    }
    if is_ubjson(bytes) {
        return Ok(Format::Xgboost);
    }
    // ModelProto's field 1 is ir_version (varint: tag 0x08), which every exporter
    // sets and protobuf serialisers write first.
    if bytes.first() == Some(&0x08) {
        return Ok(Format::Onnx);
    }
    let shown: String = text.chars().take(16).collect();
    Err(LoadError::Unknown(format!(
        "the artifact starts with {shown:?}, which is none of a LightGBM text model \
         (\"tree\"), XGBoost JSON ({{\"learner\"…) or UBJSON, or an ONNX protobuf; \
         set --format/MODEL_FORMAT to the format it was saved in"
    )))
}

/// UBJSON objects start with `{` followed by a length marker for the first key
/// (XGBoost writes `L`, other writers `i`/`U`/`I`/`l`), never by a quote or space.
fn is_ubjson(bytes: &[u8]) -> bool {
    matches!(
        bytes,
        [b'{', b'i' | b'U' | b'I' | b'l' | b'L' | b'$' | b'#', ..]
    )
}

/// A node as a parser reads it: children are indices into the parser's own node
/// list, in whatever order the format stores them.
#[derive(Debug, Clone)]
pub(super) enum RawNode {
    /// A leaf and its value.
    Leaf(f64),
    /// An internal node.
    Split {
        feature: u32,
        test: Test,
        left: usize,
        right: usize,
    },
}

/// Renumbers a tree breadth-first from `root` so that children always come after
/// their parent (the invariant of [`Tree`]). Errors name the node that is out of
/// range or reached twice (a cycle or a shared subtree), which a format's own
/// numbering could otherwise hide.
pub(super) fn assemble(raw: &[RawNode], root: usize) -> Result<Tree, String> {
    if root >= raw.len() {
        return Err(format!(
            "root node {root} is beyond the tree's {} nodes",
            raw.len()
        ));
    }
    let mut seen = vec![false; raw.len()];
    let mut nodes = vec![Node::Leaf { value: 0.0 }];
    let mut queue = std::collections::VecDeque::from([(root, 0usize)]);
    seen[root] = true;
    while let Some((at, out)) = queue.pop_front() {
        match &raw[at] {
            RawNode::Leaf(value) => nodes[out] = Node::Leaf { value: *value },
            RawNode::Split {
                feature,
                test,
                left,
                right,
            } => {
                let mut children = [0u32; 2];
                for (slot, &child) in children.iter_mut().zip([left, right]) {
                    if child >= raw.len() {
                        return Err(format!(
                            "node {at} has child {child}, beyond the tree's {} nodes",
                            raw.len()
                        ));
                    }
                    if std::mem::replace(&mut seen[child], true) {
                        return Err(format!("node {child} is reached twice (from node {at})"));
                    }
                    *slot = u32::try_from(nodes.len())
                        .map_err(|_| "the tree has more than 2^32 nodes".to_string())?;
                    queue.push_back((child, nodes.len()));
                    nodes.push(Node::Leaf { value: 0.0 });
                }
                nodes[out] = Node::Split {
                    feature: *feature,
                    test: test.clone(),
                    left: children[0],
                    right: children[1],
                };
            }
        }
    }
    Ok(Tree { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Comparison;

    fn split(left: usize, right: usize) -> RawNode {
        RawNode::Split {
            feature: 0,
            test: Test::Numeric {
                threshold: 0.0,
                comparison: Comparison::Less,
                nan_left: true,
                zero_missing_left: None,
            },
            left,
            right,
        }
    }

    #[test]
    fn assemble_orders_children_after_parents() {
        // Children stored before their parent, as a format may do.
        let raw = vec![RawNode::Leaf(1.0), RawNode::Leaf(2.0), split(0, 1)];
        let tree = assemble(&raw, 2).unwrap();
        assert_eq!(tree.nodes.len(), 3);
        assert!(matches!(
            tree.nodes[0],
            Node::Split {
                left: 1,
                right: 2,
                ..
            }
        ));
        assert_eq!(tree.nodes[1], Node::Leaf { value: 1.0 });
    }

    #[test]
    fn assemble_rejects_cycles_and_out_of_range_children() {
        assert!(
            assemble(&[split(0, 1), RawNode::Leaf(0.0)], 0)
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            assemble(&[split(1, 5), RawNode::Leaf(0.0)], 0)
                .unwrap_err()
                .contains("beyond")
        );
        assert!(assemble(&[], 0).is_err());
    }

    #[test]
    fn detection_by_content() {
        assert_eq!(detect(b"tree\nversion=v4\n").unwrap(), Format::Lightgbm);
        assert_eq!(detect(b"{\"learner\": {}}").unwrap(), Format::Xgboost);
        assert_eq!(
            detect(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner").unwrap(),
            Format::Xgboost
        );
        assert_eq!(detect(b"\x08\x07\x12\x04onnx").unwrap(), Format::Onnx);
        let err = detect(b"hello world").unwrap_err().to_string();
        assert!(err.contains("MODEL_FORMAT"), "{err}");
        assert!(matches!(detect(b""), Err(LoadError::Unknown(_))));
    }
}
