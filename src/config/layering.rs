//! Loading in layers, later wins: the embedded defaults, the base file, the
//! `$TICKSTREAM_ENV` overlay, then `TICKSTREAM__SECTION__KEY` environment variables.
//! Secrets are accepted only from the environment, so they never sit in a file that
//! gets committed or baked into an image.
//!
//! A renamed section keeps working under its old name for a while, in files and in
//! the environment, with a [`Deprecation`] for `main` to print: operators' files and
//! deployments should not break on an upgrade. Giving one key under both names in the
//! same layer is an error, since neither can be said to win.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use toml::{Table, Value};

use super::{ConfigError, Settings};

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
/// `[trading_day]` was `[session]`; "session" now means only a viewer's connection.
const DEPRECATED_SECTION: &str = "session";
const RENAMED_SECTION: &str = "trading_day";

/// Settings as loaded, with the deprecated names they were given under.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub deprecations: Vec<Deprecation>,
}

/// One deprecated name that loading accepted; its text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation(String);

impl std::fmt::Display for Deprecation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Settings {
    /// Loads the process configuration: files as described in the module docs, then
    /// the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let mut files: Vec<(String, String)> = Vec::new();
        let base = match config_file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config/default.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = &base {
            files.push(read_file(path).map_err(ConfigError::from_chain)?);
        }
        if let Ok(env_name) = std::env::var("TICKSTREAM_ENV") {
            let dir = base
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("config"), Path::to_path_buf);
            let overlay = dir.join(format!("{env_name}.toml"));
            files.push(read_file(&overlay).map_err(ConfigError::from_chain)?);
        }
        Settings::load_sources(&files, process_env())
    }

    /// Builds settings from the embedded defaults, the given `(name, toml)` files and
    /// `(key, value)` environment pairs (only `TICKSTREAM__*` keys are read).
    pub fn from_sources(
        files: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        Settings::load_sources(files, env).map(|loaded| loaded.settings)
    }

    /// As [`Settings::from_sources`], keeping the deprecated names it accepted.
    pub fn load_sources(
        files: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let (merged, deprecations) = layer(files, env).map_err(ConfigError::from_chain)?;
        let settings: Settings = serde_path_to_error::deserialize(Value::Table(merged))
            .map_err(|e| ConfigError::invalid_key(&e.path().to_string(), e.inner()))?;
        settings.validate()?;
        Ok(Loaded {
            settings,
            deprecations,
        })
    }
}

/// Merges the embedded defaults, `files` and `env` into one table, later wins, with
/// deprecated names renamed.
fn layer(
    files: &[(String, String)],
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(Table, Vec<Deprecation>)> {
    let mut deprecations = Vec::new();
    let mut merged: Table = EMBEDDED_DEFAULTS
        .parse()
        .expect("the embedded default configuration is valid TOML");
    for (name, text) in files {
        let mut table: Table = text.parse().map_err(|e| toml_error(name, text, &e))?;
        if rename_file_section(name, &mut table)? {
            deprecations.push(Deprecation(format!(
                "configuration file {name}: [{DEPRECATED_SECTION}] is deprecated, \
                 rename it [{RENAMED_SECTION}]"
            )));
        }
        for [section, key] in SECRET_KEYS {
            let in_file = table
                .get(section)
                .and_then(Value::as_table)
                .is_some_and(|t| t.contains_key(key));
            if in_file {
                bail!(
                    "configuration file {name} sets the secret `{section}.{key}`; secrets come \
                     only from the environment (TICKSTREAM__{}__{})",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                );
            }
        }
        merge(&mut merged, table);
    }
    let env = env_settings(env)?;
    for setting in env {
        if setting.renamed {
            deprecations.push(Deprecation(format!(
                "{} is deprecated, use {} (the [{DEPRECATED_SECTION}] section is now \
                 [{RENAMED_SECTION}])",
                setting.var,
                env_var(&setting.path)
            )));
        }
        let is_secret = SECRET_KEYS.iter().any(|secret| setting.path == secret);
        let value = if is_secret {
            Value::String(setting.raw)
        } else {
            env_value(&setting.raw)
        };
        set_path(&mut merged, &setting.path, value)
            .with_context(|| format!("environment variable {}", setting.var))?;
    }
    Ok((merged, deprecations))
}

/// Moves a file's deprecated `[session]` to `[trading_day]`; true when there was one.
fn rename_file_section(name: &str, table: &mut Table) -> anyhow::Result<bool> {
    let Some(old) = table.remove(DEPRECATED_SECTION) else {
        return Ok(false);
    };
    match (old, table.get_mut(RENAMED_SECTION)) {
        (old, None) => {
            table.insert(RENAMED_SECTION.to_owned(), old);
        }
        (Value::Table(old), Some(Value::Table(new))) => {
            for (key, value) in old {
                if new.contains_key(&key) {
                    bail!(
                        "configuration file {name} sets both `{DEPRECATED_SECTION}.{key}` \
                         (deprecated) and `{RENAMED_SECTION}.{key}`; keep only \
                         `{RENAMED_SECTION}.{key}`"
                    );
                }
                new.insert(key, value);
            }
        }
        (_, Some(_)) => bail!(
            "configuration file {name} sets both `{DEPRECATED_SECTION}` (deprecated) and \
             `{RENAMED_SECTION}`; keep only `{RENAMED_SECTION}`"
        ),
    }
    Ok(true)
}

/// One `TICKSTREAM__*` variable, its key path already under the section's current name.
struct EnvSetting {
    var: String,
    path: Vec<String>,
    raw: String,
    /// Given under the deprecated section name.
    renamed: bool,
}

/// The `TICKSTREAM__*` variables among `env`, in order, with deprecated names renamed;
/// a key set under both names is an error, as variables have no order to decide by.
fn env_settings(
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Vec<EnvSetting>> {
    let mut settings: Vec<EnvSetting> = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let renamed = path[0] == DEPRECATED_SECTION;
        if renamed {
            RENAMED_SECTION.clone_into(&mut path[0]);
        }
        settings.push(EnvSetting {
            var,
            path,
            raw,
            renamed,
        });
    }
    for old in settings.iter().filter(|s| s.renamed) {
        if let Some(new) = settings.iter().find(|s| !s.renamed && s.path == old.path) {
            bail!(
                "environment variables {} (deprecated) and {} both set `{}`; keep only {}",
                old.var,
                new.var,
                old.path.join("."),
                new.var
            );
        }
    }
    Ok(settings)
}

/// The variable that sets the key at `path`: `["trading_day", "time_zone"]` →
/// `TICKSTREAM__TRADING_DAY__TIME_ZONE`.
fn env_var(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
}

/// A TOML syntax error on one line: where, then what. toml's own rendering spans
/// several lines (a snippet with a caret), which a one-line message cannot carry.
fn toml_error(name: &str, text: &str, error: &toml::de::Error) -> anyhow::Error {
    let what: Vec<&str> = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let what = what.join(", ");
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return anyhow::anyhow!("configuration file {name} is not valid TOML: {what}");
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    anyhow::anyhow!(
        "configuration file {name} is not valid TOML: line {line}, column {column}: {what}"
    )
}

/// The process environment as text. `std::env::vars` panics on any variable that is
/// not UTF-8, ours or not; here such a name is skipped and such a value read with
/// U+FFFD, so it fails as a bad value rather than as a crash.
fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(key, value)| {
        let key = key.into_string().ok()?;
        Some((key, value.to_string_lossy().into_owned()))
    })
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

    #[test]
    fn every_error_is_one_line() {
        // toml renders a syntax error as a snippet with a caret, and its value errors
        // end in a newline; neither may reach the user's terminal as more than a line.
        let bad_file = vec![(
            "x.toml".to_string(),
            "[server]\nport = 80\n[stream]\nmax_hz = [\n".to_string(),
        )];
        let err = Settings::from_sources(&bad_file, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml") && err.contains("line 5"), "{err}");
        let bad_value = env(&[("TICKSTREAM__SERVER__PORT", "notaport")]);
        let missing = Settings::load(Some(Path::new("/nonexistent/tickstream.toml")));
        for err in [
            err,
            Settings::from_sources(&[], bad_value)
                .unwrap_err()
                .to_string(),
            missing.unwrap_err().to_string(),
        ] {
            assert!(!err.is_empty() && !err.contains('\n'), "{err:?}");
        }
    }

    #[test]
    fn the_deprecated_session_section_still_sets_the_trading_day_with_a_warning() {
        // Arrange: the old name in an overlay file, and in the environment.
        let file = vec![(
            "prod.toml".to_string(),
            "[session]\nrollover_time = \"16:00\"\n".to_string(),
        )];
        let old_env = env(&[("TICKSTREAM__SESSION__TIME_ZONE", "Europe/London")]);

        // Act
        let loaded = Settings::load_sources(&file, old_env).unwrap();

        // Assert: both values arrive under the new name, and each source is warned once.
        let day = &loaded.settings.trading_day;
        assert_eq!(day.rollover_time, "16:00");
        assert_eq!(day.time_zone, "Europe/London");
        loaded.settings.validate().unwrap();
        let warnings: Vec<String> = loaded.deprecations.iter().map(|d| d.to_string()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("prod.toml") && warnings[0].contains("[trading_day]"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("TICKSTREAM__SESSION__TIME_ZONE")
                && warnings[1].contains("TICKSTREAM__TRADING_DAY__TIME_ZONE"),
            "{warnings:?}"
        );
        let current =
            Settings::load_sources(&[], env(&[("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC")]))
                .unwrap();
        assert!(
            current.deprecations.is_empty(),
            "the new name warns of nothing"
        );
    }

    #[test]
    fn a_deprecated_name_reports_errors_under_the_new_key() {
        let err =
            Settings::from_sources(&[], env(&[("TICKSTREAM__SESSION__TIME_ZONE", "Mars/Base")]))
                .unwrap_err();
        assert!(err.to_string().contains("`trading_day.time_zone`"), "{err}");
    }

    #[test]
    fn one_key_under_both_names_in_one_layer_is_an_error_naming_both() {
        let err = Settings::from_sources(
            &[],
            env(&[
                ("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC"),
                ("TICKSTREAM__SESSION__TIME_ZONE", "Europe/London"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("TICKSTREAM__SESSION__TIME_ZONE")
                && err.contains("TICKSTREAM__TRADING_DAY__TIME_ZONE"),
            "{err}"
        );
        let file = vec![(
            "prod.toml".to_string(),
            "[session]\ntime_zone = \"UTC\"\n[trading_day]\ntime_zone = \"UTC\"\n".to_string(),
        )];
        let err = Settings::from_sources(&file, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`session.time_zone`") && err.contains("`trading_day.time_zone`"),
            "{err}"
        );
    }

    #[test]
    fn a_later_layer_overrides_a_deprecated_name_in_an_earlier_one() {
        // An old overlay file under a current environment is no conflict: later wins.
        let file = vec![(
            "prod.toml".to_string(),
            "[session]\ntime_zone = \"Europe/London\"\n".to_string(),
        )];
        let settings = Settings::from_sources(
            &file,
            env(&[("TICKSTREAM__TRADING_DAY__TIME_ZONE", "Asia/Tokyo")]),
        )
        .unwrap();
        assert_eq!(settings.trading_day.time_zone, "Asia/Tokyo");
    }
}
