//! The master key that seals secrets at rest (signing keys, TOTP secrets, upstream
//! tokens): where it comes from, when one may be generated, and whether it is the key
//! the database's secrets were sealed under.
//!
//! A key is generated (into the key file) only when none is configured, the key file
//! does not exist, and the database holds nothing sealed: a new key over sealed data
//! would leave that data unreadable, so start-up stops and says how to give the key.
//! A given key must open one sealed value of each kind the database holds, so a wrong
//! key is refused before anything is sealed under it.

use crate::config::Config;
use crate::crypto::secretbox::MasterKey;
use crate::store::{SealedSample, Store};

/// How the master key was obtained, so start-up can warn about a generated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySource {
    Config,
    ExistingFile,
    GeneratedFile,
}

impl SealedSample {
    fn what(&self) -> &'static str {
        match self {
            SealedSample::SigningKey(_) => "signing keys",
            SealedSample::TotpSecret(..) => "TOTP secrets",
            SealedSample::UpstreamToken(_) => "upstream provider tokens",
        }
    }

    fn opens_with(&self, key: &MasterKey) -> bool {
        match self {
            SealedSample::SigningKey(v) => key.open(v, super::keys::SEAL_CONTEXT).is_ok(),
            SealedSample::TotpSecret(user, v) => key.open(v, &super::mfa::totp_context(*user)).is_ok(),
            SealedSample::UpstreamToken(v) => key.open(v, super::oauth::UPSTREAM_SEAL_CONTEXT).is_ok(),
        }
    }
}

const HOW_TO_GIVE: &str = "set PORTCULLIS_MASTER_KEY to the key the database was sealed with, or \
     PORTCULLIS_MASTER_KEY_FILE to the file that holds it";

/// Loads the master key from configuration or the key file, generating the file only
/// over a database with nothing sealed, and checks it opens what is sealed.
pub async fn load_master_key(config: &Config, store: &Store) -> anyhow::Result<(MasterKey, MasterKeySource)> {
    if let Some(given) = given_master_key(config, store).await? {
        return Ok(given);
    }
    let path = &config.bootstrap.master_key_file;
    if let Some(first) = store.sealed_samples().await?.first() {
        anyhow::bail!(
            "no master key: PORTCULLIS_MASTER_KEY is unset and the key file {} does not exist, \
             but the database holds {} sealed under a master key; {HOW_TO_GIVE} \
             (a new key would leave them unreadable, so none is generated)",
            path.display(),
            first.what()
        );
    }
    Ok((MasterKey::create_file(path)?, MasterKeySource::GeneratedFile))
}

/// The master key given in configuration or by an existing key file, checked to open
/// what is sealed; None when neither gives one. Never generates a key.
pub async fn given_master_key(config: &Config, store: &Store) -> anyhow::Result<Option<(MasterKey, MasterKeySource)>> {
    let path = &config.bootstrap.master_key_file;
    let (key, source, origin) = match &config.bootstrap.master_key {
        Some(value) => (
            MasterKey::from_config_value(value)?,
            MasterKeySource::Config,
            "PORTCULLIS_MASTER_KEY".to_string(),
        ),
        None => match MasterKey::read_file(path)? {
            Some(key) => (
                key,
                MasterKeySource::ExistingFile,
                format!("the key file {}", path.display()),
            ),
            None => return Ok(None),
        },
    };
    let sealed = store.sealed_samples().await?;
    if let Some(unopened) = sealed.iter().find(|s| !s.opens_with(&key)) {
        anyhow::bail!(
            "wrong master key: the key from {origin} does not open the {} sealed in the database; {HOW_TO_GIVE}",
            unopened.what()
        );
    }
    Ok(Some((key, source)))
}
