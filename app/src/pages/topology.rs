//! The topology picture: clusters as regions, nodes as boxes inside them, instances as marks
//! inside the nodes (glyph + colour + port), each service as a labelled colour band across the
//! nodes it runs on, and a service × node matrix on top. The server aggregates (big groups
//! fold their healthy instances into a count), the page refetches when the event stream says
//! something changed, and a click on an instance shows its details.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{UiError, get_topology};
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::model::{
    events::BreakerPosition,
    health::{ClusterView, Health, HealthCounts, InstanceCell, InstanceGroup, NodeView, TopologyView},
};

/// With more nodes than this in a cluster, its healthy nodes are folded under one line.
const FOLD_HEALTHY_NODES_ABOVE: usize = 12;

/// An instance picked for the details panel, with where it runs.
#[derive(Debug, Clone, PartialEq)]
struct Picked {
    cell: InstanceCell,
    service: String,
    version: String,
    cluster: String,
    node: String,
    address: Option<String>,
}

#[component]
pub fn TopologyPage() -> impl IntoView {
    let feed = use_event_feed();
    let topology = Resource::new(move || feed.changes.get(), |_| get_topology());
    let generated_at = RwSignal::new(None);
    let picked = RwSignal::new(None::<Picked>);
    view! {
        <Title text="Topology" />
        <section class="page page-topology">
            <header class="page-head">
                <h1>"Topology"</h1>
                <Freshness feed generated_at />
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading the topology…"</p> }>
                {move || Suspend::new(async move {
                    match topology.await {
                        Ok(view) => {
                            generated_at.set(Some(view.generated_at));
                            view! { <TopologyPicture view picked /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="the topology" /> }.into_any(),
                    }
                })}
            </Transition>
            <InstanceDetails picked />
        </section>
    }
}

/// A refusal or failure, worded for the page.
#[component]
pub fn LoadError(error: UiError, what: &'static str) -> impl IntoView {
    match error.status {
        401 => view! {
            <div class="panel">
                <p>{format!("Sign in to see {what}.")}</p>
                <a href="/login">"Sign in"</a>
            </div>
        }
        .into_any(),
        404 => view! { <p class="notice is-down" role="alert">"✕ " {error.message}</p> }.into_any(),
        _ => view! {
            <p class="notice is-down" role="alert">
                {format!("✕ {what} could not be loaded: ")} {error.message} ". This page retries when the server is back."
            </p>
        }
        .into_any(),
    }
}

/// "42 instances: 38 healthy · 3 down · 1 unknown".
pub fn describe_counts(counts: &HealthCounts) -> String {
    let mut parts = vec![format!("{} healthy", counts.healthy)];
    if counts.unhealthy > 0 {
        parts.push(format!("{} down", counts.unhealthy));
    }
    if counts.expired > 0 {
        parts.push(format!("{} expired", counts.expired));
    }
    if counts.unknown > 0 {
        parts.push(format!("{} not checked yet", counts.unknown));
    }
    let total = counts.total();
    format!("{total} instance{}: {}", if total == 1 { "" } else { "s" }, parts.join(" · "))
}

/// A stable colour band for a service name (an identifier, always shown with the name).
pub fn service_hue(service: &str) -> u32 {
    service.bytes().fold(7_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360
}

#[component]
fn TopologyPicture(view: TopologyView, picked: RwSignal<Option<Picked>>) -> impl IntoView {
    if view.clusters.is_empty() {
        return view! {
            <div class="panel empty-state">
                <p>"No clusters yet. They appear when the first instance registers:"</p>
                <pre>"POST /api/v1/instances  {\"service\": \"web\", \"version\": \"v1\", \"cluster\": \"east\", \"node\": \"east-1\", \"host\": \"127.0.1.1\", \"port\": 8080}"</pre>
            </div>
        }
        .into_any();
    }
    let breakers = (view.open_breakers > 0).then(|| {
        let n = view.open_breakers;
        view! { <span class="summary-breakers">{format!(" · ⊘ {n} health-check breaker{} open", if n == 1 { "" } else { "s" })}</span> }
    });
    view! {
        <p class="topology-summary">
            <StatusMark status=overall(&view) label=describe_counts(&view.counts) />
            {breakers}
        </p>
        <ServiceMatrix view=view.clone() />
        <div class="clusters">
            {view.clusters.into_iter().map(|cluster| view! { <Cluster cluster picked /> }).collect_view()}
        </div>
    }
    .into_any()
}

fn overall(view: &TopologyView) -> Status {
    Health::by_share(&view.counts).into()
}

/// Services (rows) across the nodes they run on (columns, by cluster): where each runs and how
/// it is there, in one glance.
#[component]
fn ServiceMatrix(view: TopologyView) -> impl IntoView {
    let columns: Vec<(String, String)> =
        view.clusters.iter().flat_map(|c| c.nodes.iter().map(|n| (c.name.clone(), n.name.clone()))).collect();
    let cluster_heads = view
        .clusters
        .iter()
        .map(|c| view! { <th scope="colgroup" colspan=c.nodes.len().max(1)>{c.name.clone()}</th> })
        .collect_view();
    let node_heads = columns
        .iter()
        .map(|(_, node)| view! { <th scope="col" class="matrix-node">{node.clone()}</th> })
        .collect_view();
    let rows = view
        .services
        .iter()
        .map(|service| {
            let cells = columns
                .iter()
                .map(|(cluster, node)| {
                    let mut counts = HealthCounts::default();
                    for group in view
                        .clusters
                        .iter()
                        .filter(|c| &c.name == cluster)
                        .flat_map(|c| c.nodes.iter().filter(|n| &n.name == node))
                        .flat_map(|n| n.groups.iter().filter(|g| g.service == service.name))
                    {
                        counts.healthy += group.counts.healthy;
                        counts.unhealthy += group.counts.unhealthy;
                        counts.unknown += group.counts.unknown;
                        counts.expired += group.counts.expired;
                    }
                    if counts.total() == 0 {
                        return view! { <td class="matrix-cell is-absent" aria-label="not running here"></td> }
                            .into_any();
                    }
                    let status: Status = Health::by_share(&counts).into();
                    let label = if counts.healthy == counts.total() {
                        counts.total().to_string()
                    } else {
                        format!("{}/{}", counts.healthy, counts.total())
                    };
                    view! {
                        <td class=format!("matrix-cell {}", status.class()) title=describe_counts(&counts)>
                            <span aria-hidden="true">{status.glyph()}</span> " " {label}
                        </td>
                    }
                    .into_any()
                })
                .collect_view();
            let status: Status = service.health.into();
            let hue = service_hue(&service.name);
            view! {
                <tr>
                    <th scope="row" class="matrix-service">
                        <span class="service-band" style=format!("--service-hue: {hue}")></span>
                        <a href=format!("/services/{}", service.name)>{service.name.clone()}</a>
                        " "
                        <StatusMark status label=service.health.as_str() />
                    </th>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    view! {
        <details class="panel matrix" open>
            <summary>"Services across nodes"</summary>
            <div class="matrix-scroll">
                <table class="matrix-table">
                    <thead>
                        <tr><th></th>{cluster_heads}</tr>
                        <tr><th scope="col">"Service"</th>{node_heads}</tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </details>
    }
}

#[component]
fn Cluster(cluster: ClusterView, picked: RwSignal<Option<Picked>>) -> impl IntoView {
    let status: Status = cluster.health.into();
    let fold = cluster.nodes.len() > FOLD_HEALTHY_NODES_ABOVE;
    let (shown, folded): (Vec<NodeView>, Vec<NodeView>) =
        cluster.nodes.into_iter().partition(|n| !fold || n.health != Health::Healthy);
    let name = cluster.name.clone();
    let nodes = shown.into_iter().map(|node| view! { <Node cluster=name.clone() node picked /> }).collect_view();
    let folded = (!folded.is_empty()).then(|| {
        let count = folded.len();
        let name = name.clone();
        let nodes = folded.into_iter().map(|node| view! { <Node cluster=name.clone() node picked /> }).collect_view();
        view! {
            <details class="folded-nodes">
                <summary>{format!("● {count} more healthy nodes")}</summary>
                <div class="nodes">{nodes}</div>
            </details>
        }
    });
    view! {
        <section class=format!("cluster {}", status.class()) data-cluster=cluster.name.clone()>
            <h2 class="cluster-head">
                <StatusMark status label=cluster.health.as_str() />
                " "
                <span class="cluster-name">{cluster.name.clone()}</span>
                <span class="cluster-counts muted">{describe_counts(&cluster.counts)}</span>
            </h2>
            <div class="nodes">{nodes}</div>
            {folded}
        </section>
    }
}

#[component]
fn Node(cluster: String, node: NodeView, picked: RwSignal<Option<Picked>>) -> impl IntoView {
    let status: Status = node.health.into();
    let anchor = format!("node-{cluster}-{}", node.name);
    let root_cause = node.down_reason.clone().map(|reason| {
        view! { <p class="root-cause" role="note">"✕ Node down: " {reason}</p> }
    });
    let empty = node.groups.is_empty().then(|| view! { <p class="muted">"no instances"</p> });
    let groups = node
        .groups
        .iter()
        .cloned()
        .map(|group| {
            let (cluster, node_name, address) = (cluster.clone(), node.name.clone(), node.address.clone());
            view! { <Group group cluster node=node_name address picked /> }
        })
        .collect_view();
    view! {
        <article class=format!("node {}", status.class()) id=anchor data-node=node.name.clone()>
            <header class="node-head">
                <StatusMark status label=node.health.as_str() />
                <a class="node-name" href=crate::pages::nodes::node_href(&cluster, &node.name)>
                    <strong>{node.name.clone()}</strong>
                </a>
                <span class="node-address muted">{node.address.clone().unwrap_or_default()}</span>
            </header>
            {root_cause}
            {empty}
            <ul class="groups">{groups}</ul>
        </article>
    }
}

#[component]
fn Group(
    group: InstanceGroup,
    cluster: String,
    node: String,
    address: Option<String>,
    picked: RwSignal<Option<Picked>>,
) -> impl IntoView {
    let hue = service_hue(&group.service);
    let folded = (group.folded > 0).then(|| {
        view! { <span class="cells-folded" title="healthy instances, counted">{format!("● +{} healthy", group.folded)}</span> }
    });
    let cells = group
        .cells
        .iter()
        .map(|cell| {
            let status: Status = cell.health.into();
            let breaker_open = cell.breaker == BreakerPosition::Open;
            let title = format!(
                "{} {} :{} — {}{}{}",
                group.service,
                group.version,
                cell.port,
                cell.health,
                cell.root_cause.as_ref().or(cell.reason.as_ref()).map(|r| format!(": {r}")).unwrap_or_default(),
                if breaker_open { " (health-check breaker open)" } else { "" }
            );
            let pick = Picked {
                cell: cell.clone(),
                service: group.service.clone(),
                version: group.version.clone(),
                cluster: cluster.clone(),
                node: node.clone(),
                address: address.clone(),
            };
            view! {
                <button
                    type="button"
                    class=format!("cell {}", status.class())
                    class:has-open-breaker=breaker_open
                    data-instance=cell.id.clone()
                    data-health=cell.health.as_str()
                    title=title.clone()
                    aria-label=title
                    on:click=move |_| picked.set(Some(pick.clone()))
                >
                    <span class="cell-glyph" aria-hidden="true">{status.glyph()}</span>
                    <span class="cell-port">{cell.port}</span>
                    {breaker_open.then(|| view! { <span class="cell-breaker" aria-hidden="true">"⊘"</span> })}
                </button>
            }
        })
        .collect_view();
    view! {
        <li class="group" style=format!("--service-hue: {hue}")>
            <a class="group-label" href=format!("/services/{}", group.service)>
                <span class="service-band"></span>
                <span class="group-service">{group.service.clone()}</span>
                " "
                <span class="group-version muted">{group.version.clone()}</span>
            </a>
            <span class="cells">{cells}{folded}</span>
        </li>
    }
}

/// The picked instance, in full.
#[component]
fn InstanceDetails(picked: RwSignal<Option<Picked>>) -> impl IntoView {
    move || {
        picked.get().map(|p| {
            let status: Status = p.cell.health.into();
            let address = format!("{}:{}", p.address.clone().unwrap_or_default(), p.cell.port);
            view! {
                <aside class="panel instance-details" aria-label="Instance details">
                    <header class="details-head">
                        <h2>{format!("{} {} on {}/{}", p.service, p.version, p.cluster, p.node)}</h2>
                        <button type="button" class="details-close" on:click=move |_| picked.set(None)>"Close"</button>
                    </header>
                    <dl class="details-list">
                        <dt>"Health"</dt>
                        <dd><StatusMark status label=p.cell.health.as_str() /></dd>
                        {p.cell.root_cause.clone().map(|cause| view! { <dt>"Root cause"</dt><dd class="root-cause">{cause}</dd> })}
                        <dt>"Last verdict"</dt>
                        <dd>{p.cell.reason.clone().unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Since"</dt>
                        <dd><Timestamp at=p.cell.changed_at /></dd>
                        <dt>"Breaker"</dt>
                        <dd>{p.cell.breaker.label()}</dd>
                        <dt>"Address"</dt>
                        <dd class="mono">{address}</dd>
                        <dt>"Instance id"</dt>
                        <dd class="mono">{p.cell.id.clone()}</dd>
                    </dl>
                    <p class="details-links">
                        <a href=format!("/services/{}", p.service)>{format!("Open service {} →", p.service)}</a>
                        " · "
                        <a href=crate::pages::nodes::node_href(&p.cluster, &p.node)>
                            {format!("Open node {}/{} →", p.cluster, p.node)}
                        </a>
                    </p>
                </aside>
            }
        })
    }
}
