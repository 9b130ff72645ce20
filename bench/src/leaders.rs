//! Leader changes during a step, counted from the members' own metrics:
//! Keel's `/metrics` on each member's `--http-addr` (`keel_raft_term`,
//! `keel_raft_is_leader`) and etcd's `/metrics` on its client URL
//! (`etcd_server_leader_changes_seen_total`). A step that changes leader
//! under load has found a spurious election, which a benchmark must show.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::cluster::http_get;

/// Where the metrics are.
#[derive(Clone, Debug)]
pub enum Source {
    /// Keel members: (member id, `--http-addr`).
    Keel(Vec<(u64, String)>),
    /// etcd members' client addresses (host:port).
    Etcd(Vec<String>),
}

/// One look at a cluster: a number that grows by one per leader change
/// (Keel: the highest Raft term; etcd: the most changes any member has
/// seen) and the leader, where the metrics name it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seen {
    count: u64,
    leader: Option<u64>,
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(v as u64)
    })
}

async fn observe(source: &Source) -> Option<Seen> {
    let mut best: Option<Seen> = None;
    match source {
        Source::Keel(members) => {
            for (id, addr) in members {
                let Ok(text) = http_get(addr, "/metrics").await else {
                    continue;
                };
                let Some(term) = metric(&text, "keel_raft_term") else {
                    continue;
                };
                let leads = metric(&text, "keel_raft_is_leader") == Some(1);
                let prev = best.unwrap_or(Seen {
                    count: 0,
                    leader: None,
                });
                // A leader counts only at the highest term seen (a deposed
                // leader that has not yet heard of the new term is stale).
                best = Some(if term > prev.count {
                    Seen {
                        count: term,
                        leader: leads.then_some(*id),
                    }
                } else if term == prev.count && leads {
                    Seen {
                        count: term,
                        leader: Some(*id),
                    }
                } else {
                    prev
                });
            }
        }
        Source::Etcd(members) => {
            for addr in members {
                let Ok(text) = http_get(addr, "/metrics").await else {
                    continue;
                };
                if let Some(n) = metric(&text, "etcd_server_leader_changes_seen_total") {
                    let count = best.map_or(n, |b| b.count.max(n));
                    best = Some(Seen {
                        count,
                        leader: None,
                    });
                }
            }
        }
    }
    best
}

/// Changes between two looks: each term (or change seen) is one; a new
/// leader at the same count is one more.
fn changes(prev: Seen, next: Seen) -> u64 {
    let grew = next.count.saturating_sub(prev.count);
    if grew > 0 {
        grew
    } else if prev.leader.is_some() && next.leader.is_some() && prev.leader != next.leader {
        1
    } else {
        0
    }
}

/// Counts leader changes from a first look (taken by [`LeaderWatch::start`])
/// to a last (taken by [`LeaderWatch::finish`]), looking every `every` in
/// between where given.
pub struct LeaderWatch {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<u64>>,
    /// The leader at the first look, where the metrics name it.
    pub leader_at_start: Option<u64>,
}

impl LeaderWatch {
    pub async fn start(source: Arc<Source>, every: Option<Duration>) -> LeaderWatch {
        let first = observe(&source).await;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let (mut last, mut total) = (first, 0u64);
            let mut look = |seen: Option<Seen>| match (last, seen) {
                // Only lagging members answered: nothing new to learn.
                (Some(l), Some(s)) if s.count < l.count => {}
                (_, Some(s)) => {
                    total += last.map_or(0, |l| changes(l, s));
                    last = Some(s);
                }
                (_, None) => {}
            };
            if let Some(every) = every {
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(every) => look(observe(&source).await),
                    }
                }
            } else {
                let _ = stopped.await;
            }
            look(observe(&source).await);
            // Unknown unless the metrics answered at least once.
            last.map(|_| total)
        });
        LeaderWatch {
            stop,
            task,
            leader_at_start: first.and_then(|s| s.leader),
        }
    }

    /// Leader changes seen since the start, or `None` when the metrics
    /// could not be read.
    pub async fn finish(self) -> Option<u64> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_from_the_text_format() {
        let text = "# HELP keel_raft_term Current Raft term.\n# TYPE keel_raft_term gauge\n\
                    keel_raft_term 7\nkeel_raft_termx 9\nkeel_store_writes_total{result=\"applied\"} 3\n\
                    etcd_server_leader_changes_seen_total 2\n";
        assert_eq!(metric(text, "keel_raft_term"), Some(7));
        assert_eq!(
            metric(text, "etcd_server_leader_changes_seen_total"),
            Some(2)
        );
        assert_eq!(metric(text, "keel_store_writes_total"), None);
        assert_eq!(metric(text, "keel_raft_is_leader"), None);
    }

    /// A member's /metrics that answers whatever `text` holds at the time.
    async fn fake_member(text: Arc<std::sync::Mutex<String>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let body = text.lock().unwrap().clone();
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let resp = format!("HTTP/1.0 200 OK\r\n\r\n{body}");
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_watch_counts_the_elections_between_its_first_and_last_look() {
        let texts: Vec<_> = (0..2)
            .map(|i| {
                Arc::new(std::sync::Mutex::new(format!(
                    "keel_raft_term 3\nkeel_raft_is_leader {}\n",
                    u8::from(i == 0)
                )))
            })
            .collect();
        let mut members = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            members.push((i as u64 + 1, fake_member(t.clone()).await));
        }
        let source = Arc::new(Source::Keel(members));
        let quiet = LeaderWatch::start(source.clone(), Some(Duration::from_millis(10))).await;
        assert_eq!(quiet.finish().await, Some(0));

        let watch = LeaderWatch::start(source.clone(), Some(Duration::from_millis(10))).await;
        // Member 2 wins term 5 (after a failed election at term 4).
        *texts[0].lock().unwrap() = "keel_raft_term 5\nkeel_raft_is_leader 0\n".into();
        *texts[1].lock().unwrap() = "keel_raft_term 5\nkeel_raft_is_leader 1\n".into();
        assert_eq!(watch.finish().await, Some(2));

        let nobody = Arc::new(Source::Etcd(vec!["127.0.0.1:1".into()]));
        assert_eq!(LeaderWatch::start(nobody, None).await.finish().await, None);
    }

    #[test]
    fn terms_and_new_leaders_count_as_changes() {
        let s = |count, leader| Seen { count, leader };
        assert_eq!(changes(s(3, Some(1)), s(3, Some(1))), 0);
        assert_eq!(changes(s(3, Some(1)), s(5, Some(2))), 2);
        assert_eq!(changes(s(3, Some(1)), s(3, Some(2))), 1);
        assert_eq!(changes(s(3, Some(1)), s(3, None)), 0);
        // A sample from a member that lags never counts backwards.
        assert_eq!(changes(s(4, None), s(3, None)), 0);
    }
}
