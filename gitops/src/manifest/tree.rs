//! A minimal node tree with byte spans, built from granit-parser's event stream.
//! It is only used to *locate* bytes; the file is never re-emitted from it.

use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};

use super::EditError;

#[derive(Debug)]
pub(crate) enum Node {
    Scalar(Scalar),
    Map(Map),
    Seq,
    Alias,
}

#[derive(Debug)]
pub(crate) struct Scalar {
    pub value: String,
    pub style: ScalarStyle,
    pub anchored: bool,
    pub tagged: bool,
    pub bytes: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct Map {
    pub flow: bool,
    pub entries: Vec<(Node, Node)>,
}

impl Node {
    pub(crate) fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(map) => Some(map),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(scalar) => Some(&scalar.value),
            _ => None,
        }
    }
}

impl Map {
    /// All entries whose key is the plain string `key` (more than one means a duplicate key).
    pub(crate) fn entries_for<'a, 'k>(
        &'a self,
        key: &'k str,
    ) -> impl Iterator<Item = &'a (Node, Node)> + use<'a, 'k> {
        self.entries
            .iter()
            .filter(move |(k, _)| k.as_str() == Some(key))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entries_for(key).next().map(|(_, v)| v)
    }
}

/// Parses every document of `text` into a node tree (one root per document),
/// after checking it against the size and alias-expansion limits: the check
/// after the edit loads the whole file with libyaml, which expands aliases.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, EditError> {
    crate::yaml_limits::DEFAULT_LIMITS.check(text)?;
    let mut events = Parser::new_from_str(text).keep_tags(true).filter(|event| {
        // Comments are presentation only; they never move a span we edit.
        !matches!(event, Ok((Event::Comment(..), _)))
    });
    let mut docs = Vec::new();
    while let Some((event, _)) = next_event(&mut events)? {
        match event {
            Event::DocumentStart(..) => {
                let Some((event, span)) = next_event(&mut events)? else {
                    return Err(parse_error("document ends early"));
                };
                if matches!(event, Event::DocumentEnd) {
                    continue;
                }
                docs.push(build_node(event, span, &mut events)?);
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    Ok(docs)
}

type EventResult<'a> = Result<(Event<'a>, Span), granit_parser::ScanError>;

fn next_event<'a>(
    events: &mut impl Iterator<Item = EventResult<'a>>,
) -> Result<Option<(Event<'a>, Span)>, EditError> {
    match events.next() {
        None => Ok(None),
        Some(Ok(pair)) => Ok(Some(pair)),
        Some(Err(error)) => Err(EditError::Parse(error.to_string())),
    }
}

fn parse_error(message: &str) -> EditError {
    EditError::Parse(message.to_string())
}

fn build_node<'a>(
    event: Event<'a>,
    span: Span,
    events: &mut impl Iterator<Item = EventResult<'a>>,
) -> Result<Node, EditError> {
    match event {
        Event::Scalar(value, style, anchor, tag) => {
            let bytes = span
                .byte_range()
                .ok_or_else(|| parse_error("the parser gave no byte offsets"))?;
            Ok(Node::Scalar(Scalar {
                value: value.into_owned(),
                style,
                anchored: anchor != 0,
                tagged: tag.is_some(),
                bytes,
            }))
        }
        Event::Alias(_) | Event::UnresolvedAlias(_) => Ok(Node::Alias),
        Event::MappingStart(style, _, _) => {
            let mut entries = Vec::new();
            loop {
                let Some((event, span)) = next_event(events)? else {
                    return Err(parse_error("mapping not closed"));
                };
                if matches!(event, Event::MappingEnd) {
                    break;
                }
                let key = build_node(event, span, events)?;
                let Some((event, span)) = next_event(events)? else {
                    return Err(parse_error("mapping key without value"));
                };
                let value = build_node(event, span, events)?;
                entries.push((key, value));
            }
            Ok(Node::Map(Map {
                flow: style == StructureStyle::Flow,
                entries,
            }))
        }
        Event::SequenceStart(..) => {
            loop {
                let Some((event, span)) = next_event(events)? else {
                    return Err(parse_error("sequence not closed"));
                };
                if matches!(event, Event::SequenceEnd) {
                    break;
                }
                build_node(event, span, events)?;
            }
            Ok(Node::Seq)
        }
        other => Err(EditError::Parse(format!("unexpected YAML event {other:?}"))),
    }
}
