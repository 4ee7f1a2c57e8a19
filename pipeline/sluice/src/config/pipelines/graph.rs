//! The graph of a configured pipeline: names checked, cycles refused, routes found.
//!
//! Every transform and sink names its `inputs`: sources or transforms. A point from a source
//! takes every route that leads from it to a sink, each route a chain of transforms, so a
//! source feeding two sinks sends each point to both (and its delivery is acked once both have
//! written it). Errors name the field they concern: `transforms.<name>.inputs` for an unknown
//! name or a cycle, `sinks.<name>.inputs` for a sink nobody feeds, `sources.<name>` for a
//! source nobody reads.

use std::collections::BTreeMap;

use sluice_normalise::Transform;

use super::{RawPipelines, field};

/// One way from a source to a sink.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Applied in order.
    pub transforms: Vec<Transform>,
    /// The sink's index in `PipelinesSettings::sinks`.
    pub sink: usize,
}

/// The routes of every source.
#[derive(Default)]
pub(super) struct Routes(BTreeMap<String, Vec<RouteSpec>>);

impl Routes {
    pub(super) fn of(&self, source: &str) -> Vec<RouteSpec> {
        self.0.get(source).cloned().unwrap_or_default()
    }
}

/// What a name in `inputs` can refer to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node<'a> {
    Source(&'a str),
    Transform(&'a str),
    Sink(&'a str, usize),
}

/// Checks the graph and finds its routes; `None` when it is not a valid graph.
pub(super) fn routes(
    raw: RawPipelines<'_>,
    transforms: &BTreeMap<&str, Transform>,
    fail: &mut impl FnMut(&str, String),
) -> Option<Routes> {
    let mut valid = true;
    for name in raw.transforms.keys() {
        if raw.sources.contains_key(name) {
            fail(
                &format!("transforms.{name}"),
                format!("the name `{name}` is also a source's; names must be unique"),
            );
            valid = false;
        }
    }
    for name in raw.sinks.keys() {
        if raw.sources.contains_key(name) || raw.transforms.contains_key(name) {
            fail(
                &format!("sinks.{name}"),
                format!(
                    "the name `{name}` is also a source's or transform's; names must be unique"
                ),
            );
            valid = false;
        }
    }

    // Who reads each source and transform.
    let mut readers: BTreeMap<&str, Vec<Node<'_>>> = BTreeMap::new();
    let consumers = raw
        .transforms
        .iter()
        .map(|(name, transform)| {
            (
                Node::Transform(name),
                "transforms",
                name,
                transform.inputs(),
            )
        })
        .chain(raw.sinks.iter().enumerate().map(|(index, (name, sink))| {
            (Node::Sink(name, index), "sinks", name, &sink.inputs[..])
        }));
    for (node, section, name, inputs) in consumers {
        if inputs.is_empty() {
            let what = if section == "sinks" {
                "a sink"
            } else {
                "a transform"
            };
            fail(
                &field(section, name, "inputs"),
                format!("{what} nobody feeds: name at least one source or transform"),
            );
            valid = false;
        }
        for input in inputs {
            if raw.sources.contains_key(input) || raw.transforms.contains_key(input) {
                readers.entry(input.as_str()).or_default().push(node);
            } else {
                let known: Vec<&str> = raw
                    .sources
                    .keys()
                    .chain(raw.transforms.keys())
                    .map(String::as_str)
                    .collect();
                fail(
                    &field(section, name, "inputs"),
                    format!(
                        "`{input}` is neither a source nor a transform (there are: {})",
                        known.join(", ")
                    ),
                );
                valid = false;
            }
        }
    }
    for name in raw.sources.keys() {
        if !readers.contains_key(name.as_str()) {
            fail(
                &format!("sources.{name}"),
                "a source nobody reads: name it in a transform's or sink's inputs".into(),
            );
            valid = false;
        }
    }
    for name in raw.transforms.keys() {
        if !readers.contains_key(name.as_str()) {
            fail(
                &format!("transforms.{name}"),
                "a transform nobody reads: name it in a transform's or sink's inputs".into(),
            );
            valid = false;
        }
    }
    if let Some(cycle) = find_cycle(raw, &readers) {
        fail(
            &field("transforms", cycle[0], "inputs"),
            format!("the transforms form a cycle: {}", cycle.join(" -> ")),
        );
        valid = false;
    }
    if !valid {
        return None;
    }

    let mut routes = Routes::default();
    for source in raw.sources.keys() {
        let mut found = Vec::new();
        walk(
            Node::Source(source),
            &readers,
            transforms,
            &mut Vec::new(),
            &mut found,
        );
        routes.0.insert(source.clone(), found);
    }
    Some(routes)
}

/// Every route from `node` to a sink, depth first. Only called on a graph without cycles.
fn walk<'a>(
    node: Node<'a>,
    readers: &BTreeMap<&str, Vec<Node<'a>>>,
    transforms: &BTreeMap<&str, Transform>,
    chain: &mut Vec<Transform>,
    found: &mut Vec<RouteSpec>,
) {
    let name = match node {
        Node::Sink(_, sink) => {
            found.push(RouteSpec {
                transforms: chain.clone(),
                sink,
            });
            return;
        }
        Node::Source(name) | Node::Transform(name) => name,
    };
    for &next in readers.get(name).into_iter().flatten() {
        let pushed = match next {
            Node::Transform(transform) => match transforms.get(transform) {
                Some(checked) => {
                    chain.push(checked.clone());
                    true
                }
                // A transform whose own settings failed was reported there.
                None => continue,
            },
            _ => false,
        };
        walk(next, readers, transforms, chain, found);
        if pushed {
            chain.pop();
        }
    }
}

/// A cycle among the transforms, as the names along it (the first repeated at the end).
fn find_cycle<'a>(
    raw: RawPipelines<'a>,
    readers: &BTreeMap<&str, Vec<Node<'a>>>,
) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        readers: &BTreeMap<&str, Vec<Node<'a>>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(name, Mark::OnPath);
        path.push(name);
        for next in readers.get(name).into_iter().flatten() {
            let Node::Transform(next) = *next else {
                continue;
            };
            match marks.get(next).copied().unwrap_or(Mark::Unvisited) {
                Mark::OnPath => {
                    let start = path.iter().position(|on| *on == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::Unvisited => {
                    if let Some(cycle) = visit(next, readers, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in raw.transforms.keys() {
        if marks.get(name.as_str()).copied().unwrap_or(Mark::Unvisited) == Mark::Unvisited
            && let Some(cycle) = visit(name, readers, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}
