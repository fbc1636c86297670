//! Pure construction of the Pod status a kubelet reports (no I/O; unit-tested).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Containers run on the local host: host and pod IP are loopback.
pub(crate) const LOCAL_IP: &str = "127.0.0.1";

/// Exactly what a kubelet writes in `message` on the limit of the termination message file.
pub(crate) const MAX_TERMINATION_MESSAGE: usize = 4096;

pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Truncates to at most `max` bytes on a char boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Phase of the pod as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
    fn terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// What the kubelet knows about the first (run) container.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    pub phase: Phase,
    pub start_time: Time,
    pub container_id: Option<String>,
    pub restart_count: i32,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    /// Pod-level reason/message (e.g. `DeadlineExceeded`).
    pub reason: Option<String>,
    pub message: Option<String>,
}

pub(crate) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

pub(crate) fn running(started_at: Time) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(started_at),
        }),
        ..ContainerState::default()
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn terminated(
    exit_code: i32,
    reason: &str,
    message: Option<String>,
    signal: Option<i32>,
    started_at: Option<Time>,
    finished_at: Time,
    container_id: Option<String>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id,
            exit_code,
            finished_at: Some(finished_at),
            message: message.filter(|m| !m.is_empty()),
            reason: Some(reason.to_owned()),
            signal,
            started_at,
        }),
        ..ContainerState::default()
    }
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.to_owned(),
        status,
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(last_transition_time),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// QoS class as the API server / kubelet compute it (simplified to cpu and memory).
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let res = c.resources.clone().unwrap_or_default();
        let req = res.requests.unwrap_or_default();
        let lim = res.limits.unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            match (req.get(r), lim.get(r)) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The full status for `pod` given what was observed of its first container.
pub(crate) fn build(pod: &Pod, obs: &Observed) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let (statuses, unready) = container_statuses(&spec.containers, obs);
    let all_ready = unready.is_empty() && !spec.containers.is_empty();
    PodStatus {
        phase: Some(obs.phase.as_str().to_owned()),
        conditions: Some(conditions(old_conditions, obs, &unready, all_ready)),
        container_statuses: Some(statuses),
        host_ip: Some(LOCAL_IP.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: LOCAL_IP.to_owned(),
        }]),
        pod_ip: Some(LOCAL_IP.to_owned()),
        pod_ips: Some(vec![PodIP {
            ip: LOCAL_IP.to_owned(),
        }]),
        qos_class: Some(qos_class(pod).to_owned()),
        start_time: Some(obs.start_time.clone()),
        reason: obs.reason.clone(),
        message: obs.message.clone(),
        ..old
    }
}

/// The container statuses (the first container as observed, the others never run), and the
/// names of the containers not ready.
fn container_statuses(
    containers: &[Container],
    obs: &Observed,
) -> (Vec<ContainerStatus>, Vec<String>) {
    let first_running = obs.state.running.is_some();
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        if i == 0 {
            if !first_running {
                unready.push(c.name.clone());
            }
            statuses.push(ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: obs.container_id.clone(),
                ready: first_running,
                started: Some(first_running),
                restart_count: obs.restart_count,
                state: Some(obs.state.clone()),
                last_state: obs.last_state.clone(),
                ..ContainerStatus::default()
            });
        } else {
            unready.push(c.name.clone());
            statuses.push(ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                ready: false,
                started: Some(false),
                restart_count: 0,
                state: Some(waiting(
                    "KubeSimUnsupported",
                    Some("kube-sim's kubelet runs only the first container of a pod".into()),
                )),
                ..ContainerStatus::default()
            });
        }
    }
    (statuses, unready)
}

/// The pod conditions the kubelet owns, then the ones other components own (e.g.
/// DisruptionTarget, readiness gates) as they were.
fn conditions(
    old_conditions: Vec<PodCondition>,
    obs: &Observed,
    unready: &[String],
    all_ready: bool,
) -> Vec<PodCondition> {
    let now = now();
    let (ready, ready_reason, ready_message) = match obs.phase {
        Phase::Succeeded => (false, Some("PodCompleted"), None),
        Phase::Failed => (false, Some("PodFailed"), None),
        _ if all_ready => (true, None, None),
        _ => (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    let initialized_reason = (obs.phase == Phase::Succeeded).then_some("PodCompleted");
    let conditions = vec![
        condition(
            &old_conditions,
            "PodReadyToStartContainers",
            !obs.phase.terminal(),
            None,
            None,
            &now,
        ),
        condition(
            &old_conditions,
            "Initialized",
            true,
            initialized_reason,
            None,
            &now,
        ),
        condition(
            &old_conditions,
            "Ready",
            ready,
            ready_reason,
            ready_message.clone(),
            &now,
        ),
        condition(
            &old_conditions,
            "ContainersReady",
            ready,
            ready_reason,
            ready_message,
            &now,
        ),
        condition(&old_conditions, "PodScheduled", true, None, None, &now),
    ];
    let managed = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    let mut all = conditions;
    all.extend(
        old_conditions
            .into_iter()
            .filter(|c| !managed.contains(&c.type_.as_str())),
    );
    all
}

/// Phase as currently recorded on the pod.
pub(crate) fn recorded_phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(recorded_phase(pod), Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|n| Container {
                        name: (*n).to_owned(),
                        image: Some("busybox".into()),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_pod_is_ready() {
        let p = pod(&["main"]);
        let t = now();
        let s = build(
            &p,
            &Observed {
                phase: Phase::Running,
                start_time: t.clone(),
                container_id: Some("kube-sim://abc".into()),
                restart_count: 0,
                state: running(t.clone()),
                last_state: None,
                reason: None,
                message: None,
            },
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(cond(&s, "Initialized").status, "True");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert!(cs.state.as_ref().unwrap().running.is_some());
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.start_time, Some(t));
    }

    #[test]
    fn succeeded_pod_carries_the_termination_message() {
        let p = pod(&["main"]);
        let t = now();
        let msg = r#"{"result":"ok"}"#.to_owned();
        let s = build(
            &p,
            &Observed {
                phase: Phase::Succeeded,
                start_time: t.clone(),
                container_id: Some("kube-sim://abc".into()),
                restart_count: 0,
                state: terminated(
                    0,
                    "Completed",
                    Some(msg.clone()),
                    None,
                    Some(t.clone()),
                    now(),
                    Some("kube-sim://abc".into()),
                ),
                last_state: None,
                reason: None,
                message: None,
            },
        );
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let term = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(term.exit_code, 0);
        assert_eq!(term.reason.as_deref(), Some("Completed"));
        assert_eq!(term.message, Some(msg));
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    }

    #[test]
    fn second_container_is_reported_unsupported() {
        let p = pod(&["main", "sidecar"]);
        let t = now();
        let s = build(
            &p,
            &Observed {
                phase: Phase::Running,
                start_time: t.clone(),
                container_id: None,
                restart_count: 0,
                state: running(t),
                last_state: None,
                reason: None,
                message: None,
            },
        );
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [sidecar]")
        );
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let mut p = pod(&["main"]);
        let old = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(old.clone()),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        let t = now();
        let s = build(
            &p,
            &Observed {
                phase: Phase::Pending,
                start_time: t.clone(),
                container_id: None,
                restart_count: 0,
                state: waiting("ContainerCreating", None),
                last_state: None,
                reason: None,
                message: None,
            },
        );
        assert_eq!(cond(&s, "PodScheduled").last_transition_time, Some(old));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("héllo", 2), "h");
        assert_eq!(truncate_bytes("abc", 4096), "abc");
        assert_eq!(truncate_bytes(&"x".repeat(5000), 4096).len(), 4096);
    }
}
