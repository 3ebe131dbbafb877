//! Why a revision does not become ready, told on the RankingModel itself.
//! [`pods`] reads a revision's Pods; this module decides which revisions to
//! look at (only those not available, only after a short grace) and folds
//! the verdict into the decided status: condition messages, the abort reason
//! at a progress deadline, and a Warning Event once per distinct problem.

mod pods;
#[cfg(test)]
mod tests;

pub use pods::*;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use mlctl_crds::rankingmodel::RankingModelStatus;

use crate::rollout::{Decision, ObservedDeployment, Transition};

/// A revision unavailable for less than this is starting as usual: its pods
/// are not listed (a healthy rollout costs no extra request).
pub const GRACE_SECONDS: i64 = 10;
/// How often the pods of an unavailable revision are looked at again. The
/// operator does not watch Pods (their status would cost memory per pod and
/// a reconcile per pod change); a failing pod rarely changes its Deployment's
/// status, so this requeue is what notices it.
pub const RECHECK: Duration = Duration::from_secs(15);

/// Which revision a diagnosis is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The revision on its way in: the first version or a canary.
    Incoming,
    /// The stable revision.
    Stable,
}

/// A revision whose pods should be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// Revision hash (the pods' `mlctl.io/revision` label).
    pub revision: String,
    /// How summaries name it: `canary v2`, `stable v1`, `version v1`.
    pub label: String,
    /// Which revision it is.
    pub role: Role,
}

/// The verdict on one revision's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The revision looked at.
    pub suspect: Suspect,
    /// Its problems, most telling first (never empty).
    pub problems: Vec<Problem>,
}

impl Finding {
    /// Builds a finding from a revision's problems (None without any).
    pub fn new(suspect: Suspect, problems: Vec<Problem>) -> Option<Finding> {
        (!problems.is_empty()).then_some(Finding { suspect, problems })
    }

    /// `"{label}: {detail}"`.
    pub fn summary(&self) -> String {
        summary(&self.suspect.label, &self.problems).unwrap_or_default()
    }

    fn detail(&self) -> String {
        self.problems
            .first()
            .map(Problem::detail)
            .unwrap_or_default()
    }
}

/// The revisions of `status` (as decided) whose Deployment exists but is not
/// available, and of those the ones unavailable long enough to look at their
/// pods now; plus when to look again.
pub fn suspects(
    before: &RankingModelStatus,
    status: &RankingModelStatus,
    observed: &[ObservedDeployment],
    now: Timestamp,
) -> (Vec<Suspect>, Option<Duration>) {
    let unavailable = |rev: &str| observed.iter().any(|d| d.revision == rev && !d.available);
    let mut candidates = Vec::new();
    if let Some(c) = &status.canary {
        // An aborted canary is looked at once more in the decision that
        // aborted it: its problem becomes part of the abort reason.
        let newly_aborted = c.aborted_at.is_some()
            && before
                .canary
                .as_ref()
                .is_none_or(|b| b.aborted_at.is_none() || b.revision != c.revision);
        let waiting_for_features =
            c.pause_reason.as_deref() == Some(crate::rollout::pause::FEATURES);
        if (c.aborted_at.is_none() || newly_aborted) && !waiting_for_features {
            let label = if status.stable.is_some() {
                format!("canary {}", c.version)
            } else {
                format!("version {}", c.version)
            };
            let since = c
                .step_started_at
                .as_ref()
                .or(c.started_at.as_ref())
                .map(|t| t.0);
            candidates.push((
                Suspect {
                    revision: c.revision.clone(),
                    label,
                    role: Role::Incoming,
                },
                since,
            ));
        }
    }
    if let Some(s) = &status.stable {
        let since = status
            .conditions
            .0
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| c.last_transition_time.0);
        candidates.push((
            Suspect {
                revision: s.revision.clone(),
                label: format!("stable {}", s.version),
                role: Role::Stable,
            },
            since,
        ));
    }
    let mut now_due = Vec::new();
    let mut requeue: Option<Duration> = None;
    for (suspect, since) in candidates {
        if !unavailable(&suspect.revision) {
            continue;
        }
        let waited = since.map_or(GRACE_SECONDS, |s| now.as_second() - s.as_second());
        let next = if waited >= GRACE_SECONDS {
            now_due.push(suspect);
            RECHECK
        } else {
            Duration::from_secs((GRACE_SECONDS - waited.max(0)) as u64 + 1)
        };
        requeue = Some(requeue.map_or(next, |r| r.min(next)));
    }
    (now_due, requeue)
}

/// Folds the findings into the decision: the summary joins the Progressing
/// (incoming revision) or Ready (serving revision) condition message and
/// `status.message`; a canary aborted at its progress deadline carries the
/// problem in its abort reason; a Warning Event (reason: the problem kind)
/// is added for each summary the previous status did not already mention,
/// so a pod failing the same way on every restart makes no new write.
pub fn annotate(decision: &mut Decision, before: &RankingModelStatus, findings: &[Finding]) {
    for finding in findings {
        let summary = finding.summary();
        let status = &mut decision.status;
        let incoming = finding.suspect.role == Role::Incoming;
        let first = status.stable.is_none();
        let aborted = status
            .canary
            .as_ref()
            .filter(|c| incoming && c.revision == finding.suspect.revision)
            .and_then(|c| c.abort_reason.clone().filter(|_| c.aborted_at.is_some()));
        let deadline = decision
            .events
            .iter()
            .any(|e| e.reason == "ProgressDeadlineExceeded");
        match aborted {
            Some(why) if deadline => {
                // The canary was aborted in this decision: the why becomes
                // "why: problem" wherever the decision already wrote it.
                let new = format!("{why}: {}", finding.detail());
                if let Some(c) = status.canary.as_mut() {
                    c.abort_reason = Some(new.clone());
                }
                for c in status.conditions.0.iter_mut() {
                    c.message = c.message.replacen(&why, &new, 1);
                }
                if let Some(m) = status.message.as_mut() {
                    *m = m.replacen(&why, &new, 1);
                }
                for e in decision.events.iter_mut() {
                    if e.reason == "ProgressDeadlineExceeded" {
                        e.message = e.message.replacen(&why, &new, 1);
                    }
                }
            }
            // Aborted for another reason (analysis, request): that is the story.
            Some(_) => continue,
            None => {
                if incoming {
                    append(status, "Progressing", &summary);
                    for e in decision.events.iter_mut() {
                        if e.reason == "ProgressDeadlineExceeded" {
                            e.message = format!("{}; {summary}", e.message);
                        }
                    }
                }
                if !incoming || first {
                    append(status, "Ready", &summary);
                }
                if (incoming || status.canary.is_none())
                    && let Some(m) = status.message.as_mut()
                {
                    *m = format!("{m}; {summary}");
                }
            }
        }
        if !mentions(before, &summary, &finding.detail()) {
            let kind = finding.problems.first().map(|p| p.kind);
            if let Some(kind) = kind {
                decision.events.push(Transition {
                    warning: true,
                    reason: kind.as_str(),
                    message: summary,
                });
            }
        }
    }
}

fn append(status: &mut RankingModelStatus, type_: &str, summary: &str) {
    if let Some(c) = status.conditions.0.iter_mut().find(|c| c.type_ == type_) {
        c.message = format!("{}; {summary}", c.message);
    }
}

/// Whether a status already tells this finding (then its Event was sent).
fn mentions(status: &RankingModelStatus, summary: &str, detail: &str) -> bool {
    status
        .message
        .as_deref()
        .is_some_and(|m| m.contains(summary))
        || status
            .conditions
            .0
            .iter()
            .any(|c| c.message.contains(summary))
        || status
            .canary
            .as_ref()
            .and_then(|c| c.abort_reason.as_deref())
            .is_some_and(|r| r.contains(detail))
}
