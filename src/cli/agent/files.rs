//! Writing a rendered file so a reader sees the old content or the new one,
//! never a part: a temporary file in the destination's directory (created
//! 0600, so no moment exists where it is readable by others), written,
//! given its mode and owner, flushed to disk, then renamed over the
//! destination; the directory is flushed after the rename.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Owner to give the file (applied only when running as root).
pub struct Owner<'a> {
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
}

/// Replaces `dest` with `bytes` atomically, with `mode` and `owner`.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32, owner: &Owner) -> Result<(), String> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| format!("{} names no file", dest.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = write_then_rename(&tmp, dest, dir, bytes, mode, owner);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    dest: &Path,
    dir: &Path,
    bytes: &[u8],
    mode: u32,
    owner: &Owner,
) -> Result<(), String> {
    let shown =
        |what: &str, e: std::io::Error| format!("cannot {what} {}: {}", dest.display(), e.kind());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| shown("write next to", e))?;
    f.write_all(bytes).map_err(|e| shown("write", e))?;
    // chmod, not the creation mode: the umask does not apply.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| shown("set the mode of", e))?;
    chown(&f, owner).map_err(|m| format!("{}: {m}", dest.display()))?;
    f.sync_all().map_err(|e| shown("flush", e))?;
    drop(f);
    std::fs::rename(tmp, dest).map_err(|e| shown("replace", e))?;
    // The rename itself is durable once the directory is flushed.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn chown(f: &std::fs::File, owner: &Owner) -> Result<(), String> {
    if (owner.user.is_none() && owner.group.is_none()) || !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let uid = match owner.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("no user `{name}`"))?
                .uid,
        ),
        None => None,
    };
    let gid = match owner.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("no group `{name}`"))?
                .gid,
        ),
        None => None,
    };
    nix::unistd::fchown(f, uid, gid).map_err(|e| format!("cannot change the owner: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn replaces_with_the_mode_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("agent-files-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let dest = dir.join("out.conf");
        let none = Owner {
            user: None,
            group: None,
        };
        write_atomic(&dest, b"one", 0o600, &none).expect("first write");
        write_atomic(&dest, b"two", 0o640, &none).expect("second write");
        assert_eq!(std::fs::read(&dest).expect("read"), b"two");
        assert_eq!(
            std::fs::metadata(&dest).expect("meta").mode() & 0o7777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["out.conf"]);
        let err = write_atomic(&dir.join("missing/x"), b"v", 0o600, &none).expect_err("no dir");
        assert!(err.contains("cannot write next to"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
