//! Election assist: after the leader dies, the reachable voter with the most
//! up-to-date log calls the election at once (see
//! [`Member::assist_election`]); its decision, [`should_call_election`], is
//! pure and tested here.

use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio::sync::Notify;

use super::Member;
use crate::LogId;
use crate::NodeId;
use crate::transport::{LogPosition, PeerRequest, PeerResponse};

impl Member {
    /// Where this member's log ends and how long its leader has been silent.
    pub(super) fn position(&self) -> LogPosition {
        let m = self.raft.metrics().borrow_watched().clone();
        let silent = if m.current_leader == Some(self.config.id) {
            Duration::ZERO
        } else {
            self.last_append.lock().unwrap().elapsed()
        };
        LogPosition {
            last_log: self.raft.data_metrics().borrow_watched().last_log,
            leader_silent_ms: silent.as_millis() as u64,
        }
    }

    /// Election assist. openraft 0.9 drew a member's election timeout once
    /// per process and had no pre-vote, so after the leader died the
    /// survivors could reject each other's candidacies for several rounds
    /// (measured: 5–18 s of write unavailability). The election it calls
    /// starts with a pre-vote round like any other. Once no member has heard
    /// from a leader for longer than the maximum election timeout (so every
    /// leader lease has run out), the voter whose last log id (leader term,
    /// then index: the order Raft grants votes by) is the greatest among those
    /// it can reach (ties to the lowest id) calls an election at once; the
    /// others grant it, since its log is at least as up to date as theirs. A
    /// longer log from an older term ranks below a shorter one from a newer
    /// term: ranking by index alone let a stale member campaign again and
    /// again, raising its term past the member that could win, so the cluster
    /// stayed leaderless. Calling an election is always safe in Raft; this
    /// only chooses who and when.
    async fn assist_election(&self) {
        // The cheap test first: a follower that hears its leader does nothing.
        let quiet = self.config.election_timeout.1 + self.config.heartbeat;
        if self.last_append.lock().unwrap().elapsed() < quiet {
            return;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let me = self.config.id;
        if m.current_leader == Some(me) {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&me) {
            return;
        }
        if self
            .last_elect
            .lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() < self.config.election_timeout.0)
        {
            return;
        }
        let mine = self.raft.data_metrics().borrow_watched().last_log;
        let mut answers = Vec::new();
        for id in voters.iter().copied().filter(|id| *id != me) {
            let Some(node) = membership.get_node(&id) else {
                continue;
            };
            let answer = self
                .transport
                .call(id, &node.addr, PeerRequest::Position, self.config.heartbeat)
                .await;
            if let Ok(PeerResponse::Position(p)) = answer {
                answers.push((id, p));
            }
        }
        if !should_call_election(me, mine, &answers, voters.len(), quiet) {
            return;
        }
        *self.last_elect.lock().unwrap() = Some(std::time::Instant::now());
        tracing::info!(
            id = me,
            last_log = ?mine,
            "no leader heard from and this member's log is the most up to date reachable: calling an election"
        );
        if let Err(e) = self.raft.trigger().elect(true).await {
            tracing::warn!(error = %e, "calling an election failed");
        }
    }
}

/// The election assist's rule: call an election when no reachable voter
/// still hears a leader, this member's last log id is the greatest among
/// them in Raft's vote order (ties to the lowest id), and it can reach a
/// majority with them. Any peer with a greater last log id would refuse its
/// vote, so the assist then leaves the election to that peer.
fn should_call_election(
    me: NodeId,
    my_last_log: Option<LogId>,
    answers: &[(NodeId, LogPosition)],
    voters: usize,
    quiet: Duration,
) -> bool {
    let someone_hears_a_leader = answers
        .iter()
        .any(|(_, p)| (p.leader_silent_ms as u128) < quiet.as_millis());
    let someone_is_ahead = answers
        .iter()
        .any(|(id, p)| p.last_log > my_last_log || (p.last_log == my_last_log && *id < me));
    let majority = (answers.len() + 1) * 2 > voters;
    !someone_hears_a_leader && !someone_is_ahead && majority
}

/// Runs [`Member::assist_election`] every heartbeat interval.
pub(super) async fn election_assist_loop(member: Weak<Member>, stop: Arc<Notify>) {
    let tick = match member.upgrade() {
        Some(m) => m.config.heartbeat,
        None => return,
    };
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let Some(m) = member.upgrade() else { return };
        m.assist_election().await;
    }
}

#[cfg(test)]
mod election_assist_tests {
    use std::time::Duration;

    use crate::LogId;

    use super::{LogPosition, should_call_election};

    /// A last log id written by leader `leader` in `term`, at `index`.
    fn at(term: u64, leader: u64, index: u64) -> Option<LogId> {
        Some(crate::log_id(term, leader, index))
    }

    fn silent(last_log: Option<LogId>) -> LogPosition {
        LogPosition {
            last_log,
            leader_silent_ms: 4000,
        }
    }

    #[test]
    fn the_most_up_to_date_log_calls_the_election() {
        let quiet = Duration::from_millis(3250);
        // Two survivors of three: the one ahead calls, the other waits.
        assert!(should_call_election(
            2,
            at(4, 1, 120),
            &[(3, silent(at(4, 1, 118)))],
            3,
            quiet
        ));
        assert!(!should_call_election(
            3,
            at(4, 1, 118),
            &[(2, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        // Equal logs: the lower id calls.
        assert!(should_call_election(
            2,
            at(4, 1, 120),
            &[(3, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        assert!(!should_call_election(
            3,
            at(4, 1, 120),
            &[(2, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        // A member that still hears the leader makes everyone stand down.
        let hearing = LogPosition {
            last_log: at(4, 1, 100),
            leader_silent_ms: 200,
        };
        assert!(!should_call_election(
            2,
            at(4, 1, 120),
            &[(3, hearing)],
            3,
            quiet
        ));
        // Alone in a minority: no election (it could not win).
        assert!(!should_call_election(2, at(4, 1, 120), &[], 3, quiet));
        // Five voters, three reachable including this one: a majority.
        assert!(should_call_election(
            1,
            at(2, 1, 50),
            &[(4, silent(at(2, 1, 40))), (5, silent(at(2, 1, 49)))],
            5,
            quiet
        ));
        // An empty log ranks below any entry.
        assert!(!should_call_election(
            1,
            None,
            &[(2, silent(at(1, 1, 1)))],
            3,
            quiet
        ));
    }

    #[test]
    fn a_longer_log_from_an_older_term_ranks_below_a_newer_term() {
        let quiet = Duration::from_millis(3250);
        // Member 3 holds a stale uncommitted tail (term 5 up to 110), member 1
        // the newer term's log (term 6 up to 103). Raft grants votes to 1, not
        // to 3: only 1 may call the election, whatever the ids.
        assert!(!should_call_election(
            3,
            at(5, 3, 110),
            &[(1, silent(at(6, 2, 103)))],
            3,
            quiet
        ));
        assert!(should_call_election(
            1,
            at(6, 2, 103),
            &[(3, silent(at(5, 3, 110)))],
            3,
            quiet
        ));
        // Same with the ids swapped.
        assert!(!should_call_election(
            1,
            at(5, 3, 110),
            &[(3, silent(at(6, 2, 103)))],
            3,
            quiet
        ));
        assert!(should_call_election(
            3,
            at(6, 2, 103),
            &[(1, silent(at(5, 3, 110)))],
            3,
            quiet
        ));
    }
}
