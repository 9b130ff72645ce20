//! Segments and the index: written and read back, damage named by file and
//! range, a segment a crash left out of the index taken back, gaps and
//! missing ranges refused, and the revision of a point in time.

use super::segment::{SegmentHeader, SegmentWriter, parse_segment_name};
use super::*;
use crate::{Event, EventKind, KeyValue, codec};

fn event(revision: u64, op: u32, at_ms: u64) -> Event {
    let key = format!("/k/{revision}/{op}");
    Event {
        revision,
        op_index: op,
        kind: EventKind::Added,
        value: Some(KeyValue {
            key: key.clone(),
            value: vec![b'v'; 100],
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            uid: None,
        }),
        key,
        prev: None,
        at_ms,
        actor: None,
        wire: Default::default(),
    }
}

/// A segment `(from, to]` with one event per revision in `revs`.
fn segment(dir: &Path, from: u64, to: u64, revs: &[u64]) -> SegmentInfo {
    let mut w = SegmentWriter::create(
        dir,
        SegmentHeader {
            from,
            to,
            member: 1,
            created_ms: 5,
        },
    )
    .unwrap();
    for r in revs {
        let e = event(*r, 0, 1000 * r);
        w.push(
            &codec::event_key(*r, 0),
            &codec::encode_event(&e),
            *r,
            e.at_ms,
        )
        .unwrap();
    }
    w.finish().unwrap()
}

fn revisions(dir: &Path, after: u64, through: u64) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    read_range(dir, after, through, |e| {
        out.push(e.revision);
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn segments_roundtrip_through_the_index_and_ranges_read_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), 0, 10, &[2, 3, 7]);
    let b = segment(dir.path(), 10, 20, &[11, 20]);
    assert_eq!((a.events, a.first_ms, a.last_ms), (3, 2000, 7000));
    assert_eq!(parse_segment_name(&a.file), Some((0, 10)));
    write_index(
        dir.path(),
        &[Entry::Segment(a.clone()), Entry::Segment(b.clone())],
    )
    .unwrap();
    let entries = open(dir.path()).unwrap();
    assert_eq!(entries, vec![Entry::Segment(a), Entry::Segment(b)]);
    assert_eq!(span(&entries), Some((0, 20)));
    assert_eq!(revisions(dir.path(), 0, 20).unwrap(), vec![2, 3, 7, 11, 20]);
    assert_eq!(revisions(dir.path(), 3, 11).unwrap(), vec![7, 11]);
    assert_eq!(revisions(dir.path(), 12, 19).unwrap(), Vec::<u64>::new());
    let err = revisions(dir.path(), 0, 25).unwrap_err().to_string();
    assert!(err.contains("ends at revision 20"), "{err}");
    // The state as of 7.5 s: before the event at 11 s, after the one at 7 s.
    assert_eq!(revision_at_time(dir.path(), 0, 7500).unwrap(), 10);
    assert_eq!(revision_at_time(dir.path(), 0, 500).unwrap(), 1);
    let err = revision_at_time(dir.path(), 0, 99_000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--to-revision 20"), "{err}");
}

#[test]
fn a_segment_left_out_of_the_index_is_taken_back_and_temporaries_go() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), 0, 10, &[2]);
    write_index(dir.path(), &[Entry::Segment(a)]).unwrap();
    // A crash after naming the next segment, before the index was rewritten.
    segment(dir.path(), 10, 15, &[12, 15]);
    std::fs::write(dir.path().join("junk.seg.tmp"), b"half").unwrap();
    let entries = recover(dir.path()).unwrap();
    assert_eq!(span(&entries), Some((0, 15)));
    assert!(!dir.path().join("junk.seg.tmp").exists());
    let text = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("segment")).count(), 2);
    assert_eq!(revisions(dir.path(), 0, 15).unwrap(), vec![2, 12, 15]);
}

#[test]
fn opening_an_archive_a_member_is_writing_changes_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), 0, 10, &[2]);
    write_index(dir.path(), &[Entry::Segment(a)]).unwrap();
    let index = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
    // The archiver between naming a segment and rewriting the index, with
    // the next segment half written.
    segment(dir.path(), 10, 15, &[12, 15]);
    std::fs::write(
        dir.path()
            .join("00000000000000000015-00000000000000000020.seg.tmp"),
        b"half",
    )
    .unwrap();
    let entries = open(dir.path()).unwrap();
    assert_eq!(span(&entries), Some((0, 15)));
    assert_eq!(revisions(dir.path(), 0, 15).unwrap(), vec![2, 12, 15]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap(),
        index,
        "a reader rewrote the index"
    );
    assert!(
        dir.path()
            .join("00000000000000000015-00000000000000000020.seg.tmp")
            .exists(),
        "a reader removed the archiver's unfinished segment"
    );
    // A leftover of a failed step, overlapping what the index covers, is
    // not read as if it continued the archive.
    let listed = segment(dir.path(), 15, 20, &[16, 20]);
    segment(dir.path(), 15, 18, &[16]);
    write_index(
        dir.path(),
        &[
            entries[0].clone(),
            entries[1].clone(),
            Entry::Segment(listed.clone()),
        ],
    )
    .unwrap();
    let entries = open(dir.path()).unwrap();
    assert_eq!(entries.last(), Some(&Entry::Segment(listed)));
    assert_eq!(entries.len(), 3);
    assert_eq!(
        revisions(dir.path(), 0, 20).unwrap(),
        vec![2, 12, 15, 16, 20]
    );
}

#[test]
fn gaps_and_holes_are_refused_naming_the_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), 0, 10, &[2]);
    let c = segment(dir.path(), 30, 40, &[35]);
    write_index(
        dir.path(),
        &[
            Entry::Segment(a),
            Entry::Gap {
                from: 10,
                to: 20,
                reason: "a snapshot install".into(),
            },
            Entry::Segment(c),
        ],
    )
    .unwrap();
    assert_eq!(revisions(dir.path(), 0, 10).unwrap(), vec![2]);
    let err = revisions(dir.path(), 0, 15).unwrap_err().to_string();
    assert!(
        err.contains("revisions 11 to 20 are a recorded gap") && err.contains("a snapshot install"),
        "{err}"
    );
    let err = revisions(dir.path(), 20, 35).unwrap_err().to_string();
    assert!(
        err.contains("revisions 21 to 30 are not in the archive"),
        "{err}"
    );
    assert_eq!(revisions(dir.path(), 30, 40).unwrap(), vec![35]);
}

#[test]
fn damaged_segments_are_refused_naming_the_file_and_its_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), 0, 10, &[2, 3, 4, 5, 6, 7]);
    write_index(dir.path(), &[Entry::Segment(a.clone())]).unwrap();
    let path = dir.path().join(&a.file);
    let good = std::fs::read(&path).unwrap();
    for at in [good.len() / 2, good.len() - 3] {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        let err = revisions(dir.path(), 0, 10).unwrap_err().to_string();
        assert!(
            err.contains(&a.file) && err.contains("revisions 1 to 10"),
            "byte {at}: {err}"
        );
    }
    for cut in [1, 4, 8, 12] {
        std::fs::write(&path, &good[..good.len() - cut]).unwrap();
        let err = revisions(dir.path(), 0, 10).unwrap_err().to_string();
        assert!(
            err.contains(&a.file) && err.contains("truncated"),
            "cut {cut}: {err}"
        );
    }
    let mut padded = good.clone();
    padded.push(0);
    std::fs::write(&path, &padded).unwrap();
    let err = revisions(dir.path(), 0, 10).unwrap_err().to_string();
    assert!(err.contains("padded"), "{err}");
    // A whole but different segment under the indexed name.
    std::fs::remove_file(&path).unwrap();
    segment(dir.path(), 0, 10, &[9]);
    let err = revisions(dir.path(), 0, 10).unwrap_err().to_string();
    assert!(err.contains("the index says"), "{err}");
}

#[test]
fn events_out_of_the_segment_range_are_refused_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(
        dir.path(),
        SegmentHeader {
            from: 10,
            to: 20,
            member: 1,
            created_ms: 0,
        },
    )
    .unwrap();
    let e = event(5, 0, 1);
    assert!(
        w.push(&codec::event_key(5, 0), &codec::encode_event(&e), 5, 1)
            .is_err()
    );
}
