//! Loading in layers, later wins: the embedded defaults, the base file, the
//! `$TICKSTREAM_ENV` overlay, then `TICKSTREAM__SECTION__KEY` environment variables.
//! Secrets are accepted only from the environment, so they never sit in a file that
//! gets committed or baked into an image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use toml::{Table, Value};

use super::Settings;

/// The defaults, embedded so the binary needs no files to start.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../config/default.toml");
const ENV_PREFIX: &str = "TICKSTREAM__";
/// Keys that hold secrets: accepted only from the environment, and always as text.
const SECRET_KEYS: [[&str; 2]; 5] = [
    ["ingest", "publisher_keys"],
    ["admin", "api_key"],
    ["auth", "jwt_secret"],
    ["feed", "api_key"],
    ["feed", "api_secret"],
];

impl Settings {
    /// Loads the process configuration: files as described in the module docs, then
    /// the process environment.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut files: Vec<(String, String)> = Vec::new();
        let base = match config_file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config/default.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = &base {
            files.push(read_file(path)?);
        }
        if let Ok(env_name) = std::env::var("TICKSTREAM_ENV") {
            let dir = base
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("config"), Path::to_path_buf);
            files.push(read_file(&dir.join(format!("{env_name}.toml")))?);
        }
        Settings::from_sources(&files, std::env::vars())
    }

    /// Builds settings from the embedded defaults, the given `(name, toml)` files and
    /// `(key, value)` environment pairs (only `TICKSTREAM__*` keys are read).
    pub fn from_sources(
        files: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut merged: Table = EMBEDDED_DEFAULTS
            .parse()
            .expect("the embedded default configuration is valid TOML");
        for (name, text) in files {
            let table: Table = text
                .parse()
                .with_context(|| format!("configuration file {name} is not valid TOML"))?;
            for [section, key] in SECRET_KEYS {
                let in_file = table
                    .get(section)
                    .and_then(Value::as_table)
                    .is_some_and(|t| t.contains_key(key));
                if in_file {
                    bail!(
                        "configuration file {name} sets the secret `{section}.{key}`; secrets come only from the environment (TICKSTREAM__{}__{})",
                        section.to_ascii_uppercase(),
                        key.to_ascii_uppercase()
                    );
                }
            }
            merge(&mut merged, table);
        }
        for (key, raw) in env {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            let is_secret = SECRET_KEYS.iter().any(|secret| path == secret);
            let value = if is_secret {
                Value::String(raw)
            } else {
                env_value(&raw)
            };
            set_path(&mut merged, &path, value)
                .with_context(|| format!("environment variable {key}"))?;
        }
        let settings: Settings =
            serde_path_to_error::deserialize(Value::Table(merged)).map_err(|e| {
                let key = e.path().to_string();
                anyhow::anyhow!("invalid configuration key `{key}`: {}", e.inner())
            })?;
        settings.validate()?;
        Ok(settings)
    }
}

fn read_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> anyhow::Result<()> {
    match path {
        [] => bail!("empty key"),
        [key] if key.is_empty() => bail!("empty key"),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(inner) => set_path(inner, rest, value),
                _ => bail!("`{section}` is not a section"),
            }
        }
    }
}

/// An environment value is read as a TOML scalar when it is one (`8080`, `true`, `1.5`)
/// and as a string otherwise, so `TICKSTREAM__SERVER__HOST=0.0.0.0` needs no quotes.
fn env_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, Value::Table(_) | Value::Array(_)))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::{env, LogFormat, Secret};
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let settings = Settings::from_sources(&[], env(&[])).unwrap();
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert!(settings.simulator.enabled);
        assert_eq!(settings.stream.max_hz, 10.0);
    }

    #[test]
    fn files_then_environment_override_in_order() {
        let files = vec![(
            "production.toml".to_string(),
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n".to_string(),
        )];
        let settings = Settings::from_sources(
            &files,
            env(&[
                ("TICKSTREAM__SERVER__PORT", "9100"),
                ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
                ("TICKSTREAM__STREAM__MAX_HZ", "4"),
                ("TICKSTREAM__LOG__FORMAT", "json"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.port, 9100);
        assert_eq!(settings.server.host, "0.0.0.0");
        assert!(!settings.simulator.enabled);
        assert_eq!(settings.stream.max_hz, 4.0);
        assert_eq!(settings.log.format, LogFormat::Json);
        let http = Settings::from_sources(
            &[],
            env(&[("TICKSTREAM__HTTP__MAX_CONNECTIONS_PER_IP", "7")]),
        )
        .unwrap()
        .http;
        assert_eq!(http.max_connections_per_ip, 7);
        assert_eq!(http.max_connections, 10_000, "the default stays");
    }

    #[test]
    fn secrets_come_only_from_the_environment_and_stay_text() {
        let settings = Settings::from_sources(
            &[],
            env(&[
                ("TICKSTREAM__INGEST__PUBLISHER_KEYS", " alpha, 12345 ,,"),
                ("TICKSTREAM__ADMIN__API_KEY", "007"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.ingest.keys(),
            vec![Secret::new("alpha"), Secret::new("12345")]
        );
        assert_eq!(settings.admin.api_key.expose(), "007");
        assert!(
            !format!("{settings:?}").contains("alpha"),
            "secrets are not printed"
        );
        let file = vec![(
            "prod.toml".to_string(),
            "[admin]\napi_key = \"x\"\n".to_string(),
        )];
        let err = Settings::from_sources(&file, env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("TICKSTREAM__ADMIN__API_KEY"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SERVER__PORT", "http")])).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SERVER__PROT", "1")])).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let bad_file = vec![("x.toml".to_string(), "[stream]\nmax_hz = [".to_string())];
        let err = Settings::from_sources(&bad_file, env(&[])).unwrap_err();
        assert!(err.to_string().contains("x.toml"), "{err}");
    }
}
