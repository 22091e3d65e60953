//! The state machines of every strategy as one explicit table: (strategy, state, action) → next
//! state. Nothing else decides whether an action may run; a pair that isn't listed is refused
//! with the actions that are possible now, and `Release.allowed_actions` is read from here.

use app::model::releases::{ReleaseState, Strategy};

use ReleaseState::*;
use Strategy::*;

/// Where an allowed action leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    State(ReleaseState),
    /// `run_smoke_checks`: `Ready` when every check passed, `SmokeFailed` otherwise.
    BySmokeOutcome,
    /// `set_percent`: `AwaitingPromotion` at 100 %, else the given state.
    ByPercent {
        below_100: ReleaseState,
    },
    /// `next_step`: the next step (`Progressing`), or `AwaitingPromotion` after the last one.
    ByStep,
    /// Rolling `rollback`: `RolledBack` at once when nothing was replaced yet, else
    /// `Progressing` while the stable version is put back node by node (then `RolledBack`).
    RollingBack,
}

/// One allowed transition.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub strategy: Strategy,
    pub from: ReleaseState,
    pub action: &'static str,
    pub to: To,
}

const fn rule(strategy: Strategy, from: ReleaseState, action: &'static str, to: To) -> Rule {
    Rule { strategy, from, action, to }
}

const fn to(state: ReleaseState) -> To {
    To::State(state)
}

/// Every allowed transition. Rollback is possible from every state but the ended-by-rollback
/// ones (and from `Completed`, back to the version that was stable before — refused past a
/// schema contract, see `schema.rs`).
pub const RULES: &[Rule] = &[
    // Canary.
    rule(Canary, Progressing, "set_percent", To::ByPercent { below_100: Progressing }),
    rule(Canary, Progressing, "next_step", To::ByStep),
    rule(Canary, Progressing, "pause", to(Paused)),
    rule(Canary, Progressing, "promote", to(Completed)),
    rule(Canary, Progressing, "abort", to(Aborted)),
    rule(Canary, Progressing, "rollback", to(RolledBack)),
    rule(Canary, Paused, "set_percent", To::ByPercent { below_100: Paused }),
    rule(Canary, Paused, "resume", to(Progressing)),
    rule(Canary, Paused, "promote", to(Completed)),
    rule(Canary, Paused, "abort", to(Aborted)),
    rule(Canary, Paused, "rollback", to(RolledBack)),
    rule(Canary, AwaitingPromotion, "set_percent", To::ByPercent { below_100: Paused }),
    rule(Canary, AwaitingPromotion, "promote", to(Completed)),
    rule(Canary, AwaitingPromotion, "abort", to(Aborted)),
    rule(Canary, AwaitingPromotion, "rollback", to(RolledBack)),
    rule(Canary, Completed, "rollback", to(RolledBack)),
    // Blue-green.
    rule(BlueGreen, Ready, "run_smoke_checks", To::BySmokeOutcome),
    rule(BlueGreen, Ready, "switch", to(Switched)),
    rule(BlueGreen, Ready, "abort", to(Aborted)),
    rule(BlueGreen, Ready, "rollback", to(RolledBack)),
    rule(BlueGreen, SmokeFailed, "run_smoke_checks", To::BySmokeOutcome),
    rule(BlueGreen, SmokeFailed, "abort", to(Aborted)),
    rule(BlueGreen, SmokeFailed, "rollback", to(RolledBack)),
    rule(BlueGreen, Switched, "switch_back", to(Ready)),
    rule(BlueGreen, Switched, "promote", to(Completed)),
    rule(BlueGreen, Switched, "abort", to(Aborted)),
    rule(BlueGreen, Switched, "rollback", to(RolledBack)),
    rule(BlueGreen, Completed, "rollback", to(RolledBack)),
    // Rolling (instances replaced by a deployer; `failed`/`completed` are set by it).
    rule(Rolling, Progressing, "pause", to(Paused)),
    rule(Rolling, Progressing, "abort", to(Aborted)),
    rule(Rolling, Progressing, "rollback", To::RollingBack),
    rule(Rolling, Paused, "resume", to(Progressing)),
    rule(Rolling, Paused, "abort", to(Aborted)),
    rule(Rolling, Paused, "rollback", To::RollingBack),
    rule(Rolling, Failed, "rollback", To::RollingBack),
    rule(Rolling, Completed, "rollback", To::RollingBack),
    // A rollback release completes when it starts; it can't be rolled back in turn (start a
    // release of the version instead).
];

/// Every action name of the API.
pub const ACTIONS: [&str; 10] = [
    "set_percent",
    "next_step",
    "pause",
    "resume",
    "promote",
    "abort",
    "run_smoke_checks",
    "switch",
    "switch_back",
    "rollback",
];

/// The actions possible in `state`, in table order.
pub fn allowed(strategy: Strategy, state: ReleaseState) -> Vec<&'static str> {
    RULES.iter().filter(|r| r.strategy == strategy && r.from == state).map(|r| r.action).collect()
}

/// Where `action` leads from `state`, or why it can't run (with what can).
pub fn next(strategy: Strategy, state: ReleaseState, action: &str) -> Result<To, String> {
    if let Some(rule) = RULES.iter().find(|r| r.strategy == strategy && r.from == state && r.action == action) {
        return Ok(rule.to);
    }
    let now = allowed(strategy, state);
    let what = format!("{action} is not possible for a {} release that is {}", name(strategy), name(state));
    Err(if now.is_empty() {
        format!("{what}: nothing can be done with it any more")
    } else {
        format!("{what}; allowed now: {}", now.join(", "))
    })
}

/// The snake_case name of a strategy or state, as in the API.
pub fn name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRATEGIES: [Strategy; 4] = [Canary, BlueGreen, Rolling, Rollback];
    const STATES: [ReleaseState; 10] =
        [Progressing, Paused, AwaitingPromotion, Ready, SmokeFailed, Switched, Completed, Aborted, RolledBack, Failed];

    #[test]
    fn every_pair_outside_the_table_is_refused_saying_what_is_allowed_now() {
        for strategy in STRATEGIES {
            for state in STATES {
                let allowed_now = allowed(strategy, state);
                for action in ACTIONS {
                    let listed = RULES.iter().any(|r| r.strategy == strategy && r.from == state && r.action == action);
                    match next(strategy, state, action) {
                        Ok(_) => assert!(listed, "{strategy:?}/{state:?}/{action} allowed without a rule"),
                        Err(message) => {
                            assert!(!listed, "{strategy:?}/{state:?}/{action} refused despite its rule");
                            assert!(message.starts_with(&format!("{action} is not possible")), "{message}");
                            if allowed_now.is_empty() {
                                assert!(message.contains("nothing can be done"), "{message}");
                            } else {
                                assert!(
                                    message.contains(&format!("allowed now: {}", allowed_now.join(", "))),
                                    "{message}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_table_has_no_duplicate_pairs_and_only_known_actions() {
        for (i, a) in RULES.iter().enumerate() {
            assert!(ACTIONS.contains(&a.action), "{}", a.action);
            for b in &RULES[i + 1..] {
                assert!(
                    !(a.strategy == b.strategy && a.from == b.from && a.action == b.action),
                    "{:?}/{:?}/{} twice",
                    a.strategy,
                    a.from,
                    a.action
                );
            }
        }
    }

    #[test]
    fn the_documented_paths_of_each_strategy_are_in_the_table() {
        assert_eq!(next(Canary, Progressing, "pause"), Ok(To::State(Paused)));
        assert_eq!(next(Canary, Paused, "resume"), Ok(To::State(Progressing)));
        assert_eq!(next(Canary, Progressing, "abort"), Ok(To::State(Aborted)));
        assert_eq!(next(Canary, AwaitingPromotion, "promote"), Ok(To::State(Completed)));
        assert_eq!(next(BlueGreen, Ready, "run_smoke_checks"), Ok(To::BySmokeOutcome));
        assert_eq!(next(BlueGreen, Ready, "switch"), Ok(To::State(Switched)));
        assert_eq!(next(BlueGreen, Switched, "switch_back"), Ok(To::State(Ready)));
        assert_eq!(next(BlueGreen, Switched, "promote"), Ok(To::State(Completed)));
        let refusal = next(BlueGreen, SmokeFailed, "switch").expect_err("switch needs passed smoke checks");
        assert!(refusal.contains("allowed now: run_smoke_checks, abort, rollback"), "{refusal}");
        let refusal = next(Canary, Aborted, "resume").expect_err("an aborted release has ended");
        assert!(refusal.contains("nothing can be done"), "{refusal}");
        for strategy in [Canary, BlueGreen, Rolling] {
            for state in [Progressing, Paused, AwaitingPromotion, Ready, SmokeFailed, Switched, Completed, Failed] {
                if !allowed(strategy, state).is_empty() {
                    let expected = if strategy == Rolling { To::RollingBack } else { To::State(RolledBack) };
                    assert_eq!(next(strategy, state, "rollback"), Ok(expected), "{strategy:?}/{state:?}");
                }
            }
        }
    }
}
