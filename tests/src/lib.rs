//! Test harness for Keel's store: an in-process cluster of members over a
//! network that tests can cut per link (partition, drop, delay, isolate,
//! unreachable), kill and restart from their RocksDB directories, and helpers
//! that wait on conditions with deadlines and compare members by digest.
//!
//! # Layout
//!
//! - [`Router`]: the in-process network; one [`RouterTransport`] per member.
//! - [`Cluster`]: N members in one temp directory, with kill / restart / wipe.
//! - [`wait_for`]: poll a condition until a deadline (never a bare sleep).
//! - [`digest`]: a hash of a member's objects and events, to compare members.
//! - [`fuzz`]: fuzz entry points shared by `tests/tests/fuzz.rs` and `fuzz/`.
//! - [`lazyfs`]: a FUSE filesystem that loses unsynced writes in a simulated
//!   power cut (`tests/tests/power_cut.rs`).
//! - [`peer_tls`]: certificates for tests that talk to the member port.
//! - [`hollow`]: `keel hollow-nodes` processes (simulated nodes) for end-to-end tests.
//! - [`server`]: one `keel server` process for tests that drive it with kubectl or curl.
//! - [`example_apiserver`]: an extension API server behind Keel's aggregation
//!   (the `keel-example-apiserver` binary).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
pub mod at_rest;
pub mod example_apiserver;
pub mod fuzz;
pub mod hollow;
pub mod kms_plugin;
pub mod lazyfs;
pub mod peer_tls;
pub mod server;

use keel_store::{
    Consistency, Event, KeyValue, Member, MemberConfig, NodeId, PeerRequest, PeerResponse,
    RangeRequest, StoreError, Transport, TransportError,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Install a tracing subscriber once. RUST_LOG controls it; by default only
/// Keel's warnings show (openraft reports every unreachable peer as an error,
/// which fault tests cause on purpose).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Poll `cond` until it returns `Some`, or fail after `timeout` with `what`.
/// Poll `cond` until it returns `Some`, failing the test after `timeout`:
/// the blocking sibling of [`wait_for`], for tests that drive processes.
pub fn wait_until<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The state of one directed link.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    cut: bool,
    drop_rate: f64,
    delay: Duration,
}

/// The in-process network between members.
pub struct Router {
    members: Mutex<HashMap<NodeId, Arc<Member>>>,
    links: Mutex<HashMap<(NodeId, NodeId), Link>>,
    rng: Mutex<StdRng>,
    /// Messages delivered per link, for tests that check traffic.
    pub delivered: Mutex<HashMap<(NodeId, NodeId), u64>>,
    /// Requests each member tried to send, by kind, delivered or not.
    attempted: Mutex<HashMap<(NodeId, &'static str), u64>>,
}

/// The kind of a peer request, as [`Router::attempted`] counts it.
fn request_kind(req: &PeerRequest) -> &'static str {
    match req {
        PeerRequest::Vote(_) => "vote",
        PeerRequest::PreVote(_) => "pre-vote",
        PeerRequest::Append(_) => "append",
        PeerRequest::Snapshot(_) => "snapshot",
        PeerRequest::Forward(_) => "forward",
        PeerRequest::ReadIndex => "read-index",
        PeerRequest::Position => "position",
    }
}

impl Router {
    pub fn new(seed: u64) -> Arc<Router> {
        Arc::new(Router {
            members: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            delivered: Mutex::new(HashMap::new()),
            attempted: Mutex::new(HashMap::new()),
        })
    }

    /// How many requests of `kind` ("vote", "pre-vote", "append", ...)
    /// member `from` has tried to send, cut links included.
    pub fn attempted(&self, from: NodeId, kind: &str) -> u64 {
        self.attempted
            .lock()
            .unwrap()
            .iter()
            .filter(|((f, k), _)| *f == from && *k == kind)
            .map(|(_, n)| *n)
            .sum()
    }

    pub fn transport(self: &Arc<Self>, from: NodeId) -> Arc<RouterTransport> {
        Arc::new(RouterTransport {
            from,
            router: self.clone(),
        })
    }

    pub fn attach(&self, member: Arc<Member>) {
        self.members.lock().unwrap().insert(member.id(), member);
    }

    pub fn detach(&self, id: NodeId) -> Option<Arc<Member>> {
        self.members.lock().unwrap().remove(&id)
    }

    fn update(&self, from: NodeId, to: NodeId, f: impl FnOnce(&mut Link)) {
        f(self.links.lock().unwrap().entry((from, to)).or_default());
    }

    /// Cut the link from `from` to `to` (one direction).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.update(from, to, |l| l.cut = true);
    }

    /// Drop this share of messages on the link.
    pub fn set_drop_rate(&self, from: NodeId, to: NodeId, rate: f64) {
        self.update(from, to, |l| l.drop_rate = rate);
    }

    /// Delay every message on the link.
    pub fn set_delay(&self, from: NodeId, to: NodeId, delay: Duration) {
        self.update(from, to, |l| l.delay = delay);
    }

    /// Cut every link between the two groups, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut(x, y);
                self.cut(y, x);
            }
        }
    }

    /// Cut one member off from all `others`.
    pub fn isolate(&self, id: NodeId, others: &[NodeId]) {
        let rest: Vec<NodeId> = others.iter().copied().filter(|o| *o != id).collect();
        self.partition(&[id], &rest);
    }

    /// Restore every link to full health.
    pub fn heal(&self) {
        self.links.lock().unwrap().clear();
    }

    fn link(&self, from: NodeId, to: NodeId) -> Link {
        self.links
            .lock()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }

    fn dropped(&self, link: &Link) -> bool {
        link.drop_rate > 0.0 && self.rng.lock().unwrap().gen_bool(link.drop_rate.min(1.0))
    }
}

/// One member's view of the [`Router`].
pub struct RouterTransport {
    from: NodeId,
    router: Arc<Router>,
}

#[tonic::async_trait]
impl Transport for RouterTransport {
    async fn call(
        &self,
        target: NodeId,
        _addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        *self
            .router
            .attempted
            .lock()
            .unwrap()
            .entry((self.from, request_kind(&req)))
            .or_default() += 1;
        let out = self.router.link(self.from, target);
        if out.cut {
            return Err(TransportError::Unreachable(format!(
                "link {}->{target} is cut",
                self.from
            )));
        }
        if self.router.dropped(&out) {
            return Err(TransportError::Network(format!(
                "message {}->{target} dropped",
                self.from
            )));
        }
        let member = self
            .router
            .members
            .lock()
            .unwrap()
            .get(&target)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable(format!("member {target} is down")))?;
        let work = async {
            if !out.delay.is_zero() {
                tokio::time::sleep(out.delay).await;
            }
            member.handle(req).await
        };
        let resp = tokio::time::timeout(timeout, work).await.map_err(|_| {
            TransportError::Network(format!("no answer from {target} within {timeout:?}"))
        })?;
        // The request was processed; the answer can still be lost on the way back.
        let back = self.router.link(target, self.from);
        if back.cut || self.router.dropped(&back) {
            return Err(TransportError::Network(format!(
                "answer {target}->{} lost",
                self.from
            )));
        }
        *self
            .router
            .delivered
            .lock()
            .unwrap()
            .entry((self.from, target))
            .or_default() += 1;
        Ok(resp)
    }
}

/// Timings for tests: quick enough to keep tests short, loose enough for two
/// loaded cores running several test binaries.
pub fn test_config(id: NodeId, dir: PathBuf) -> MemberConfig {
    let mut c = MemberConfig::new(id, format!("member-{id}"), dir);
    c.heartbeat = Duration::from_millis(150);
    c.election_timeout = (Duration::from_millis(1000), Duration::from_millis(2000));
    c.request_timeout = Duration::from_secs(3);
    c.watch.progress_interval = Duration::from_millis(300);
    c
}

/// An in-process cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub router: Arc<Router>,
    pub configs: BTreeMap<NodeId, MemberConfig>,
    members: BTreeMap<NodeId, Arc<Member>>,
}

impl Cluster {
    /// Start `n` members (ids 1..=n), bootstrap them together and wait for a leader.
    pub async fn start(n: u64, seed: u64) -> Cluster {
        Cluster::start_with(n, seed, |_| {}).await
    }

    pub async fn start_with(n: u64, seed: u64, tweak: impl Fn(&mut MemberConfig)) -> Cluster {
        Cluster::start_led_by(n, seed, 1, tweak).await
    }

    /// Open a member from its configured directory and attach it to the network.
    pub async fn start_member(&mut self, id: NodeId) -> Arc<Member> {
        let config = self.configs[&id].clone();
        // A killed member's database closes when its last handle is gone; wait for the lock.
        let member = wait_for(
            &format!("member {id} to reopen its data"),
            Duration::from_secs(20),
            || {
                let config = config.clone();
                let transport = self.router.transport(id);
                async move {
                    match Member::open(config, transport).await {
                        Ok(m) => Some(m),
                        Err(StoreError::OpenDb { source, .. })
                            if source.to_string().contains("lock") =>
                        {
                            None
                        }
                        Err(e) => panic!("member {id} failed to open: {e}"),
                    }
                }
            },
        )
        .await;
        self.router.attach(member.clone());
        self.members.insert(id, member.clone());
        member
    }

    /// Add a new member's config (for membership tests) without starting it.
    pub fn add_config(&mut self, id: NodeId) -> MemberConfig {
        let c = test_config(id, self.dir.path().join(format!("m{id}")));
        self.configs.insert(id, c.clone());
        c
    }

    pub fn member(&self, id: NodeId) -> Arc<Member> {
        self.members
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("member {id} is not running"))
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    pub fn all_ids(&self) -> Vec<NodeId> {
        self.configs.keys().copied().collect()
    }

    /// Wait until the running members agree on one leader among them; return it.
    pub async fn leader(&self, timeout: Duration) -> NodeId {
        wait_for(
            "a leader that the running members agree on",
            timeout,
            || async {
                let mut leader = None;
                for m in self.members.values() {
                    let l = m.raft().metrics().borrow_watched().current_leader?;
                    if leader.is_some_and(|x| x != l) {
                        return None;
                    }
                    leader = Some(l);
                }
                leader.filter(|l| self.members.contains_key(l) && self.member(*l).is_leader())
            },
        )
        .await
    }

    /// Wait until a leader exists among the given members (others may disagree).
    pub async fn leader_among(&self, ids: &[NodeId], timeout: Duration) -> NodeId {
        wait_for("a leader among the majority", timeout, || async {
            ids.iter()
                .copied()
                .find(|id| self.members.get(id).is_some_and(|m| m.is_leader()))
        })
        .await
    }

    /// Stop a member without a graceful hand-over: it is cut from the network at
    /// once, Raft is stopped mid-flight and its handles dropped. Its data stays.
    pub async fn kill(&mut self, id: NodeId) {
        let member = self.members.remove(&id).expect("member running");
        self.router.detach(id);
        let db = member.db_handle();
        member.shutdown().await;
        drop(member);
        wait_for(
            &format!("member {id}'s database to close"),
            Duration::from_secs(20),
            || {
                let closed = db.upgrade().is_none();
                async move { closed.then_some(()) }
            },
        )
        .await;
    }

    /// Restart a killed member from its directory.
    pub async fn restart(&mut self, id: NodeId) -> Arc<Member> {
        self.start_member(id).await
    }

    /// Delete a stopped member's data directory.
    pub fn wipe(&self, id: NodeId) {
        assert!(
            !self.members.contains_key(&id),
            "wipe a stopped member only"
        );
        let _ = std::fs::remove_dir_all(&self.configs[&id].data_dir);
    }

    /// Wait until every running member has applied at least `index`.
    /// Wait until every running member has applied the change at `revision`
    /// (a revision is not a log index: a batch entry holds several).
    pub async fn wait_applied(&self, revision: u64, timeout: Duration) {
        for (id, m) in &self.members {
            let m = m.clone();
            wait_for(
                &format!("member {id} to apply revision {revision}"),
                timeout,
                || {
                    let reached = m.hub().revision();
                    async move { (reached >= revision).then_some(()) }
                },
            )
            .await;
        }
    }

    /// Wait until every running member has applied the log entry at `index`.
    pub async fn wait_applied_index(&self, index: u64, timeout: Duration) {
        for (id, m) in &self.members {
            m.raft()
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), format!("member {id} applied {index}"))
                .await
                .unwrap_or_else(|e| panic!("member {id} did not apply {index}: {e}"));
        }
    }

    /// Wait until all running members hold identical objects and events.
    pub async fn wait_converged(&self, timeout: Duration) -> u64 {
        wait_for(
            "all running members to hold identical state",
            timeout,
            || async {
                // A member installed from a snapshot keeps no events before
                // it: the event logs must agree above every member's floor.
                let floor = self
                    .members
                    .values()
                    .map(|m| m.revisions().expect("revisions").1)
                    .max()
                    .unwrap_or(0);
                let mut digests: HashSet<(u64, u64)> = HashSet::new();
                for m in self.members.values() {
                    digests.insert((m.revisions().expect("revisions").0, digest(m, floor).await));
                }
                let applied: HashSet<u64> = self
                    .members
                    .values()
                    .map(|m| {
                        m.raft()
                            .metrics()
                            .borrow_watched()
                            .last_applied
                            .map(|l| l.index)
                            .unwrap_or(0)
                    })
                    .collect();
                let last_log: HashSet<u64> = self
                    .members
                    .values()
                    .map(|m| {
                        m.raft()
                            .metrics()
                            .borrow_watched()
                            .last_log_index
                            .unwrap_or(0)
                    })
                    .collect();
                (digests.len() == 1 && applied.len() == 1 && last_log.len() == 1)
                    .then(|| digests.into_iter().next().expect("one").1)
            },
        )
        .await
    }

    /// Shut every running member down (end of a test).
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.kill(id).await;
        }
    }
}

/// Every object of a member (local read), key → (value, create, mod revision).
pub async fn objects(m: &Member) -> BTreeMap<String, (Vec<u8>, u64, u64)> {
    let mut req = RangeRequest::prefix("");
    req.consistency = Consistency::Local;
    keel_store::read::range_all(m, req)
        .await
        .expect("range")
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.create_revision, kv.mod_revision)))
        .collect()
}

/// FNV-1a over everything members must agree on: every field of every
/// object, and every field of every retained event after revision `floor`
/// (with its `value` and `prev` in full). Events up to `floor` and the
/// compacted revision are left out: a member installed from a snapshot
/// starts its event log at the snapshot. The structs are destructured
/// without `..`, so a field added later fails to compile here until the
/// digest covers it.
pub async fn digest(m: &Member, floor: u64) -> u64 {
    let mut h = Fnv::default();
    let mut req = RangeRequest::prefix("");
    req.consistency = Consistency::Local;
    let kvs = keel_store::read::range_all(m, req)
        .await
        .expect("range")
        .kvs;
    h.u64(kvs.len() as u64);
    for kv in &kvs {
        h.kv(kv);
    }
    let mut events = m.events().expect("events");
    events.retain(|e| e.revision > floor);
    h.u64(events.len() as u64);
    for ev in &events {
        let Event {
            revision,
            op_index,
            kind,
            key,
            value,
            prev,
            at_ms,
            actor,
            wire: _, // a cache of the encoding, not state
        } = ev;
        h.u64(*revision);
        h.u64(u64::from(*op_index));
        h.bytes(format!("{kind:?}").as_bytes());
        h.bytes(key.as_bytes());
        for kv in [value, prev] {
            match kv {
                Some(kv) => {
                    h.u64(1);
                    h.kv(kv);
                }
                None => h.u64(0),
            }
        }
        h.u64(*at_ms);
        match actor {
            Some(a) => {
                h.u64(1);
                h.bytes(a.user.as_bytes());
                h.u64(a.groups.len() as u64);
                a.groups.iter().for_each(|g| h.bytes(g.as_bytes()));
            }
            None => h.u64(0),
        }
    }
    h.0
}

/// FNV-1a, fed length-prefixed fields so that moving bytes from one field
/// to the next changes the hash.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf29ce484222325)
    }
}

impl Fnv {
    fn raw(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.raw(b);
    }

    fn kv(&mut self, kv: &KeyValue) {
        let KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            uid,
        } = kv;
        self.bytes(key.as_bytes());
        self.bytes(value);
        self.u64(*create_revision);
        self.u64(*mod_revision);
        self.u64(*version);
        match uid {
            Some(u) => {
                self.u64(1);
                self.bytes(u.as_bytes());
            }
            None => self.u64(0),
        }
    }
}

/// A loopback port for a server a test is about to start: free now, never
/// handed out before in this process, and below Linux's ephemeral range
/// (32768..), so that no outgoing connection of a concurrent test can take it
/// before the server binds it. (`bind(0)` hands out ephemeral ports, which
/// other tests' clients then used as source ports: the server failed to bind
/// and the test waited out its deadline.)
pub fn free_port() -> u16 {
    loop {
        let port = PORTS_FROM + (next_random() % u64::from(PORTS_TO - PORTS_FROM)) as u16;
        if claim_port(port) {
            return port;
        }
    }
}

/// The ports [`free_port`] and [`claim_port`] hand out.
pub const PORTS_FROM: u16 = 20_000;
/// One past the last: where Linux's ephemeral range starts.
pub const PORTS_TO: u16 = 32_768;

/// Claim `port` for this process: true when no test here claimed it before
/// and it can be bound now.
pub fn claim_port(port: u16) -> bool {
    static CLAIMED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut claimed = CLAIMED.lock().unwrap();
    if claimed.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return false;
    }
    claimed.insert(port);
    true
}

/// A pseudo-random number, seeded by the process id so that test processes
/// that run side by side start at different ports.
pub fn next_random() -> u64 {
    static STATE: Mutex<Option<u64>> = Mutex::new(None);
    let mut state = STATE.lock().unwrap();
    let n = state
        .unwrap_or(u64::from(std::process::id()))
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state = Some(n);
    n >> 33
}

/// The `keel` binary of this build (test executables live in target/<profile>/deps).
pub fn keel_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("keel");
    assert!(
        bin.exists(),
        "build the keel binary first (cargo build): {} missing",
        bin.display()
    );
    bin
}

/// A seed from `KEEL_TEST_SEED` or the clock, printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KEEL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{test}: seed {seed} (replay with KEEL_TEST_SEED={seed})");
    seed
}

/// A random number generator from a seed.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub use rand;

impl Cluster {
    /// Like [`Cluster::start_with`], but member `first` bootstraps the
    /// cluster, so it is the first leader (bootstrapping elects at once).
    pub async fn start_led_by(
        n: u64,
        seed: u64,
        first: NodeId,
        tweak: impl Fn(&mut MemberConfig),
    ) -> Cluster {
        init_tracing();
        let mut cluster = Cluster {
            router: Router::new(seed),
            configs: BTreeMap::new(),
            members: BTreeMap::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for id in 1..=n {
            let mut c = test_config(id, cluster.dir.path().join(format!("m{id}")));
            tweak(&mut c);
            cluster.configs.insert(id, c);
            cluster.start_member(id).await;
        }
        let all: BTreeMap<NodeId, String> = cluster
            .configs
            .iter()
            .map(|(id, c)| (*id, c.addr.clone()))
            .collect();
        cluster
            .member(first)
            .initialize(all)
            .await
            .expect("initialize");
        cluster.leader(Duration::from_secs(30)).await;
        cluster
    }
}

/// A child process (a `keel server`) that is killed and reaped when dropped,
/// so a failed assertion never leaves it running.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
