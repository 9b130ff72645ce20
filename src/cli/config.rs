//! The options of `keel server`: one struct that clap parses from the command
//! line and serde reads from the `--config` JSON file, layered so that a flag
//! given on the command line wins over the file, and the file over the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every option of `keel server`. Each is also a key of the `--config` file,
/// spelled as the field (`data_dir` for `--data-dir`); the file may not hold
/// any other key.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// A JSON file with any of the options below, keys spelled with `_`
    /// (`{"data_dir": "/var/lib/keel", "retain_events": 50000}`); options
    /// given on the command line win over the file.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's id (unique in the cluster, > 0).
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// Address to serve the member protocol on; also advertised to other members.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub peer_addr: SocketAddr,
    /// Bootstrap a new cluster of these members: `1=127.0.0.1:7001,2=...`.
    /// Without it (and without --join) the member bootstraps a cluster of itself.
    #[arg(long)]
    pub initial_members: Option<String>,
    /// Mixed into the id of the cluster this member bootstraps (with the
    /// initial members), as etcd's --initial-cluster-token: give each
    /// cluster of the same addresses its own. Every member of one cluster
    /// must be given the same token.
    #[arg(long, default_value = keel_store::member::DEFAULT_CLUSTER_TOKEN)]
    pub initial_cluster_token: String,
    /// Address of the Kubernetes API (HTTPS); its kubeconfig is written to <data-dir>/kubeconfig.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_addr: SocketAddr,
    /// Address of the HTTP endpoints /healthz, /livez, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub http_addr: SocketAddr,
    /// Wait to be added to an existing cluster (`keel member add`) instead of bootstrapping.
    #[arg(long)]
    pub join: bool,
    /// A directory holding the cluster CA (`ca.crt`, `ca.key`) that every
    /// member of the cluster names: the first member to start creates it,
    /// the others use it. Without it the CA of `<data-dir>/pki` is used
    /// (created if missing), which suits one member.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Events the log retains for watches and past-revision reads before
    /// the leader compacts older ones (events older than an hour go too).
    #[arg(long, default_value_t = 100_000)]
    pub retain_events: u64,
    /// Milliseconds between the leader's heartbeats; also how long each
    /// Raft call (an append, a heartbeat, a leadership confirmation) may
    /// take before it counts as failed (openraft ties the two).
    #[arg(long, default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in this range
    /// (milliseconds, `min-max`) starts an election.
    #[arg(long, default_value = "1000-1500", value_parser = parse_range)]
    #[serde(with = "range")]
    pub election_timeout_ms: (u64, u64),
    /// Take a Raft snapshot (and purge the log behind it) every this many
    /// entries. A snapshot holds every object (not the retained events) and
    /// is streamed from one RocksDB view to a file, so taking one costs disk
    /// reads and writes, not memory.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// Archive every event to this directory (immutable, checksummed, LZ4
    /// segments with an index) before it leaves the retention window, for
    /// point-in-time restores (`keel restore --archive`, docs/DR.md). Off
    /// when not given; `keel up` gives each member `<its data dir>/archive`.
    #[arg(long)]
    pub archive_dir: Option<PathBuf>,
    /// The longest an event waits before it is archived (seconds): what a
    /// point-in-time restore can miss of what the cluster acknowledged.
    #[arg(long, default_value_t = 10)]
    pub archive_max_delay_s: u64,
    /// Retention classes: store key prefixes (comma-separated) whose events
    /// are *brief*, kept in the retention window only and never archived;
    /// every other key is *long* and archived. Empty: archive everything.
    #[arg(
        long,
        default_value = "/registry/coordination.k8s.io/leases/,/registry/core/events/,/registry/events.k8s.io/events/"
    )]
    pub archive_brief: String,
    /// Log entries kept behind a snapshot when the log is purged, so that a
    /// follower slightly behind catches up from the log, not a snapshot.
    #[arg(long, default_value_t = 1_000)]
    pub keep_behind_snapshot: u64,
    /// Watches the Kubernetes API keeps open at once on this member; more
    /// get 429 with Retry-After. Each costs a task and buffers.
    #[arg(long, default_value_t = keel_apiserver::DEFAULT_MAX_WATCHES)]
    pub max_watches: usize,
    /// A Kubernetes `EncryptionConfiguration` file (YAML or JSON): the
    /// resources encrypted at rest and their providers, the first of which
    /// encrypts (docs/SECURITY.md). Without it secrets are encrypted with a
    /// key derived from the cluster CA, kept in <data-dir>/pki/encryption-config.yaml.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// Static bearer tokens, one per line in Kubernetes' CSV format:
    /// `token,user,uid` and optionally `"group1,group2"`. A malformed file
    /// refuses start-up, naming the line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Serve requests without credentials as `system:anonymous` (group
    /// `system:unauthenticated`) instead of refusing them with 401.
    #[arg(long)]
    pub anonymous_auth: bool,
    /// The issuer (`iss`) of ServiceAccount tokens.
    #[arg(long, default_value = keel_apiserver::authn::service_account::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Audiences the API accepts in ServiceAccount tokens (comma-separated);
    /// a token for none of them is refused. Default: the issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Write an audit log here: one `audit.k8s.io/v1` Event per request, as
    /// JSON lines, at the Metadata level (docs/SECURITY.md). Off without it.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// The IPv4 CIDR Services' cluster IPs come from (kube-apiserver's
    /// `--service-cluster-ip-range`).
    #[arg(long, default_value = keel_apiserver::registry::services::range::DEFAULT_CIDR)]
    pub service_cluster_ip_range: String,
    /// The ports NodePort Services' node ports come from (`lo-hi`).
    #[arg(long, default_value = keel_apiserver::registry::services::range::DEFAULT_NODE_PORTS)]
    pub service_node_port_range: String,
    /// Run the controller manager (garbage collector, namespace
    /// controller) in this member; the members elect one leader through a
    /// Lease. `--controllers=false` leaves them to `keel controllers`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub controllers: bool,
    /// Which controllers the manager runs, as kube-controller-manager's
    /// `--controllers`: `*` for all, a name to add one, `-name` to leave one
    /// out (`*,-scheduler`); names are in docs/CONTROLLERS.md.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub enabled_controllers: Vec<String>,
    /// Run each controller as its own ServiceAccount in kube-system, bound
    /// to its `system:controller:<account>` role (docs/CONTROLLERS.md); off,
    /// every controller acts as `system:kube-controller-manager`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_service_account_credentials: bool,
    /// How long a node may go without a heartbeat (its Lease or status)
    /// before the node lifecycle controller marks it Unknown and taints it
    /// unreachable (kube-controller-manager's default: 40s).
    #[arg(long, default_value = "40s", value_parser = super::controllers::parse_duration)]
    #[serde(with = "duration_text")]
    pub node_monitor_grace_period: std::time::Duration,
    /// How long Events are kept before the eventttl controller deletes
    /// them (`1h`, `30m`, `90s`).
    #[arg(long, default_value = "1h", value_parser = super::controllers::parse_duration)]
    #[serde(with = "duration_text")]
    pub event_ttl: std::time::Duration,
}

impl ServerArgs {
    /// The options `keel server` runs with: those on its command line
    /// (`matches`), over those in the `--config` file if one is named, over
    /// the defaults.
    pub fn resolve(matches: &clap::ArgMatches) -> Result<ServerArgs> {
        use clap::FromArgMatches;
        let cli = ServerArgs::from_arg_matches(matches)?;
        let Some(path) = cli.config.clone() else {
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: Map<String, Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} must hold a JSON object", path.display()))?;
        let given = |key: &str| matches.value_source(key) == Some(ValueSource::CommandLine);
        layer(cli, file, given).with_context(|| format!("{}", path.display()))
    }
}

/// `cli` with every key of `file` that `given` says was not on the command
/// line. An unknown key stays in and is refused; a key the command line
/// overrides is not read.
fn layer(
    cli: ServerArgs,
    file: Map<String, Value>,
    given: impl Fn(&str) -> bool,
) -> Result<ServerArgs> {
    let Value::Object(mut merged) = serde_json::to_value(&cli)? else {
        unreachable!("a struct serializes to an object")
    };
    for (key, value) in file {
        // Only a known key can have been given (clap knows no other id).
        if !(merged.contains_key(&key) && given(&key)) {
            merged.insert(key, value);
        }
    }
    let mut args = decode(merged)?;
    args.config = cli.config;
    Ok(args)
}

/// Options from JSON; an error names the key at fault.
fn decode(options: Map<String, Value>) -> Result<ServerArgs> {
    serde_path_to_error::deserialize(Value::Object(options)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde's unknown-field message already names the key.
        if path == "." || inner.starts_with("unknown field") {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("{path}: {inner}")
        }
    })
}

pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected min-max, such as 1500-3000"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a number"))?,
    );
    if a == 0 || a >= b {
        return Err(format!("{s:?}: min must be positive and below max"));
    }
    Ok((a, b))
}

/// A duration is written in the file as on the command line (`1h`); it
/// is written back in milliseconds (`3600000ms`).
mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::cli::controllers::parse_duration(&String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// A `min-max` range is written in the file as on the command line.
mod range {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &(u64, u64), s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}-{}", r.0, r.1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(u64, u64), D::Error> {
        super::parse_range(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    /// The options for `args` on the command line and `file` as the config.
    fn resolve(args: &[&str], file: &str) -> Result<ServerArgs> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keel.json");
        std::fs::write(&path, file)?;
        let matches = Cli::command().try_get_matches_from(
            ["keel", "--config", path.to_str().unwrap()]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        let args = ServerArgs::resolve(&matches)?;
        assert_eq!(args.config.as_deref(), Some(path.as_path()));
        Ok(args)
    }

    fn defaults() -> ServerArgs {
        Cli::from_arg_matches(&Cli::command().get_matches_from(["keel"]))
            .unwrap()
            .server
    }

    #[test]
    fn election_timeout_ranges_parse() {
        assert_eq!(parse_range("1500-3000"), Ok((1500, 3000)));
        assert_eq!(parse_range(" 100 - 200 "), Ok((100, 200)));
        assert!(parse_range("3000-1500").is_err());
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("1500").is_err());
        assert!(parse_range("a-b").is_err());
    }

    #[test]
    fn the_file_fills_what_the_command_line_leaves_out() {
        let args = resolve(
            &[],
            r#"{"id": 3, "data_dir": "/d", "peer_addr": "127.0.0.1:9001", "api_addr": "127.0.0.1:9443",
                "http_addr": "127.0.0.1:9080", "initial_members": "3=127.0.0.1:9001", "join": true, "ca_dir": "/ca",
                "retain_events": 5, "snapshot_every": 7, "max_watches": 9, "heartbeat_ms": 100,
                "election_timeout_ms": "400-800"}"#,
        )
        .unwrap();
        assert_eq!(args.id, 3);
        assert_eq!(args.data_dir, PathBuf::from("/d"));
        assert_eq!(args.peer_addr.to_string(), "127.0.0.1:9001");
        assert_eq!(args.api_addr.to_string(), "127.0.0.1:9443");
        assert_eq!(args.http_addr.to_string(), "127.0.0.1:9080");
        assert_eq!(args.initial_members.as_deref(), Some("3=127.0.0.1:9001"));
        assert!(args.join);
        assert_eq!(args.ca_dir, Some(PathBuf::from("/ca")));
        assert_eq!(
            (args.retain_events, args.snapshot_every, args.max_watches),
            (5, 7, 9)
        );
        assert_eq!(
            (args.heartbeat_ms, args.election_timeout_ms),
            (100, (400, 800))
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_defaults() {
        let args = resolve(
            &["--id", "2", "--api-addr", "127.0.0.1:0", "--election-timeout-ms", "500-900"],
            r#"{"id": 3, "api_addr": "127.0.0.1:1", "retain_events": 50000, "election_timeout_ms": "400-800"}"#,
        )
        .unwrap();
        assert_eq!(args.id, 2);
        assert_eq!(args.api_addr.to_string(), "127.0.0.1:0");
        assert_eq!(args.election_timeout_ms, (500, 900));
        assert_eq!(args.retain_events, 50000);
        // What neither sets keeps its default.
        let d = defaults();
        assert_eq!(
            (args.peer_addr, args.http_addr, args.data_dir, args.join),
            (d.peer_addr, d.http_addr, d.data_dir.clone(), d.join)
        );
        // A flag given with its default value still wins over the file.
        assert_eq!(resolve(&["--id", "1"], r#"{"id": 3}"#).unwrap().id, 1);
        // An empty file changes nothing.
        let empty = resolve(&[], "{}").unwrap();
        assert_eq!(
            ServerArgs {
                config: None,
                ..empty
            },
            d
        );
    }

    #[test]
    fn authentication_options_come_from_flags_or_the_file() {
        let d = defaults();
        assert_eq!((d.token_auth_file.clone(), d.anonymous_auth), (None, false));
        assert_eq!(
            d.service_account_issuer,
            "https://kubernetes.default.svc.cluster.local"
        );
        assert!(d.api_audiences.is_empty());
        let args = resolve(
            &["--anonymous-auth", "--api-audiences", "a,b"],
            r#"{"token_auth_file": "/t.csv", "service_account_issuer": "https://keel", "api_audiences": ["c"]}"#,
        )
        .unwrap();
        assert_eq!(args.token_auth_file, Some(PathBuf::from("/t.csv")));
        assert!(args.anonymous_auth);
        assert_eq!(args.service_account_issuer, "https://keel");
        assert_eq!(args.api_audiences, ["a", "b"]);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = format!(
            "{:#}",
            resolve(&[], r#"{"id": 2, "retain_event": 5}"#).unwrap_err()
        );
        assert!(e.contains("unknown field `retain_event`"), "{e}");
        assert!(e.contains("keel.json"), "{e}");
        // `config` is a flag, not a key of the file.
        let e = format!(
            "{:#}",
            resolve(&[], r#"{"config": "other.json"}"#).unwrap_err()
        );
        assert!(e.contains("unknown field `config`"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = format!(
            "{:#}",
            resolve(&[], r#"{"retain_events": "many"}"#).unwrap_err()
        );
        assert!(e.contains("retain_events: invalid type"), "{e}");
        let e = format!(
            "{:#}",
            resolve(&[], r#"{"peer_addr": "nowhere"}"#).unwrap_err()
        );
        assert!(e.contains("peer_addr: "), "{e}");
        let e = format!(
            "{:#}",
            resolve(&[], r#"{"election_timeout_ms": "9-1"}"#).unwrap_err()
        );
        assert!(e.contains("election_timeout_ms: "), "{e}");
        let e = format!("{:#}", resolve(&[], r#"{"id": -1}"#).unwrap_err());
        assert!(e.contains("id: invalid value"), "{e}");
        let e = format!("{:#}", resolve(&[], "[1]").unwrap_err());
        assert!(e.contains("must hold a JSON object"), "{e}");
    }
}
