//! The health model, aggregated on the server: every instance, grouped by cluster → node →
//! service version, judged by share of healthy members, with one root cause per down node and
//! the list of what needs attention first ([`TopologyView`]). [`build`] is a pure function of
//! the rows, so the rules are unit-tested without a database.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use app::model::{
    events::BreakerPosition,
    health::{
        Attention, ClusterView, Health, HealthCounts, InstanceCell, InstanceGroup, NodeView, ServiceSummary, Severity,
        TopologyView,
    },
    topology::InstanceHealth,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{attention::ServiceAccumulator, natural::NaturalKey};

/// A group of at most this many instances lists each one; a bigger group lists only those not
/// healthy and counts the rest, so the picture stays readable at thousands of instances.
pub const LIST_UP_TO: usize = 12;
/// A node counts as down (one root cause for all its instances) when at least this many
/// instances run on it and none of them passes its checks. With a single instance, "the node
/// is down" and "the instance is down" can't be told apart, so the instance is blamed.
pub const NODE_DOWN_MIN_INSTANCES: u32 = 2;

/// One instance (or an empty node, with `instance` = `None`) as read from the database.
#[derive(Debug, Clone)]
pub struct Row {
    pub cluster: String,
    pub node: String,
    pub node_address: Option<String>,
    /// When the node's agent last checked in and how often it reports, if it has an agent.
    pub agent: Option<(DateTime<Utc>, i32)>,
    pub instance: Option<InstanceRow>,
}

#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: String,
    pub service: String,
    pub version: String,
    pub port: u16,
    pub health: InstanceHealth,
    pub breaker: BreakerPosition,
    pub reason: Option<String>,
    pub changed_at: DateTime<Utc>,
}

/// Reads every cluster, node and instance and builds the view.
pub async fn load(db: &PgPool, last_event_id: i64) -> Result<TopologyView, sqlx::Error> {
    let records = sqlx::query!(
        r#"SELECT c.name AS cluster, n.name AS "node?", n.address AS node_address, n.agent_seen_at, n.agent_every_ms,
                  i.id AS "id?", s.name AS "service?", v.label AS "version?", i.port AS "port?",
                  i.health AS "health?", i.breaker AS "breaker?", i.health_reason AS reason,
                  i.health_changed_at AS "changed_at?"
           FROM clusters c
           LEFT JOIN nodes n ON n.cluster_id = c.id
           LEFT JOIN instances i ON i.node_id = n.id
           LEFT JOIN services s ON s.id = i.service_id
           LEFT JOIN service_versions v ON v.id = i.version_id
           ORDER BY c.name, n.name, s.name, v.label, i.port"#
    )
    .fetch_all(db)
    .await?;
    let rows = records
        .into_iter()
        .filter_map(|r| {
            let node = r.node?;
            let instance = match (r.id, r.service, r.version, r.port, r.health, r.breaker, r.changed_at) {
                (Some(id), Some(service), Some(version), Some(port), Some(health), Some(breaker), Some(changed_at)) => {
                    Some(InstanceRow {
                        id: id.to_string(),
                        service,
                        version,
                        port: u16::try_from(port).unwrap_or_default(),
                        health: InstanceHealth::parse(&health),
                        breaker: BreakerPosition::parse(&breaker),
                        reason: r.reason,
                        changed_at,
                    })
                }
                _ => None,
            };
            let agent = r.agent_seen_at.zip(r.agent_every_ms);
            Some(Row { cluster: r.cluster, node, node_address: r.node_address, agent, instance })
        })
        .collect::<Vec<_>>();
    Ok(build(&rows, Utc::now(), last_event_id))
}

/// A cluster's nodes: name (in natural order) → (address, instances).
type NodesOf<'a> = BTreeMap<NaturalKey<'a>, NodeRows<'a>>;

/// One node's rows: its address, its agent's last check-in, its instances.
type NodeRows<'a> = (Option<&'a str>, Option<(DateTime<Utc>, i32)>, Vec<&'a InstanceRow>);

/// The view of these rows (ordered by cluster, node, service, version, port).
pub fn build(rows: &[Row], now: DateTime<Utc>, last_event_id: i64) -> TopologyView {
    let mut clusters: BTreeMap<&str, NodesOf<'_>> = BTreeMap::new();
    for row in rows {
        let nodes = clusters.entry(&row.cluster).or_default();
        let node = nodes.entry(NaturalKey(&row.node)).or_insert((row.node_address.as_deref(), row.agent, Vec::new()));
        node.2.extend(row.instance.as_ref());
    }

    let mut counts = HealthCounts::default();
    let mut services: BTreeMap<&str, ServiceAccumulator> = BTreeMap::new();
    let mut attention = Vec::new();
    let mut cluster_views = Vec::new();
    for (cluster, nodes) in &clusters {
        let mut cluster_counts = HealthCounts::default();
        let mut node_views = Vec::new();
        let mut node_healths = Vec::new();
        for (node, (address, agent, instances)) in nodes {
            let mut node_counts = HealthCounts::default();
            instances.iter().for_each(|i| node_counts.add(i.health));
            // The agent's silence is the node's own signal: it holds even with one instance.
            let agent_silence = agent.and_then(|(seen, every_ms)| {
                let silent_ms = (now - seen).num_milliseconds();
                (silent_ms > super::agents::silent_after_ms(every_ms)).then_some((silent_ms / 1000, every_ms / 1000))
            });
            let node_down = agent_silence.is_some()
                || (node_counts.total() >= NODE_DOWN_MIN_INSTANCES
                    && node_counts.healthy == 0
                    && node_counts.unknown == 0);
            let node = node.0;
            let label = format!("{cluster}/{node}");
            let down_reason = node_down.then(|| {
                let affected: BTreeSet<&str> = instances.iter().map(|i| i.service.as_str()).collect();
                let affected = if affected.is_empty() {
                    "no instances run there".to_string()
                } else {
                    format!("affected: {}", affected.into_iter().collect::<Vec<_>>().join(", "))
                };
                let (reason, detail, since) = match agent_silence {
                    Some((silent, every)) => {
                        let reason = format!("its agent has been silent for {silent} s (it reports every {every} s)");
                        let since = agent.map(|(seen, _)| seen);
                        (reason.clone(), format!("{}; {affected}.", capitalise(&reason)), since)
                    }
                    None => {
                        let cause = most_common(instances.iter().filter_map(|i| i.reason.as_deref()));
                        let detail = format!(
                            "All {} instances on it fail their checks{}; {affected}.",
                            node_counts.total(),
                            cause.map(|c| format!(" ({c})")).unwrap_or_default(),
                        );
                        let reason = format!("every instance on it ({}) fails its checks", node_counts.total());
                        (reason, detail, instances.iter().map(|i| i.changed_at).min())
                    }
                };
                attention.push(Attention {
                    severity: Severity::Critical,
                    kind: "node_down".into(),
                    title: format!("Node {label} is down"),
                    detail,
                    link: format!("/nodes/{cluster}/{node}"),
                    since,
                });
                reason
            });
            let root_cause = node_down.then(|| format!("down because node {label} is down"));
            let groups = group(instances, root_cause.as_deref());
            for instance in instances {
                let service = services.entry(&instance.service).or_default();
                service.counts.add(instance.health);
                service.versions.insert(&instance.version);
                service.nodes.insert(label.clone());
                if instance.breaker == BreakerPosition::Open {
                    service.open_breakers += 1;
                    // On a down node the breaker is part of that one root cause, not news.
                    service.unexplained_breakers += u32::from(!node_down);
                }
                if Health::of_instance(instance.health) == Health::Down {
                    service.down_since =
                        service.down_since.min(Some(instance.changed_at)).or(Some(instance.changed_at));
                    if node_down {
                        service.down_nodes.insert(label.clone());
                    } else {
                        service.own_failures += 1;
                    }
                }
                if instance.health == InstanceHealth::Expired && !node_down {
                    service.unexplained_expired += 1;
                }
            }
            let health = if node_down { Health::Down } else { Health::by_share(&node_counts) };
            node_healths.push(health);
            add_counts(&mut cluster_counts, &node_counts);
            node_views.push(NodeView {
                name: node.to_owned(),
                address: address.map(str::to_owned),
                health,
                down_reason,
                counts: node_counts,
                groups,
            });
        }
        add_counts(&mut counts, &cluster_counts);
        let health = cluster_health(&node_healths);
        cluster_views.push(ClusterView {
            name: (*cluster).to_owned(),
            health,
            counts: cluster_counts,
            nodes: node_views,
        });
    }

    let mut open_breakers = 0;
    let summaries = services
        .into_iter()
        .map(|(name, s)| {
            open_breakers += s.open_breakers;
            let health = Health::by_share(&s.counts);
            s.attention(name, health, &mut attention);
            ServiceSummary {
                name: name.to_owned(),
                health,
                counts: s.counts,
                versions: s.versions.into_iter().map(str::to_owned).collect(),
                nodes: s.nodes.into_iter().collect(),
                open_breakers: s.open_breakers,
            }
        })
        .collect();
    attention.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| kind_rank(&a.kind).cmp(&kind_rank(&b.kind))));
    TopologyView {
        generated_at: now,
        last_event_id,
        counts,
        open_breakers,
        attention,
        services: summaries,
        clusters: cluster_views,
    }
}

/// Down if every node with instances is down, degraded if any node is not healthy.
fn cluster_health(nodes: &[Health]) -> Health {
    let judged: Vec<_> = nodes.iter().filter(|h| **h != Health::Unknown).collect();
    if judged.is_empty() {
        Health::Unknown
    } else if judged.iter().all(|h| **h == Health::Down) {
        Health::Down
    } else if judged.iter().all(|h| **h == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Degraded
    }
}

fn add_counts(total: &mut HealthCounts, more: &HealthCounts) {
    total.healthy += more.healthy;
    total.unhealthy += more.unhealthy;
    total.unknown += more.unknown;
    total.expired += more.expired;
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "node_down" => 0,
        "service_down" => 1,
        "service_degraded" => 2,
        "breaker_open" => 3,
        _ => 4,
    }
}

fn most_common<'a>(reasons: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    reasons.for_each(|r| *seen.entry(r).or_default() += 1);
    seen.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0))).map(|(reason, _)| reason)
}

/// Groups a node's instances by service version (the rows come ordered).
fn group(instances: &[&InstanceRow], root_cause: Option<&str>) -> Vec<InstanceGroup> {
    let mut groups: Vec<(String, String, Vec<&InstanceRow>)> = Vec::new();
    for instance in instances {
        match groups.last_mut() {
            Some((service, version, members)) if *service == instance.service && *version == instance.version => {
                members.push(instance);
            }
            _ => groups.push((instance.service.clone(), instance.version.clone(), vec![instance])),
        }
    }
    groups
        .into_iter()
        .map(|(service, version, members)| {
            let mut counts = HealthCounts::default();
            members.iter().for_each(|i| counts.add(i.health));
            let list_all = members.len() <= LIST_UP_TO;
            let cells: Vec<InstanceCell> = members
                .iter()
                .filter(|i| list_all || i.health != InstanceHealth::Healthy)
                .map(|i| InstanceCell {
                    id: i.id.clone(),
                    port: i.port,
                    health: i.health,
                    breaker: i.breaker,
                    reason: i.reason.clone(),
                    root_cause: (Health::of_instance(i.health) == Health::Down)
                        .then(|| root_cause.map(str::to_owned))
                        .flatten(),
                    changed_at: i.changed_at,
                })
                .collect();
            let folded = u32::try_from(members.len() - cells.len()).unwrap_or(u32::MAX);
            InstanceGroup { service, version, health: Health::by_share(&counts), counts, cells, folded }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, service: &str, port: u16, health: InstanceHealth) -> Row {
        Row {
            cluster: "east".into(),
            node: node.into(),
            node_address: Some("127.0.1.1".into()),
            agent: None,
            instance: Some(InstanceRow {
                id: format!("{node}-{service}-{port}"),
                service: service.into(),
                version: "v1".into(),
                port,
                health,
                breaker: BreakerPosition::Closed,
                reason: (health != InstanceHealth::Healthy).then(|| "cannot connect: Connection refused".into()),
                changed_at: DateTime::UNIX_EPOCH,
            }),
        }
    }

    use InstanceHealth::{Healthy, Unhealthy};

    #[test]
    fn a_node_whose_instances_all_fail_is_one_root_cause_not_many_alarms() {
        let rows = [
            row("east-1", "api", 8001, Healthy),
            row("east-1", "web", 8002, Healthy),
            row("east-2", "api", 8001, Unhealthy),
            row("east-2", "web", 8002, Unhealthy),
            row("east-2", "web", 8003, Unhealthy),
        ];
        let view = build(&rows, Utc::now(), 0);
        let east2 = &view.clusters[0].nodes[1];
        assert_eq!(east2.health, Health::Down);
        let cells: Vec<_> = east2.groups.iter().flat_map(|g| &g.cells).collect();
        assert!(cells.iter().all(|c| c.root_cause.as_deref() == Some("down because node east/east-2 is down")));
        assert_eq!(view.clusters[0].health, Health::Degraded);
        let kinds: Vec<_> = view.attention.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["node_down", "service_degraded", "service_degraded"], "{:#?}", view.attention);
        assert_eq!(view.attention[0].link, "/nodes/east/east-2", "the node's own page: its instances and vitals");

        // Breakers and expiries on the down node are part of its one root cause, not more alarms.
        let mut rows = rows.to_vec();
        for row in rows.iter_mut().filter(|r| r.node == "east-2") {
            let instance = row.instance.as_mut().expect("instance");
            (instance.breaker, instance.health) = (BreakerPosition::Open, InstanceHealth::Expired);
        }
        rows.push(row("east-1", "web", 8009, InstanceHealth::Expired));
        let view = build(&rows, Utc::now(), 0);
        let kinds: Vec<_> = view.attention.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["node_down", "service_degraded", "service_degraded", "instance_expiring"],
            "{:#?}",
            view.attention
        );
        assert_eq!(view.open_breakers, 3, "still counted in the totals");
        assert!(view.attention[1].detail.contains("because node east/east-2 is down"), "{}", view.attention[1].detail);
    }

    #[test]
    fn a_single_failing_instance_is_blamed_on_itself_and_a_service_with_nothing_healthy_is_down() {
        let rows = [row("east-1", "web", 8002, Healthy), row("east-2", "pay", 8001, Unhealthy)];
        let view = build(&rows, Utc::now(), 0);
        let east2 = &view.clusters[0].nodes[1];
        assert_eq!(east2.down_reason, None);
        assert_eq!(east2.groups[0].cells[0].root_cause, None);
        assert_eq!(view.attention[0].kind, "service_down");
        assert_eq!(view.attention[0].title, "Service pay is down");
    }

    #[test]
    fn big_groups_list_only_their_problems_and_count_the_rest() {
        let mut rows: Vec<Row> = (0..100).map(|p| row("east-1", "web", 9000 + p, Healthy)).collect();
        rows.push(row("east-1", "web", 9999, Unhealthy));
        let view = build(&rows, Utc::now(), 0);
        let group = &view.clusters[0].nodes[0].groups[0];
        assert_eq!(group.cells.len(), 1);
        assert_eq!(group.folded, 100);
        assert_eq!(group.counts.healthy, 100);
        assert_eq!(group.health, Health::Degraded);
    }

    #[test]
    fn a_node_whose_agent_went_silent_is_down_even_with_one_instance() {
        let now = Utc::now();
        let mut rows = vec![row("east-1", "web", 8001, Healthy), row("east-2", "web", 8002, Unhealthy)];
        rows[0].agent = Some((now - chrono::Duration::seconds(4), 5000));
        rows[1].agent = Some((now - chrono::Duration::seconds(16), 5000));
        let view = build(&rows, now, 0);
        let (east1, east2) = (&view.clusters[0].nodes[0], &view.clusters[0].nodes[1]);
        assert_eq!(east1.health, Health::Healthy, "an agent heard 4 s ago (reports every 5 s) is fine");
        assert_eq!(east2.health, Health::Down);
        assert_eq!(east2.down_reason.as_deref(), Some("its agent has been silent for 16 s (it reports every 5 s)"));
        assert_eq!(east2.groups[0].cells[0].root_cause.as_deref(), Some("down because node east/east-2 is down"));
        assert_eq!(view.attention[0].title, "Node east/east-2 is down");
    }

    #[test]
    fn nodes_are_listed_in_the_order_people_count() {
        let rows: Vec<Row> = ["n-10", "n-2", "n-1"].iter().map(|n| row(n, "web", 1, Healthy)).collect();
        let view = build(&rows, Utc::now(), 0);
        let names: Vec<_> = view.clusters[0].nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n-1", "n-2", "n-10"]);
    }

    #[test]
    fn an_empty_node_is_shown_as_unknown_and_does_not_make_its_cluster_degraded() {
        let mut rows = vec![row("east-1", "web", 8002, Healthy)];
        rows.push(Row {
            cluster: "east".into(),
            node: "east-9".into(),
            node_address: None,
            agent: None,
            instance: None,
        });
        let view = build(&rows, Utc::now(), 0);
        assert_eq!(view.clusters[0].nodes[1].health, Health::Unknown);
        assert_eq!(view.clusters[0].health, Health::Healthy);
        assert!(view.attention.is_empty());
    }
}
