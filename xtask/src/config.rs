//! Config files for `train`: a TOML file whose keys are `train`'s long flags (`lr = 0.1`,
//! `algorithms = ["ar", "bp"]`, `no-fprime-update = true`) is turned into flags placed before
//! the ones typed, so flags on the command line override the file. `--resume DIR` reads
//! `DIR/config.toml` the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a config file was rejected; printed as one line, exit status 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

/// Rewrites the raw command line: for `train --config FILE` or `train --resume DIR`, inserts the
/// file's keys as flags right after `train` (the `--config` pair itself is removed; `--resume`
/// stays so that training resumes). `known` lists `train`'s long flag names.
pub fn expand(args: Vec<OsString>, known: &[String]) -> Result<Vec<OsString>, ConfigError> {
    let Some(train_at) = args.iter().position(|a| a == "train") else {
        return Ok(args);
    };
    let mut rest: Vec<OsString> = args[train_at + 1..].to_vec();
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(file) = take_value(&mut rest, "--config")? {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = peek_value(&rest, "--resume") {
        files.insert(0, Path::new(&dir).join("config.toml"));
    }
    let mut flags = Vec::new();
    for file in files {
        flags.extend(flags_from_file(&file, known)?);
    }
    let mut out: Vec<OsString> = args[..=train_at].to_vec();
    out.extend(flags);
    out.extend(rest);
    Ok(out)
}

fn take_value(args: &mut Vec<OsString>, flag: &str) -> Result<Option<OsString>, ConfigError> {
    let prefix = format!("{flag}=");
    for i in 0..args.len() {
        let a = args[i].to_string_lossy().to_string();
        if a == flag {
            if i + 1 >= args.len() {
                return Err(ConfigError(format!("{flag} needs a value")));
            }
            let v = args.remove(i + 1);
            args.remove(i);
            return Ok(Some(v));
        }
        if let Some(v) = a.strip_prefix(&prefix) {
            args.remove(i);
            return Ok(Some(v.into()));
        }
    }
    Ok(None)
}

fn peek_value(args: &[OsString], flag: &str) -> Option<OsString> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        let s = a.to_string_lossy();
        if s == flag {
            args.get(i + 1).cloned()
        } else {
            s.strip_prefix(&prefix).map(OsString::from)
        }
    })
}

/// The flags a TOML file stands for.
pub fn flags_from_file(path: &Path, known: &[String]) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError(format!("{}: {}", path.display(), e.message()))
    })?;
    let mut flags = Vec::new();
    for (key, value) in table {
        if !known.contains(&key) || ["config", "resume"].contains(&key.as_str()) {
            return Err(ConfigError(format!(
                "{}: unknown key '{key}' (keys are the long flags of `cargo xtask train`, such as lr or epochs)",
                path.display()
            )));
        }
        let flag = format!("--{key}");
        let bad = |what: &str| ConfigError(format!("{}: key '{key}': {what}", path.display()));
        match value {
            toml::Value::Boolean(true) => flags.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => flags.extend([flag.into(), s.into()]),
            toml::Value::Integer(i) => flags.extend([flag.into(), i.to_string().into()]),
            toml::Value::Float(x) => flags.extend([flag.into(), x.to_string().into()]),
            toml::Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        toml::Value::Float(x) => Ok(x.to_string()),
                        _ => Err(bad("list items must be strings or numbers")),
                    })
                    .collect::<Result<_, _>>()?;
                flags.extend([flag.into(), parts.join(",").into()]);
            }
            _ => return Err(bad("expected a string, number, boolean or list")),
        }
    }
    Ok(flags)
}
