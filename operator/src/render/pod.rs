//! Pod-level pieces every workload the operator renders shares: the user's
//! placement (where pods may run, what they may pull) and the Pod Security
//! `restricted` baseline, so serving pods and pipeline pods cannot drift apart.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};
use mlctl_crds::common::PodPlacement;

/// A pod spec holding only the placement fields, to be completed with
/// `PodSpec { containers, .., ..placed_pod_spec(p) }`. Unset fields stay
/// `None`, so a spec without placement renders exactly as before.
pub fn placed_pod_spec(placement: &PodPlacement) -> PodSpec {
    let p = placement.clone();
    PodSpec {
        node_selector: (!p.node_selector.is_empty()).then_some(p.node_selector),
        tolerations: (!p.tolerations.is_empty()).then_some(p.tolerations),
        affinity: p.affinity,
        topology_spread_constraints: (!p.topology_spread_constraints.is_empty())
            .then_some(p.topology_spread_constraints),
        image_pull_secrets: (!p.image_pull_secrets.is_empty()).then_some(p.image_pull_secrets),
        priority_class_name: p.priority_class_name,
        ..PodSpec::default()
    }
}

fn runtime_default_seccomp() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    })
}

/// The pod security context Pod Security `restricted` asks for: non-root and
/// the runtime's default seccomp profile. No user id is forced: the image's
/// own (numeric, non-root) `USER` is used; the kubelet refuses to start an
/// image that would run as root.
pub fn restricted_pod_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: runtime_default_seccomp(),
        ..PodSecurityContext::default()
    }
}

/// The container security context Pod Security `restricted` asks for: no
/// privilege escalation, every capability dropped, non-root, default seccomp.
pub fn restricted_container_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: runtime_default_seccomp(),
        ..SecurityContext::default()
    }
}

/// The pod spec keys of the placement fields.
#[cfg(test)]
pub const PLACEMENT_FIELDS: [&str; 6] = [
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "imagePullSecrets",
    "priorityClassName",
];

/// A placement with every field set, for the tests of each renderer.
#[cfg(test)]
pub fn sample_placement() -> PodPlacement {
    use k8s_openapi::api::core::v1::{
        Affinity, LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement,
        NodeSelectorTerm, Toleration, TopologySpreadConstraint,
    };
    PodPlacement {
        node_selector: [("node-pool".to_string(), "ranking".to_string())].into(),
        tolerations: vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("ranking".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }],
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "topology.kubernetes.io/zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["eu-west-1a".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        }),
        topology_spread_constraints: vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..TopologySpreadConstraint::default()
        }],
        image_pull_secrets: vec![LocalObjectReference {
            name: "registry".into(),
        }],
        priority_class_name: Some("ranking-critical".into()),
    }
}

/// Asserts that `pod` carries every field of [`sample_placement`].
#[cfg(test)]
pub fn assert_sample_placement(pod: &PodSpec, what: &str) {
    let want = placed_pod_spec(&sample_placement());
    assert_eq!(
        pod.node_selector, want.node_selector,
        "{what}: nodeSelector"
    );
    assert_eq!(pod.tolerations, want.tolerations, "{what}: tolerations");
    assert_eq!(pod.affinity, want.affinity, "{what}: affinity");
    assert_eq!(
        pod.topology_spread_constraints, want.topology_spread_constraints,
        "{what}: topologySpreadConstraints"
    );
    assert_eq!(
        pod.image_pull_secrets, want.image_pull_secrets,
        "{what}: imagePullSecrets"
    );
    assert_eq!(
        pod.priority_class_name, want.priority_class_name,
        "{what}: priorityClassName"
    );
    assert!(want.node_selector.is_some() && want.affinity.is_some());
}
