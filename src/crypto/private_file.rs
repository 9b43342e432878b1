//! Files that hold secrets (the master key, the SQLite database, the CLI's tokens) are
//! created one way: new (never an existing file or link, which an attacker may have
//! planted with wider permissions or pointing elsewhere), and readable by their owner
//! only.

/// A new file at `path`, mode 0600, failing with `AlreadyExists` if anything (a file,
/// a link, even a dangling one) is there.
pub fn create_owner_only(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_owner_only_and_never_over_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        create_owner_only(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
            assert_eq!(
                create_owner_only(&link).unwrap_err().kind(),
                std::io::ErrorKind::AlreadyExists
            );
            assert!(!dir.path().join("nowhere").exists(), "a dangling link is not followed");
            let target = dir.path().join("elsewhere");
            std::fs::write(&target, "untouched").unwrap();
            let to_target = dir.path().join("to-target");
            std::os::unix::fs::symlink(&target, &to_target).unwrap();
            assert!(create_owner_only(&to_target).is_err());
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        }
        assert_eq!(
            create_owner_only(&path).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
    }
}
