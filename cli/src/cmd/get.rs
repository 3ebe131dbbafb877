//! `mlctl get rm|fp [NAME]`: a kubectl-style table whose columns are the
//! CRDs' own printer columns, or the objects as JSON, YAML or names.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, CustomResourceExt};
use mlctl_crds::{FeaturePipeline, RankingModel};

use crate::exit;
use crate::kube::{CliError, FEATURE_PIPELINE, KubeArgs, RANKING_MODEL, Resource, Target};

/// The kinds `get` knows, with the names kubectl accepts for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RankingModel,
    FeaturePipeline,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text {
            "rm" | "rankingmodel" | "rankingmodels" | "rankingmodels.mlctl.io" => {
                Ok(Kind::RankingModel)
            }
            "fp" | "featurepipeline" | "featurepipelines" | "featurepipelines.mlctl.io" => {
                Ok(Kind::FeaturePipeline)
            }
            other => Err(format!(
                "unknown kind {other:?}: use rm (rankingmodel) or fp (featurepipeline)"
            )),
        }
    }

    fn crd(self) -> CustomResourceDefinition {
        match self {
            Kind::RankingModel => RankingModel::crd(),
            Kind::FeaturePipeline => FeaturePipeline::crd(),
        }
    }

    fn api_resource(self) -> ApiResource {
        match self {
            Kind::RankingModel => ApiResource::erase::<RankingModel>(&()),
            Kind::FeaturePipeline => ApiResource::erase::<FeaturePipeline>(&()),
        }
    }

    pub fn resource(self) -> Resource {
        match self {
            Kind::RankingModel => RANKING_MODEL,
            Kind::FeaturePipeline => FEATURE_PIPELINE,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// More columns (the CRD's priority-1 printer columns).
    Wide,
    /// The objects as JSON (a v1 List for several).
    Json,
    /// The objects as YAML (a v1 List for several).
    Yaml,
    /// kind.group/name, one a line.
    Name,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// rm (rankingmodel, rankingmodels) or fp (featurepipeline, featurepipelines).
    #[arg(value_parser = Kind::parse, value_name = "KIND")]
    kind: Kind,
    /// One object; all of them without it.
    pub(super) name: Option<String>,
    /// Output format; a table without it.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
    /// List across all namespaces (adds a NAMESPACE column).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub(super) all_namespaces: bool,
    #[command(flatten)]
    pub(super) kube: KubeArgs,
}

pub async fn run(args: &GetArgs) -> Result<u8, CliError> {
    let (client, ns) = args.kube.client().await?;
    let ar = args.kind.api_resource();
    let resource = args.kind.resource();
    let objects = if let Some(name) = &args.name {
        let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
        let target = Target {
            verb: "get",
            resource,
            name: Some(name),
            namespace: Some(&ns),
        };
        vec![
            api.get(name)
                .await
                .map_err(|e| CliError::from_kube(e, &target))?,
        ]
    } else {
        let (api, scope): (Api<DynamicObject>, Option<&str>) = if args.all_namespaces {
            (Api::all_with(client, &ar), None)
        } else {
            (Api::namespaced_with(client, &ns, &ar), Some(&ns))
        };
        let target = Target {
            verb: "list",
            resource,
            name: None,
            namespace: scope,
        };
        let mut items = api
            .list(&ListParams::default())
            .await
            .map_err(|e| CliError::from_kube(e, &target))?
            .items;
        items.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        if items.is_empty() && args.output.is_none() {
            match scope {
                Some(ns) => eprintln!("No {} found in {ns} namespace.", resource.plural),
                None => eprintln!("No {} found.", resource.plural),
            }
            return Ok(exit::SUCCESS);
        }
        items
    };
    let values: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| serde_json::to_value(o).map_err(|e| CliError::Output(e.to_string())))
        .collect::<Result<_, _>>()?;
    let single = args.name.is_some();
    let text = render(
        args.kind,
        &values,
        args.output,
        args.all_namespaces,
        single,
        now(),
    )?;
    print!("{}", shown(&text, args.output));
    Ok(exit::SUCCESS)
}

/// What a table or a name list may print of remote text, escaped; JSON with
/// the controls serde_json leaves raw escaped; YAML as libyaml escaped it.
fn shown(text: &str, output: Option<Output>) -> std::borrow::Cow<'_, str> {
    use mlctl_gitops::terminal::{escape_controls, escape_json_controls};
    match output {
        Some(Output::Json) => escape_json_controls(text),
        Some(Output::Yaml) => std::borrow::Cow::Borrowed(text),
        _ => escape_controls(text),
    }
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Renders objects (as JSON values) in the chosen format.
pub fn render(
    kind: Kind,
    objects: &[serde_json::Value],
    output: Option<Output>,
    with_namespace: bool,
    single: bool,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<String, CliError> {
    let document = || {
        if single && objects.len() == 1 {
            objects[0].clone()
        } else {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}})
        }
    };
    match output {
        Some(Output::Json) => serde_json::to_string_pretty(&document())
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(e.to_string())),
        Some(Output::Yaml) => {
            serde_yaml_ng::to_string(&document()).map_err(|e| CliError::Output(e.to_string()))
        }
        Some(Output::Name) => {
            let resource = kind.resource();
            Ok(objects
                .iter()
                .map(|o| {
                    format!(
                        "{}.{}/{}\n",
                        resource.singular,
                        resource.group,
                        o.pointer("/metadata/name")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                    )
                })
                .collect())
        }
        None | Some(Output::Wide) => {
            let wide = output == Some(Output::Wide);
            Ok(table(kind, objects, wide, with_namespace, now))
        }
    }
}

/// The printer columns of the CRD's served version.
fn columns(kind: Kind, wide: bool) -> Vec<CustomResourceColumnDefinition> {
    kind.crd()
        .spec
        .versions
        .into_iter()
        .next()
        .and_then(|v| v.additional_printer_columns)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| wide || c.priority.unwrap_or(0) == 0)
        .collect()
}

fn table(
    kind: Kind,
    objects: &[serde_json::Value],
    wide: bool,
    with_namespace: bool,
    now: k8s_openapi::jiff::Timestamp,
) -> String {
    let columns = columns(kind, wide);
    let mut header = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".to_string());
    }
    header.push("NAME".to_string());
    header.extend(columns.iter().map(|c| c.name.to_uppercase()));
    let mut rows = vec![header];
    for object in objects {
        let mut row = Vec::new();
        if with_namespace {
            row.push(text_at(object, ".metadata.namespace"));
        }
        row.push(text_at(object, ".metadata.name"));
        let first = match kind {
            Kind::RankingModel => first_deployment_version(object),
            Kind::FeaturePipeline => None,
        };
        for column in &columns {
            if let Some(cell) = first.and_then(|v| first_deployment_cell(v, &column.json_path)) {
                row.push(cell);
                continue;
            }
            let cell = text_at(object, &column.json_path);
            row.push(if column.type_ == "date" {
                age(&cell, now)
            } else {
                cell
            });
        }
        rows.push(row);
    }
    format_rows(&rows)
}

/// The version a first deployment brings up (see `state::first_deployment`):
/// the operator tracks it as `status.canary` while nothing is stable yet.
fn first_deployment_version(object: &serde_json::Value) -> Option<&str> {
    let status = object.get("status")?;
    if status.get("stable").is_some_and(|s| !s.is_null()) {
        return None;
    }
    status.pointer("/canary/version")?.as_str()
}

/// The CRD's printer columns would show a first deployment as a canary at
/// weight 0 next to no stable version; the table says what it is instead:
/// the stable column reads `deploying v1`, and there is no canary.
fn first_deployment_cell(version: &str, json_path: &str) -> Option<String> {
    match json_path {
        ".status.stable.version" => Some(format!("deploying {version}")),
        ".status.canary.version" | ".status.canary.weight" => Some("<none>".to_string()),
        _ => None,
    }
}

/// Aligns rows into columns separated by three spaces, like kubectl.
pub fn format_rows(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Evaluates the JSONPath subset printer columns use: `.a.b.c` and
/// `.a[?(@.key=="value")].b`. Missing values render as `<none>`.
pub fn text_at(object: &serde_json::Value, path: &str) -> String {
    let mut current = Some(object);
    for segment in segments(path) {
        let Some(value) = current else { break };
        current = match segment.split_once("[?(@.") {
            Some((field, filter)) => {
                let filter = filter.trim_end_matches(")]");
                let (key, wanted) = filter.split_once("==").unwrap_or((filter, ""));
                let wanted = wanted.trim_matches('"');
                value
                    .get(field)
                    .and_then(|list| list.as_array())
                    .and_then(|items| {
                        items
                            .iter()
                            .find(|item| item.get(key).and_then(|v| v.as_str()) == Some(wanted))
                    })
            }
            None => value.get(segment),
        };
    }
    match current {
        None | Some(serde_json::Value::Null) => "<none>".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Splits a JSONPath on the dots outside `[...]` filters.
fn segments(path: &str) -> Vec<&str> {
    let path = path.trim_start_matches('.');
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// kubectl-style age of an RFC 3339 timestamp: 45s, 3m20s, 17m, 5h, 3d.
pub fn age(timestamp: &str, now: k8s_openapi::jiff::Timestamp) -> String {
    let Ok(then) = timestamp.parse::<k8s_openapi::jiff::Timestamp>() else {
        return "<unknown>".to_string();
    };
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..600 => format!("{}m{}s", secs / 60, secs % 60),
        600..10_800 => format!("{}m", secs / 60),
        10_800..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> k8s_openapi::jiff::Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn models() -> Vec<serde_json::Value> {
        vec![
            serde_json::json!({
                "metadata": {"name": "ranker", "namespace": "search", "creationTimestamp": "2026-11-25T11:55:00Z"},
                "spec": {"model": {"version": "v2"}},
                "status": {"phase": "Progressing", "stable": {"version": "v1"}, "canary": {"version": "v2", "weight": 20},
                    "replicas": 3, "readyReplicas": 4,
                    "conditions": [{"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "True"}]}
            }),
            serde_json::json!({
                "metadata": {"name": "a-new-one", "namespace": "search", "creationTimestamp": "2026-11-25T11:59:30Z"},
                "spec": {"model": {"version": "v1"}}
            }),
        ]
    }

    #[test]
    fn tables_and_json_show_remote_control_characters_inertly() {
        let mut model = models()[0].clone();
        model["status"]["phase"] = serde_json::json!("\u{1b}[32mHealthy\u{9b}0m");
        let table = render(
            Kind::RankingModel,
            std::slice::from_ref(&model),
            None,
            false,
            false,
            now(),
        )
        .unwrap();
        let table = shown(&table, None);
        assert!(table.contains("\\x1b[32mHealthy\\u{9b}0m"), "{table}");
        let json = render(
            Kind::RankingModel,
            std::slice::from_ref(&model),
            Some(Output::Json),
            false,
            true,
            now(),
        )
        .unwrap();
        let json = shown(&json, Some(Output::Json));
        for text in [&table, &json] {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "{text:?}"
            );
        }
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["status"]["phase"], model["status"]["phase"]);
    }

    #[test]
    fn the_table_has_the_crd_printer_columns() {
        let text = render(Kind::RankingModel, &models(), None, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME        STABLE   CANARY   WEIGHT   PHASE         READY    AGE\n\
             ranker      v1       v2       20       Progressing   True     5m0s\n\
             a-new-one   <none>   <none>   <none>   <none>        <none>   30s\n"
        );
    }

    #[test]
    fn a_first_deployment_reads_as_deploying_not_as_a_canary() {
        let first = serde_json::json!({
            "metadata": {"name": "ranker", "creationTimestamp": "2026-11-25T11:59:00Z"},
            "spec": {"model": {"version": "v1"}},
            "status": {"phase": "Progressing", "canary": {"version": "v1", "weight": 0, "stepIndex": 0}}
        });
        let text = render(Kind::RankingModel, &[first], None, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME     STABLE         CANARY   WEIGHT   PHASE         READY    AGE\n\
             ranker   deploying v1   <none>   <none>   Progressing   <none>   60s\n"
        );
        // A canary next to a stable version (models()[0]) keeps its columns,
        // even at weight 0.
        let mut canary = models()[0].clone();
        canary["status"]["canary"]["weight"] = serde_json::json!(0);
        let text = render(Kind::RankingModel, &[canary], None, false, false, now()).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("ranker   v1       v2       0        Progressing")),
            "{text}"
        );
    }

    #[test]
    fn wide_and_all_namespaces_add_columns() {
        let text = render(
            Kind::RankingModel,
            &models()[..1],
            Some(Output::Wide),
            true,
            false,
            now(),
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME     STABLE   CANARY   WEIGHT   PHASE         READY   AGE    DESIRED   REPLICAS   AVAILABLE"
        );
        assert_eq!(
            lines[1],
            "search      ranker   v1       v2       20       Progressing   True    5m0s   v2        3          4"
        );
    }

    #[test]
    fn feature_pipelines_have_their_own_columns() {
        let fp = serde_json::json!({"metadata": {"name": "clicks", "creationTimestamp": "2026-11-20T12:00:00Z"},
            "status": {"trigger": "*/5 * * * *", "phase": "Succeeded", "lastSuccessfulTime": "2026-11-25T11:00:00Z",
                "conditions": [{"type": "Fresh", "status": "False"}]}});
        let text = render(Kind::FeaturePipeline, &[fp], None, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME     TRIGGER       LAST SUCCESS   FRESH   PHASE       AGE\n\
             clicks   */5 * * * *   60m            False   Succeeded   5d\n"
        );
    }

    #[test]
    fn json_yaml_and_name_outputs() {
        let one = &models()[..1];
        let json = render(
            Kind::RankingModel,
            one,
            Some(Output::Json),
            false,
            true,
            now(),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["metadata"]["name"], "ranker");
        let list = render(
            Kind::RankingModel,
            &models(),
            Some(Output::Yaml),
            false,
            false,
            now(),
        )
        .unwrap();
        let value: serde_json::Value = serde_yaml_ng::from_str(&list).unwrap();
        assert_eq!(value["kind"], "List");
        assert_eq!(value["items"].as_array().unwrap().len(), 2);
        let names = render(
            Kind::RankingModel,
            &models(),
            Some(Output::Name),
            false,
            false,
            now(),
        )
        .unwrap();
        assert_eq!(
            names,
            "rankingmodel.mlctl.io/ranker\nrankingmodel.mlctl.io/a-new-one\n"
        );
    }

    #[test]
    fn kinds_accept_kubectl_spellings() {
        for k in ["rm", "rankingmodel", "rankingmodels"] {
            assert_eq!(Kind::parse(k), Ok(Kind::RankingModel));
        }
        for k in ["fp", "featurepipeline", "featurepipelines"] {
            assert_eq!(Kind::parse(k), Ok(Kind::FeaturePipeline));
        }
        assert!(Kind::parse("pods").unwrap_err().contains("use rm"));
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age("2026-11-25T11:59:15Z", now()), "45s");
        assert_eq!(age("2026-11-25T11:56:40Z", now()), "3m20s");
        assert_eq!(age("2026-11-25T11:43:00Z", now()), "17m");
        assert_eq!(age("2026-11-25T07:00:00Z", now()), "5h");
        assert_eq!(age("2026-11-22T12:00:00Z", now()), "3d");
        assert_eq!(age("garbage", now()), "<unknown>");
    }
}
