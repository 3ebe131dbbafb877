//! Why a revision's pods are not ready, read from the Pods' own status:
//! failed init containers (the storage initializer's exit code and
//! termination message), OOM kills, crash loops, image and configuration
//! errors, scheduling failures. Pure (std and k8s-openapi only), so the CLI
//! compiles this very file for `mlctl describe` and both say the same thing.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// The init container that downloads and verifies the model artifact
/// (`mlctl-ranker fetch`), as rendered by `render::workload`.
pub const STORAGE_INITIALIZER: &str = "storage-initializer";
/// Longest message kept from a pod (bytes, cut on a char boundary).
pub const MESSAGE_LIMIT: usize = 512;
/// Longest message quoted in a one-line summary.
pub const SUMMARY_MESSAGE_LIMIT: usize = 240;
/// A serving container running this long without becoming Ready is reported
/// (shorter is an ordinary start).
pub const NOT_READY_AFTER_SECONDS: i64 = 60;

/// What is wrong, most telling first: the order is the priority when a
/// revision's pods show several problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// The storage initializer exited non-zero (download, sha256, timeout).
    StorageInitializerFailed,
    /// Another init container exited non-zero.
    InitContainerFailed,
    /// A container was killed for exceeding its memory limit.
    OOMKilled,
    /// The container cannot be created or started (missing Secret or
    /// ConfigMap, bad command).
    ConfigError,
    /// The image cannot be pulled or is not present.
    ImagePullFailed,
    /// The serving container exits and is restarted again and again.
    CrashLoopBackOff,
    /// No node can take the pod.
    Unschedulable,
    /// The kubelet evicted the pod.
    Evicted,
    /// The serving container runs but its readiness probe does not pass.
    ContainerNotReady,
}

impl ProblemKind {
    /// The CamelCase name: the Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::StorageInitializerFailed => "StorageInitializerFailed",
            ProblemKind::InitContainerFailed => "InitContainerFailed",
            ProblemKind::OOMKilled => "OOMKilled",
            ProblemKind::ConfigError => "ConfigError",
            ProblemKind::ImagePullFailed => "ImagePullFailed",
            ProblemKind::CrashLoopBackOff => "CrashLoopBackOff",
            ProblemKind::Unschedulable => "Unschedulable",
            ProblemKind::Evicted => "Evicted",
            ProblemKind::ContainerNotReady => "ContainerNotReady",
        }
    }
}

/// One problem of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The pod's name.
    pub pod: String,
    /// The container, when the problem is a container's.
    pub container: Option<String>,
    /// The container is an init container.
    pub init_container: bool,
    /// Exit code of the last termination.
    pub exit_code: Option<i32>,
    /// Kubernetes' reason (`OOMKilled`, `Error`, `ErrImagePull`, `Unschedulable`, …).
    pub reason: Option<String>,
    /// The termination, waiting or condition message, at most
    /// [`MESSAGE_LIMIT`] bytes.
    pub message: Option<String>,
    /// The container's image (image problems).
    pub image: Option<String>,
    /// The container's memory limit (OOM kills).
    pub memory_limit: Option<String>,
}

impl Problem {
    fn container_phrase(&self) -> String {
        let which = if self.init_container {
            "init container"
        } else {
            "container"
        };
        format!("{which} {}", self.container.as_deref().unwrap_or("?"))
    }

    fn short_message(&self) -> Option<String> {
        self.message
            .as_deref()
            .map(one_line)
            .filter(|m| !m.is_empty())
            .map(|m| truncate_head(&m, SUMMARY_MESSAGE_LIMIT))
    }

    /// One line saying what is wrong, without naming the pod: identical
    /// problems of several pods read the same, and the line does not change
    /// while a pod goes round its restart loop (no status churn).
    pub fn detail(&self) -> String {
        let who = self.container_phrase();
        let msg = self.short_message();
        let with_msg = |head: String| match &msg {
            Some(m) => format!("{head}: {m}"),
            None => head,
        };
        let code = self.exit_code.unwrap_or(-1);
        let reason = self.reason.as_deref().unwrap_or("");
        match self.kind {
            ProblemKind::StorageInitializerFailed | ProblemKind::InitContainerFailed => {
                match &msg {
                    Some(m) => format!("{who} exited {code}: {m}"),
                    None => {
                        let why = if self.kind == ProblemKind::StorageInitializerFailed {
                            storage_initializer_exit_meaning(code)
                        } else {
                            None
                        };
                        match why.or(Some(reason).filter(|r| !r.is_empty())) {
                            Some(why) => format!("{who} exited {code} ({why})"),
                            None => format!("{who} exited {code}"),
                        }
                    }
                }
            }
            ProblemKind::OOMKilled => {
                let limit = match &self.memory_limit {
                    Some(l) => format!("memory limit {l}"),
                    None => "no memory limit set".to_string(),
                };
                format!("{who} was OOMKilled (exit {code}, {limit})")
            }
            ProblemKind::CrashLoopBackOff => match self.exit_code {
                Some(code) if reason.is_empty() => {
                    with_msg(format!("{who} crashed: exited {code}"))
                }
                Some(code) => with_msg(format!("{who} crashed: exited {code} ({reason})")),
                None => with_msg(format!("{who} is in CrashLoopBackOff")),
            },
            ProblemKind::ImagePullFailed => {
                let image = self
                    .image
                    .as_deref()
                    .map(|i| format!(" {i}"))
                    .unwrap_or_default();
                match &msg {
                    Some(m) => format!("{who}: image{image} cannot be pulled: {m}"),
                    None => format!("{who}: image{image} cannot be pulled ({reason})"),
                }
            }
            ProblemKind::ConfigError => with_msg(format!("{who} cannot start ({reason})")),
            ProblemKind::Unschedulable => with_msg("pods cannot be scheduled".to_string()),
            ProblemKind::Evicted => with_msg("pods were evicted".to_string()),
            ProblemKind::ContainerNotReady => format!(
                "{who} runs but does not become ready (readiness probe failing? see its log)"
            ),
        }
    }
}

/// What a storage-initializer exit code means (`mlctl-ranker fetch`, see
/// docs/ranker.md), for when it left no message.
pub fn storage_initializer_exit_meaning(code: i32) -> Option<&'static str> {
    match code {
        1 => Some("download failed"),
        2 => Some("invalid configuration"),
        3 => Some("sha256 mismatch"),
        4 => Some("download timed out"),
        _ => None,
    }
}

/// All problems of a revision's pods, most telling first (by kind, then pod
/// name). Healthy, starting and terminating pods contribute nothing.
pub fn diagnose(pods: &[Pod], now: Timestamp) -> Vec<Problem> {
    let mut problems: Vec<Problem> = pods.iter().flat_map(|p| diagnose_pod(p, now)).collect();
    problems.sort_by(|a, b| {
        (a.kind, &a.pod, a.init_container, &a.container).cmp(&(
            b.kind,
            &b.pod,
            b.init_container,
            &b.container,
        ))
    });
    problems
}

/// `"{label}: {detail of the most telling problem}"`, e.g. `canary v2: init
/// container storage-initializer exited 3: sha256 mismatch …`.
pub fn summary(label: &str, problems: &[Problem]) -> Option<String> {
    problems.first().map(|p| format!("{label}: {}", p.detail()))
}

/// The problems of one pod.
pub fn diagnose_pod(pod: &Pod, now: Timestamp) -> Vec<Problem> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let base = Problem {
        kind: ProblemKind::Unschedulable,
        pod: name,
        container: None,
        init_container: false,
        exit_code: None,
        reason: None,
        message: None,
        image: None,
        memory_limit: None,
    };
    let mut problems = Vec::new();
    if status.phase.as_deref() == Some("Failed") {
        if status.reason.as_deref() == Some("Evicted") {
            problems.push(Problem {
                kind: ProblemKind::Evicted,
                reason: status.reason.clone(),
                message: status.message.as_deref().map(clean_message),
                ..base.clone()
            });
        }
        return problems;
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unschedulable {
        problems.push(Problem {
            kind: ProblemKind::Unschedulable,
            reason: c.reason.clone(),
            message: c.message.as_deref().map(clean_message),
            ..base.clone()
        });
        return problems;
    }
    let spec = pod.spec.as_ref();
    let init_specs = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let specs = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    for cs in status.init_container_statuses.iter().flatten() {
        let spec = init_specs.iter().find(|c| c.name == cs.name);
        if let Some(p) = container_problem(&base, cs, spec, true, now) {
            problems.push(p);
        }
    }
    for cs in status.container_statuses.iter().flatten() {
        let spec = specs.iter().find(|c| c.name == cs.name);
        if let Some(p) = container_problem(&base, cs, spec, false, now) {
            problems.push(p);
        }
    }
    problems
}

const IMAGE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImageInspectError",
    "ErrImageInspect",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];
const CONFIG_REASONS: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
    "PreStartHookError",
    "PostStartHookError",
];

fn container_problem(
    base: &Problem,
    cs: &ContainerStatus,
    spec: Option<&Container>,
    init: bool,
    now: Timestamp,
) -> Option<Problem> {
    let state = cs.state.clone().unwrap_or_default();
    let problem = |kind: ProblemKind| Problem {
        kind,
        container: Some(cs.name.clone()),
        init_container: init,
        ..base.clone()
    };
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("");
        if IMAGE_REASONS.contains(&reason) {
            return Some(Problem {
                reason: Some(reason.to_string()),
                message: w.message.as_deref().and_then(pull_message),
                image: spec
                    .and_then(|c| c.image.clone())
                    .or_else(|| Some(cs.image.clone()).filter(|i| !i.is_empty())),
                ..problem(ProblemKind::ImagePullFailed)
            });
        }
        if CONFIG_REASONS.contains(&reason) {
            return Some(Problem {
                reason: Some(reason.to_string()),
                message: w.message.as_deref().map(clean_message),
                ..problem(ProblemKind::ConfigError)
            });
        }
    }
    // A finished init container that succeeded, or a serving container that
    // is Ready, is fine whatever happened before.
    let succeeded = state.terminated.as_ref().is_some_and(|t| t.exit_code == 0);
    if (init && succeeded) || (!init && cs.ready) {
        return None;
    }
    let current = state
        .terminated
        .as_ref()
        .filter(|t| t.exit_code != 0 || !init);
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0 || !init);
    if let Some(t) = current.or(last) {
        let oom = t.reason.as_deref() == Some("OOMKilled");
        let kind = if oom {
            ProblemKind::OOMKilled
        } else if !init {
            ProblemKind::CrashLoopBackOff
        } else if cs.name == STORAGE_INITIALIZER {
            ProblemKind::StorageInitializerFailed
        } else {
            ProblemKind::InitContainerFailed
        };
        return Some(Problem {
            exit_code: Some(t.exit_code),
            reason: t.reason.clone(),
            message: t.message.as_deref().map(clean_message),
            memory_limit: oom.then(|| memory_limit(spec)).flatten(),
            ..problem(kind)
        });
    }
    if let Some(w) = &state.waiting
        && w.reason.as_deref() == Some("CrashLoopBackOff")
    {
        return Some(Problem {
            reason: w.reason.clone(),
            message: w.message.as_deref().map(clean_message),
            ..problem(ProblemKind::CrashLoopBackOff)
        });
    }
    let running_since = state
        .running
        .as_ref()
        .and_then(|r| r.started_at.as_ref())
        .map(|t| t.0);
    if !init
        && let Some(since) = running_since
        && now.as_second() - since.as_second() >= NOT_READY_AFTER_SECONDS
    {
        return Some(problem(ProblemKind::ContainerNotReady));
    }
    None
}

fn memory_limit(spec: Option<&Container>) -> Option<String> {
    spec?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// The image-pull message without the kubelet's back-off wrapper, so that
/// ErrImagePull and ImagePullBackOff read the same (no churn between them).
fn pull_message(message: &str) -> Option<String> {
    let mut m = message.trim();
    if let Some(rest) = m.strip_prefix("Back-off pulling image ") {
        // `Back-off pulling image "x": ErrImagePull: <why>`, or only the image.
        m = match rest.split_once("\": ") {
            Some((_, why)) => why,
            None => "",
        };
    }
    let m = m.strip_prefix("ErrImagePull: ").unwrap_or(m).trim();
    (!m.is_empty()).then(|| clean_message(m))
}

/// A message as kept: trimmed, at most [`MESSAGE_LIMIT`] bytes. A log tail
/// (several lines: `FallbackToLogsOnError`) keeps its end, where the error is;
/// a message the program wrote keeps its beginning.
pub fn clean_message(message: &str) -> String {
    let m = message.trim();
    if m.contains('\n') {
        truncate_tail(m, MESSAGE_LIMIT)
    } else {
        truncate_head(m, MESSAGE_LIMIT)
    }
}

/// The last non-empty line (a log tail's error), trimmed.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// At most `limit` bytes from the start, ending in `…` when cut.
pub fn truncate_head(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// At most `limit` bytes from the end, starting with `…` when cut.
pub fn truncate_tail(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut start = s.len() - limit.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// What `kubectl get pods` shows in its STATUS column: `Init:Error`,
/// `Init:CrashLoopBackOff`, `Init:0/1`, `CrashLoopBackOff`, `OOMKilled`,
/// `Running`, `Terminating`, …
pub fn pod_status_text(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "Pending".to_string();
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".to_string();
    }
    let mut text = status
        .reason
        .clone()
        .or_else(|| status.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());
    let inits = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    for (i, cs) in inits.iter().enumerate() {
        let state = cs.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            return format!(
                "Init:{}",
                t.reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code))
            );
        }
        if let Some(reason) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            return format!("Init:{reason}");
        }
        // Running, or waiting to start: how many are done.
        return format!("Init:{i}/{}", inits.len());
    }
    for cs in status.container_statuses.iter().flatten() {
        let state = cs.state.clone().unwrap_or_default();
        if let Some(reason) = state.waiting.as_ref().and_then(|w| w.reason.clone()) {
            text = reason;
        } else if let Some(t) = &state.terminated {
            text = t
                .reason
                .clone()
                .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code));
        }
    }
    text
}
