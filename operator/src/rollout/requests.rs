//! Request annotations (the "requestedAt" pattern): a value not yet recorded
//! in `status.handledRequests` is pending and is acted on exactly once.

use std::collections::BTreeMap;

use mlctl_crds::requests;

/// The requests of a model that are not handled yet, with their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// `mlctl.io/promote`.
    pub promote: Option<String>,
    /// `mlctl.io/promote-full`.
    pub promote_full: Option<String>,
    /// `mlctl.io/abort`.
    pub abort: Option<String>,
    /// `mlctl.io/retry`.
    pub retry: Option<String>,
    /// `mlctl.io/rollback`.
    pub rollback: Option<String>,
}

impl Requests {
    /// The pending requests among `annotations`.
    pub fn pending(
        annotations: Option<&BTreeMap<String, String>>,
        handled: &BTreeMap<String, String>,
    ) -> Self {
        let get = |key: &str| {
            let value = annotations?.get(key)?;
            let value = value.trim();
            if value.is_empty() || handled.get(key).map(String::as_str) == Some(value) {
                None
            } else {
                Some(value.to_string())
            }
        };
        Requests {
            promote: get(requests::PROMOTE),
            promote_full: get(requests::PROMOTE_FULL),
            abort: get(requests::ABORT),
            retry: get(requests::RETRY),
            rollback: get(requests::ROLLBACK),
        }
    }

    /// Every pending request as (annotation, value).
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        [
            (requests::PROMOTE, &self.promote),
            (requests::PROMOTE_FULL, &self.promote_full),
            (requests::ABORT, &self.abort),
            (requests::RETRY, &self.retry),
            (requests::ROLLBACK, &self.rollback),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_pending_until_recorded_as_handled() {
        let mut annotations = BTreeMap::new();
        annotations.insert(requests::PROMOTE.to_string(), "2026-11-25T10:00:00Z".into());
        annotations.insert(requests::ABORT.to_string(), " ".into());
        let mut handled = BTreeMap::new();
        let r = Requests::pending(Some(&annotations), &handled);
        assert_eq!(r.promote.as_deref(), Some("2026-11-25T10:00:00Z"));
        assert_eq!(r.abort, None, "blank values are not requests");
        handled.insert(requests::PROMOTE.to_string(), "2026-11-25T10:00:00Z".into());
        assert_eq!(
            Requests::pending(Some(&annotations), &handled),
            Requests::default()
        );
        annotations.insert(requests::PROMOTE.to_string(), "2026-11-25T10:05:00Z".into());
        assert!(
            Requests::pending(Some(&annotations), &handled)
                .promote
                .is_some()
        );
        assert_eq!(Requests::pending(None, &handled), Requests::default());
    }
}
