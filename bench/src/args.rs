//! Flags for the bench binaries: `--name value` or `--name=value`, `-h`/`--help`.

use std::collections::BTreeMap;
use std::str::FromStr;

pub struct Args {
    values: BTreeMap<String, String>,
    help: &'static str,
}

impl Args {
    /// Reads the process arguments; prints `help` and exits on `--help`, exits 2 on junk.
    pub fn from_env(help: &'static str) -> Args {
        match Args::parse(std::env::args().skip(1), help) {
            Ok(Some(args)) => args,
            Ok(None) => {
                print!("{help}");
                std::process::exit(0);
            }
            Err(message) => {
                eprintln!("{message}\n\n{help}");
                std::process::exit(2);
            }
        }
    }

    /// `Ok(None)` means help was asked for.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        help: &'static str,
    ) -> Result<Option<Args>, String> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let flag = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg}"))?;
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--{flag} needs a value"))?;
                    (flag.to_string(), value)
                }
            };
            if !help.contains(&format!("--{name} ")) {
                return Err(format!("unknown option --{name}"));
            }
            values.insert(name, value);
        }
        Ok(Some(Args { values, help }))
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                eprintln!("invalid value {text:?} for --{name}\n\n{}", self.help);
                std::process::exit(2);
            }),
        }
    }

    /// `--url` (default `http://127.0.0.1:8000`); exits 2 if it is not an http:// URL.
    pub fn url(&self) -> crate::http::Url {
        let text = self.get("url", "http://127.0.0.1:8000".to_string());
        crate::http::Url::parse(&text).unwrap_or_else(|error| {
            eprintln!("{error}\n\n{}", self.help);
            std::process::exit(2);
        })
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "usage\n  --url <URL>  x\n  --agents <N>  y\n";

    #[test]
    fn flags_parse_in_both_forms() {
        let args = Args::parse(
            ["--url=http://a".to_string(), "--agents".into(), "7".into()],
            HELP,
        )
        .expect("valid")
        .expect("not help");
        assert_eq!(args.get("agents", 0usize), 7);
        assert_eq!(args.optional("url").as_deref(), Some("http://a"));
        assert_eq!(args.get("missing", 3u8), 3);
    }

    #[test]
    fn unknown_flags_and_help() {
        assert!(Args::parse(["--nope".to_string(), "1".into()], HELP).is_err());
        assert!(matches!(Args::parse(["-h".to_string()], HELP), Ok(None)));
    }
}
