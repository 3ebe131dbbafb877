//! Bounds on untrusted YAML before anything builds values from it. An alias
//! expands to a copy of its anchor's node, so a few hundred bytes ("billion
//! laughs") become billions of nodes in any loader that builds values
//! (serde_yaml_ng's own repetition limit counts alias jumps, not the nodes
//! each jump copies, so a quadratic document still gets through). This pass
//! reads the event stream once, counts the nodes every document expands to,
//! and stops at the first limit it reaches. `mlctl lint` and the GitOps
//! manifest editor run it first.

use granit_parser::{Event, Parser};

/// Input size and expanded node count allowed in one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// The largest input, in bytes.
    pub max_bytes: usize,
    /// The most nodes (scalars, mappings, sequences) of all documents of the
    /// input together, with every alias counted as the node it copies.
    pub max_nodes: u64,
}

/// Generous for manifests (a Kubernetes object is at most ~1.5 MiB; 8 MiB
/// of alias-free YAML has fewer than 5 million nodes), small enough that
/// loading never takes more than a second or two and a few hundred MiB.
pub const DEFAULT_LIMITS: YamlLimits = YamlLimits {
    max_bytes: 8 * 1024 * 1024,
    max_nodes: 5_000_000,
};

/// An input beyond a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimitError {
    #[error("the input has {bytes} bytes, more than the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "the YAML expands to more than {limit} nodes once its aliases (*name) are expanded \
         (document {document}, line {line}); refusing to load it (an alias bomb?)"
    )]
    TooManyNodes {
        limit: u64,
        /// 1-based index of the document where the limit was passed.
        document: usize,
        /// 1-based line where the limit was passed.
        line: usize,
    },
}

impl YamlLimits {
    /// Checks `text` against the limits. A syntax error ends the count
    /// without an error: the loader that runs next reports it, with its line.
    pub fn check(&self, text: &str) -> Result<(), YamlLimitError> {
        if text.len() > self.max_bytes {
            return Err(YamlLimitError::TooLarge {
                bytes: text.len(),
                limit: self.max_bytes,
            });
        }
        let mut count = NodeCount::default();
        for (event, span) in Parser::new_from_str(text).map_while(Result::ok) {
            count.event(&event);
            if count.total > self.max_nodes {
                return Err(YamlLimitError::TooManyNodes {
                    limit: self.max_nodes,
                    document: count.documents,
                    line: span.start.line(),
                });
            }
        }
        Ok(())
    }
}

/// The running count of expanded nodes.
#[derive(Debug, Default)]
struct NodeCount {
    /// Expanded nodes of all documents so far (saturating).
    total: u64,
    documents: usize,
    /// Open collections: (anchor id or 0, expanded size so far).
    open: Vec<(usize, u64)>,
    /// Expanded size of each anchored node of the current document.
    anchors: std::collections::HashMap<usize, u64>,
}

impl NodeCount {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                self.anchors.clear();
                self.open.clear();
            }
            Event::Scalar(_, _, anchor, _) => self.node(*anchor, 1),
            Event::Alias(id) => {
                let size = self.anchors.get(id).copied().unwrap_or(1);
                self.node(0, size);
            }
            Event::UnresolvedAlias(_) => self.node(0, 1),
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                self.total = self.total.saturating_add(1);
                self.open.push((*anchor, 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // Its nodes were counted as they came; it only adds its size
                // to its parent and, when anchored, to its aliases.
                if let Some((anchor, size)) = self.open.pop() {
                    self.finish(anchor, size);
                }
            }
            _ => {}
        }
    }

    /// A scalar or an alias: `size` new nodes.
    fn node(&mut self, anchor: usize, size: u64) {
        self.total = self.total.saturating_add(size);
        self.finish(anchor, size);
    }

    /// A finished node of `size` expanded nodes: it counts towards the
    /// collection it is in and, when anchored, every later alias of it.
    fn finish(&mut self, anchor: usize, size: u64) {
        if anchor != 0 {
            self.anchors.insert(anchor, size);
        }
        if let Some((_, parent)) = self.open.last_mut() {
            *parent = parent.saturating_add(size);
        }
    }
}

/// A billion-laughs document: `levels` levels of `width` aliases of the
/// level below, each expanding to `width^levels` nodes.
#[cfg(test)]
pub(crate) fn alias_bomb(levels: usize, width: usize) -> String {
    let mut text = String::from("a0: &a0 lol\n");
    for level in 1..=levels {
        let aliases = vec![format!("*a{}", level - 1); width].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
    }
    text
}

/// One anchored list of `n` scalars aliased `n` times: n² nodes from 4n
/// bytes, with only n alias jumps (below serde_yaml_ng's repetition limit).
#[cfg(test)]
pub(crate) fn quadratic_bomb(n: usize) -> String {
    let items = vec!["x"; n].join(",");
    let aliases = vec!["*l"; n].join(",");
    format!("l: &l [{items}]\nm: [{aliases}]\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_nodes: u64) -> YamlLimits {
        YamlLimits {
            max_bytes: 1 << 20,
            max_nodes,
        }
    }

    #[test]
    fn nodes_are_counted_with_aliases_expanded() {
        let count = |text: &str| {
            let mut count = NodeCount::default();
            for (event, _) in Parser::new_from_str(text).map_while(Result::ok) {
                count.event(&event);
            }
            count.total
        };
        // A mapping with two entries: 1 + 2 keys + 2 values.
        assert_eq!(count("a: 1\nb: 2\n"), 5);
        // The alias copies the 3 nodes of [x, y]: 1 + (1 + 3) + (1 + 3).
        assert_eq!(count("a: &s [x, y]\nb: *s\n"), 9);
        // Documents add up; anchors do not cross them.
        assert_eq!(count("a: 1\n---\nb: 2\n"), 6);
        // 9 levels of 9 aliases: 9^9 nodes at the last level alone.
        assert!(count(&alias_bomb(9, 9)) > 387_000_000);
    }

    #[test]
    fn an_alias_bomb_stops_at_the_node_limit() {
        let err = limits(100_000).check(&alias_bomb(9, 9)).unwrap_err();
        let YamlLimitError::TooManyNodes {
            limit,
            document,
            line,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((limit, document), (100_000, 1));
        // Level 6 is the first past 100 000 nodes (9^6 = 531 441).
        assert_eq!(line, 7);
        assert!(err.to_string().contains("more than 100000 nodes"), "{err}");
    }

    #[test]
    fn a_quadratic_document_under_the_alias_jump_limit_is_caught_too() {
        // 4 million nodes from 16 KB.
        assert!(matches!(
            limits(1_000_000).check(&quadratic_bomb(2000)),
            Err(YamlLimitError::TooManyNodes { .. })
        ));
    }

    #[test]
    fn large_inputs_are_refused_before_parsing() {
        let text = "a: 1\n".repeat(1000);
        let small = YamlLimits {
            max_bytes: 100,
            max_nodes: 10,
        };
        assert_eq!(
            small.check(&text),
            Err(YamlLimitError::TooLarge {
                bytes: 5000,
                limit: 100
            })
        );
    }

    #[test]
    fn ordinary_manifests_and_syntax_errors_pass() {
        assert_eq!(
            DEFAULT_LIMITS.check("a: &x {b: 1}\nc: *x\n---\nd: [1, 2]\n"),
            Ok(())
        );
        assert_eq!(DEFAULT_LIMITS.check("key: [unclosed\n"), Ok(()));
    }
}
