//! Unmodified CustomResourceDefinition manifests of two widely used
//! projects, cert-manager and Argo CD (tests/data/crds/, sources in its
//! README), install into a real `keel server` with kubectl 1.33, become
//! Established, and serve their objects: created, defaulted, pruned and
//! validated by their schemas (a CEL rule included), listed with their
//! printer columns, short names and categories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_tests::server::{KeelServer, output_with_stdin};
use serde_json::Value;

/// kubectl 1.33 itself, not the version dispatcher.
fn kubectl(s: &KeelServer) -> Command {
    let real = std::fs::canonicalize(keel_tests::server::KUBECTL).unwrap();
    let bin = real.parent().unwrap().join("kubectl.1.33");
    assert!(
        bin.is_file(),
        "{} is missing; run `make deps`",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.env("HOME", s.dir().join("home"))
        .arg("--kubeconfig")
        .arg(s.kubeconfig());
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(s: &KeelServer, args: &[&str]) -> String {
    ok(
        kubectl(s).args(args).output().unwrap(),
        &format!("{args:?}"),
    )
}

/// `kubectl ARGS -f -` with `yaml`: its stdout, or its stderr as the error.
fn with_stdin(s: &KeelServer, args: &[&str], yaml: &str) -> Result<String, String> {
    let mut c = kubectl(s);
    c.args(args).args(["-f", "-"]);
    let out = output_with_stdin(c, yaml.as_bytes());
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn data(project: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/crds")
        .join(project)
}

/// The header and the row of `name` of a `kubectl get` table, cells cut at
/// the columns' starts in the header (cells may be empty).
fn row(table: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or("");
    // A column starts where a header name starts after two or more spaces.
    let mut starts = vec![0];
    let b = header.as_bytes();
    for i in 2..b.len() {
        if b[i] != b' ' && b[i - 1] == b' ' && b[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cut = |l: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(k, &at)| {
                let end = starts.get(k + 1).copied().unwrap_or(l.len()).min(l.len());
                l.get(at.min(l.len())..end).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    let r = lines
        .map(cut)
        .find(|r| r.first().is_some_and(|c| c == name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
    (cut(header), r)
}

const CRDS: &[&str] = &[
    "certificates.cert-manager.io",
    "certificaterequests.cert-manager.io",
    "issuers.cert-manager.io",
    "applications.argoproj.io",
    "appprojects.argoproj.io",
];

#[test]
fn cert_manager_and_argo_cd_crds_install_and_serve() {
    let s = KeelServer::start(&[]);
    for project in ["cert-manager", "argo-cd"] {
        // `create`, not client-side `apply`: Argo CD's Application CRD is
        // past the 256 KiB annotation limit, in Kubernetes as here.
        let out = run(&s, &["create", "-f", data(project).to_str().unwrap()]);
        assert!(out.contains("created"), "{out}");
    }
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    let names: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
    wait.extend(names.iter().map(String::as_str));
    run(&s, &wait);

    // cert-manager: an Issuer, a Certificate, their tables and category.
    with_stdin(
        &s,
        &["create"],
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata:\n  name: self\nspec:\n  selfSigned: {}\n",
    )
    .unwrap();
    with_stdin(
        &s,
        &["create"],
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: web\nspec:\n  secretName: web-tls\n  dnsNames: [web.example.com]\n  issuerRef:\n    name: self\n    kind: Issuer\n",
    )
    .unwrap();
    let (h, r) = row(&run(&s, &["get", "certs"]), "web");
    assert_eq!(h[..3], ["NAME", "READY", "SECRET"], "{h:?}");
    assert_eq!(h.last().map(String::as_str), Some("AGE"), "{h:?}");
    assert_eq!(r[1..3], ["", "web-tls"], "no status yet: {r:?}");
    let wide = run(&s, &["get", "certificate", "web", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("ISSUER"), "{wide}");
    let (_, r) = row(&wide, "web");
    assert!(r.iter().any(|c| c == "self"), "{r:?}");
    let all = run(&s, &["get", "cert-manager", "-o", "name"]);
    for want in [
        "certificate.cert-manager.io/web",
        "issuer.cert-manager.io/self",
    ] {
        assert!(all.lines().any(|l| l == want), "{want} not in\n{all}");
    }

    // Their schemas refuse what cert-manager's API refuses.
    let err = with_stdin(
        &s,
        &["create"],
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: bad\nspec:\n  issuerRef:\n    name: self\n",
    )
    .unwrap_err();
    assert!(err.contains("spec.secretName: Required value"), "{err}");
    let err = with_stdin(
        &s,
        &["create"],
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata:\n  name: bad\nspec:\n  venafi:\n    zone: z\n",
    )
    .unwrap_err();
    assert!(
        err.contains("exactly one of tpp, cloud, or ngts must be configured"),
        "the CEL rule of the Issuer schema: {err}"
    );

    // Argo CD: an AppProject and an Application, with an unknown field
    // pruned when the client does not ask for strict validation.
    with_stdin(
        &s,
        &["create", "--validate=false"],
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team\nspec:\n  description: the team's apps\n  notAField: 1\n  sourceRepos: ['*']\n  destinations:\n  - server: https://kubernetes.default.svc\n    namespace: '*'\n",
    )
    .unwrap();
    let p: Value =
        serde_json::from_str(&run(&s, &["get", "appproject", "team", "-o", "json"])).unwrap();
    assert_eq!(p["spec"]["description"], "the team's apps", "{p}");
    assert!(p["spec"].get("notAField").is_none(), "not pruned: {p}");
    let err = with_stdin(
        &s,
        &["create"],
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: strict\nspec:\n  notAField: 1\n",
    )
    .unwrap_err();
    assert!(
        err.contains("notAField"),
        "strict validation names the field: {err}"
    );
    with_stdin(
        &s,
        &["create"],
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: guestbook\nspec:\n  project: team\n  source:\n    repoURL: https://example.com/apps.git\n    path: guestbook\n    targetRevision: HEAD\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: guestbook\n",
    )
    .unwrap();
    let (h, _) = row(&run(&s, &["get", "applications"]), "guestbook");
    assert_eq!(h[..3], ["NAME", "SYNC STATUS", "HEALTH STATUS"], "{h:?}");
    let err = with_stdin(
        &s,
        &["create"],
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: nowhere\nspec:\n  project: team\n",
    )
    .unwrap_err();
    assert!(err.contains("spec.destination: Required value"), "{err}");
}
