//! Condition bookkeeping with Kubernetes semantics: `lastTransitionTime`
//! moves only when `status` flips, so an unchanged state writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use mlctl_crds::Conditions;

/// Sets the condition of `type_`, keeping its transition time unless the
/// status changes.
pub fn set_condition(
    conditions: &mut Conditions,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let existing = conditions.0.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
                c.status = status.to_string();
            }
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = observed_generation;
        }
        None => conditions.0.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let mut c = Conditions::default();
        set_condition(&mut c, "Ready", "False", "A", "a", Some(1), t0);
        set_condition(&mut c, "Ready", "False", "B", "b", Some(2), t1);
        assert_eq!(c.0.len(), 1);
        assert_eq!(c.0[0].last_transition_time, Time(t0));
        assert_eq!(c.0[0].reason, "B");
        assert_eq!(c.0[0].observed_generation, Some(2));
        set_condition(&mut c, "Ready", "True", "C", "c", Some(2), t2);
        assert_eq!(c.0[0].last_transition_time, Time(t2));
    }
}
