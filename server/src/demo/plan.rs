//! Which demo service instances run where: two clusters of three nodes, each node on its own
//! loopback address, web/api/payments in v1 and v2, each on a fixed port per service and version.

use std::net::SocketAddr;

use serde::Serialize;

use super::FleetSize;

/// Services and versions of the demo, in port order (service n, version m → base + 10·n + m).
const SERVICES: [&str; 3] = ["web", "api", "payments"];
const VERSIONS: [&str; 2] = ["v1", "v2"];
/// Which nodes (1-based, in every cluster) run each (service, version): 9 instances per cluster,
/// every node runs something of each service, and every version runs on more than one node
/// across the fleet, so stopping a node degrades services instead of erasing them.
const PLACEMENT: [(u16, u16, &[u8]); 6] =
    [(0, 0, &[1, 2]), (0, 1, &[3]), (1, 0, &[2, 3]), (1, 1, &[1]), (2, 0, &[1, 3]), (2, 1, &[2])];
/// Clusters of the full fleet and the third octet of their nodes' loopback addresses
/// (east-1 = 127.0.1.1, west-3 = 127.0.2.3): all of 127.0.0.0/8 is loopback on Linux, so each
/// node gets an address of its own without any set-up.
const CLUSTERS: [(&str, u8); 2] = [("east", 1), ("west", 2)];
const NODES_PER_CLUSTER: u8 = 3;
/// Who calls whom on `GET /checkout`: web → api → payments.
const CALLS: [(&str, &str); 2] = [("web", "api"), ("api", "payments")];
/// The service the load generator sends traffic to: the entry of the call chain.
pub const ENTRY_SERVICE: &str = "web";

/// What a fleet member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// A demo service instance (`opsdeck demo-service`).
    Service,
    /// The node's agent (`opsdeck agent`): it stops and starts with its node.
    Agent,
}

/// The name agents have in the fleet's `service` column (ids look like `agent@east-1`).
pub const AGENT: &str = "agent";

/// One instance the fleet runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSpec {
    pub kind: MemberKind,
    /// `service-version@node`, e.g. `web-v1@east-1`: how the control API names it.
    pub id: String,
    pub service: String,
    pub version: String,
    pub cluster: String,
    pub node: String,
    pub address: SocketAddr,
}

/// The instances of a demo fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    pub instances: Vec<InstanceSpec>,
    /// The first service port (see [`FleetPlan::new`]).
    pub port_base: u16,
}

impl FleetPlan {
    /// Which service each service of this fleet calls, leaving out callees it doesn't run (the
    /// small fleet has only web, whose requests then stay within web).
    pub fn callees(&self) -> std::collections::HashMap<String, String> {
        let runs = |service: &str| self.instances.iter().any(|i| i.kind == MemberKind::Service && i.service == service);
        CALLS
            .iter()
            .filter(|(caller, callee)| runs(caller) && runs(callee))
            .map(|(caller, callee)| ((*caller).to_owned(), (*callee).to_owned()))
            .collect()
    }

    /// The fleet of this size, with ports from `port_base` (fixed per service and version, so a
    /// restarted instance comes back at the same address).
    pub fn new(size: FleetSize, port_base: u16) -> Self {
        let spec = |service_index: u16, version_index: u16, cluster: &str, octet: u8, node: u8| {
            let (service, version) = (SERVICES[usize::from(service_index)], VERSIONS[usize::from(version_index)]);
            let node_name = format!("{cluster}-{node}");
            // `--service-port-base` is at most 65000, so this stays within u16.
            let port = port_base + 10 * service_index + version_index;
            InstanceSpec {
                kind: MemberKind::Service,
                id: format!("{service}-{version}@{node_name}"),
                service: service.into(),
                version: version.into(),
                cluster: cluster.into(),
                node: node_name,
                address: SocketAddr::from(([127, 0, octet, node], port)),
            }
        };
        let instances = match size {
            FleetSize::Full => CLUSTERS
                .iter()
                .flat_map(|&(cluster, octet)| {
                    (1..=NODES_PER_CLUSTER).flat_map(move |node| {
                        PLACEMENT
                            .iter()
                            .filter(move |(_, _, nodes)| nodes.contains(&node))
                            .map(move |&(service, version, _)| spec(service, version, cluster, octet, node))
                    })
                })
                .collect(),
            FleetSize::Small => vec![spec(0, 0, "east", 1, 1), spec(0, 0, "east", 1, 2), spec(0, 1, "east", 1, 3)],
        };
        // The full fleet runs an agent per node, as a real one would; the small one (for tests) doesn't.
        let mut instances: Vec<InstanceSpec> = instances;
        if size == FleetSize::Full {
            let mut nodes: Vec<(String, String, SocketAddr)> = instances
                .iter()
                .map(|i| (i.cluster.clone(), i.node.clone(), SocketAddr::new(i.address.ip(), 0)))
                .collect();
            nodes.dedup();
            nodes.sort();
            nodes.dedup();
            instances.extend(nodes.into_iter().map(|(cluster, node, address)| InstanceSpec {
                kind: MemberKind::Agent,
                id: format!("{AGENT}@{node}"),
                service: AGENT.into(),
                version: String::new(),
                cluster,
                node,
                address,
            }));
        }
        Self { instances, port_base }
    }

    /// Where a deployer puts `version` of `service` on `node` (a rolling release): the node's
    /// address and the port fixed for that service and version. The demo deploys versions
    /// `v1`–`v9` of its own services (each port is base + 10·service + version − 1).
    pub fn placement(&self, service: &str, version: &str, node: &str) -> Result<InstanceSpec, String> {
        let service_index = SERVICES
            .iter()
            .position(|s| *s == service)
            .ok_or_else(|| format!("the demo runs no service {service:?}; it deploys {}", SERVICES.join(", ")))?;
        let version_index = version
            .strip_prefix('v')
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|n| (1..=9).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| format!("the demo deploys versions v1–v9, not {version:?}"))?;
        let on_node = self.instances.iter().find(|i| i.node == node).ok_or_else(|| {
            let mut nodes: Vec<&str> = self.instances.iter().map(|i| i.node.as_str()).collect();
            nodes.sort_unstable();
            nodes.dedup();
            format!("the demo has no node {node:?}; its nodes are {}", nodes.join(", "))
        })?;
        // Both indexes are small and the base is at most 65000, so this stays within u16.
        let port = self.port_base + 10 * u16::try_from(service_index).unwrap_or(0) + version_index;
        Ok(InstanceSpec {
            kind: MemberKind::Service,
            id: format!("{service}-{version}@{node}"),
            service: service.to_owned(),
            version: version.to_owned(),
            cluster: on_node.cluster.clone(),
            node: node.to_owned(),
            address: SocketAddr::new(on_node.address.ip(), port),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_full_fleet_spreads_two_versions_of_three_services_over_six_nodes_with_unique_addresses() {
        let mut plan = FleetPlan::new(FleetSize::Full, 8100);
        let agents: Vec<_> =
            plan.instances.iter().filter(|i| i.kind == MemberKind::Agent).map(|i| i.id.clone()).collect();
        assert_eq!(
            agents,
            ["agent@east-1", "agent@east-2", "agent@east-3", "agent@west-1", "agent@west-2", "agent@west-3"]
        );
        plan.instances.retain(|i| i.kind == MemberKind::Service);
        assert_eq!(plan.instances.len(), 18);
        let addresses: HashSet<_> = plan.instances.iter().map(|i| i.address).collect();
        assert_eq!(addresses.len(), plan.instances.len(), "one instance per host:port");
        let ids: HashSet<_> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), plan.instances.len(), "ids are unique");
        let nodes: HashSet<_> = plan.instances.iter().map(|i| (i.node.as_str(), i.address.ip())).collect();
        assert_eq!(nodes.len(), 6, "each node has its own address: {nodes:?}");
        for service in SERVICES {
            for version in VERSIONS {
                let on: Vec<_> =
                    plan.instances.iter().filter(|i| i.service == service && i.version == version).collect();
                assert!(on.len() >= 2, "{service} {version} runs more than once");
                assert!(on.iter().all(|i| i.address.port() == on[0].address.port()), "fixed port per version");
            }
        }
        let east_1 = plan.instances.iter().find(|i| i.id == "web-v1@east-1").expect("web v1 on east-1");
        assert_eq!(east_1.address, "127.0.1.1:8100".parse().expect("address"));
        let payments = plan.instances.iter().find(|i| i.id == "payments-v2@west-2").expect("payments v2 on west-2");
        assert_eq!(payments.address, "127.0.2.2:8121".parse().expect("address"));
    }

    #[test]
    fn in_the_full_fleet_web_calls_api_which_calls_payments_and_in_the_small_one_nobody_is_called() {
        let full = FleetPlan::new(FleetSize::Full, 8100).callees();
        let mut chain: Vec<_> = full.iter().map(|(caller, callee)| format!("{caller} → {callee}")).collect();
        chain.sort();
        assert_eq!(chain, ["api → payments", "web → api"]);
        assert!(FleetPlan::new(FleetSize::Small, 8100).callees().is_empty(), "the small fleet runs only web");
    }

    #[test]
    fn the_small_fleet_is_web_v1_on_two_nodes_and_web_v2_on_a_third() {
        let plan = FleetPlan::new(FleetSize::Small, 40000);
        let ids: Vec<_> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["web-v1@east-1", "web-v1@east-2", "web-v2@east-3"]);
    }

    #[test]
    fn a_deployed_version_gets_the_nodes_address_and_its_fixed_port_or_a_reason_why_not() {
        let plan = FleetPlan::new(FleetSize::Small, 40000);
        let v2 = plan.placement("web", "v2", "east-1").expect("web v2 fits on east-1");
        assert_eq!((v2.id.as_str(), v2.address), ("web-v2@east-1", "127.0.1.1:40001".parse().expect("address")));
        assert_eq!(plan.placement("web", "v2", "east-3").expect("known").address, plan.instances[2].address);
        assert_eq!(plan.placement("web", "v9", "east-2").expect("v9").address.port(), 40008);
        for (service, version, node, why) in [
            ("shop", "v2", "east-1", "no service"),
            ("web", "v10", "east-1", "v1–v9"),
            ("web", "2", "east-1", "v1–v9"),
            ("web", "v2", "west-1", "no node \"west-1\"; its nodes are east-1, east-2, east-3"),
        ] {
            let refusal = plan.placement(service, version, node).expect_err("refused");
            assert!(refusal.contains(why), "{refusal}");
        }
    }
}
