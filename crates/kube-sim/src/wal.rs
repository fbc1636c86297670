//! Write-ahead log for `--state FILE`: every store write is appended (and fsynced) before the
//! client gets an answer, so killing the process loses nothing. On start the log is replayed and
//! rewritten as a compact snapshot (one `put` per live object) so it does not grow forever.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `put` or `del`.
    pub op: String,
    /// Store bucket, `group/plural`.
    pub key: String,
    pub ns: String,
    pub name: String,
    pub rv: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
}

#[derive(Debug)]
pub struct Wal {
    file: File,
}

impl Wal {
    /// Reads all complete records. A torn last line (crash during a write that was never
    /// acknowledged) is ignored.
    pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Replaces the log with `snapshot` atomically (write temp, fsync, rename) and opens it for appending.
    pub fn create_with_snapshot(path: &Path, snapshot: &[Record]) -> std::io::Result<Wal> {
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for r in snapshot {
                serde_json::to_writer(&mut buf, r)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Wal { file })
    }

    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}
