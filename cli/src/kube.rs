//! kubectl-style cluster options (`--kubeconfig`, `--context`, `-n`) and the
//! errors of cluster commands, each naming the fix, with their exit codes.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::exit;

/// Which cluster and namespace to talk to, as kubectl spells it. Flatten it
/// into a command's arguments (`#[command(flatten)] kube: KubeArgs`).
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct KubeArgs {
    /// Path of the kubeconfig file [default: $KUBECONFIG, then ~/.kube/config].
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: the current context].
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// Namespace [default: the context's namespace, then "default"].
    #[arg(short = 'n', long, value_name = "NAMESPACE", global = true)]
    pub namespace: Option<String>,
}

/// The cluster options once more at the top level, so that kubectl habits
/// work: `mlctl -n NS get rm`, `mlctl --context C describe rm X`. clap hands a
/// global value down to the command's own [`KubeArgs`] (same ids, same types),
/// so commands read only their own copy. Hidden: each cluster command lists
/// its options in its own help, and `lint`/`eval` (which talk to no cluster)
/// accept and ignore them, as kubectl does with its global flags.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct GlobalClusterArgs {
    /// Path of the kubeconfig file.
    #[arg(long, value_name = "FILE", global = true, hide = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME", global = true, hide = true)]
    pub context: Option<String>,
    /// Namespace.
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        global = true,
        hide = true
    )]
    pub namespace: Option<String>,
    /// All namespaces; only `mlctl get` lists across namespaces, so the
    /// dispatcher refuses it anywhere else.
    #[arg(short = 'A', long, global = true, hide = true)]
    pub all_namespaces: bool,
}

impl KubeArgs {
    /// A client for the chosen cluster and the namespace to act in.
    pub async fn client(&self) -> Result<(kube::Client, String), CliError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|err| {
                    CliError::Kubeconfig(format!("cannot read {}: {err}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|err| CliError::Kubeconfig(chain(&err)))?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|err| CliError::Kubeconfig(chain(&err)))?,
            None => kube::Config::infer()
                .await
                .map_err(|err| CliError::Kubeconfig(chain(&err)))?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|err| {
            CliError::Kubeconfig(format!("cannot build a client: {}", chain(&err)))
        })?;
        Ok((client, namespace))
    }
}

/// A kind of object mlctl reads or writes, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Lower-case singular name, e.g. `rankingmodel`.
    pub singular: &'static str,
    /// Plural resource name, e.g. `rankingmodels`.
    pub plural: &'static str,
    /// API group ("" for the core group).
    pub group: &'static str,
    /// What to type after `mlctl get` / `kubectl get` to list them.
    pub short: &'static str,
}

impl Resource {
    /// `plural.group` as RBAC and kubectl name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn is_mlctl(&self) -> bool {
        self.group == mlctl_crds::GROUP
    }
}

/// RankingModels (`rm`).
pub const RANKING_MODEL: Resource = Resource {
    singular: "rankingmodel",
    plural: "rankingmodels",
    group: "mlctl.io",
    short: "rm",
};
/// FeaturePipelines (`fp`).
pub const FEATURE_PIPELINE: Resource = Resource {
    singular: "featurepipeline",
    plural: "featurepipelines",
    group: "mlctl.io",
    short: "fp",
};
/// Deployments (the operator's, for `mlctl version`).
pub const DEPLOYMENT: Resource = Resource {
    singular: "deployment",
    plural: "deployments",
    group: "apps",
    short: "deployments",
};
/// Events (for `mlctl describe`).
pub const EVENT: Resource = Resource {
    singular: "event",
    plural: "events",
    group: "",
    short: "events",
};

/// What a failed request was about.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The RBAC verb: get, list, watch, patch.
    pub verb: &'static str,
    /// The kind of object.
    pub resource: Resource,
    /// The object's name, for requests about one object.
    pub name: Option<&'a str>,
    /// The namespace, unless the request spans all namespaces.
    pub namespace: Option<&'a str>,
}

/// Errors of cluster commands. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments found after parsing (exit 2).
    #[error("{0}")]
    Usage(String),
    /// No usable kubeconfig.
    #[error(
        "no usable kubeconfig: {0}; pass --kubeconfig FILE or set KUBECONFIG, and --context NAME to pick a context (kubectl config get-contexts lists them)"
    )]
    Kubeconfig(String),
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server: {0}; is the cluster running and is this the right context? (check with: kubectl cluster-info, or pass --kubeconfig / --context)"
    )]
    Unreachable(String),
    /// The credentials were rejected (401).
    #[error(
        "the API server rejected the credentials: {0}; log in again or refresh the kubeconfig's token"
    )]
    Unauthorized(String),
    /// The object does not exist.
    #[error(
        "{singular} {name:?} not found in namespace {namespace:?}; list them with mlctl get {short} -n {namespace}"
    )]
    NotFound {
        /// Kind, lower-case singular.
        singular: &'static str,
        /// Short name to list them.
        short: &'static str,
        /// Object name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// RBAC refused the request.
    #[error(
        "forbidden: you may not {verb} {resource}{scope}: {message}; ask your cluster administrator for a Role granting {verb} on {resource} (mlctl needs get, list, watch and patch on rankingmodels.mlctl.io and featurepipelines.mlctl.io, and list on events)"
    )]
    Forbidden {
        /// The refused verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
        /// ` in namespace "x"` or empty.
        scope: String,
        /// The API server's message.
        message: String,
    },
    /// The mlctl.io API group is not served: the CRDs are not installed.
    #[error(
        "the cluster does not know {resource}: the mlctl CRDs are not installed; install them with: kubectl apply -f crds/yaml/ (or helm install mlctl-operator charts/mlctl-operator, which includes them)"
    )]
    CrdsMissing {
        /// `plural.group`.
        resource: String,
    },
    /// Any other API error.
    #[error("{verb} {resource}: {message}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
        /// The error, with its causes.
        message: String,
    },
    /// The request makes no sense in the object's current state (e.g.
    /// "nothing to promote"); exit 1.
    #[error("{0}")]
    Refused(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(String),
}

impl CliError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            _ => exit::ERROR,
        }
    }

    /// Maps a kube error on `target` to the error that names the fix.
    pub fn from_kube(err: kube::Error, target: &Target<'_>) -> Self {
        let resource = target.resource.qualified();
        match err {
            kube::Error::Api(status) => {
                // By code too: a group the server does not serve answers a
                // plain-text "404 page not found", which has no reason.
                if status.is_not_found() || status.code == 404 {
                    // An object that does not exist comes with details naming
                    // it; an unknown resource type (no CRD) has none.
                    let names_object = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
                    match (target.name, names_object || !target.resource.is_mlctl()) {
                        (Some(name), true) => CliError::NotFound {
                            singular: target.resource.singular,
                            short: target.resource.short,
                            name: name.to_string(),
                            namespace: target.namespace.unwrap_or("default").to_string(),
                        },
                        _ if target.resource.is_mlctl() => CliError::CrdsMissing { resource },
                        _ => CliError::Api {
                            verb: target.verb,
                            resource,
                            message: status.message.clone(),
                        },
                    }
                } else if status.is_forbidden() || status.code == 403 {
                    CliError::Forbidden {
                        verb: target.verb,
                        resource,
                        scope: target
                            .namespace
                            .map(|ns| format!(" in namespace {ns:?}"))
                            .unwrap_or_else(|| " in all namespaces".to_string()),
                        message: status.message.clone(),
                    }
                } else if status.code == 401 {
                    CliError::Unauthorized(status.message.clone())
                } else {
                    CliError::Api {
                        verb: target.verb,
                        resource,
                        message: status.message.clone(),
                    }
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                CliError::Unreachable(chain(&err))
            }
            kube::Error::Auth(_) => CliError::Unauthorized(chain(&err)),
            kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => {
                CliError::Kubeconfig(chain(&err))
            }
            other => CliError::Api {
                verb: target.verb,
                resource,
                message: chain(&other),
            },
        }
    }
}

/// An error and its causes, `outer: inner: innermost`, without repeats.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use kube::core::response::{Status, StatusDetails};

    use super::*;

    fn api_error(code: u16, reason: &str, name: &str) -> kube::Error {
        let mut status = Status::failure("the server said no", reason);
        status.code = code;
        if !name.is_empty() {
            let details: StatusDetails = serde_json::from_value(serde_json::json!({
                "name": name, "group": "mlctl.io", "kind": "rankingmodels"
            }))
            .unwrap();
            status.details = Some(details);
        }
        kube::Error::Api(status.boxed())
    }

    fn get_model(name: &str) -> Target<'_> {
        Target {
            verb: "get",
            resource: RANKING_MODEL,
            name: Some(name),
            namespace: Some("ranking"),
        }
    }

    #[test]
    fn a_missing_model_names_the_namespace_and_how_to_list() {
        let err = CliError::from_kube(api_error(404, "NotFound", "ranker"), &get_model("ranker"));
        assert_eq!(
            err.to_string(),
            "rankingmodel \"ranker\" not found in namespace \"ranking\"; list them with mlctl get rm -n ranking"
        );
        assert_eq!(err.exit_code(), exit::ERROR);
    }

    #[test]
    fn a_404_without_details_on_the_mlctl_group_means_no_crds() {
        let err = CliError::from_kube(api_error(404, "NotFound", ""), &get_model("ranker"));
        assert!(matches!(err, CliError::CrdsMissing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("rankingmodels.mlctl.io"), "{text}");
        assert!(text.contains("kubectl apply -f crds/yaml/"), "{text}");
        assert!(text.contains("helm install"), "{text}");
    }

    #[test]
    fn a_plain_text_404_from_an_unserved_group_means_no_crds() {
        // What kube makes of the API server's "404 page not found" body.
        let status =
            Status::failure("404 page not found", "Failed to parse error data").with_code(404);
        let target = Target {
            verb: "list",
            resource: RANKING_MODEL,
            name: None,
            namespace: Some("ranking"),
        };
        let err = CliError::from_kube(kube::Error::Api(status.clone().boxed()), &target);
        assert!(matches!(err, CliError::CrdsMissing { .. }), "{err:?}");
        let err = CliError::from_kube(kube::Error::Api(status.boxed()), &get_model("ranker"));
        assert!(matches!(err, CliError::CrdsMissing { .. }), "{err:?}");
    }

    #[test]
    fn forbidden_names_the_verb_the_resource_and_whom_to_ask() {
        let target = Target {
            verb: "patch",
            ..get_model("ranker")
        };
        let err = CliError::from_kube(api_error(403, "Forbidden", "ranker"), &target);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "forbidden: you may not patch rankingmodels.mlctl.io in namespace \"ranking\""
            ),
            "{text}"
        );
        assert!(text.contains("ask your cluster administrator"), "{text}");
        assert_eq!(err.exit_code(), exit::ERROR);
    }

    #[test]
    fn a_list_across_namespaces_says_so_when_forbidden() {
        let target = Target {
            verb: "list",
            resource: RANKING_MODEL,
            name: None,
            namespace: None,
        };
        let err = CliError::from_kube(api_error(403, "Forbidden", ""), &target);
        assert!(
            err.to_string()
                .contains("list rankingmodels.mlctl.io in all namespaces")
        );
    }

    #[test]
    fn a_missing_core_object_is_not_a_crd_problem() {
        let target = Target {
            verb: "list",
            resource: DEPLOYMENT,
            name: None,
            namespace: Some("mlctl-system"),
        };
        let err = CliError::from_kube(api_error(404, "NotFound", ""), &target);
        assert!(matches!(err, CliError::Api { .. }), "{err:?}");
    }

    #[test]
    fn usage_errors_exit_2_and_others_1() {
        assert_eq!(CliError::Usage("bad".into()).exit_code(), exit::USAGE);
        assert_eq!(
            CliError::Refused("nothing to promote".into()).exit_code(),
            exit::ERROR
        );
        assert_eq!(
            CliError::Unreachable("refused".into()).exit_code(),
            exit::ERROR
        );
        assert!(
            CliError::Unreachable("connection refused".into())
                .to_string()
                .contains("kubectl cluster-info")
        );
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_file_names_the_flag() {
        let args = KubeArgs {
            kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
            ..KubeArgs::default()
        };
        let err = args
            .client()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
        assert!(err.contains("--kubeconfig"), "{err}");
    }

    #[tokio::test]
    async fn the_namespace_flag_wins_over_the_context() {
        let dir = std::env::temp_dir().join(format!("mlctl-kube-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: \"https://127.0.0.1:1\"}\ncontexts:\n- name: c\n  context: {cluster: k, user: u, namespace: ctx-ns}\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .unwrap();
        let mut args = KubeArgs {
            kubeconfig: Some(path.clone()),
            ..KubeArgs::default()
        };
        let (_, ns) = args.client().await.unwrap();
        assert_eq!(ns, "ctx-ns");
        args.namespace = Some("flag-ns".into());
        let (_, ns) = args.client().await.unwrap();
        assert_eq!(ns, "flag-ns");
        args.context = Some("nope".into());
        let err = args
            .client()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
