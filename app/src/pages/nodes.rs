//! One node in depth (`/nodes/:cluster/:node`): CPU and memory over a chosen window from its
//! agent's reports, health changes of its instances as markers, and the instances on it now.
//! Refetches on events and on a timer, without a reload.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::get_node_metrics;
use crate::components::chart::{ChartSeries, TimeChart, Unit};
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::components::traffic::{RangePicker, use_refresh_tick, use_window_query};
use crate::model::charts::NodeMetrics;
use crate::pages::topology::LoadError;

/// The link to a node's page, for everywhere a node is named.
pub fn node_href(cluster: &str, node: &str) -> String {
    format!("/nodes/{cluster}/{node}")
}

#[component]
pub fn NodePage() -> impl IntoView {
    let params = use_params_map();
    let place =
        Memo::new(move |_| params.with(|p| (p.get("cluster").unwrap_or_default(), p.get("node").unwrap_or_default())));
    let feed = use_event_feed();
    let window = use_window_query();
    let tick = use_refresh_tick(window);
    let metrics = Resource::new(
        move || (place.get(), window.get(), feed.changes.get(), tick.get()),
        |((cluster, node), window, _, _)| get_node_metrics(cluster, node, window),
    );
    let generated_at = RwSignal::new(None);
    let name = move || place.with(|(cluster, node)| format!("{cluster}/{node}"));
    view! {
        <Title text=move || format!("Node {}", name()) />
        <section class="page page-node">
            <header class="page-head">
                <h1>"Node " <span class="mono">{name}</span></h1>
                <Freshness feed generated_at />
            </header>
            <div class="panel">
                <h2>"Vital signs"</h2>
                <RangePicker window />
                <Transition fallback=|| view! { <p class="muted">"Loading the node…"</p> }>
                    {move || Suspend::new(async move {
                        match metrics.await {
                            Ok(metrics) => {
                                generated_at.set(Some(metrics.generated_at));
                                view! { <NodeBody metrics /> }.into_any()
                            }
                            Err(error) => view! { <LoadError error what="this node" /> }.into_any(),
                        }
                    })}
                </Transition>
            </div>
        </section>
    }
}

#[component]
fn NodeBody(metrics: NodeMetrics) -> impl IntoView {
    let NodeMetrics {
        window, buckets, cpu_percent, memory_percent, has_data, markers, instances, generated_at, ..
    } = metrics;
    let notice = (!has_data).then(|| {
        view! {
            <p class="notice traffic-no-data">
                "◌ The node's agent reported nothing in this window: no data, which is not the same as an idle node."
            </p>
        }
    });
    let empty = "No agent reports in this window";
    let rows = instances
        .iter()
        .map(|i| {
            let status: Status = i.health.into();
            view! {
                <tr data-instance=i.id.clone()>
                    <td><a href=format!("/services/{}", i.service)>{i.service.clone()}</a></td>
                    <td>{i.version.clone()}</td>
                    <td class="mono">{format!("{}:{}", i.host, i.port)}</td>
                    <td><StatusMark status label=i.health.as_str() /></td>
                    <td><Timestamp at=i.last_heartbeat_at /></td>
                </tr>
            }
        })
        .collect_view();
    let instance_table = if instances.is_empty() {
        view! { <p class="muted">"No instances registered on this node."</p> }.into_any()
    } else {
        view! {
            <table class="data-table">
                <thead>
                    <tr>
                        <th scope="col">"Service"</th><th scope="col">"Version"</th><th scope="col">"Address"</th>
                        <th scope="col">"Health"</th><th scope="col">"Last heartbeat"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        {notice}
        // When the data was read: changes with every refetch (tests watch it).
        <div class="chart-grid-layout" data-generated-at=generated_at.to_rfc3339()>
            <TimeChart title="CPU busy" unit=Unit::Percent buckets=buckets.clone() bucket_seconds=window.bucket_seconds
                to=window.to series=vec![ChartSeries { label: "CPU".into(), values: cpu_percent }]
                markers=markers.clone() y_max=100.0 empty_text=empty />
            <TimeChart title="Memory used" unit=Unit::Percent buckets bucket_seconds=window.bucket_seconds
                to=window.to series=vec![ChartSeries { label: "memory".into(), values: memory_percent }]
                markers y_max=100.0 empty_text=empty />
        </div>
        <h2>"Instances on this node"</h2>
        {instance_table}
    }
}
