//! Small files that must never be seen half-written (checkpoint, and the
//! broker's topic and offset tables): write a temporary file, fsync it,
//! rename it over the old one, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replace `path` with `data` atomically and durably: after a crash the
/// file holds either the old or the new contents, never a mix.
pub fn persist(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = tmp_path(path);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename itself is only durable once the directory is synced.
    File::open(&dir)?.sync_all()
}

/// The contents of `path`, or `None` if it does not exist.
pub fn load(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("topics.json");
        assert_eq!(load(&p).unwrap(), None);
        persist(&p, b"one").unwrap();
        persist(&p, b"two").unwrap();
        assert_eq!(load(&p).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!tmp_path(&p).exists());
    }
}
