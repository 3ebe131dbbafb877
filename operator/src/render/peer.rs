//! The `<model>-peer` ConfigMap: how the operator tells the stable pods to
//! compare the canary with themselves (docs/runtime-contract.md, "Comparing
//! with the canary"). It always exists; `peer.json` says `off` between
//! comparison steps.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::{ModelRef, model_labels};
use crate::rollout::compare::PeerPlan;

/// Volume name of the peer config in the serving pods.
pub const PEER_VOLUME: &str = "mlctl-peer";
/// Where the peer config is mounted.
pub const PEER_DIR: &str = "/etc/mlctl/peer";
/// The file the runtime reads (`RANKER_PEER_CONFIG`).
pub const PEER_CONFIG_PATH: &str = "/etc/mlctl/peer/peer.json";
/// The ConfigMap key.
pub const PEER_KEY: &str = "peer.json";

/// `<model>-peer`.
pub fn peer_config_map_name(model: &str) -> String {
    format!("{model}-peer")
}

/// Who compares with whom, besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// The stable revision (only its pods act).
    pub from: String,
    /// The stable version.
    pub stable_version: String,
    /// The canary version.
    pub canary_version: String,
    /// The canary's `:rank` URL.
    pub url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerJson<'a> {
    mode: &'a str,
    from: &'a str,
    stable_version: &'a str,
    canary_version: &'a str,
    url: &'a str,
    sample: i32,
    k: i32,
    timeout_ms: i32,
}

/// The `peer.json` text: the plan for `target`, or `off`.
pub fn peer_json(plan: Option<(&PeerPlan, &PeerTarget)>) -> String {
    let active = plan.and_then(|(p, t)| {
        serde_json::to_string_pretty(&PeerJson {
            mode: p.mode,
            from: &t.from,
            stable_version: &t.stable_version,
            canary_version: &t.canary_version,
            url: &t.url,
            sample: p.sample,
            k: p.k,
            timeout_ms: p.timeout_ms,
        })
        .ok()
    });
    active.unwrap_or_else(|| "{\n  \"mode\": \"off\"\n}".into()) + "\n"
}

/// The canary's `:rank` URL by the `<model>-canary` Service's cluster IP.
pub fn canary_url(cluster_ip: &str, model: &str) -> String {
    let host = if cluster_ip.contains(':') {
        format!("[{cluster_ip}]")
    } else {
        cluster_ip.to_string()
    };
    format!("http://{host}:80/v1/models/{model}:rank")
}

/// The `<model>-peer` ConfigMap holding `json`.
pub fn peer_config_map(model: &ModelRef, json: String) -> ConfigMap {
    ConfigMap {
        metadata: model.meta(peer_config_map_name(&model.name), model_labels(&model.name)),
        data: Some(BTreeMap::from([(PEER_KEY.to_string(), json)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::compare::{INTERLEAVE, SHADOW};

    fn target() -> PeerTarget {
        PeerTarget {
            from: "5f0c2a9d1e".into(),
            stable_version: "2026-11-20.1".into(),
            canary_version: "2026-11-27.2".into(),
            url: canary_url("10.96.14.7", "search-ranker"),
        }
    }

    fn same_json(rendered: &str, fixture: &str) {
        let a: serde_json::Value = serde_json::from_str(rendered).unwrap();
        let b: serde_json::Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(a, b, "rendered:\n{rendered}");
    }

    #[test]
    fn renders_the_contract_fixtures() {
        let shadow = PeerPlan {
            mode: SHADOW,
            sample: 20,
            k: 10,
            timeout_ms: 1000,
        };
        same_json(
            &peer_json(Some((&shadow, &target()))),
            include_str!("../../../docs/contracts/peer-shadow.json"),
        );
        let interleave = PeerPlan {
            mode: INTERLEAVE,
            sample: 10,
            k: 10,
            timeout_ms: 250,
        };
        same_json(
            &peer_json(Some((&interleave, &target()))),
            include_str!("../../../docs/contracts/peer-interleave.json"),
        );
        same_json(
            &peer_json(None),
            include_str!("../../../docs/contracts/peer-off.json"),
        );
    }

    #[test]
    fn ipv6_cluster_ips_are_bracketed() {
        assert_eq!(
            canary_url("fd00::12", "m"),
            "http://[fd00::12]:80/v1/models/m:rank"
        );
    }
}
