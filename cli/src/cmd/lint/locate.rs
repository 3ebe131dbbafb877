//! Where a field of a YAML (or JSON) document sits: the line of its key, so
//! that `mlctl lint` can say `file:LINE:` as yamllint and compilers do.
//! serde_yaml_ng, which reads the values, keeps no positions; granit-parser's
//! events do, so this builds a tree of lines only, never of values.

use granit_parser::{Event, Parser, Span};

/// The shape of one document with the line of every key and list item.
#[derive(Debug)]
pub struct Document {
    /// The line the document's content starts on (1-based).
    line: usize,
    root: Node,
}

#[derive(Debug)]
enum Node {
    Leaf,
    Map(Vec<Entry>),
    /// Items with the line each starts on.
    Seq(Vec<(usize, Node)>),
}

#[derive(Debug)]
struct Entry {
    /// `None` for a key that is not a scalar (no field path can name it).
    key: Option<String>,
    /// The line of the key.
    line: usize,
    value: Node,
}

/// One step of a field path as the validator writes it: `spec.steps[0].x`
/// or `labels[mlctl.io/model]`.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Bracket(&'a str),
}

impl Document {
    /// The line of `field`'s key. A missing field (a required value) points at
    /// its nearest ancestor that is there (`model:` for a missing
    /// `spec.model.uri`), and a field with no ancestor in the document, or the
    /// whole object (`""`), at the document's first line.
    pub fn line_of(&self, field: &str) -> usize {
        self.find(field).unwrap_or(self.line)
    }

    fn find(&self, field: &str) -> Option<usize> {
        let mut node = &self.root;
        let mut line = None;
        for step in steps(field) {
            let found = match (node, step) {
                (Node::Map(entries), Step::Key(key) | Step::Bracket(key)) => entries
                    .iter()
                    .find(|e| e.key.as_deref() == Some(key))
                    .map(|e| (e.line, &e.value)),
                (Node::Seq(items), Step::Bracket(index)) => index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|(at, item)| (*at, item)),
                _ => None,
            };
            let Some((at, next)) = found else { break };
            line = Some(at);
            node = next;
        }
        line
    }
}

/// The documents of `text`, in the order serde_yaml_ng yields them (both
/// count an empty document after `---`). Parsing stops at a syntax error:
/// serde_yaml_ng reports that one, with its own line.
pub fn documents(text: &str) -> Vec<Document> {
    let mut events = Parser::new_from_str(text).map_while(Result::ok);
    let mut docs = Vec::new();
    while let Some((event, _)) = next(&mut events) {
        match event {
            Event::DocumentStart(..) => {
                let Some((event, span)) = next(&mut events) else {
                    break;
                };
                let line = span.start.line();
                if matches!(event, Event::DocumentEnd) {
                    docs.push(Document {
                        line,
                        root: Node::Leaf,
                    });
                    continue;
                }
                let Some(root) = node(event, &mut events) else {
                    break;
                };
                docs.push(Document { line, root });
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    docs
}

type Item<'a> = (Event<'a>, Span);

/// The next event that is, opens or closes a node or a document; comments
/// and anchors are neither.
fn next<'a>(events: &mut impl Iterator<Item = Item<'a>>) -> Option<Item<'a>> {
    events.find(|(event, _)| {
        matches!(
            event,
            Event::StreamEnd
                | Event::DocumentStart(..)
                | Event::DocumentEnd
                | Event::Alias(_)
                | Event::UnresolvedAlias(_)
                | Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd
        )
    })
}

/// The node `event` starts, reading its children; `None` when the stream
/// ends early or is malformed.
fn node<'a>(event: Event<'a>, events: &mut impl Iterator<Item = Item<'a>>) -> Option<Node> {
    match event {
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            loop {
                let (event, span) = next(events)?;
                if matches!(event, Event::MappingEnd) {
                    return Some(Node::Map(entries));
                }
                let key = match &event {
                    Event::Scalar(text, ..) => Some(text.to_string()),
                    _ => None,
                };
                node(event, events)?; // a complex key: read past it
                let (event, _) = next(events)?;
                let value = node(event, events)?;
                entries.push(Entry {
                    key,
                    line: span.start.line(),
                    value,
                });
            }
        }
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (event, span) = next(events)?;
                if matches!(event, Event::SequenceEnd) {
                    return Some(Node::Seq(items));
                }
                items.push((span.start.line(), node(event, events)?));
            }
        }
        Event::Scalar(..) | Event::Alias(_) | Event::UnresolvedAlias(_) => Some(Node::Leaf),
        _ => None,
    }
}

/// Splits a field path on the dots outside brackets, and brackets into steps
/// of their own: `a.b[0][k.x].c` is a, b, [0], [k.x], c.
fn steps(field: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    let mut rest = field;
    while !rest.is_empty() {
        if let Some(inside) = rest.strip_prefix('[') {
            let end = inside.find(']').unwrap_or(inside.len());
            out.push(Step::Bracket(&inside[..end]));
            rest = inside.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end > 0 {
                out.push(Step::Key(&rest[..end]));
            }
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "\
# a comment line
apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
  labels:
    mlctl.io/model: x   # a key with dots and a slash
spec:
  model:
    version: v1
  rollout:
    steps:
      - setWeight: 20
      - pause: {}
      -
        analysis:
          metrics: [err]
";

    fn one(text: &str) -> Document {
        let mut docs = documents(text);
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn block_style_keys_and_list_items() {
        let doc = one(BLOCK);
        for (field, line) in [
            ("kind", 3),
            ("metadata.name", 5),
            ("metadata.labels[mlctl.io/model]", 7),
            ("spec", 8),
            ("spec.model.version", 10),
            ("spec.rollout.steps", 12),
            ("spec.rollout.steps[0]", 13),
            ("spec.rollout.steps[1].pause", 14),
            ("spec.rollout.steps[2]", 16),
            ("spec.rollout.steps[2].analysis.metrics", 17),
            ("spec.rollout.steps[2].analysis.metrics[0]", 17),
        ] {
            assert_eq!(doc.line_of(field), line, "{field}");
        }
    }

    #[test]
    fn missing_fields_point_at_their_nearest_ancestor() {
        let doc = one(BLOCK);
        assert_eq!(doc.line_of(""), 2, "the whole object: the first line");
        assert_eq!(doc.line_of("status"), 2, "no ancestor: the first line");
        assert_eq!(doc.line_of("spec.model.uri"), 9, "model:");
        assert_eq!(doc.line_of("spec.rollout.steps[7]"), 12, "steps:");
        assert_eq!(doc.line_of("spec.model.version.deeper"), 10);
    }

    #[test]
    fn flow_style_and_json() {
        let flow = "apiVersion: mlctl.io/v1alpha1\nkind: RankingModel\nmetadata: {name: r}\nspec: {model: {version: v1,\n  uri: s3://m}, rollout: {steps: [\n    {setWeight: 20}, {pause: {}}]}}\n";
        let doc = one(flow);
        assert_eq!(doc.line_of("metadata.name"), 3);
        assert_eq!(doc.line_of("spec.model.version"), 4);
        assert_eq!(doc.line_of("spec.model.uri"), 5);
        assert_eq!(doc.line_of("spec.rollout.steps[1].pause"), 6);
        let json = "{\n  \"apiVersion\": \"mlctl.io/v1alpha1\",\n  \"spec\": {\n    \"replicas\": 3\n  }\n}\n";
        let doc = one(json);
        assert_eq!(doc.line_of("spec.replicas"), 4);
        assert_eq!(doc.line_of("spec.model"), 3, "missing: its parent spec");
        assert_eq!(doc.line_of("metadata"), 1);
    }

    #[test]
    fn documents_are_counted_as_serde_yaml_ng_counts_them() {
        let text = "---\na: 1\n---\n\n---\n# c\nb:\n  c: 2\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].line_of("a"), 2);
        assert_eq!(docs[2].line_of("b.c"), 8);
        assert_eq!(docs[2].line_of(""), 7);
        // An alias is a leaf: a path through it ends at the alias.
        let doc = one("x: &a {k: 1}\ny: *a\n");
        assert_eq!(doc.line_of("y"), 2);
        assert_eq!(doc.line_of("y.k"), 2);
    }

    #[test]
    fn a_syntax_error_ends_the_documents_read() {
        assert!(documents("a: [unclosed\n").is_empty());
    }

    #[test]
    fn paths_split_like_the_validator_writes_them() {
        assert_eq!(
            steps("a.b[0][k.x/y].c"),
            vec![
                Step::Key("a"),
                Step::Key("b"),
                Step::Bracket("0"),
                Step::Bracket("k.x/y"),
                Step::Key("c")
            ]
        );
        assert!(steps("").is_empty());
    }
}
