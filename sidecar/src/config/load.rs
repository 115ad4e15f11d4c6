//! Reading the config directory: endpoint files, and each endpoint's keys from its mounted
//! Secret. The checks are [`hookguard_api::validation`]'s; this module only adds where each
//! value came from.

use std::path::{Path, PathBuf};

use hookguard_api::config::{CONFIG_FILE_NAME, EndpointConfig, Scheme};
use hookguard_api::validation;

use super::endpoint::{Endpoint, Endpoints};
use crate::verify::SigningKey;

/// An endpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config directory cannot be read.
    #[error(
        "cannot read config directory {dir}: {source}; mount the endpoint ConfigMaps there or pass --config-dir"
    )]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The config directory holds no endpoint.
    #[error(
        "no endpoint configuration in {0}: add <name>.json or <name>/{CONFIG_FILE_NAME} (see README, \"Configuration\")"
    )]
    NoEndpoints(PathBuf),
    /// A file cannot be read.
    #[error("{file}: cannot read: {source}")]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON for the endpoint schema.
    #[error("{file}: {source}; see README, \"Configuration\", for the fields")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A field has a value that cannot be used.
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        /// The file.
        file: PathBuf,
        /// The field, as written in the file.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A directory entry is neither an endpoint file nor an endpoint directory.
    #[error(
        "{0}: not an endpoint file: name it <name>.json, or put {CONFIG_FILE_NAME} in the directory, or remove it"
    )]
    Unexpected(PathBuf),
}

/// Every problem found in one load, so a person fixes them all at once.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates every endpoint in `dir`, loading each endpoint's keys.
pub fn load_endpoints(dir: &Path) -> Result<Endpoints, ConfigErrors> {
    let files = endpoint_files(dir).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let mut loaded = Vec::new();
    for file in files {
        match load_endpoint_file(&file) {
            Ok(endpoint) => loaded.push((file.display().to_string(), endpoint)),
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if loaded.is_empty() {
        return Err(ConfigErrors(vec![ConfigError::NoEndpoints(dir.to_owned())]));
    }
    Endpoints::new(loaded).map_err(|conflict| {
        ConfigErrors(vec![ConfigError::Field {
            file: PathBuf::from(&conflict.second),
            field: "path",
            problem: conflict.to_string(),
        }])
    })
}

/// The endpoint files in `dir`: `*.json` files, and `*/endpoint.json` for ConfigMap volumes.
/// Names starting with `.` are skipped: Kubernetes keeps its `..data` swap machinery there.
fn endpoint_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_dir = |dir: &Path| {
        std::fs::read_dir(dir).map_err(|source| ConfigError::ReadDir {
            dir: dir.to_owned(),
            source,
        })
    };
    let mut files = Vec::new();
    for entry in read_dir(dir)? {
        let entry = entry.map_err(|source| ConfigError::ReadDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks: a ConfigMap volume's files are links into `..data/`.
        let metadata = std::fs::metadata(&path).map_err(|source| ConfigError::ReadFile {
            file: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            let inner = path.join(CONFIG_FILE_NAME);
            if !inner.is_file() {
                return Err(ConfigError::Unexpected(path));
            }
            files.push(inner);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        } else {
            return Err(ConfigError::Unexpected(path));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads, parses and checks one endpoint file, then loads its keys.
pub fn load_endpoint_file(file: &Path) -> Result<Endpoint, ConfigError> {
    let field = |invalid: validation::Invalid| ConfigError::Field {
        file: file.to_owned(),
        field: invalid.field,
        problem: invalid.problem,
    };
    let text = std::fs::read(file).map_err(|source| ConfigError::ReadFile {
        file: file.to_owned(),
        source,
    })?;
    let config: EndpointConfig =
        serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
            file: file.to_owned(),
            source,
        })?;
    let checked = validation::check(&config).map_err(field)?;
    let keys = load_keys(config.scheme, Path::new(&config.secret_dir)).map_err(|problem| {
        field(validation::Invalid {
            field: "secretDir",
            problem,
        })
    })?;
    Ok(Endpoint::assemble(config, checked, keys))
}

/// Loads every key file in a mounted Secret directory. The message never holds key bytes.
fn load_keys(scheme: Scheme, dir: &Path) -> Result<Vec<SigningKey>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read {}: {e}; mount the endpoint's signing Secret there",
            dir.display()
        )
    })?;
    let mut keys = Vec::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        names.push((name, entry.path()));
    }
    names.sort();
    for (name, path) in names {
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        let key = SigningKey::new(scheme, name.clone(), &bytes)
            .map_err(|e| format!("key file {}: {e}", path.display()))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!(
            "{} holds no key file; the signing Secret must have at least one key",
            dir.display()
        ));
    }
    Ok(keys)
}
