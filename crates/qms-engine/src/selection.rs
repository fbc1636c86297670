//! Agent selection (spec §3.1 load balancing and failover).
//!
//! - By capability: among the agents that have it and have free capacity, healthy ones first, then
//!   higher priority, then fewer running tasks, then name (so the choice is deterministic).
//! - By name: the named agent when it is healthy and has free capacity. Otherwise (unhealthy or
//!   full) the task fails over to the best healthy agent with free capacity that has the named
//!   agent's *first* capability (its primary specialisation). With no such agent, an unhealthy
//!   named agent with free capacity is still used (better than nothing), and a full one is waited for.
//! - A name that is no Agent is looked up as a capability (templates written like the seed list
//!   `qms-code-reviewer`, which may also be what a set of agents advertises).
//! - No agent at all for the selector is a configuration fault (→ ERROR); agents that exist but are
//!   all full mean "wait".
//!
//! Load is live: `AgentView::running` (the agent's live Jobs) plus `extra`, the tasks this workflow
//! started whose Jobs the cache does not show yet, so an agent never gets more than its
//! `loadCapacity` Jobs.

use std::collections::BTreeMap;

use qms_api::AgentSelector;

use crate::observe::AgentView;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    Agent(String),
    /// Agents exist for the selector but none has free capacity now.
    Wait(String),
    /// No agent exists for the selector.
    NoAgent(String),
}

/// Picks the agent for `selector`. `extra` counts, per agent, tasks started but not yet visible
/// in `AgentView::running`.
pub fn select(
    selector: &AgentSelector,
    agents: &BTreeMap<String, AgentView>,
    extra: &BTreeMap<String, u32>,
) -> Selection {
    let load = |name: &str, v: &AgentView| v.running + extra.get(name).copied().unwrap_or(0);
    let free = |name: &str, v: &AgentView| load(name, v) < v.spec.load_capacity;
    if let Some(name) = &selector.name {
        if let Some(view) = agents.get(name) {
            if view.healthy && free(name, view) {
                return Selection::Agent(name.clone());
            }
            let alternative = view.spec.capabilities.first().and_then(|cap| {
                best(agents, extra, cap, |n, v| {
                    n != name && v.healthy && free(n, v)
                })
            });
            if let Some(alt) = alternative {
                return Selection::Agent(alt);
            }
            if free(name, view) {
                return Selection::Agent(name.clone());
            }
            return Selection::Wait(format!("agent {name} is at capacity"));
        }
        return by_capability(name, agents, extra, &format!("agent {name}"));
    }
    match &selector.capability {
        Some(cap) => by_capability(cap, agents, extra, &format!("capability {cap}")),
        None => Selection::NoAgent("agent selector names neither an agent nor a capability".into()),
    }
}

fn by_capability(
    cap: &str,
    agents: &BTreeMap<String, AgentView>,
    extra: &BTreeMap<String, u32>,
    what: &str,
) -> Selection {
    if !agents
        .values()
        .any(|v| v.spec.capabilities.iter().any(|c| c == cap))
    {
        return Selection::NoAgent(format!("no Agent exists for {what}"));
    }
    let load = |name: &str, v: &AgentView| v.running + extra.get(name).copied().unwrap_or(0);
    match best(agents, extra, cap, |n, v| load(n, v) < v.spec.load_capacity) {
        Some(a) => Selection::Agent(a),
        None => Selection::Wait(format!("every agent for {what} is at capacity")),
    }
}

fn best(
    agents: &BTreeMap<String, AgentView>,
    extra: &BTreeMap<String, u32>,
    cap: &str,
    eligible: impl Fn(&str, &AgentView) -> bool,
) -> Option<String> {
    agents
        .iter()
        .filter(|(n, v)| v.spec.capabilities.iter().any(|c| c == cap) && eligible(n, v))
        // BTreeMap iterates by name, and min_by_key keeps the first minimum: ties go to the name.
        .min_by_key(|(n, v)| {
            let running = v.running + extra.get(n.as_str()).copied().unwrap_or(0);
            (!v.healthy, std::cmp::Reverse(v.spec.priority), running)
        })
        .map(|(n, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::{AgentJob, AgentSpec, HealthPolicy, Priority};

    fn view(caps: &[&str], cap: u32, running: u32, prio: Priority, healthy: bool) -> AgentView {
        AgentView {
            spec: AgentSpec {
                specialization: None,
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                load_capacity: cap,
                priority: prio,
                default_timeout: None,
                health: HealthPolicy::default(),
                job: AgentJob {
                    image: "img".into(),
                    command: vec![],
                    args: vec![],
                    env: vec![],
                    resources: None,
                    service_account_name: None,
                },
            },
            running,
            healthy,
        }
    }

    fn pick(sel: AgentSelector, agents: &BTreeMap<String, AgentView>) -> Selection {
        select(&sel, agents, &BTreeMap::new())
    }

    #[test]
    fn capability_prefers_healthy_then_priority_then_load_then_name() {
        use Priority::*;
        let mut a = BTreeMap::new();
        a.insert("a".into(), view(&["review"], 5, 0, Critical, false));
        a.insert("b".into(), view(&["review"], 5, 3, High, true));
        a.insert("c".into(), view(&["review"], 5, 1, High, true));
        a.insert("d".into(), view(&["review"], 5, 1, High, true));
        a.insert("e".into(), view(&["other"], 5, 0, Critical, true));
        assert_eq!(
            pick(AgentSelector::by_capability("review"), &a),
            Selection::Agent("c".into())
        );
        // c and d are filled by this workflow's own unseen tasks: b is next.
        let extra = BTreeMap::from([("c".to_string(), 4), ("d".to_string(), 4)]);
        assert_eq!(
            select(&AgentSelector::by_capability("review"), &a, &extra),
            Selection::Agent("b".into())
        );
    }

    #[test]
    fn full_agents_mean_wait_and_missing_agents_mean_error() {
        let mut a = BTreeMap::new();
        a.insert("x".into(), view(&["review"], 1, 1, Priority::Medium, true));
        assert!(matches!(
            pick(AgentSelector::by_capability("review"), &a),
            Selection::Wait(_)
        ));
        assert!(matches!(
            pick(AgentSelector::by_name("x"), &a),
            Selection::Wait(_)
        ));
        assert!(matches!(
            pick(AgentSelector::by_capability("nope"), &a),
            Selection::NoAgent(_)
        ));
        assert!(matches!(
            pick(AgentSelector::by_name("nope"), &a),
            Selection::NoAgent(_)
        ));
        // A missing name is looked up as a capability.
        assert_eq!(
            pick(
                AgentSelector::by_name("review"),
                &BTreeMap::from([(
                    "y".to_string(),
                    view(&["review"], 2, 0, Priority::Low, true)
                )])
            ),
            Selection::Agent("y".into())
        );
    }

    #[test]
    fn named_agent_fails_over_on_its_first_capability() {
        let mut a = BTreeMap::new();
        a.insert(
            "main".into(),
            view(&["dor", "basic"], 2, 0, Priority::High, false),
        );
        a.insert("backup".into(), view(&["dor"], 2, 0, Priority::Low, true));
        a.insert(
            "basic-only".into(),
            view(&["basic"], 2, 0, Priority::High, true),
        );
        assert_eq!(
            pick(AgentSelector::by_name("main"), &a),
            Selection::Agent("backup".into())
        );
        a.get_mut("backup").unwrap().running = 2;
        // No healthy alternative with room: the unhealthy named agent still gets the task.
        assert_eq!(
            pick(AgentSelector::by_name("main"), &a),
            Selection::Agent("main".into())
        );
        a.get_mut("main").unwrap().healthy = true;
        assert_eq!(
            pick(AgentSelector::by_name("main"), &a),
            Selection::Agent("main".into())
        );
    }
}
