//! The storage seam: the few file-system operations whose failure matters
//! (allocation, flush, directory sync). Tests pass a double through
//! [`crate::JournalOptions::storage`] to inject `ENOSPC` or a failing flush, or to
//! snapshot exactly the bytes made durable at each sync.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// One flush: make `bytes` (the mapped bytes of `path` at `offset..offset + len`)
/// durable.
#[derive(Debug)]
pub struct FlushRequest<'a> {
    /// The segment file.
    pub path: &'a Path,
    /// Base ID of the segment.
    pub base_id: u64,
    /// The open segment file.
    pub file: &'a File,
    /// Byte offset of `bytes` in the file.
    pub offset: u64,
    /// The mapped bytes being flushed. They are committed and immutable.
    pub bytes: &'a [u8],
}

/// File-system operations the journal needs to be able to fail or observe.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates a new file at `path` and allocates `size` bytes to it (so a full disk
    /// fails here with `ENOSPC`, not later as `SIGBUS` in the mapping).
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<File>;
    /// Makes the flushed range durable (`msync(MS_SYNC)` / `fdatasync`).
    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()>;
    /// Makes directory entries (create, rename, remove) in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Replaces the small file `dir/name` with `bytes` atomically and durably: a reader
    /// after a crash finds either the old file or the new one, whole. The default
    /// writes `name.tmp`, syncs it, renames it over `name` and syncs the directory
    /// (through [`Storage::sync_dir`]). Used for the checkpoint file.
    fn replace_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_and_rename(dir, name, bytes)?;
        self.sync_dir(dir)
    }
}

/// Name of the temporary file [`Storage::replace_file`] writes before its rename.
/// Reads the whole of a small file: one `open` and, when the file holds at most `hint`
/// bytes, one `read` (no `stat` for its size and no second `read` to find its end: a
/// regular file's `read` returns fewer bytes than asked for only at its end). A file
/// longer than `hint` is read on to its end.
pub(crate) fn read_small(path: &Path, hint: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; hint.saturating_add(1)];
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n < buf.len() {
                    break;
                }
                buf.truncate(n);
                f.read_to_end(&mut buf)?;
                return Ok(buf);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn temp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Writes `dir/name.tmp`, syncs it and renames it to `dir/name` (the directory is not
/// synced).
fn write_and_rename(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(temp_name(name));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStorage;

impl Storage for FileStorage {
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        if let Err(e) = allocate(&file, size) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }

    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()> {
        if req.bytes.is_empty() {
            return Ok(());
        }
        msync(req.bytes)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        // Directories cannot be fsynced on Windows; entries are durable with the file.
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
}

#[cfg(target_os = "linux")]
fn allocate(file: &File, size: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let len =
        libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the fd is open for writing for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // File systems without fallocate: fall back to a sparse length (ENOSPC may
        // then only show as SIGBUS; documented limitation of such file systems).
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, size: u64) -> io::Result<()> {
    file.set_len(size)
}

#[cfg(unix)]
fn msync(bytes: &[u8]) -> io::Result<()> {
    let page = page_size();
    let addr = bytes.as_ptr() as usize;
    let start = addr & !(page - 1);
    let len = bytes.len() + (addr - start);
    // SAFETY: `start..addr + bytes.len()` lies in the mapping that `bytes` borrows from
    // (mappings are page aligned, so rounding down stays inside it); msync does not
    // modify memory.
    let rc = unsafe { libc::msync(start as *mut libc::c_void, len, libc::MS_SYNC) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn msync(_bytes: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "msync is only implemented on unix",
    ))
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    }
    #[cfg(not(unix))]
    {
        4096
    }
}

/// Lowers the calling thread's CPU priority (nice +10 on Linux; nothing elsewhere).
///
/// The journal's and the queue's background threads (flusher, checkpoint writer,
/// maintenance) call this when they start: their work (writeback) comes in bursts,
/// and on a small machine a burst at normal priority delays the application's
/// producers and consumers by milliseconds. A lower priority still
/// gets its share of a busy CPU, so the background work is delayed, never starved.
pub fn lower_background_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        if let Ok(tid) = libc::id_t::try_from(tid) {
            // SAFETY: plain syscall on this thread's own ID; the result is ignored
            // (a refused change leaves the priority as it was, which is harmless).
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    }
}

/// Creates directory `dir` and any missing parents, and makes each new entry durable:
/// the parent of every directory created here is fsynced, from the top down.
/// `sync_dir` fsyncs one directory. Nothing is done for a `dir` that exists.
///
/// # Errors
///
/// The error of creating a directory or of an fsync.
///
/// # Examples
///
/// ```
/// # let base = tempfile::tempdir().unwrap();
/// let dir = base.path().join("a/b/queue");
/// ledgerq_journal::create_dir_durable(&dir, |d| std::fs::File::open(d)?.sync_all()).unwrap();
/// assert!(dir.is_dir());
/// ```
pub fn create_dir_durable(
    dir: &Path,
    sync_dir: impl Fn(&Path) -> io::Result<()>,
) -> io::Result<()> {
    // The missing directories, from `dir` up to the first that exists.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files_shorter_and_longer_than_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for len in [0usize, 1, 63, 64, 65, 200, 5000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read_small(&path, 64).unwrap(), bytes, "length {len}");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            read_small(&path, 64).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    use std::cell::RefCell;

    #[test]
    fn create_dir_durable_fsyncs_the_parent_of_every_new_directory_from_the_top() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/c");
        let synced = RefCell::new(Vec::new());
        let record = |d: &Path| {
            synced.borrow_mut().push(d.to_path_buf());
            Ok(())
        };
        create_dir_durable(&dir, record).unwrap();
        assert!(dir.is_dir());
        let want: Vec<_> = [
            base.path().to_path_buf(),
            base.path().join("a"),
            base.path().join("a/b"),
        ]
        .into();
        assert_eq!(*synced.borrow(), want);
        // An existing directory: nothing to make durable.
        synced.borrow_mut().clear();
        create_dir_durable(&dir, record).unwrap();
        assert!(synced.borrow().is_empty());
        // A failed fsync is reported.
        let e = create_dir_durable(&base.path().join("x"), |_| Err(io::Error::other("EIO")));
        assert!(e.is_err());
    }
}
