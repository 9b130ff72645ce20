//! The disk's own ceiling for a write-ahead log: sequential appends to a
//! file, each followed by `fdatasync`, in the directory where the members
//! keep their data. Printed beside the store suite's results so a put rate
//! can be read against the physical limit of the same disk.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use super::{Table, num};

/// Block sizes of the appends: a small write and a batch of them.
pub const BLOCKS: [usize; 2] = [1024, 16 * 1024];

/// What one append+fdatasync loop measured.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    /// Bytes per append.
    pub block: usize,
    pub syncs: u64,
    pub secs: f64,
    pub syncs_per_sec: f64,
    pub mb_per_sec: f64,
    /// Where the file was written.
    pub dir: String,
}

/// Append `block` bytes and `fdatasync` in a loop for `duration` (at least
/// `min_syncs` times), in a temporary file under `dir` that is removed after.
/// Blocking: run it off the async workers.
pub fn measure(dir: &Path, block: usize, duration: Duration, min_syncs: u64) -> Result<Ceiling> {
    let file = tempfile::Builder::new()
        .prefix("disk-ceiling-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file under {}", dir.display()))?;
    let mut f = file.as_file();
    let buf = vec![0x5a_u8; block];
    let began = Instant::now();
    let mut syncs = 0u64;
    while syncs < min_syncs || began.elapsed() < duration {
        f.write_all(&buf)?;
        f.sync_data()?;
        syncs += 1;
    }
    let secs = began.elapsed().as_secs_f64();
    Ok(Ceiling {
        block,
        syncs,
        secs,
        syncs_per_sec: syncs as f64 / secs,
        mb_per_sec: (syncs * block as u64) as f64 / secs / 1e6,
        dir: dir.display().to_string(),
    })
}

/// Every block size of [`BLOCKS`], one after the other.
pub async fn measure_all(dir: &Path, duration: Duration) -> Result<Vec<Ceiling>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        BLOCKS
            .iter()
            .map(|b| measure(&dir, *b, duration, 10))
            .collect()
    })
    .await?
}

/// The ceilings as a table.
pub fn table(ceilings: &[Ceiling]) -> Table {
    let dir = ceilings.first().map_or("", |c| c.dir.as_str());
    let mut t = Table::new(
        &format!("the disk's ceiling: sequential appends, each followed by fdatasync, under {dir}"),
        &["block", "syncs", "seconds", "syncs/s", "MB/s"],
    );
    for c in ceilings {
        t.push(vec![
            json!(format!("{} KiB", c.block / 1024)),
            json!(c.syncs),
            num(c.secs),
            num(c.syncs_per_sec),
            num(c.mb_per_sec),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_counts_every_sync_and_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let c = measure(dir.path(), 4096, Duration::ZERO, 5).unwrap();
        assert_eq!(c.syncs, 5);
        assert!(c.syncs_per_sec > 0.0 && c.mb_per_sec > 0.0, "{c:?}");
        let bytes = c.mb_per_sec * 1e6 * c.secs;
        assert!((bytes - 5.0 * 4096.0).abs() < 1.0, "{c:?}");
        // The file is gone afterwards.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
