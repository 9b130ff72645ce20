//! Resource quantities as the scheduler counts them: every quantity in
//! milli-units (a CPU of "1" is 1000, a memory of "1Ki" is 1 024 000), parsed
//! exactly and rounded up as Kubernetes' `resource.Quantity` rounds, and a
//! pod's effective requests as kube-scheduler computes them (containers
//! summed, init containers as a maximum, sidecars added, overhead added).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Amounts by resource name, in milli-units.
pub type Resources = BTreeMap<String, i128>;

/// The resource that counts pods on a node.
pub const PODS: &str = "pods";
/// One of something, in milli-units.
pub const ONE: i128 = 1000;

/// What kube-scheduler assumes a container without requests uses, for
/// scoring only (100m CPU, 200 MiB), so that such pods still spread.
pub const DEFAULT_MILLI_CPU: i128 = 100;
pub const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * ONE;

/// `s` in milli-units, rounded up; `None` when it is no quantity or too big.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    // value = digits / 10^frac.len() * 10^exp10 * 2^exp2, times 1000 for milli.
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    let exp10 = exp10 + 3 - frac.len() as i32;
    if !(-40..=30).contains(&exp10) {
        return None;
    }
    let mut num = digits.checked_mul(1i128.checked_shl(exp2)?)?;
    let mut den: i128 = 1;
    if exp10 >= 0 {
        num = num.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        den = 10i128.checked_pow((-exp10) as u32)?;
    }
    let v = (num + den - 1) / den;
    Some(if negative { -v } else { v })
}

fn add_map(into: &mut Resources, from: Option<&BTreeMap<String, Quantity>>) {
    for (name, q) in from.into_iter().flatten() {
        if let Some(v) = parse_milli(&q.0) {
            *into.entry(name.clone()).or_default() += v;
        }
    }
}

/// `into` += `from`.
pub fn add(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// `into` -= `from`.
pub fn sub(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() -= v;
    }
}

/// `into` = max(`into`, `from`), per resource.
fn max_into(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
}

/// A container's requests; a resource with a limit and no request is
/// requested at its limit, as the API server defaults it.
fn container_requests(c: &Container) -> Resources {
    let mut r = Resources::new();
    let Some(res) = &c.resources else {
        return r;
    };
    add_map(&mut r, res.requests.as_ref());
    for (name, q) in res.limits.iter().flatten() {
        if !r.contains_key(name)
            && let Some(v) = parse_milli(&q.0)
        {
            r.insert(name.clone(), v);
        }
    }
    r
}

/// What a pod with `spec` requests of a node, `pods` (one) included.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut sum = Resources::new();
    for c in &spec.containers {
        add(&mut sum, &container_requests(c));
    }
    // Init containers run one at a time, each beside the sidecars (init
    // containers with restartPolicy Always) started before it; sidecars
    // keep running beside the main containers.
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, &r);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut during = sidecars.clone();
            add(&mut during, &r);
            max_into(&mut init_peak, &during);
        }
    }
    add(&mut sum, &sidecars);
    max_into(&mut sum, &init_peak);
    add_map(&mut sum, spec.overhead.as_ref());
    sum.insert(PODS.to_string(), ONE);
    sum
}

/// CPU and memory requests for scoring: a container without a request
/// counts as [`DEFAULT_MILLI_CPU`] and [`DEFAULT_MEMORY`].
pub fn non_zero_requests(spec: &PodSpec) -> (i128, i128) {
    let mut cpu = 0;
    let mut mem = 0;
    for c in &spec.containers {
        let r = container_requests(c);
        cpu += r
            .get("cpu")
            .copied()
            .filter(|v| *v > 0)
            .unwrap_or(DEFAULT_MILLI_CPU);
        mem += r
            .get("memory")
            .copied()
            .filter(|v| *v > 0)
            .unwrap_or(DEFAULT_MEMORY);
    }
    (cpu, mem)
}

/// What a node offers pods: `status.allocatable`, or its capacity when it
/// reports no allocatable.
pub fn allocatable(node: &Node) -> Resources {
    let mut r = Resources::new();
    if let Some(st) = &node.status {
        add_map(&mut r, st.allocatable.as_ref().or(st.capacity.as_ref()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn quantities_parse_to_milli_units_rounding_up() {
        for (s, want) in [
            ("1", Some(1000)),
            ("100m", Some(100)),
            ("0.5", Some(500)),
            ("1.5k", Some(1_500_000)),
            ("1Ki", Some(1_024_000)),
            ("2Gi", Some(2 * 1024 * 1024 * 1024 * 1000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("1n", Some(1)),
            ("250u", Some(1)),
            (".5", Some(500)),
            ("-1", Some(-1000)),
            ("", None),
            ("1Xi", None),
            ("1.2.3", None),
            ("abc", None),
            (".", None),
            ("99999999999999999999999999999999999999E", None),
        ] {
            assert_eq!(parse_milli(s), want, "{s}");
        }
    }

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)], always: bool) -> Container {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(req),
                limits: map(lim),
                ..Default::default()
            }),
            restart_policy: always.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_add_containers_and_take_the_init_peak() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "100m"), ("memory", "64Mi")], &[], false),
                container(&[("cpu", "200m")], &[("memory", "128Mi")], false),
            ],
            init_containers: Some(vec![
                container(&[("cpu", "50m")], &[], true),
                container(&[("cpu", "1")], &[], false),
            ]),
            overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        let r = pod_requests(&spec);
        // Init peak: 50m sidecar + 1 CPU; main: 300m + 50m sidecar; plus overhead.
        assert_eq!(r["cpu"], 1050 + 10);
        assert_eq!(r["memory"], 192 * 1024 * 1024 * 1000);
        assert_eq!(r[PODS], ONE);
        assert_eq!(non_zero_requests(&spec), (300, 192 * 1024 * 1024 * 1000));
        let empty = PodSpec {
            containers: vec![Container::default()],
            ..Default::default()
        };
        assert_eq!(
            non_zero_requests(&empty),
            (DEFAULT_MILLI_CPU, DEFAULT_MEMORY)
        );
        assert_eq!(pod_requests(&empty).get("cpu"), None);
    }
}
