//! What HAProxy should have (one server per live instance, weights from the policy) and the
//! runtime-API commands that take it there from what it has: a pure function of the two, so an
//! apply is idempotent (nothing to do when they agree) and testable without HAProxy.

use std::collections::{HashMap, HashSet};

use app::model::topology::InstanceHealth;

use super::runtime::ServerState;
use crate::traffic::ServiceRoutes;

/// HAProxy's largest server weight.
pub const MAX_WEIGHT: u16 = 256;

/// The weight of each server when a service has no policy: every healthy instance alike.
pub const EQUAL_WEIGHT: u16 = 100;

/// One server as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedServer {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// `None`: the instance is live but not healthy, so it drains (no new requests).
    pub weight: Option<u16>,
}

/// The servers of `routes`' backend: healthy instances with their version's share split among
/// them, the others draining.
///
/// Each healthy server of a version with `p` percent and `n` healthy servers gets
/// `round(p × K / n)`, with `K` the largest factor that keeps every weight ≤ 256, so the
/// biggest server uses the whole 0–256 range and rounding moves a share by well under 1 %
/// (at most ½ of the smallest weight unit over a total of at least 256). A version with a share
/// gets at least 1 per server, so a 1 % canary is never rounded away.
pub fn wanted_servers(routes: &ServiceRoutes) -> Vec<WantedServer> {
    let weights = &routes.policy.weights;
    let healthy_count = |version: &str| routes.healthy_of(version).count();
    let factor = weights
        .iter()
        .filter(|w| w.percent > 0 && healthy_count(&w.version) > 0)
        .map(|w| f64::from(MAX_WEIGHT) * healthy_count(&w.version) as f64 / f64::from(w.percent))
        .fold(f64::INFINITY, f64::min);
    routes
        .upstreams
        .iter()
        .map(|upstream| {
            let weight = (upstream.health == InstanceHealth::Healthy).then(|| {
                if weights.is_empty() {
                    return EQUAL_WEIGHT;
                }
                let percent = f64::from(routes.policy.percent_of(&upstream.version));
                if percent == 0.0 {
                    return 0;
                }
                let exact = percent * factor / healthy_count(&upstream.version) as f64;
                (exact.round() as u16).clamp(1, MAX_WEIGHT)
            });
            WantedServer { name: upstream.id.to_string(), address: upstream.host.clone(), port: upstream.port, weight }
        })
        .collect()
}

/// A runtime-API command and the answers that mean it worked (besides an empty one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: String,
    pub accepted: &'static [&'static str],
}

impl Command {
    fn new(line: String) -> Self {
        Self { line, accepted: &[] }
    }
}

/// The commands for one backend, and the servers left draining that are not wanted any more
/// (removed once they have no sessions, see [`removals`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendPlan {
    pub commands: Vec<Command>,
    pub leaving: Vec<String>,
}

/// From `have` (this backend's servers in HAProxy) to `want`.
pub fn backend_plan(backend: &str, want: &[WantedServer], have: &[ServerState]) -> BackendPlan {
    let mut plan = BackendPlan::default();
    let by_name: HashMap<&str, &ServerState> = have.iter().map(|s| (s.server.as_str(), s)).collect();
    // Weights first, then states, so a server coming back never runs with a stale weight.
    let mut states = Vec::new();
    for wanted in want {
        let target = format!("{backend}/{}", wanted.name);
        match (by_name.get(wanted.name.as_str()), wanted.weight) {
            (None, None) => {} // not healthy yet: added when it is
            (None, Some(weight)) => {
                plan.commands.push(Command {
                    line: format!("add server {target} {}:{} weight {weight}", wanted.address, wanted.port),
                    accepted: &["New server registered."],
                });
                states.push(Command::new(format!("enable server {target}")));
            }
            (Some(server), weight) => {
                if server.address != wanted.address || server.port != wanted.port {
                    plan.commands.push(Command {
                        line: format!("set server {target} addr {} port {}", wanted.address, wanted.port),
                        accepted: &["IP changed", "no need to change", "port changed"],
                    });
                }
                match weight {
                    Some(weight) => {
                        if server.weight != weight {
                            plan.commands.push(Command::new(format!("set server {target} weight {weight}")));
                        }
                        if server.in_maintenance() || server.draining() {
                            states.push(Command::new(format!("set server {target} state ready")));
                        }
                    }
                    None if !server.draining() || server.in_maintenance() => {
                        states.push(Command::new(format!("set server {target} state drain")));
                    }
                    None => {}
                }
            }
        }
    }
    let wanted: HashSet<&str> = want.iter().map(|w| w.name.as_str()).collect();
    for server in have.iter().filter(|s| !wanted.contains(s.server.as_str())) {
        if !server.draining() && !server.in_maintenance() {
            states.push(Command::new(format!("set server {backend}/{} state drain", server.server)));
        }
        plan.leaving.push(server.server.clone());
    }
    plan.commands.extend(states);
    plan
}

/// The commands that remove a server for good: maintenance first (HAProxy refuses to delete a
/// server in service), then delete.
pub fn removals(backend: &str, server: &str) -> [Command; 2] {
    [
        Command::new(format!("set server {backend}/{server} state maint")),
        Command { line: format!("del server {backend}/{server}"), accepted: &["Server deleted."] },
    ]
}

#[cfg(test)]
mod tests {
    use app::model::traffic::{TrafficPolicy, VersionWeight};
    use uuid::Uuid;

    use super::*;
    use crate::traffic::Upstream;

    fn routes(weights: &[(&str, u8)], instances: &[(&str, InstanceHealth)]) -> ServiceRoutes {
        let mut policy = TrafficPolicy::none("web");
        policy.weights = weights.iter().map(|(v, p)| VersionWeight { version: (*v).to_owned(), percent: *p }).collect();
        let upstreams = instances
            .iter()
            .enumerate()
            .map(|(i, (version, health))| Upstream {
                id: Uuid::from_u128(i as u128 + 1),
                version: (*version).to_owned(),
                cluster: "east".to_owned(),
                node: "east-1".to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 8000 + i as u16,
                health: *health,
            })
            .collect();
        ServiceRoutes { policy, upstreams }
    }

    /// The share each version really gets from the weights.
    fn shares(routes: &ServiceRoutes) -> HashMap<String, f64> {
        let servers = wanted_servers(routes);
        let total: f64 = servers.iter().filter_map(|s| s.weight).map(f64::from).sum();
        let mut shares = HashMap::new();
        for (server, upstream) in servers.iter().zip(&routes.upstreams) {
            *shares.entry(upstream.version.clone()).or_insert(0.0) +=
                100.0 * f64::from(server.weight.unwrap_or(0)) / total;
        }
        shares
    }

    #[test]
    fn weights_give_every_version_its_share_within_a_fraction_of_a_percent() {
        use InstanceHealth::Healthy;
        let fleets: [&[(&str, InstanceHealth)]; 3] = [
            &[("v1", Healthy), ("v2", Healthy)],
            &[("v1", Healthy), ("v1", Healthy), ("v1", Healthy), ("v2", Healthy)],
            &[
                ("v1", Healthy),
                ("v1", Healthy),
                ("v1", Healthy),
                ("v1", Healthy),
                ("v1", Healthy),
                ("v2", Healthy),
                ("v2", Healthy),
                ("v2", Healthy),
            ],
        ];
        for fleet in fleets {
            for canary in [1_u8, 5, 10, 25, 50, 75, 99] {
                let routes = routes(&[("v1", 100 - canary), ("v2", canary)], fleet);
                let got = shares(&routes)["v2"];
                assert!((got - f64::from(canary)).abs() < 0.5, "{canary} % canary on {fleet:?} got {got:.3} %");
                assert!(wanted_servers(&routes).iter().all(|s| s.weight.is_some_and(|w| (1..=256).contains(&w))));
            }
        }
    }

    #[test]
    fn a_version_without_share_gets_weight_zero_and_unhealthy_instances_drain() {
        let routes = routes(
            &[("v1", 100)],
            &[("v1", InstanceHealth::Healthy), ("v2", InstanceHealth::Healthy), ("v1", InstanceHealth::Unhealthy)],
        );
        let weights: Vec<Option<u16>> = wanted_servers(&routes).iter().map(|s| s.weight).collect();
        assert_eq!(weights, [Some(256), Some(0), None]);
    }

    #[test]
    fn without_a_policy_every_healthy_instance_weighs_the_same() {
        let routes = routes(&[], &[("v1", InstanceHealth::Healthy), ("v2", InstanceHealth::Healthy)]);
        let weights: Vec<Option<u16>> = wanted_servers(&routes).iter().map(|s| s.weight).collect();
        assert_eq!(weights, [Some(EQUAL_WEIGHT), Some(EQUAL_WEIGHT)]);
    }

    fn have(name: &str, port: u16, admin_state: u32, weight: u16) -> ServerState {
        ServerState {
            backend: "b".to_owned(),
            server: name.to_owned(),
            address: "127.0.0.1".to_owned(),
            port,
            admin_state,
            weight,
        }
    }

    fn want(name: &str, port: u16, weight: Option<u16>) -> WantedServer {
        WantedServer { name: name.to_owned(), address: "127.0.0.1".to_owned(), port, weight }
    }

    fn lines(plan: &BackendPlan) -> Vec<&str> {
        plan.commands.iter().map(|c| c.line.as_str()).collect()
    }

    #[test]
    fn a_plan_adds_new_servers_sets_changed_weights_and_drains_the_rest() {
        let have = [have("a", 1, 0, 256), have("b", 2, 0, 10), have("gone", 3, 0, 5)];
        let want = [want("a", 1, Some(256)), want("b", 2, Some(28)), want("new", 4, Some(3)), want("sick", 5, None)];
        let plan = backend_plan("b", &want, &have);
        assert_eq!(
            lines(&plan),
            [
                "set server b/b weight 28",
                "add server b/new 127.0.0.1:4 weight 3",
                "enable server b/new",
                "set server b/gone state drain",
            ]
        );
        assert_eq!(plan.leaving, ["gone"]);
    }

    #[test]
    fn a_plan_is_empty_when_haproxy_already_agrees() {
        let have = [have("a", 1, 0, 256), have("sick", 2, 0x08, 7)];
        let plan = backend_plan("b", &[want("a", 1, Some(256)), want("sick", 2, None)], &have);
        assert_eq!(plan, BackendPlan::default());
    }

    #[test]
    fn a_drained_server_that_recovers_is_made_ready_with_its_weight() {
        let plan = backend_plan("b", &[want("a", 1, Some(9))], &[have("a", 1, 0x08, 3)]);
        assert_eq!(lines(&plan), ["set server b/a weight 9", "set server b/a state ready"]);
    }
}
