//! `keel hollow-nodes`: simulated nodes against any Kubernetes API, like
//! Kubemark's hollow nodes. They register, renew their Leases, post node
//! status and mark the pods bound to them Running and Ready, each acting as
//! its own kubelet's user by default (the runtime is
//! `keel_agent::hollow`; pod behaviour annotations are in
//! docs/CONTROLLERS.md, "nodes").

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Taint;
use keel_agent::heartbeat::Intervals;
use keel_agent::hollow::{HollowConfig, PodWatch};
use keel_agent::identity::Identity;
use keel_agent::node::NodeConfig;

#[derive(clap::Args, Debug)]
pub struct HollowArgs {
    /// How many nodes to run in this process.
    #[arg(long)]
    pub count: usize,
    /// The kubeconfig of the API to join (its current context).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Nodes are named `<prefix>-0` .. `<prefix>-<count-1>`.
    #[arg(long, default_value = "hollow-node")]
    pub prefix: String,
    /// CPU capacity of each node (a quantity).
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of each node (a quantity).
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// How many pods each node takes.
    #[arg(long, default_value = "110")]
    pub pods: String,
    /// Extra node labels, `key=value,...`.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Taints registered with each node, `key[=value]:Effect,...` (the
    /// kubelet's --register-with-taints).
    #[arg(long, value_delimiter = ',')]
    pub taints: Vec<String>,
    /// How often each node renews its Lease (the kubelet: 10s).
    #[arg(long, default_value = "10s")]
    pub heartbeat: String,
    /// How often each node posts its full status when nothing changed
    /// (the kubelet's nodeStatusReportFrequency: 5m).
    #[arg(long, default_value = "5m")]
    pub status_report: String,
    /// `shared` (one watch of all pods) or `per-node` (one watch per node
    /// with a spec.nodeName field selector, as each kubelet has).
    #[arg(long, default_value = "shared")]
    pub pod_watch: String,
    /// Pod status writes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Whom each node's requests act as: `node` (its kubelet's user,
    /// `system:node:<name>` in `system:nodes`, by impersonation: the
    /// kubeconfig's user needs `impersonate` on those users and that
    /// group), or `kubeconfig` (the kubeconfig's own user, for every node).
    #[arg(long, default_value = "node")]
    pub identity: String,
}

fn duration(flag: &str, v: &str) -> Result<std::time::Duration> {
    match keel_agent::duration::parse(v) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => bail!("--{flag} {v:?}: want a positive duration such as 10s or 5m"),
    }
}

/// `key=value:Effect` or `key:Effect`.
fn taint(s: &str) -> Result<Taint> {
    let (kv, effect) = s
        .rsplit_once(':')
        .with_context(|| format!("--taints {s:?}: want key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        bail!("--taints {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        bail!("--taints {s:?}: the key is empty");
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

fn config(args: &HollowArgs) -> Result<HollowConfig> {
    let mut template = NodeConfig::new(String::new(), 0);
    template.cpu = args.cpu.clone();
    template.memory = args.memory.clone();
    template.pods = args.pods.clone();
    let mut labels = BTreeMap::new();
    for l in args.labels.iter().filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--labels {l:?}: want key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    template.labels = labels;
    template.taints = args
        .taints
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| taint(t))
        .collect::<Result<_>>()?;
    let pod_watch = match args.pod_watch.as_str() {
        "shared" => PodWatch::Shared,
        "per-node" => PodWatch::PerNode,
        other => bail!("--pod-watch {other:?}: want shared or per-node"),
    };
    let identity = match args.identity.as_str() {
        "node" => Identity::Node,
        "kubeconfig" => Identity::Kubeconfig,
        other => bail!("--identity {other:?}: want node or kubeconfig"),
    };
    Ok(HollowConfig {
        prefix: args.prefix.clone(),
        count: args.count,
        template,
        intervals: Intervals {
            lease: duration("heartbeat", &args.heartbeat)?,
            status: duration("status-report", &args.status_report)?,
        },
        pod_watch,
        concurrency: args.concurrency,
        identity,
    })
}

pub async fn run(args: HollowArgs) -> Result<()> {
    let cfg = config(&args)?;
    let client = keel_controllers::client_from_kubeconfig(&args.kubeconfig)
        .await
        .context("the hollow nodes' client")?;
    keel_agent::hollow::run(client, cfg, super::shutdown_signal()).await?;
    Ok(())
}
