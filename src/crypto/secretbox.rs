//! Secrets at rest (private signing keys, later TOTP secrets and upstream tokens),
//! sealed with AES-256-GCM under the master key.
//!
//! The master key comes from `PORTCULLIS_MASTER_KEY`, or from a key file that is
//! generated with 0600 permissions on first start (`domain::master` decides when). Each sealed value binds a context
//! string as associated data, so a ciphertext cannot be moved to another column.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HKDF's pseudo-random key from the master key, from which `derive` expands keys
    /// for other purposes (never the sealing key itself).
    prk: aws_lc_rs::hkdf::Prk,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Accepts 32 bytes as standard or URL-safe base64, or as 64 hex digits.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes: Option<Vec<u8>> = (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect();
        return bytes?.try_into().ok();
    }
    [
        STANDARD.decode(text).ok(),
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok(),
    ]
    .into_iter()
    .flatten()
    .find_map(|bytes| <[u8; 32]>::try_from(bytes).ok())
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let salt = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"portcullis master key");
        Self {
            cipher: Aes256Gcm::new(&bytes.into()),
            prk: salt.extract(&bytes),
        }
    }

    /// A 32-byte key for one `purpose` (HKDF-SHA-256, the purpose as its info), so
    /// that each use of the master key has a key of its own: knowing one tells nothing
    /// of the master key or of another purpose's key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        let info = [purpose.as_bytes()];
        // Expanding 32 bytes from SHA-256's PRK cannot fail (the limit is 255 * 32).
        if let Ok(okm) = self.prk.expand(&info, aws_lc_rs::hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    pub fn from_config_value(text: &str) -> anyhow::Result<Self> {
        decode_key(text)
            .map(Self::from_bytes)
            .ok_or_else(|| anyhow::anyhow!("PORTCULLIS_MASTER_KEY: expected 32 bytes as base64 or 64 hex digits"))
    }

    /// Reads the key file; None when it does not exist.
    pub fn read_file(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = decode_key(&text).ok_or_else(|| {
                    anyhow::anyhow!("master key file {} does not hold a 32-byte base64 key", path.display())
                })?;
                Ok(Some(Self::from_bytes(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read master key file {}: {e}", path.display())),
        }
    }

    /// Generates a key into a new file (0600); refuses to replace an existing one.
    pub fn create_file(path: &Path) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        // A missing directory is a mistake (a misspelt path), as for the database file:
        // creating it would put the key where no one will look for it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            anyhow::bail!(
                "the master key file's directory {} does not exist: create it, or point PORTCULLIS_MASTER_KEY_FILE elsewhere",
                dir.display()
            );
        }
        let mut f = super::private_file::create_owner_only(path)
            .map_err(|e| anyhow::anyhow!("cannot create master key file {}: {e}", path.display()))?;
        writeln!(f, "{}", STANDARD.encode(bytes))?;
        f.sync_all()?;
        Ok(Self::from_bytes(bytes))
    }

    /// nonce || ciphertext+tag.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            anyhow::bail!("sealed value is truncated");
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot open sealed value: wrong master key or corrupted data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = MasterKey::from_bytes([7; 32]);
        let sealed = k.seal(b"secret", "signing_key").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed, "signing_key").unwrap(), b"secret");
        assert!(k.open(&sealed, "other").is_err());
        assert!(MasterKey::from_bytes([8; 32]).open(&sealed, "signing_key").is_err());
    }

    #[test]
    fn derived_keys_are_per_purpose_and_per_master_key() {
        let k = MasterKey::from_bytes([7; 32]);
        let audit = k.derive("audit");
        assert_ne!(audit, [0; 32]);
        assert_eq!(audit, MasterKey::from_bytes([7; 32]).derive("audit"));
        assert_ne!(audit, k.derive("other"));
        assert_ne!(audit, MasterKey::from_bytes([8; 32]).derive("audit"));
        assert_ne!(audit, [7; 32]);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(MasterKey::read_file(&path).unwrap().is_none());
        let a = MasterKey::create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(
            MasterKey::create_file(&path).is_err(),
            "an existing key is never replaced"
        );
        let misspelt = dir.path().join("no-such-dir").join("k");
        let e = MasterKey::create_file(&misspelt).unwrap_err().to_string();
        assert!(e.contains("no-such-dir") && e.contains("does not exist"), "{e}");
        assert!(!dir.path().join("no-such-dir").exists(), "no directory was created");
        let b = MasterKey::read_file(&path).unwrap().unwrap();
        assert_eq!(b.open(&a.seal(b"x", "c").unwrap(), "c").unwrap(), b"x");
        assert!(MasterKey::from_config_value(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_config_value("short").is_err());
    }
}
